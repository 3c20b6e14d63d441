/* Synthetic presets and the option syntax that derives pruned shapes from them:
 *   synth:PRESET[:opt=value]...      options apply left to right; block indices refer to the
 *                                    current block list
 *   layers=N          keep N blocks (drops from the end, keeping the last 2: the paper's "+" rule)
 *   drop=LIST         remove the listed blocks, e.g. drop=24-29,30
 *   heads=H[@LIST]    query heads (MHA presets: key/value heads too)
 *   kv=K[@LIST]       key/value heads
 *   ffn=F[@LIST]      FFN width
 *   noattn=LIST / noffn=LIST   remove the attention / FFN module of those blocks
 *   seed=N            weight seed (default 0);  dtype=f16|bf16|f32  storage dtype (default f16)
 * e.g. the paper's 4.9B models: synth:llama-7b:layers=23 and synth:llama-7b:heads=21@4-29:ffn=7155@4-29 */
#include "model/synth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threads.h"

typedef struct preset {
    const char *name;
    int vocab, dim, layers, heads, kv_heads, ffn, max_seq, tie, bos, eos;
    float eps, theta;
} preset;

static const preset PRESETS[] = {
    /* name          vocab   dim   L   H   KV  ffn    ctx   tie bos eos  eps    theta */
    {"llama-7b",     32000,  4096, 32, 32, 32, 11008, 2048, 0, 1, 2,       1e-6f, 10000.f},
    {"llama-13b",    32000,  5120, 40, 40, 40, 13824, 2048, 0, 1, 2,       1e-6f, 10000.f},
    {"llama2-7b",    32000,  4096, 32, 32, 32, 11008, 4096, 0, 1, 2,       1e-5f, 10000.f},
    {"llama3-8b",    128256, 4096, 32, 32, 8,  14336, 8192, 0, 128000, 128001, 1e-5f, 500000.f},
    {"vicuna-13b",   32000,  5120, 40, 40, 40, 13824, 2048, 0, 1, 2,       1e-6f, 10000.f},
    {"smollm2-135m", 49152,  576,  30, 9,  3,  1536,  8192, 1, 1, 2,       1e-5f, 100000.f},
};
#define N_PRESETS ((int)(sizeof PRESETS / sizeof PRESETS[0]))

const char *const lop_synth_preset_names[] = {"llama-7b", "llama-13b", "llama2-7b", "llama3-8b",
                                              "vicuna-13b", "smollm2-135m", NULL};

/* per-block shape while options are applied */
typedef struct blk {
    int heads, kv, hd, ffn;
} blk;

static lop_status parse_int(const char *spec, const char *key, const char *s, const char **end, long *v) {
    char *e;
    errno = 0;
    *v = strtol(s, &e, 10);
    if (e == s || errno || *v < 0 || *v > 100000000)
        return lop_fail(LOP_ERR_ARG, "synth:%s: option '%s': expected a non-negative integer at '%s'", spec, key, s);
    *end = e;
    return LOP_OK;
}

/* Parses LIST = A[-B](,A[-B])* into a 0/1 mask over n blocks. */
static lop_status parse_list(const char *spec, const char *key, const char *s, int n, char *mask) {
    memset(mask, 0, (size_t)n);
    for (;;) {
        long a, b;
        const char *e;
        LOP_TRY(parse_int(spec, key, s, &e, &a));
        b = a;
        if (*e == '-') LOP_TRY(parse_int(spec, key, e + 1, &e, &b));
        if (a > b || b >= n)
            return lop_fail(LOP_ERR_ARG, "synth:%s: option '%s': block range %ld-%ld outside 0-%d", spec, key, a, b, n - 1);
        for (long i = a; i <= b; i++) mask[i] = 1;
        if (*e == 0 || *e == ':') return LOP_OK;
        if (*e != ',') return lop_fail(LOP_ERR_ARG, "synth:%s: option '%s': unexpected '%c' in block list", spec, key, *e);
        s = e + 1;
    }
}

