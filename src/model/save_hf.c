/* HF checkpoint writer; see save_hf.h. */
#include "model/save_hf.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"
#include "io/file.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

#define DEFAULT_SHARD (5ull << 30) /* save_pretrained's classic max_shard_size */

/* files an HF model directory carries besides config and weights, copied as they are */
static const char *const COPY_FILES[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                         "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
                                         "generation_config.json", "chat_template.jinja", "chat_template.json"};
#define N_COPY ((int)(sizeof COPY_FILES / sizeof COPY_FILES[0]))

int lop_model_is_stock_hf(const lop_model *m) {
    const lop_config *c = &m->cfg;
    for (int i = 0; i < c->n_layers; i++) {
        const lop_layer_shape *s = &c->layers[i], *s0 = &c->layers[0];
        if (!s->n_heads || !s->ffn_dim || s->n_heads != s0->n_heads || s->n_kv_heads != s0->n_kv_heads ||
            s->head_dim != s0->head_dim || s->ffn_dim != s0->ffn_dim)
            return 0;
    }
    return 1;
}

/* ---- paths ------------------------------------------------------------------------------ */
/* absolute form of a path that may not exist yet (its parent must) */
static lop_status abs_path(const char *p, char *out) {
    char buf[PATH_MAX];
    if (realpath(p, out)) return LOP_OK;
    snprintf(buf, sizeof buf, "%s", p);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
    char *slash = strrchr(buf, '/');
    const char *base = slash ? slash + 1 : buf;
    char parent[PATH_MAX];
    if (!slash) snprintf(parent, sizeof parent, ".");
    else if (slash == buf) snprintf(parent, sizeof parent, "/");
    else snprintf(parent, sizeof parent, "%.*s", (int)(slash - buf), buf);
    char pa[PATH_MAX];
    if (!realpath(parent, pa)) return lop_fail(LOP_ERR_IO, "%s: parent directory %s does not exist", p, parent);
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return lop_fail(LOP_ERR_ARG, "%s: not a usable output directory name", p);
    if ((size_t)snprintf(out, PATH_MAX, "%s/%s", strcmp(pa, "/") ? pa : "", base) >= PATH_MAX)
        return lop_fail(LOP_ERR_ARG, "%s: path too long", p);
    return LOP_OK;
}

/* refuses OUT = the input directory (or inside an HF input directory, or the folder of a file) */
static lop_status check_not_input(const char *out_abs, const char *out, const char *input) {
    if (!input || !strncmp(input, "synth:", 6)) return LOP_OK;
    char in_abs[PATH_MAX];
    if (!realpath(input, in_abs)) return LOP_OK; /* nothing on disk to protect */
    int is_dir = lop_is_dir(in_abs);
    if (!is_dir) {
        char *slash = strrchr(in_abs, '/');
        if (slash) *(slash == in_abs ? slash + 1 : slash) = 0;
    }
    size_t n = strlen(in_abs);
    int same = !strcmp(out_abs, in_abs);
    int inside = is_dir && !strncmp(out_abs, in_abs, n) && (out_abs[n] == '/' || !strcmp(in_abs, "/"));
    if (same || inside)
        return lop_fail(LOP_ERR_ARG, "%s: refusing to write into the input %s %s (lop never writes into its input; "
                        "choose another output directory)", out, is_dir ? "directory" : "file's directory", in_abs);
    return LOP_OK;
}

