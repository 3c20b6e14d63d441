/* HF directory loader tests: tiny checkpoints built in C (config.json text + safetensors via the
 * writer) covering MHA, GQA, tied embeddings, explicit head_dim, pruned per-layer shapes, missing
 * modules, lone biases, llama3 RoPE in both config styles, sharding, and bad inputs that must give
 * an error naming the file and the field or tensor. */
#include <cJSON.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/half.h"
#include "core/status.h"
#include "io/file.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/model.h"

/* ---- model description --------------------------------------------------------------------- */
enum { B_QKV = 1, B_O = 2, B_GU = 4, B_D = 8 };

typedef struct lspec {
    int heads, kv, hd, ffn; /* heads 0 = no attention, ffn 0 = no FFN */
    unsigned bias;
} lspec;

typedef struct mspec {
    int vocab, dim, n_layers, tied;
    lop_st_dtype dt;
    lspec L[6];
    uint64_t shard_bytes;     /* 0: one model.safetensors */
    const char *skip;         /* tensor left out */
    const char *bad_name;     /* tensor written with shape bad_shape */
    int64_t bad_shape[2];
    const char *extra;        /* extra tensor [2, 2] in extra_dt */
    lop_st_dtype extra_dt;
} mspec;

typedef struct fx {
    char dir[64];
    lop_model *m;
    /* what was written, to compare loaded data against */
    int n;
    char *names[256];
    void *bufs[256];
    size_t sizes[256];
} fx;

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/lop_hf_XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    lop_model_free(f->m);
    for (int i = 0; i < f->n; i++) free(f->names[i]), free(f->bufs[i]);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static char *pjoin(const fx *f, const char *name) {
    static char buf[4][320];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", f->dir, name);
    return b;
}

static void write_text(const fx *f, const char *name, const char *text) {
    assert_int_equal(lop_write_file_atomic(pjoin(f, name), text, strlen(text)), LOP_OK);
}

/* Adds a tensor with distinct, name-dependent values. */
static void add(fx *f, lop_st_writer *w, const mspec *s, const char *name, int ndim, int64_t rows, int64_t cols) {
    if (s->skip && !strcmp(s->skip, name)) return;
    int64_t shape[2] = {rows, cols};
    if (s->bad_name && !strcmp(s->bad_name, name)) shape[0] = s->bad_shape[0], shape[1] = s->bad_shape[1];
    size_t es = s->dt == LOP_ST_F32 ? 4 : 2, n = (size_t)shape[0] * (ndim == 2 ? (size_t)shape[1] : 1);
    unsigned char *buf = malloc(n * es + 1);
    assert_non_null(buf);
    unsigned h = 2166136261u;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    for (size_t i = 0; i < n; i++) {
        float v = (float)((h + i * 7) % 1000) / 500.0f - 1.0f;
        if (s->dt == LOP_ST_F32) memcpy(buf + 4 * i, &v, 4);
        else {
            uint16_t b = s->dt == LOP_ST_F16 ? lop_f32_to_f16(v) : lop_f32_to_bf16(v);
            memcpy(buf + 2 * i, &b, 2);
        }
    }
    assert_int_equal(lop_st_writer_add(w, name, s->dt, ndim, shape, buf), LOP_OK);
    assert_true(f->n < 256);
    f->names[f->n] = strdup(name);
    f->bufs[f->n] = buf;
    f->sizes[f->n++] = n * es;
}

static void write_model(fx *f, const mspec *s) {
    lop_st_writer *w;
    assert_int_equal(lop_st_writer_new(&w), LOP_OK);
    int64_t D = s->dim;
    char nm[128];
    add(f, w, s, "model.embed_tokens.weight", 2, s->vocab, D);
    for (int i = 0; i < s->n_layers; i++) {
        const lspec *L = &s->L[i];
        int64_t q = (int64_t)L->heads * L->hd, kv = (int64_t)L->kv * L->hd;
#define T(sfx, nd, r, c) (snprintf(nm, sizeof nm, "model.layers.%d.%s", i, sfx), add(f, w, s, nm, nd, r, c))
        if (L->heads) {
            T("input_layernorm.weight", 1, D, 1);
            T("self_attn.q_proj.weight", 2, q, D);
            T("self_attn.k_proj.weight", 2, kv, D);
            T("self_attn.v_proj.weight", 2, kv, D);
            T("self_attn.o_proj.weight", 2, D, q);
            if (L->bias & B_QKV) {
                T("self_attn.q_proj.bias", 1, q, 1);
                T("self_attn.k_proj.bias", 1, kv, 1);
                T("self_attn.v_proj.bias", 1, kv, 1);
            }
            if (L->bias & B_O) T("self_attn.o_proj.bias", 1, D, 1);
        }
        if (L->ffn) {
            T("post_attention_layernorm.weight", 1, D, 1);
            T("mlp.gate_proj.weight", 2, L->ffn, D);
            T("mlp.up_proj.weight", 2, L->ffn, D);
            T("mlp.down_proj.weight", 2, D, L->ffn);
            if (L->bias & B_GU) {
                T("mlp.gate_proj.bias", 1, L->ffn, 1);
                T("mlp.up_proj.bias", 1, L->ffn, 1);
            }
            if (L->bias & B_D) T("mlp.down_proj.bias", 1, D, 1);
        }
#undef T
    }
    add(f, w, s, "model.norm.weight", 1, D, 1);
    if (!s->tied) add(f, w, s, "lm_head.weight", 2, s->vocab, D);
    if (s->extra) {
        int64_t sh[2] = {2, 2};
        static const double zero[4];
        assert_int_equal(lop_st_writer_add(w, s->extra, s->extra_dt, 2, sh, zero), LOP_OK);
    }
    int ns;
    assert_int_equal(lop_st_writer_write_dir(w, f->dir, s->shard_bytes, &ns), LOP_OK);
    if (s->shard_bytes) assert_true(ns > 1);
    lop_st_writer_free(w);
}