static lop_status apply_option(const char *spec, const char *opt, const preset *p, blk *b, int *n, uint64_t *seed,
                               lop_dtype *dt) {
    const char *eq = strchr(opt, '=');
    if (!eq) return lop_fail(LOP_ERR_ARG, "synth:%s: option '%s' needs '=value'", spec, opt);
    char key[16];
    size_t kl = (size_t)(eq - opt);
    if (kl >= sizeof key) return lop_fail(LOP_ERR_ARG, "synth:%s: unknown option '%.*s'", spec, (int)kl, opt);
    memcpy(key, opt, kl);
    key[kl] = 0;
    const char *val = eq + 1, *e;
    long v;
    char *mask = malloc((size_t)*n);
    if (!mask) return lop_fail(LOP_ERR_OOM, "out of memory");
    lop_status st = LOP_OK;
    if (!strcmp(key, "seed")) {
        char *ee;
        errno = 0;
        unsigned long long s = strtoull(val, &ee, 10);
        if (ee == val || errno || (*ee && *ee != ':')) st = lop_fail(LOP_ERR_ARG, "synth:%s: bad seed '%s'", spec, val);
        else *seed = s;
    } else if (!strcmp(key, "dtype")) {
        if (!strncmp(val, "f16", 3) && (val[3] == 0 || val[3] == ':')) *dt = LOP_F16;
        else if (!strncmp(val, "bf16", 4) && (val[4] == 0 || val[4] == ':')) *dt = LOP_BF16;
        else if (!strncmp(val, "f32", 3) && (val[3] == 0 || val[3] == ':')) *dt = LOP_F32;
        else st = lop_fail(LOP_ERR_ARG, "synth:%s: dtype must be f16, bf16 or f32", spec);
    } else if (!strcmp(key, "layers")) {
        if ((st = parse_int(spec, key, val, &e, &v)) == LOP_OK) {
            if (v < 1 || v > *n) st = lop_fail(LOP_ERR_ARG, "synth:%s: layers=%ld: must be 1..%d", spec, v, *n);
            else if (*e && *e != ':') st = lop_fail(LOP_ERR_ARG, "synth:%s: layers=%s: not an integer", spec, val);
            else {
                int keep_tail = v >= 3 ? 2 : 0; /* keep the last two blocks, as the "+" rule does */
                int head = (int)v - keep_tail;
                memmove(b + head, b + *n - keep_tail, (size_t)keep_tail * sizeof *b);
                *n = (int)v;
            }
        }
    } else if (!strcmp(key, "drop") || !strcmp(key, "noattn") || !strcmp(key, "noffn")) {
        if ((st = parse_list(spec, key, val, *n, mask)) == LOP_OK) {
            if (key[0] == 'd') {
                int j = 0;
                for (int i = 0; i < *n; i++)
                    if (!mask[i]) b[j++] = b[i];
                if (j == 0) st = lop_fail(LOP_ERR_ARG, "synth:%s: drop removes every block", spec);
                else *n = j;
            } else {
                for (int i = 0; i < *n; i++)
                    if (mask[i]) {
                        if (key[2] == 'a') b[i].heads = b[i].kv = 0;
                        else b[i].ffn = 0;
                    }
            }
        }
    } else if (!strcmp(key, "heads") || !strcmp(key, "kv") || !strcmp(key, "ffn")) {
        if ((st = parse_int(spec, key, val, &e, &v)) == LOP_OK) {
            if (v < 1) st = lop_fail(LOP_ERR_ARG, "synth:%s: %s must be ≥ 1 (use noattn=/noffn= to remove a module)", spec, key);
            else if (*e == '@') st = parse_list(spec, key, e + 1, *n, mask);
            else if (*e == 0 || *e == ':') memset(mask, 1, (size_t)*n);
            else st = lop_fail(LOP_ERR_ARG, "synth:%s: %s=%s: expected N or N@BLOCKS", spec, key, val);
            for (int i = 0; st == LOP_OK && i < *n; i++) {
                if (!mask[i]) continue;
                if (key[0] == 'f') b[i].ffn = (int)v;
                else if (key[0] == 'k') b[i].kv = (int)v;
                else {
                    b[i].heads = (int)v;
                    if (p->heads == p->kv_heads) b[i].kv = (int)v;
                }
            }
        }
    } else {
        st = lop_fail(LOP_ERR_ARG, "synth:%s: unknown option '%s' (layers, drop, heads, kv, ffn, noattn, noffn, seed, dtype)",
                      spec, key);
    }
    free(mask);
    return st;
}

static void set_tensor(lop_tensor *t, lop_dtype dt, int64_t d0, int64_t d1) {
    t->present = 1;
    t->dtype = dt;
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 ? d1 : 1;
    t->data = NULL;
}