static int dir_is_empty(const char *p) {
    DIR *d = opendir(p);
    if (!d) return 0;
    struct dirent *de;
    int empty = 1;
    while (empty && (de = readdir(d))) empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
    closedir(d);
    return empty;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char *p = lop_path_join(dir, de->d_name);
            if (p) unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static lop_status copy_file(const char *src, const char *dst) {
    char *data;
    size_t n;
    LOP_TRY(lop_read_file(src, &data, &n));
    lop_status st = lop_write_file_atomic(dst, data, n);
    free(data);
    return st;
}

/* ---- shard size ------------------------------------------------------------------------- */
static uint64_t input_shard_bytes(const char *input) {
    if (!input || !lop_is_dir(input)) return DEFAULT_SHARD;
    char *idx = lop_path_join(input, "model.safetensors.index.json");
    cJSON *root = NULL;
    uint64_t mx = 0;
    if (idx && lop_file_exists(idx) && lop_json_read_file(idx, &root) == LOP_OK) {
        const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map"), *e;
        cJSON_ArrayForEach(e, wm) {
            if (!cJSON_IsString(e)) continue;
            char *p = lop_path_join(input, e->valuestring);
            struct stat sb;
            if (p && stat(p, &sb) == 0 && (uint64_t)sb.st_size > mx) mx = (uint64_t)sb.st_size;
            free(p);
        }
    }
    cJSON_Delete(root);
    free(idx);
    return mx; /* 0 (one file) when the input is not sharded */
}

/* ---- tensors ---------------------------------------------------------------------------- */
typedef struct zeros {
    void **bufs;
    int n, cap;
} zeros;

static const void *zero_buf(zeros *z, size_t bytes) {
    if (z->n == z->cap) {
        int c = z->cap ? z->cap * 2 : 16;
        void **b = realloc(z->bufs, (size_t)c * sizeof *b);
        if (!b) return NULL;
        z->bufs = b;
        z->cap = c;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (p) z->bufs[z->n++] = p;
    return p;
}

/* adds the layer's tensors; biases stock HF expects (attention_bias / mlp_bias) but the layer
 * lacks are written as zeros of the weights' dtype */
static lop_status add_layer(lop_st_writer *w, const lop_model *m, int l, const lop_hf_extra *x, zeros *z) {
    const lop_layer_weights *L = &m->w.layers[l];
    const lop_layer_shape *s = &m->cfg.layers[l];
    char name[160];
    for (int f = 0; f < LOP_LF_COUNT; f++) {
        const lop_tensor *t = lop_layer_tensor_c(L, f);
        snprintf(name, sizeof name, "model.layers.%d.%s", l, lop_layer_field_name(f));
        if (t->present) {
            LOP_TRY(lop_st_writer_add_tensor(w, name, t));
            continue;
        }
        int is_attn_bias = f == LOP_LF_bq || f == LOP_LF_bk || f == LOP_LF_bv || f == LOP_LF_bo;
        int is_mlp_bias = f == LOP_LF_b_gate || f == LOP_LF_b_up || f == LOP_LF_b_down;
        int64_t len = 0;
        lop_dtype dt = LOP_F32;
        if (is_attn_bias && x->attention_bias && s->n_heads) {
            len = f == LOP_LF_bo ? m->cfg.dim : (int64_t)(f == LOP_LF_bq ? s->n_heads : s->n_kv_heads) * s->head_dim;
            dt = L->wq.dtype;
        } else if (is_mlp_bias && x->mlp_bias && s->ffn_dim) {
            len = f == LOP_LF_b_down ? m->cfg.dim : s->ffn_dim;
            dt = L->w_gate.dtype;
        }
        if (!len) continue;
        const void *zb = zero_buf(z, (size_t)len * lop_dtype_size(dt));
        if (!zb) return lop_fail(LOP_ERR_OOM, "out of memory");
        LOP_TRY(lop_st_writer_add(w, name, lop_st_from_lop_dtype(dt), 1, &len, zb));
    }
    return LOP_OK;
}

static lop_status add_tensors(lop_st_writer *w, const lop_model *m, const lop_hf_extra *x, zeros *z) {
    if (!m->w.tok_emb.data || !m->w.out_norm.data) return lop_fail(LOP_ERR_ARG, "%s: weights not loaded", m->source);
    LOP_TRY(lop_st_writer_add_tensor(w, "model.embed_tokens.weight", &m->w.tok_emb));
    for (int l = 0; l < m->cfg.n_layers; l++) LOP_TRY(add_layer(w, m, l, x, z));
    LOP_TRY(lop_st_writer_add_tensor(w, "model.norm.weight", &m->w.out_norm));
    if (!m->cfg.tie_embeddings) LOP_TRY(lop_st_writer_add_tensor(w, "lm_head.weight", &m->w.lm_head));
    return LOP_OK;
}

/* ---- tokenizer -------------------------------------------------------------------------- */
static lop_status write_tokenizer(const char *input, const char *tmp, cJSON *files, char *desc, size_t cap) {
    snprintf(desc, cap, "none (the input has no tokenizer)");
    if (!input || !strncmp(input, "synth:", 6)) {
        snprintf(desc, cap, "none (synthetic model)");
        return LOP_OK;
    }
    if (lop_is_dir(input)) {
        int n = 0;
        for (int i = 0; i < N_COPY; i++) {
            char *src = lop_path_join(input, COPY_FILES[i]), *dst = lop_path_join(tmp, COPY_FILES[i]);
            lop_status st = src && dst ? LOP_OK : lop_fail(LOP_ERR_OOM, "out of memory");
            if (st == LOP_OK && lop_file_exists(src)) {
                st = copy_file(src, dst);
                if (st == LOP_OK) {
                    cJSON_AddItemToArray(files, cJSON_CreateString(COPY_FILES[i]));
                    n++;
                }
            }
            free(src);
            free(dst);
            LOP_TRY(st);
        }
        if (n) snprintf(desc, cap, "copied from the input directory");
        return LOP_OK;
    }
    int written;
    lop_status st = lop_tokenizer_write_hf_from_gguf(input, tmp, &written, desc, cap);
    if (st == LOP_OK && written) {
        cJSON_AddItemToArray(files, cJSON_CreateString("tokenizer.json"));
        cJSON_AddItemToArray(files, cJSON_CreateString("tokenizer_config.json"));
    }
    return st;
}

/* ---- the directory ---------------------------------------------------------------------- */
static lop_status write_all(const lop_model *m, const lop_save_opts *o, const char *tmp, const char *out_abs) {
    lop_hf_extra x;
    lop_hf_extra_from_model(m, &x);
    cJSON *files = cJSON_CreateArray();
    if (!files) return lop_fail(LOP_ERR_OOM, "out of memory");
    char *cfg = lop_path_join(tmp, "config.json");
    lop_status st = cfg ? lop_hf_write_config(cfg, &m->cfg, &x) : lop_fail(LOP_ERR_OOM, "out of memory");
    free(cfg);
    cJSON_AddItemToArray(files, cJSON_CreateString("config.json"));
    lop_st_writer *w = NULL;
    zeros z = {0};
    int n_shards = 0;
    uint64_t shard = o->max_shard_bytes ? o->max_shard_bytes : input_shard_bytes(o->input);
    if (st == LOP_OK) st = lop_st_writer_new(&w);
    if (st == LOP_OK) st = add_tensors(w, m, &x, &z);
    if (st == LOP_OK) st = lop_st_writer_write_dir(w, tmp, shard, &n_shards);
    if (st == LOP_OK) {
        if (n_shards > 1) {
            for (int k = 1; k <= n_shards; k++) {
                char nm[64];
                snprintf(nm, sizeof nm, "model-%05d-of-%05d.safetensors", k, n_shards);
                cJSON_AddItemToArray(files, cJSON_CreateString(nm));
            }
            cJSON_AddItemToArray(files, cJSON_CreateString("model.safetensors.index.json"));
        } else {
            cJSON_AddItemToArray(files, cJSON_CreateString("model.safetensors"));
        }
    }
    uint64_t bytes = w ? lop_st_writer_total_bytes(w) : 0;
    lop_st_writer_free(w);
    for (int i = 0; i < z.n; i++) free(z.bufs[i]);
    free(z.bufs);
    char tok[256];
    if (st == LOP_OK) st = write_tokenizer(o->input, tmp, files, tok, sizeof tok);
    if (st == LOP_OK && o->report && o->report_name) {
        cJSON *out = cJSON_AddObjectToObject(o->report, "output");
        int stock = lop_model_is_stock_hf(m);
        cJSON_AddItemToArray(files, cJSON_CreateString(o->report_name));
        if (!out || !cJSON_AddStringToObject(out, "dir", out_abs) || !cJSON_AddItemToObject(out, "files", files) ||
            !cJSON_AddNumberToObject(out, "safetensors_files", n_shards) ||
            !cJSON_AddNumberToObject(out, "tensor_bytes", (double)bytes) ||
            !cJSON_AddStringToObject(out, "tokenizer", tok) ||
            !cJSON_AddBoolToObject(out, "loads_in_stock_transformers", stock) ||
            !cJSON_AddStringToObject(out, "config",
                                     stock ? "stock HF config.json (LlamaForCausalLM)"
                                           : "config.json with lop's per-layer extension lop_layers "
                                             "(docs/per-layer-config.md): stock transformers cannot build this model"))
            st = lop_fail(LOP_ERR_OOM, "out of memory");
        files = NULL;
        char *txt = st == LOP_OK ? cJSON_Print(o->report) : NULL;
        char *path = lop_path_join(tmp, o->report_name);
        if (st == LOP_OK && (!txt || !path)) st = lop_fail(LOP_ERR_OOM, "out of memory");
        if (st == LOP_OK) {
            size_t n = strlen(txt);
            txt[n] = '\n'; /* cJSON_Print's buffer ends with the NUL we overwrite: write n + 1 bytes */
            st = lop_write_file_atomic(path, txt, n + 1);
        }
        free(txt);
        free(path);
    }
    cJSON_Delete(files);
    return st;
}

lop_status lop_model_save_hf(const lop_model *m, const lop_save_opts *o) {
    if (!o->out_dir || !*o->out_dir) return lop_fail(LOP_ERR_ARG, "no output directory given");
    char out_abs[PATH_MAX], tmp[PATH_MAX + 32];
    LOP_TRY(abs_path(o->out_dir, out_abs));
    LOP_TRY(check_not_input(out_abs, o->out_dir, o->input));
    int exists = access(out_abs, F_OK) == 0;
    if (exists && (!lop_is_dir(out_abs) || !dir_is_empty(out_abs)))
        return lop_fail(LOP_ERR_ARG, "%s exists and is not an empty directory (lop never overwrites; choose a new one)",
                        o->out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", out_abs, (int)getpid());
    if (mkdir(tmp, 0755) != 0)
        return lop_fail(LOP_ERR_IO, "%s: cannot create the temporary directory: %s", tmp, strerror(errno));
    lop_status st = write_all(m, o, tmp, out_abs);
    if (st == LOP_OK && exists && rmdir(out_abs) != 0)
        st = lop_fail(LOP_ERR_IO, "%s: cannot replace the empty directory: %s", o->out_dir, strerror(errno));
    if (st == LOP_OK && rename(tmp, out_abs) != 0)
        st = lop_fail(LOP_ERR_IO, "%s: cannot rename %s into place: %s", o->out_dir, tmp, strerror(errno));
    if (st != LOP_OK) remove_tree(tmp);
    return st;
}