/* config.json with model-wide values from layer 0; `more` ("\"key\": value, ...") adds or replaces keys. */
static void write_config(const fx *f, const mspec *s, const char *more) {
    char buf[8192];
    const lspec *L = &s->L[0];
    snprintf(buf, sizeof buf,
             "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\",\n"
             "  \"hidden_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d,\n"
             "  \"num_key_value_heads\": %d, \"head_dim\": %d, \"intermediate_size\": %d, \"vocab_size\": %d,\n"
             "  \"rms_norm_eps\": 1e-05, \"max_position_embeddings\": 256, \"tie_word_embeddings\": %s,\n"
             "  \"bos_token_id\": 1, \"eos_token_id\": 2, \"rope_theta\": 10000.0, \"rope_scaling\": null,\n"
             "  \"torch_dtype\": \"float32\", \"pad_token_id\": null}",
             s->dim, s->n_layers, L->heads, L->kv, L->hd, L->ffn, s->vocab, s->tied ? "true" : "false");
    cJSON *base = cJSON_Parse(buf);
    assert_non_null(base);
    if (more) {
        snprintf(buf, sizeof buf, "{%s}", more);
        cJSON *add = cJSON_Parse(buf);
        if (!add) fail_msg("bad test JSON: %s", buf);
        while (add->child) {
            cJSON *e = cJSON_DetachItemViaPointer(add, add->child);
            cJSON_DeleteItemFromObjectCaseSensitive(base, e->string);
            cJSON_AddItemToObject(base, e->string, e);
        }
        cJSON_Delete(add);
    }
    char *txt = cJSON_Print(base);
    write_text(f, "config.json", txt);
    free(txt);
    cJSON_Delete(base);
}

/* The shard file the index assigns to tensor `name` (static buffer). */
static const char *shard_of(const fx *f, const char *name) {
    static char out[128];
    cJSON *idx;
    assert_int_equal(lop_json_read_file(pjoin(f, "model.safetensors.index.json"), &idx), LOP_OK);
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(idx, "weight_map"), name));
    assert_non_null(v);
    snprintf(out, sizeof out, "%s", v);
    cJSON_Delete(idx);
    return out;
}

static int64_t expect_params(const mspec *s) {
    int64_t D = s->dim, n = (int64_t)s->vocab * D * (s->tied ? 1 : 2) + D;
    for (int i = 0; i < s->n_layers; i++) {
        const lspec *L = &s->L[i];
        int64_t q = (int64_t)L->heads * L->hd, kv = (int64_t)L->kv * L->hd, F = L->ffn;
        if (L->heads) n += D + 2 * q * D + 2 * kv * D + (L->bias & B_QKV ? q + 2 * kv : 0) + (L->bias & B_O ? D : 0);
        if (F) n += D + 3 * F * D + (L->bias & B_GU ? 2 * F : 0) + (L->bias & B_D ? D : 0);
    }
    return n;
}

static void load_ok(fx *f) {
    lop_clear_error();
    lop_status st = lop_model_load(f->dir, NULL, &f->m);
    if (st != LOP_OK) fail_msg("load failed: %s", lop_last_error());
}

/* Layer shapes, parameter count and that every written tensor's bytes are what the model points at. */
static void check_model(fx *f, const mspec *s) {
    lop_model *m = f->m;
    assert_int_equal(m->cfg.n_layers, s->n_layers);
    assert_int_equal(m->cfg.dim, s->dim);
    assert_int_equal(m->cfg.vocab_size, s->vocab);
    assert_int_equal(m->cfg.tie_embeddings, s->tied);
    for (int i = 0; i < s->n_layers; i++) {
        const lop_layer_shape *g = &m->cfg.layers[i];
        assert_int_equal(g->n_heads, s->L[i].heads);
        assert_int_equal(g->n_kv_heads, s->L[i].heads ? s->L[i].kv : 0);
        if (s->L[i].heads) assert_int_equal(g->head_dim, s->L[i].hd);
        assert_int_equal(g->ffn_dim, s->L[i].ffn);
    }
    assert_int_equal(lop_model_n_params(m), expect_params(s));
    assert_true(m->weights_loaded);
    int checked = 0;
    for (int k = 0; k < f->n; k++) {
        const char *name = f->names[k];
        const lop_tensor *t = NULL;
        if (!strcmp(name, "model.embed_tokens.weight")) t = &m->w.tok_emb;
        else if (!strcmp(name, "model.norm.weight")) t = &m->w.out_norm;
        else if (!strcmp(name, "lm_head.weight")) t = &m->w.lm_head;
        else {
            int li, off;
            assert_int_equal(sscanf(name, "model.layers.%d.%n", &li, &off), 1);
            const lop_layer_weights *L = &m->w.layers[li];
#define X(fld, sfx) \
    if (!strcmp(name + off, sfx)) t = &L->fld;
            LOP_LAYER_TENSORS(X)
#undef X
        }
        if (!t) fail_msg("no slot for %s", name);
        assert_true(t->present);
        assert_non_null(t->data);
        assert_int_equal((size_t)lop_tensor_numel(t) * lop_dtype_size(t->dtype), f->sizes[k]);
        assert_memory_equal(t->data, f->bufs[k], f->sizes[k]);
        checked++;
    }
    assert_true(checked > 0);
}