lop_status lop_load_synth(lop_model *m, const char *spec, const lop_load_opts *o) {
    (void)o;
    size_t nl = strcspn(spec, ":");
    const preset *p = NULL;
    for (int i = 0; i < N_PRESETS; i++)
        if (strlen(PRESETS[i].name) == nl && !strncmp(PRESETS[i].name, spec, nl)) p = &PRESETS[i];
    if (!p) {
        char names[256] = "";
        for (int i = 0; i < N_PRESETS; i++) {
            strcat(names, i ? ", " : "");
            strcat(names, PRESETS[i].name);
        }
        return lop_fail(LOP_ERR_ARG, "synth:%s: unknown preset '%.*s' (presets: %s)", spec, (int)nl, spec, names);
    }
    int n = p->layers;
    blk *b = malloc((size_t)n * sizeof *b);
    if (!b) return lop_fail(LOP_ERR_OOM, "out of memory");
    for (int i = 0; i < n; i++) b[i] = (blk){p->heads, p->kv_heads, p->dim / p->heads, p->ffn};
    uint64_t seed = 0;
    lop_dtype dt = LOP_F16;
    lop_status st = LOP_OK;
    for (const char *s = spec + nl; st == LOP_OK && *s == ':'; s += 1 + strcspn(s + 1, ":")) {
        char opt[256];
        size_t l = strcspn(s + 1, ":");
        if (l >= sizeof opt) l = sizeof opt - 1;
        memcpy(opt, s + 1, l);
        opt[l] = 0;
        st = apply_option(spec, opt, p, b, &n, &seed, &dt);
    }
    for (int i = 0; st == LOP_OK && i < n; i++)
        if (b[i].heads && (b[i].kv < 1 || b[i].heads % b[i].kv))
            st = lop_fail(LOP_ERR_ARG, "synth:%s: block %d: %d query heads not a multiple of %d key/value heads", spec, i,
                          b[i].heads, b[i].kv);
    if (st == LOP_OK) st = lop_model_alloc_layers(m, n);
    if (st != LOP_OK) {
        free(b);
        return st;
    }
    lop_config *c = &m->cfg;
    c->vocab_size = p->vocab;
    c->dim = p->dim;
    c->max_seq_len = p->max_seq;
    c->norm_eps = p->eps;
    c->rope_theta = p->theta;
    c->tie_embeddings = p->tie;
    c->bos_id = p->bos;
    c->eos_id = p->eos;
    c->n_heads = p->heads;
    c->n_kv_heads = p->kv_heads;
    c->head_dim = p->dim / p->heads;
    c->ffn_dim = p->ffn;
    c->dtype = dt;
    lop_weights *w = &m->w;
    set_tensor(&w->tok_emb, dt, p->vocab, p->dim);
    set_tensor(&w->out_norm, dt, p->dim, 0);
    if (!p->tie) set_tensor(&w->lm_head, dt, p->vocab, p->dim);
    for (int i = 0; i < n; i++) {
        lop_layer_weights *L = &w->layers[i];
        int q = b[i].heads * b[i].hd, kv = b[i].kv * b[i].hd;
        c->layers[i].head_dim = b[i].hd;
        if (b[i].heads) {
            set_tensor(&L->attn_norm, dt, p->dim, 0);
            set_tensor(&L->wq, dt, q, p->dim);
            set_tensor(&L->wk, dt, kv, p->dim);
            set_tensor(&L->wv, dt, kv, p->dim);
            set_tensor(&L->wo, dt, p->dim, q);
        }
        if (b[i].ffn) {
            set_tensor(&L->ffn_norm, dt, p->dim, 0);
            set_tensor(&L->w_gate, dt, b[i].ffn, p->dim);
            set_tensor(&L->w_up, dt, b[i].ffn, p->dim);
            set_tensor(&L->w_down, dt, p->dim, b[i].ffn);
        }
    }
    free(b);
    m->synthetic = 1;
    m->synth_seed = seed;
    return lop_model_derive_shapes(m, m->source);
}

/* ---- materialisation ---------------------------------------------------------------------- */
typedef struct fill_job {
    float *d;
    uint64_t seed;
    uint32_t id;
    int is_norm;
} fill_job;

static void fill_range(void *ctx, int64_t i0, int64_t i1, int thread) {
    (void)thread;
    fill_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) j->d[i] = j->is_norm ? 1.0f : lop_synth_value(j->seed, j->id, (uint64_t)i, 0.02f);
}

static lop_status fill(lop_model *m, lop_tensor *t, uint32_t id, int is_norm) {
    if (!t->present) return LOP_OK;
    int64_t n = lop_tensor_numel(t);
    float *d = lop_model_malloc(m, (size_t)n * sizeof(float), "synthetic weights");
    if (!d) return LOP_ERR_OOM;
    fill_job job = {d, m->synth_seed, id, is_norm};
    lop_parallel_for(n, 1 << 16, fill_range, &job);
    t->data = d;
    t->dtype = LOP_F32;
    return LOP_OK;
}

lop_status lop_synth_materialize(lop_model *m) {
    if (!m->synthetic) return LOP_OK;
    if (m->weights_loaded) return LOP_OK;
    LOP_TRY(fill(m, &m->w.tok_emb, 0, 0));
    LOP_TRY(fill(m, &m->w.out_norm, 1, 1));
    LOP_TRY(fill(m, &m->w.lm_head, 2, 0));
    for (int l = 0; l < m->cfg.n_layers; l++) {
        lop_layer_weights *L = &m->w.layers[l];
        int f = 0;
#define X(fld, name) LOP_TRY(fill(m, &L->fld, LOP_SYNTH_TENSOR_ID(l, f), strstr(name, "layernorm") != NULL)); f++;
        LOP_LAYER_TENSORS(X)
#undef X
    }
    m->weights_loaded = 1;
    return LOP_OK;
}