static void expect_load_fail(fx *f, lop_status code, ...) {
    lop_model *m = NULL;
    lop_clear_error();
    lop_status st = lop_model_load(f->dir, NULL, &m);
    assert_null(m);
    if (st != code) fail_msg("status %d (want %d): %s", st, code, lop_last_error());
    const char *msg = lop_last_error();
    if (getenv("LOP_TEST_VERBOSE")) print_message("  error: %s\n", msg);
    va_list ap;
    va_start(ap, code);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        if (!strstr(msg, needle)) fail_msg("message lacks '%s': %s", needle, msg);
    va_end(ap);
    if (!strstr(msg, f->dir)) fail_msg("message does not name the file: %s", msg);
}

#define UNI(h, kv, hd, ffn) {h, kv, hd, ffn, 0}
static const mspec MHA = {.vocab = 40, .dim = 16, .n_layers = 2, .dt = LOP_ST_F32,
                          .L = {UNI(4, 4, 4, 24), UNI(4, 4, 4, 24)}};

/* ---- good models ---------------------------------------------------------------------------- */
static void test_uniform_mha(void **state) {
    fx *f = *state;
    write_model(f, &MHA);
    write_config(f, &MHA, NULL);
    load_ok(f);
    check_model(f, &MHA);
    const lop_config *c = &f->m->cfg;
    assert_int_equal(c->n_heads, 4);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_dim, 4);
    assert_int_equal(c->ffn_dim, 24);
    assert_int_equal(c->max_seq_len, 256);
    assert_int_equal(c->bos_id, 1);
    assert_int_equal(c->eos_id, 2);
    assert_true(c->norm_eps > 0.99e-5f && c->norm_eps < 1.01e-5f);
    assert_true(c->rope_theta == 10000.0f);
    assert_int_equal(c->rope_scaling.type, LOP_ROPE_DEFAULT);
    assert_int_equal(c->dtype, LOP_F32);
    assert_string_equal(f->m->format, "hf");
    lop_model_info info;
    lop_model_get_info(f->m, &info);
    assert_int_equal(info.n_params, expect_params(&MHA));
    assert_int_equal(info.kv_bytes_per_token_f16, 2 * 2 * 4 * 4 * 2);
}

static void test_gqa_bf16_eos_list(void **state) {
    fx *f = *state;
    mspec s = {.vocab = 50, .dim = 32, .n_layers = 3, .dt = LOP_ST_BF16,
               .L = {UNI(8, 2, 4, 40), UNI(8, 2, 4, 40), UNI(8, 2, 4, 40)}};
    write_model(f, &s);
    write_config(f, &s, "\"eos_token_id\": [7, 9], \"dtype\": \"bfloat16\"");
    load_ok(f);
    check_model(f, &s);
    assert_int_equal(f->m->cfg.eos_id, 7);
    assert_int_equal(f->m->cfg.dtype, LOP_BF16);
    assert_int_equal(f->m->w.layers[1].wk.dtype, LOP_BF16);
    assert_int_equal(f->m->w.layers[1].wk.shape[0], 8);
    assert_int_equal(f->m->w.layers[1].wk.shape[1], 32);
    assert_int_equal(f->m->w.out_norm.ndim, 1);
    assert_int_equal(f->m->w.out_norm.shape[1], 1);
}

static void test_tied_embeddings(void **state) {
    fx *f = *state;
    mspec s = MHA;
    s.tied = 1;
    s.dt = LOP_ST_F16;
    write_model(f, &s);
    write_config(f, &s, NULL);
    load_ok(f);
    check_model(f, &s);
    assert_false(f->m->w.lm_head.present);
    assert_int_equal(lop_model_n_params(f->m), expect_params(&MHA) - 40 * 16);
}

static void test_tied_flag_with_explicit_head(void **state) {
    fx *f = *state;
    write_model(f, &MHA); /* has lm_head */
    mspec s = MHA;
    s.tied = 1;
    write_config(f, &s, NULL);
    load_ok(f);
    check_model(f, &MHA); /* explicit head wins: untied */
}

static void test_explicit_head_dim(void **state) {
    fx *f = *state;
    /* hidden 16 / 2 heads would be 8; the checkpoint uses head_dim 12 */
    mspec s = {.vocab = 30, .dim = 16, .n_layers = 2, .dt = LOP_ST_F32, .L = {UNI(2, 1, 12, 20), UNI(2, 1, 12, 20)}};
    write_model(f, &s);
    write_config(f, &s, NULL);
    load_ok(f);
    check_model(f, &s);
    assert_int_equal(f->m->cfg.head_dim, 12);
    assert_int_equal(f->m->w.layers[0].wq.shape[0], 24);
}

static void test_heterogeneous_stale_config(void **state) {
    fx *f = *state;
    mspec s = {.vocab = 40, .dim = 16, .n_layers = 4, .dt = LOP_ST_F32,
               .L = {UNI(4, 4, 4, 24), UNI(2, 2, 4, 10), UNI(3, 1, 4, 24), UNI(4, 2, 4, 7)}};
    write_model(f, &s);
    write_config(f, &s, NULL); /* says 4 heads / 4 kv / ffn 24 for every layer */
    load_ok(f);
    check_model(f, &s);
    assert_int_equal(f->m->cfg.ffn_dim, 24); /* model-wide default kept from config */
}

static void test_layer_without_attention(void **state) {
    fx *f = *state;
    mspec s = {.vocab = 40, .dim = 16, .n_layers = 3, .dt = LOP_ST_F32,
               .L = {UNI(4, 4, 4, 24), UNI(0, 0, 0, 24), UNI(4, 4, 4, 24)}};
    write_model(f, &s);
    write_config(f, &s, NULL);
    load_ok(f);
    check_model(f, &s);
    assert_false(f->m->w.layers[1].wq.present);
    assert_false(f->m->w.layers[1].attn_norm.present);
    assert_int_equal(f->m->cfg.layers[1].head_dim, 4);
}

static void test_layer_without_ffn(void **state) {
    fx *f = *state;
    mspec s = {.vocab = 40, .dim = 16, .n_layers = 3, .dt = LOP_ST_F32,
               .L = {UNI(4, 4, 4, 24), UNI(4, 4, 4, 24), UNI(4, 4, 4, 0)}};
    write_model(f, &s);
    write_config(f, &s,
                 "\"lop_layers\": [{\"num_attention_heads\": 4, \"intermediate_size\": 24},"
                 " {\"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"head_dim\": 4, \"intermediate_size\": 24},"
                 " {\"num_attention_heads\": 4, \"intermediate_size\": 0}]");
    load_ok(f);
    check_model(f, &s);
    assert_false(f->m->w.layers[2].w_gate.present);
}

static void test_biases(void **state) {
    fx *f = *state;
    /* FLAP-style: o_proj / down_proj biases alone; plus a layer with full qkv + gate/up biases */
    mspec s = {.vocab = 40, .dim = 16, .n_layers = 2, .dt = LOP_ST_F32,
               .L = {{4, 4, 4, 24, B_O | B_D}, {4, 2, 4, 20, B_QKV | B_O | B_GU | B_D}}};
    write_model(f, &s);
    write_config(f, &s, "\"attention_bias\": false, \"mlp_bias\": false");
    load_ok(f);
    check_model(f, &s);
    const lop_layer_weights *L0 = &f->m->w.layers[0];
    assert_true(L0->bo.present && L0->b_down.present);
    assert_false(L0->bq.present || L0->bk.present || L0->bv.present || L0->b_gate.present || L0->b_up.present);
    assert_int_equal(f->m->w.layers[1].bk.shape[0], 8);
    lop_hf_extra x;
    lop_hf_extra_from_model(f->m, &x);
    assert_true(x.attention_bias && x.mlp_bias);
}

static void check_llama3(const lop_config *c) {
    assert_int_equal(c->rope_scaling.type, LOP_ROPE_LLAMA3);
    assert_true(c->rope_scaling.factor == 8.0f);
    assert_true(c->rope_scaling.low_freq_factor == 1.0f);
    assert_true(c->rope_scaling.high_freq_factor == 4.0f);
    assert_int_equal(c->rope_scaling.original_max_pos, 64);
    assert_true(c->rope_theta == 500000.0f);
}

static void test_rope_llama3_old_style(void **state) {
    fx *f = *state;
    write_model(f, &MHA);
    write_config(f, &MHA,
                 "\"rope_theta\": 500000.0, \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 8.0,"
                 " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}");
    load_ok(f);
    check_llama3(&f->m->cfg);
}

static void test_rope_llama3_new_style(void **state) {
    fx *f = *state;
    write_model(f, &MHA);
    /* what transformers 5.24 writes (no top-level rope_theta; rope_scaling: null is overridden) */
    write_config(f, &MHA,
                 "\"rope_parameters\": {\"factor\": 8.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
                 " \"original_max_position_embeddings\": 64, \"rope_theta\": 500000.0, \"rope_type\": \"llama3\"}");
    load_ok(f);
    check_llama3(&f->m->cfg);
}

static void test_rope_default_types(void **state) {
    fx *f = *state;
    write_model(f, &MHA);
    write_config(f, &MHA, "\"rope_parameters\": {\"rope_theta\": 1234.0, \"rope_type\": \"default\"}");
    load_ok(f);
    assert_int_equal(f->m->cfg.rope_scaling.type, LOP_ROPE_DEFAULT);
    assert_true(f->m->cfg.rope_theta == 1234.0f);
}

static void test_sharded(void **state) {
    fx *f = *state;
    mspec s = {.vocab = 40, .dim = 16, .n_layers = 3, .dt = LOP_ST_BF16, .shard_bytes = 2000,
               .L = {UNI(4, 2, 4, 24), UNI(2, 2, 4, 12), UNI(4, 2, 4, 24)}};
    write_model(f, &s);
    write_config(f, &s, NULL);
    assert_false(lop_file_exists(pjoin(f, "model.safetensors")));
    load_ok(f);
    check_model(f, &s);
}

static void test_shapes_only(void **state) {
    fx *f = *state;
    write_model(f, &MHA);
    write_config(f, &MHA, NULL);
    lop_load_opts o = {.shapes_only = 1};
    assert_int_equal(lop_model_load(f->dir, &o, &f->m), LOP_OK);
    assert_false(f->m->weights_loaded);
    assert_true(f->m->w.layers[1].wq.present);
    assert_null(f->m->w.layers[1].wq.data);
    assert_int_equal(f->m->w.layers[1].wq.shape[0], 16);
    assert_int_equal(lop_model_n_params(f->m), expect_params(&MHA));
}

static void test_ignored_tensors(void **state) {
    fx *f = *state;
    mspec s = MHA;
    s.extra = "model.layers.0.self_attn.rotary_emb.inv_freq"; /* old HF buffer, F64 even: ignored */
    s.extra_dt = LOP_ST_F64;
    write_model(f, &s);
    write_config(f, &s, NULL);
    load_ok(f);
    check_model(f, &MHA);
}

/* A file whose tensors sit at odd offsets (legal safetensors): the loader must copy them to aligned
 * memory rather than hand out misaligned float pointers. */
static void test_misaligned_tensors_are_copied(void **state) {
    fx *f = *state;
    write_model(f, &MHA);
    write_config(f, &MHA, NULL);
    lop_st_file sf;
    assert_int_equal(lop_st_open(&sf, pjoin(f, "model.safetensors")), LOP_OK);
    cJSON *h = cJSON_CreateObject();
    cJSON *pad = cJSON_AddObjectToObject(h, "pad");
    cJSON_AddStringToObject(pad, "dtype", "U8");
    cJSON_AddItemToObject(pad, "shape", cJSON_CreateIntArray((const int[]){2}, 1));
    cJSON_AddItemToObject(pad, "data_offsets", cJSON_CreateIntArray((const int[]){0, 2}, 2));
    size_t total = 2;
    for (int i = 0; i < sf.n_tensors; i++) total += sf.tensors[i].nbytes;
    unsigned char *data = calloc(1, total);
    size_t off = 2;
    for (int i = 0; i < sf.n_tensors; i++) {
        const lop_st_tensor *t = &sf.tensors[i];
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(e, "dtype", lop_st_dtype_name(t->dtype));
        int sh[4];
        for (int d = 0; d < t->ndim; d++) sh[d] = (int)t->shape[d];
        cJSON_AddItemToObject(e, "shape", cJSON_CreateIntArray(sh, t->ndim));
        cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateIntArray((const int[]){(int)off, (int)(off + t->nbytes)}, 2));
        memcpy(data + off, t->data, t->nbytes);
        off += t->nbytes;
    }
    lop_st_close(&sf);
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t jl = strlen(js), hl = (jl + 7) / 8 * 8;
    unsigned char *file = malloc(8 + hl + total);
    for (int i = 0; i < 8; i++) file[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memset(file + 8, ' ', hl);
    memcpy(file + 8, js, jl);
    memcpy(file + 8 + hl, data, total);
    assert_int_equal(lop_write_file_atomic(pjoin(f, "model.safetensors"), file, 8 + hl + total), LOP_OK);
    free(js);
    free(data);
    free(file);
    load_ok(f);
    check_model(f, &MHA);
    assert_int_equal((uintptr_t)f->m->w.tok_emb.data % 4, 0);
    for (int i = 0; i < 2; i++) {
        const lop_layer_weights *L = &f->m->w.layers[i];
#define X(fld, sfx) \
    if (L->fld.present) assert_int_equal((uintptr_t)L->fld.data % 4, 0);
        LOP_LAYER_TENSORS(X)
#undef X
    }
}

/* ---- config writer -------------------------------------------------------------------------- */
static void test_config_writer_roundtrip(void **state) {
    fx *f = *state;
    mspec s = {.vocab = 40, .dim = 16, .n_layers = 4, .dt = LOP_ST_F32,
               .L = {UNI(4, 2, 4, 24), UNI(0, 0, 0, 24), UNI(2, 2, 4, 0), UNI(4, 2, 4, 9)}};
    write_model(f, &s);
    write_config(f, &s,
                 "\"rope_parameters\": {\"factor\": 8.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
                 " \"original_max_position_embeddings\": 64, \"rope_theta\": 500000.0, \"rope_type\": \"llama3\"}");
    load_ok(f);
    /* write lop's config over the stale one, reload: lop_layers must agree with the tensors */
    lop_hf_extra x;
    lop_hf_extra_from_model(f->m, &x);
    assert_int_equal(lop_hf_write_config(pjoin(f, "config.json"), &f->m->cfg, &x), LOP_OK);
    lop_config c = {0};
    lop_hf_extra rx;
    assert_int_equal(lop_hf_read_config(pjoin(f, "config.json"), &c, &rx), LOP_OK);
    assert_non_null(rx.lop_layers);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rx.lop_layers[i].n_heads, s.L[i].heads);
        assert_int_equal(rx.lop_layers[i].ffn_dim, s.L[i].ffn);
        assert_int_equal(rx.lop_layers[i].head_dim, 4);
    }
    check_llama3(&c);
    assert_int_equal(c.eos_id, 2);
    assert_int_equal(c.bos_id, 1);
    assert_true(c.norm_eps == f->m->cfg.norm_eps);
    lop_hf_extra_free(&rx);
    assert_int_equal(lop_hf_read_config(pjoin(f, "config.json"), &c, NULL), LOP_OK); /* no leak without x */
    lop_model_free(f->m);
    f->m = NULL;
    load_ok(f);
    check_model(f, &s);
    /* the text is stock-HF shaped: 2-space indent, floats with a point */
    char *txt;
    assert_int_equal(lop_read_file(pjoin(f, "config.json"), &txt, NULL), LOP_OK);
    assert_non_null(strstr(txt, "\n  \"model_type\": \"llama\""));
    assert_non_null(strstr(txt, "\"rms_norm_eps\": 1e-05"));
    assert_non_null(strstr(txt, "\"factor\": 8.0"));
    assert_null(strchr(txt, '\t'));
    free(txt);
}

static void test_config_writer_uniform_has_no_lop_layers(void **state) {
    fx *f = *state;
    /* uniformly pruned: 2 of 4 heads left, head_dim 4 != 16/2 -> written explicitly */
    mspec s = {.vocab = 40, .dim = 16, .n_layers = 2, .dt = LOP_ST_F32, .tied = 1,
               .L = {UNI(2, 1, 4, 10), UNI(2, 1, 4, 10)}};
    write_model(f, &s);
    write_config(f, &MHA, "\"tie_word_embeddings\": true"); /* stale: 4 heads, ffn 24 */
    load_ok(f);
    cJSON *j = lop_hf_config_to_json(&f->m->cfg, NULL);
    assert_non_null(j);
    assert_null(cJSON_GetObjectItem(j, "lop_layers"));
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "num_attention_heads")), 2);
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "num_key_value_heads")), 1);
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "head_dim")), 4);
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "intermediate_size")), 10);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "tie_word_embeddings")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "attention_bias")));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "architectures"), 0)),
                        "LlamaForCausalLM");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "rope_scaling")));
    cJSON_Delete(j);
}

/* ---- bad input ------------------------------------------------------------------------------ */
static void test_missing_tensor(void **state) {
    fx *f = *state;
    mspec s = MHA;
    s.skip = "model.layers.1.self_attn.k_proj.weight";
    write_model(f, &s);
    write_config(f, &s, NULL);
    expect_load_fail(f, LOP_ERR_FORMAT, "missing tensor", "model.layers.1.self_attn.k_proj.weight", NULL);
    s.skip = "lm_head.weight";
    write_model(f, &s);
    expect_load_fail(f, LOP_ERR_FORMAT, "lm_head.weight", NULL);
}

static void test_wrong_shape(void **state) {
    fx *f = *state;
    mspec s = MHA;
    s.bad_name = "model.layers.0.self_attn.v_proj.weight";
    s.bad_shape[0] = 12, s.bad_shape[1] = 16;
    write_model(f, &s);
    write_config(f, &s, NULL);
    expect_load_fail(f, LOP_ERR_FORMAT, "model.layers.0.self_attn.v_proj.weight", "[12, 16]", NULL);
    s.bad_name = "model.layers.1.mlp.down_proj.weight";
    s.bad_shape[0] = 16, s.bad_shape[1] = 23;
    write_model(f, &s);
    expect_load_fail(f, LOP_ERR_FORMAT, "model.layers.1.mlp.down_proj.weight", NULL);
}

static void test_malformed_config(void **state) {
    fx *f = *state;
    write_model(f, &MHA);
    write_text(f, "config.json", "{\n  \"model_type\": \"llama\",\n  \"hidden_size\": 16,,\n}\n");
    expect_load_fail(f, LOP_ERR_FORMAT, "config.json", "malformed JSON", "line 3", NULL);
    write_text(f, "config.json", "[1]");
    expect_load_fail(f, LOP_ERR_FORMAT, "config.json", NULL);
    write_text(f, "config.json", "{\"model_type\": \"llama\"} x");
    expect_load_fail(f, LOP_ERR_FORMAT, "config.json", "malformed", NULL);
}

static void test_wrong_field_type(void **state) {
    fx *f = *state;
    write_model(f, &MHA);
    static const char *cases[][2] = {
        {"\"hidden_size\": \"big\"", "'hidden_size'"},
        {"\"num_attention_heads\": 0", "'num_attention_heads'"},
        {"\"intermediate_size\": -5", "'intermediate_size'"},
        {"\"num_hidden_layers\": 2.5", "'num_hidden_layers'"},
        {"\"num_hidden_layers\": 1000000", "'num_hidden_layers'"},
        {"\"rms_norm_eps\": \"tiny\"", "'rms_norm_eps'"},
        {"\"tie_word_embeddings\": 1", "'tie_word_embeddings'"},
        {"\"eos_token_id\": \"</s>\"", "'eos_token_id'"},
        {"\"num_key_value_heads\": 3", "'num_key_value_heads'"},
        {"\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}", "'rope_scaling.low_freq_factor'"},
        {"\"rope_parameters\": 5", "'rope_parameters'"},
        {"\"lop_layers\": {}", "'lop_layers'"},
        {"\"lop_layers\": [{\"num_attention_heads\": 4, \"intermediate_size\": 24}]", "'lop_layers'"},
        {"\"lop_layers\": [{\"num_attention_heads\": 4}, {}]", "'lop_layers[0].intermediate_size'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_config(f, &MHA, cases[i][0]);
        expect_load_fail(f, LOP_ERR_FORMAT, "config.json", cases[i][1], NULL);
    }
    write_text(f, "config.json", "{\"model_type\": \"llama\", \"hidden_size\": 16}");
    expect_load_fail(f, LOP_ERR_FORMAT, "config.json", "'num_hidden_layers'", NULL);
}

static void test_unsupported(void **state) {
    fx *f = *state;
    write_model(f, &MHA);
    write_text(f, "config.json", "{\"model_type\": \"mistral\", \"num_hidden_layers\": 2}");
    expect_load_fail(f, LOP_ERR_UNSUPPORTED, "config.json", "'model_type'", "mistral", NULL);
    write_config(f, &MHA, "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}");
    expect_load_fail(f, LOP_ERR_UNSUPPORTED, "config.json", "'rope_scaling.rope_type'", "yarn", NULL);
    write_config(f, &MHA, "\"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 4.0}");
    expect_load_fail(f, LOP_ERR_UNSUPPORTED, "config.json", "'rope_parameters.rope_type'", NULL);
    /* a weight stored as I32: unsupported, naming the tensor */
    mspec s = MHA;
    s.skip = "model.layers.1.mlp.up_proj.weight";
    s.extra = "model.layers.1.mlp.up_proj.weight";
    s.extra_dt = LOP_ST_I32;
    write_model(f, &s);
    write_config(f, &s, NULL);
    expect_load_fail(f, LOP_ERR_UNSUPPORTED, "model.layers.1.mlp.up_proj.weight", "I32", NULL);
}

static void test_missing_shard(void **state) {
    fx *f = *state;
    mspec s = MHA;
    s.shard_bytes = 1500;
    write_model(f, &s);
    write_config(f, &s, NULL);
    char shard[128];
    snprintf(shard, sizeof shard, "%s", shard_of(f, "model.layers.1.mlp.up_proj.weight"));
    assert_int_equal(remove(pjoin(f, shard)), 0);
    expect_load_fail(f, LOP_ERR_IO, "model.safetensors.index.json", shard, "not found", NULL);
}

static void test_index_lists_absent_tensor(void **state) {
    fx *f = *state;
    mspec s = MHA;
    s.shard_bytes = 1500;
    write_model(f, &s);
    write_config(f, &s, NULL);
    /* point one tensor at the wrong shard */
    cJSON *idx;
    assert_int_equal(lop_json_read_file(pjoin(f, "model.safetensors.index.json"), &idx), LOP_OK);
    cJSON *wm = cJSON_GetObjectItem(idx, "weight_map");
    const char *name = "model.layers.1.mlp.up_proj.weight";
    char cur[128], other[128];
    snprintf(cur, sizeof cur, "%s", shard_of(f, name));
    snprintf(other, sizeof other, "%s", shard_of(f, "model.embed_tokens.weight"));
    assert_string_not_equal(cur, other);
    cJSON_ReplaceItemInObject(wm, name, cJSON_CreateString(other));
    char *txt = cJSON_Print(idx);
    write_text(f, "model.safetensors.index.json", txt);
    free(txt);
    cJSON_Delete(idx);
    expect_load_fail(f, LOP_ERR_FORMAT, "model.safetensors.index.json", name, other, NULL);
    /* a shard name that leaves the directory */
    write_text(f, "model.safetensors.index.json", "{\"weight_map\": {\"model.norm.weight\": \"../x.safetensors\"}}");
    expect_load_fail(f, LOP_ERR_FORMAT, "model.safetensors.index.json", "model.norm.weight", NULL);
    write_text(f, "model.safetensors.index.json", "{\"weight_map\": {\"model.norm.weight\": ");
    expect_load_fail(f, LOP_ERR_FORMAT, "model.safetensors.index.json", "malformed JSON", NULL);
}

static void test_lop_layers_disagree(void **state) {
    fx *f = *state;
    mspec s = {.vocab = 40, .dim = 16, .n_layers = 2, .dt = LOP_ST_F32, .L = {UNI(4, 4, 4, 24), UNI(2, 2, 4, 10)}};
    write_model(f, &s);
    write_config(f, &s,
                 "\"lop_layers\": [{\"num_attention_heads\": 4, \"intermediate_size\": 24},"
                 " {\"num_attention_heads\": 2, \"intermediate_size\": 20}]");
    expect_load_fail(f, LOP_ERR_FORMAT, "config.json", "lop_layers[1].intermediate_size", "10", NULL);
    write_config(f, &s,
                 "\"lop_layers\": [{\"num_attention_heads\": 4, \"intermediate_size\": 24},"
                 " {\"num_attention_heads\": 0, \"intermediate_size\": 10}]");
    expect_load_fail(f, LOP_ERR_FORMAT, "config.json", "lop_layers[1].num_attention_heads", NULL);
    write_config(f, &s,
                 "\"lop_layers\": [{\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 24},"
                 " {\"num_attention_heads\": 2, \"intermediate_size\": 10}]");
    expect_load_fail(f, LOP_ERR_FORMAT, "config.json", "lop_layers[0].num_key_value_heads", NULL);
    /* head_dim 8 per layer: q rows 16 = 2 heads of 8, not 4 heads of 4 */
    write_config(f, &s,
                 "\"lop_layers\": [{\"num_attention_heads\": 4, \"head_dim\": 8, \"intermediate_size\": 24},"
                 " {\"num_attention_heads\": 2, \"intermediate_size\": 10}]");
    expect_load_fail(f, LOP_ERR_FORMAT, "lop_layers[0].num_attention_heads", NULL);
}

static void test_layer_count_mismatch(void **state) {
    fx *f = *state;
    mspec s = {.vocab = 40, .dim = 16, .n_layers = 3, .dt = LOP_ST_F32,
               .L = {UNI(4, 4, 4, 24), UNI(4, 4, 4, 24), UNI(4, 4, 4, 24)}};
    write_model(f, &s);
    mspec c = s;
    c.n_layers = 2; /* config says 2, tensors have 3 */
    write_config(f, &c, NULL);
    expect_load_fail(f, LOP_ERR_FORMAT, "model.layers.2.", "config.json says 2 layers", NULL);
    c.n_layers = 4; /* config says 4: layer 3 has nothing */
    write_config(f, &c, NULL);
    expect_load_fail(f, LOP_ERR_FORMAT, "layer 3", "4 layers", NULL);
}

static void test_other_bad_inputs(void **state) {
    fx *f = *state;
    write_config(f, &MHA, NULL);
    expect_load_fail(f, LOP_ERR_IO, "model.safetensors", NULL); /* no weights at all */
    write_model(f, &MHA);
    write_config(f, &MHA, "\"vocab_size\": 41");
    expect_load_fail(f, LOP_ERR_FORMAT, "'vocab_size'", "model.embed_tokens.weight", NULL);
    write_config(f, &MHA, "\"hidden_size\": 32, \"head_dim\": 4");
    expect_load_fail(f, LOP_ERR_FORMAT, "hidden_size", NULL);
    remove(pjoin(f, "config.json"));
    expect_load_fail(f, LOP_ERR_IO, "config.json", NULL);
    /* a corrupt safetensors file is reported with its path */
    write_config(f, &MHA, NULL);
    static const char bad[] = "\x07\0\0\0\0\0\0\0{\"a\":1}";
    assert_int_equal(lop_write_file_atomic(pjoin(f, "model.safetensors"), bad, sizeof bad - 1), LOP_OK);
    expect_load_fail(f, LOP_ERR_FORMAT, "model.safetensors", "'a'", NULL);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_uniform_mha),
        T(test_gqa_bf16_eos_list),
        T(test_tied_embeddings),
        T(test_tied_flag_with_explicit_head),
        T(test_explicit_head_dim),
        T(test_heterogeneous_stale_config),
        T(test_layer_without_attention),
        T(test_layer_without_ffn),
        T(test_biases),
        T(test_rope_llama3_old_style),
        T(test_rope_llama3_new_style),
        T(test_rope_default_types),
        T(test_sharded),
        T(test_shapes_only),
        T(test_ignored_tensors),
        T(test_misaligned_tensors_are_copied),
        T(test_config_writer_roundtrip),
        T(test_config_writer_uniform_has_no_lop_layers),
        T(test_missing_tensor),
        T(test_wrong_shape),
        T(test_malformed_config),
        T(test_wrong_field_type),
        T(test_unsupported),
        T(test_missing_shard),
        T(test_index_lists_absent_tensor),
        T(test_lop_layers_disagree),
        T(test_layer_count_mismatch),
        T(test_other_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
