/* GGUF reader and loader tests.
 * Why: the reader is checked against llama.cpp's own python library (fixtures written by
 * tests/fixtures/gguf/make_gguf_fixtures.py: metadata of every type, dequantised values from
 * gguf.quants), the loader against the HF checkpoint each GGUF was converted from — which proves
 * the q/k row un-permutation — and both against hostile files crafted here, which must end in a
 * message naming the file and the key or tensor, never a crash. Run from the repository root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/half.h"
#include "core/status.h"
#include "io/file.h"
#include "io/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define FIX "tests/fixtures/gguf/"

/* ---- helpers ------------------------------------------------------------------------------ */
static void *read_all(const char *path, size_t *n) {
    char *d = NULL;
    if (lop_read_file(path, &d, n) != LOP_OK) fail_msg("cannot read %s: %s", path, lop_last_error());
    return d;
}

static const lop_tensor *by_hf_name(const lop_model *m, const char *name) {
    if (!strcmp(name, "model.embed_tokens.weight")) return &m->w.tok_emb;
    if (!strcmp(name, "model.norm.weight")) return &m->w.out_norm;
    if (!strcmp(name, "lm_head.weight")) return &m->w.lm_head;
    int layer, off = 0;
    if (sscanf(name, "model.layers.%d.%n", &layer, &off) != 1 || off == 0 || layer < 0 || layer >= m->cfg.n_layers)
        return NULL;
    const lop_layer_weights *L = &m->w.layers[layer];
#define X(f, suffix) if (!strcmp(name + off, suffix)) return &L->f;
    LOP_LAYER_TENSORS(X)
#undef X
    return NULL;
}

static float elem(const lop_tensor *t, int64_t i) {
    if (t->dtype == LOP_F32) return ((const float *)t->data)[i];
    uint16_t h = ((const uint16_t *)t->data)[i];
    return t->dtype == LOP_F16 ? lop_f16_to_f32(h) : lop_bf16_to_f32(h);
}

/* Compares every tensor of an HF model.safetensors (F32) with the loaded model.
 * mode 0: exact; 1: Q8_0 (per 32-block tolerance from the block's max); 2: F16 rounding. */
static void compare_with_safetensors(const lop_model *m, const char *st_path, int mode) {
    size_t n;
    unsigned char *f = read_all(st_path, &n);
    uint64_t hl;
    memcpy(&hl, f, 8);
    cJSON *h = cJSON_ParseWithLength((const char *)f + 8, (size_t)hl);
    assert_non_null(h);
    const unsigned char *data = f + 8 + hl;
    int n_tensors = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, h) {
        if (!strcmp(e->string, "__metadata__")) continue;
        assert_string_equal(cJSON_GetObjectItem(e, "dtype")->valuestring, "F32");
        cJSON *shape = cJSON_GetObjectItem(e, "shape"), *offs = cJSON_GetObjectItem(e, "data_offsets");
        const lop_tensor *t = by_hf_name(m, e->string);
        if (!t) fail_msg("no lop tensor for %s", e->string);
        if (!strcmp(e->string, "lm_head.weight") && m->cfg.tie_embeddings) continue; /* tied copy */
        assert_true(t->present);
        assert_non_null(t->data);
        int nd = cJSON_GetArraySize(shape);
        assert_int_equal(t->ndim, nd);
        int64_t rows = (int64_t)cJSON_GetArrayItem(shape, 0)->valuedouble;
        int64_t cols = nd == 2 ? (int64_t)cJSON_GetArrayItem(shape, 1)->valuedouble : 1;
        assert_int_equal(t->shape[0], rows);
        if (nd == 2) assert_int_equal(t->shape[1], cols);
        const float *ref = (const float *)(data + (size_t)cJSON_GetArrayItem(offs, 0)->valuedouble);
        int quant = mode == 1 && nd == 2;
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c0 = 0; c0 < cols; c0 += 32) {
                int64_t c1 = c0 + 32 < cols ? c0 + 32 : cols;
                float amax = 0;
                for (int64_t c = c0; c < c1; c++) amax = fmaxf(amax, fabsf(ref[r * cols + c]));
                for (int64_t c = c0; c < c1; c++) {
                    float want = ref[r * cols + c], got = elem(t, r * cols + c);
                    float tol = quant ? 0.6f * amax / 127.0f + 1e-7f
                                : (mode == 2 && t->dtype == LOP_F16) ? fabsf(want) * (1.0f / 2048) + 1e-7f : 0.0f;
                    if (!(fabsf(got - want) <= tol))
                        fail_msg("%s [%lld, %lld]: got %.9g, want %.9g (tol %g)", e->string, (long long)r,
                                 (long long)c, got, want, tol);
                }
            }
        }
        n_tensors++;
    }
    /* and the model has no tensor the checkpoint lacks */
    int present = m->w.tok_emb.present + m->w.out_norm.present + m->w.lm_head.present;
    for (int i = 0; i < m->cfg.n_layers; i++) {
#define X(f, suffix) present += m->w.layers[i].f.present;
        LOP_LAYER_TENSORS(X)
#undef X
    }
    assert_int_equal(present, n_tensors);
    cJSON_Delete(h);
    free(f);
}

/* ---- reader: metadata of every type ------------------------------------------------------- */
static void test_metadata_types(void **state) {
    (void)state;
    lop_gguf *g;
    assert_int_equal(lop_gguf_open(FIX "types.gguf", &g), LOP_OK);
    assert_int_equal(g->version, 3);
    assert_int_equal(g->alignment, 64);
    assert_int_equal(g->data_offset % 64, 0);
    int64_t i;
    double d;
    int b;
    const char *s;
    size_t sl;
    struct { const char *key; int64_t v; } ints[] = {
        {"test.u8", 200}, {"test.i8", -100}, {"test.u16", 60000}, {"test.i16", -30000},
        {"test.u32", 4000000000LL}, {"test.i32", -2000000000LL}, {"test.u64", (1LL << 40) + 3},
        {"test.i64", -(1LL << 40)}, {"general.alignment", 64}};
    for (size_t k = 0; k < sizeof ints / sizeof *ints; k++) {
        assert_int_equal(lop_gguf_get_int(g, ints[k].key, &i), LOP_OK);
        assert_int_equal(i, ints[k].v);
    }
    assert_int_equal(lop_gguf_get_float(g, "test.f32", &d), LOP_OK);
    assert_true(d == 1.5);
    assert_int_equal(lop_gguf_get_float(g, "test.f64", &d), LOP_OK);
    assert_true(d == 3.25);
    assert_int_equal(lop_gguf_get_bool(g, "test.bool", &b), LOP_OK);
    assert_int_equal(b, 1);
    assert_int_equal(lop_gguf_get_str(g, "test.string", &s, &sl), LOP_OK);
    assert_int_equal(sl, 6);
    assert_memory_equal(s, "h\xc3\xa9llo", 6);
    assert_int_equal(lop_gguf_get_str(g, "general.architecture", &s, &sl), LOP_OK);
    assert_int_equal(sl, 8);
    assert_memory_equal(s, "lop-test", 8);

    /* type checking names the key and the expected type */
    assert_int_equal(lop_gguf_get_int(g, "test.string", &i), LOP_ERR_FORMAT);
    assert_non_null(strstr(lop_last_error(), "test.string"));
    assert_non_null(strstr(lop_last_error(), "expected an integer"));
    assert_non_null(strstr(lop_last_error(), "types.gguf"));
    assert_int_equal(lop_gguf_get_int(g, "test.bool", &i), LOP_ERR_FORMAT);
    assert_int_equal(lop_gguf_get_float(g, "test.i32", &d), LOP_ERR_FORMAT);
    assert_int_equal(lop_gguf_get_bool(g, "test.u8", &b), LOP_ERR_FORMAT);
    assert_int_equal(lop_gguf_get_str(g, "test.arr_str", &s, &sl), LOP_ERR_FORMAT);
    assert_non_null(strstr(lop_last_error(), "array of string"));
    assert_int_equal(lop_gguf_get_int(g, "test.nope", &i), LOP_ERR_FORMAT);
    assert_non_null(strstr(lop_last_error(), "missing metadata key 'test.nope'"));
    assert_null(lop_gguf_find_kv(g, "test"));

    /* arrays */
    const lop_gguf_kv *kv;
    assert_int_equal(lop_gguf_get_arr(g, "test.arr_i32", LOP_GGUF_I32, &kv), LOP_OK);
    assert_int_equal(kv->count, 3);
    int64_t want_i[] = {1, -2, 3};
    for (int k = 0; k < 3; k++) {
        assert_true(lop_gguf_arr_int(kv, (uint64_t)k, &i));
        assert_int_equal(i, want_i[k]);
    }
    assert_false(lop_gguf_arr_int(kv, 3, &i));
    assert_int_equal(lop_gguf_get_arr(g, "test.arr_i32", LOP_GGUF_F32, &kv), LOP_ERR_FORMAT);
    assert_non_null(strstr(lop_last_error(), "expected an array of f32"));
    const void *p;
    uint64_t n;
    assert_int_equal(lop_gguf_get_arr_data(g, "test.arr_u8", LOP_GGUF_U8, &p, &n), LOP_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "\x07\x08\x09", 3);
    assert_int_equal(lop_gguf_get_arr(g, "test.arr_f32", LOP_GGUF_F32, &kv), LOP_OK);
    assert_true(lop_gguf_arr_float(kv, 0, &d) && d == 0.5);
    assert_true(lop_gguf_arr_float(kv, 1, &d) && d == -1.25);
    assert_int_equal(lop_gguf_get_arr(g, "test.arr_f64", LOP_GGUF_F64, &kv), LOP_OK);
    assert_true(lop_gguf_arr_float(kv, 1, &d) && d == -8.5);
    assert_int_equal(lop_gguf_get_arr(g, "test.arr_u64", LOP_GGUF_U64, &kv), LOP_OK);
    assert_true(lop_gguf_arr_int(kv, 0, &i) && i == (1LL << 33));
    assert_int_equal(lop_gguf_get_arr(g, "test.arr_bool", LOP_GGUF_BOOL, &kv), LOP_OK);
    assert_true(lop_gguf_arr_int(kv, 0, &i) && i == 1);
    assert_true(lop_gguf_arr_int(kv, 1, &i) && i == 0);
    assert_int_equal(lop_gguf_get_arr(g, "test.arr_str", LOP_GGUF_STRING, &kv), LOP_OK);
    assert_int_equal(kv->count, 4);
    const char *want_s[] = {"a", "bc", "", "d\xc3\xa9" "f"};
    for (int k = 0; k < 4; k++) {
        assert_true(lop_gguf_arr_str(kv, (uint64_t)k, &s, &sl));
        assert_int_equal(sl, strlen(want_s[k]));
        assert_memory_equal(s, want_s[k], sl);
    }
    assert_false(lop_gguf_arr_str(kv, 4, &s, &sl));
    assert_int_equal(lop_gguf_get_arr(g, "test.arr_nested", LOP_GGUF_ARRAY, &kv), LOP_OK);
    assert_int_equal(kv->count, 2);
    assert_int_equal(lop_gguf_get_arr(g, "test.arr_nested_str", -1, &kv), LOP_OK);
    assert_int_equal(kv->arr_type, LOP_GGUF_ARRAY);
    assert_false(lop_gguf_arr_str(kv, 0, &s, &sl));
    lop_gguf_close(g);
}

/* ---- reader: dequantisation equals gguf.quants ------------------------------------------- */
static void test_dequant_types(void **state) {
    (void)state;
    lop_gguf *g;
    assert_int_equal(lop_gguf_open(FIX "types.gguf", &g), LOP_OK);
    struct { const char *name; lop_ggml_type type; int exact; } cases[] = {
        {"f32", LOP_GGML_F32, 1}, {"f16", LOP_GGML_F16, 1}, {"bf16", LOP_GGML_BF16, 1},
        {"q8_0", LOP_GGML_Q8_0, 0}, {"q4_0", LOP_GGML_Q4_0, 0}, {"q4_1", LOP_GGML_Q4_1, 0}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char name[32], ref_path[128];
        snprintf(name, sizeof name, "t.%s", cases[k].name);
        snprintf(ref_path, sizeof ref_path, FIX "types.%s.f32", cases[k].name);
        const lop_gguf_tensor *t = lop_gguf_find_tensor(g, name);
        assert_non_null(t);
        assert_int_equal(t->type, cases[k].type);
        assert_int_equal(t->n_dims, 2);
        assert_int_equal(t->ne[0], 64);
        assert_int_equal(t->ne[1], 8);
        assert_int_equal(t->numel, 512);
        assert_int_equal(t->nbytes, 512 / lop_ggml_block_size(t->type) * lop_ggml_block_bytes(t->type));
        assert_int_equal((t->data - g->base - g->data_offset) % 64, 0);
        size_t n;
        float *ref = read_all(ref_path, &n);
        assert_int_equal(n, 512 * sizeof(float));
        float out[512];
        assert_int_equal(lop_gguf_dequantize(g, t, out), LOP_OK);
        double nonzero = 0;
        for (int j = 0; j < 512; j++) {
            nonzero += fabsf(ref[j]);
            if (cases[k].exact) {
                if (lop_f32_bits(out[j]) != lop_f32_bits(ref[j]))
                    fail_msg("%s[%d]: got %.9g, want %.9g", name, j, out[j], ref[j]);
            } else if (!(fabsf(out[j] - ref[j]) <= 1e-6f)) {
                fail_msg("%s[%d]: got %.9g, want %.9g", name, j, out[j], ref[j]);
            }
        }
        assert_true(nonzero > 1.0); /* the reference is not trivially zero */
        free(ref);
    }
    const lop_gguf_tensor *t = lop_gguf_find_tensor(g, "t.vec");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 1);
    assert_int_equal(t->ne[1], 1);
    t = lop_gguf_find_tensor(g, "t.3d");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 3);
    assert_int_equal(t->ne[0], 32);
    assert_int_equal(t->ne[1], 3);
    assert_int_equal(t->ne[2], 2);
    float v[192];
    assert_int_equal(lop_gguf_dequantize(g, t, v), LOP_OK);
    assert_true(v[191] == 191.0f);
    assert_null(lop_gguf_find_tensor(g, "t.none"));
    lop_gguf_close(g);
}

/* ---- loader: tiny.gguf equals the HF checkpoint it came from (q/k un-permuted) ------------ */
static void test_tiny_f32_matches_hf(void **state) {
    (void)state;
    lop_model *m;
    assert_int_equal(lop_model_load(FIX "tiny.gguf", NULL, &m), LOP_OK);
    const lop_config *c = &m->cfg;
    assert_int_equal(c->n_layers, 2);
    assert_int_equal(c->dim, 32);
    assert_int_equal(c->vocab_size, 64);
    assert_int_equal(c->max_seq_len, 128);
    assert_int_equal(c->tie_embeddings, 0);
    assert_int_equal(c->n_heads, 4);
    assert_int_equal(c->n_kv_heads, 2);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->ffn_dim, 48);
    assert_true(fabsf(c->norm_eps - 1e-5f) < 1e-12f);
    assert_true(c->rope_theta == 10000.0f);
    assert_int_equal(c->dtype, LOP_F32);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c->layers[i].n_heads, 4);
        assert_int_equal(c->layers[i].n_kv_heads, 2);
        assert_int_equal(c->layers[i].head_dim, 8);
        assert_int_equal(c->layers[i].ffn_dim, 48);
        assert_true(m->w.layers[i].bq.present && m->w.layers[i].bk.present);
    }
    assert_int_equal(c->bos_id, 1);
    assert_int_equal(c->eos_id, 2);
    assert_non_null(m->tok);
    assert_int_equal(lop_tokenizer_n_vocab(m->tok), 64);
    assert_int_equal(lop_tokenizer_kind(m->tok), LOP_TOK_BPE);
    assert_non_null(strstr(m->file_dtypes, "F32:"));
    compare_with_safetensors(m, FIX "tiny-hf/model.safetensors", 0);
    /* F32 tensors that need no permutation point into the file mapping (zero copy); q/k do not */
    const lop_owned *map = NULL;
    for (int i = 0; i < m->n_owned; i++)
        if (m->owned[i].is_map) map = &m->owned[i];
    assert_non_null(map);
    const char *lo = map->ptr, *hi = lo + map->size;
    const char *pv = m->w.layers[1].wv.data, *pq = m->w.layers[1].wq.data, *pbk = m->w.layers[1].bk.data;
    assert_true(pv >= lo && pv < hi);
    assert_false(pq >= lo && pq < hi);
    assert_false(pbk >= lo && pbk < hi);
    lop_model_free(m);

    /* control: the file's own q rows are NOT in HF order, so the comparison above is meaningful */
    lop_gguf *g;
    assert_int_equal(lop_gguf_open(FIX "tiny.gguf", &g), LOP_OK);
    const lop_gguf_tensor *q = lop_gguf_find_tensor(g, "blk.0.attn_q.weight");
    assert_int_equal(lop_model_load(FIX "tiny.gguf", NULL, &m), LOP_OK);
    assert_memory_not_equal(q->data, m->w.layers[0].wq.data, q->nbytes);
    assert_memory_equal(q->data, m->w.layers[0].wq.data, 32 * 4); /* row 0 stays row 0 */
    const lop_gguf_tensor *v = lop_gguf_find_tensor(g, "blk.0.attn_v.weight");
    assert_memory_equal(v->data, m->w.layers[0].wv.data, v->nbytes);
    lop_model_free(m);
    lop_gguf_close(g);
}

static void test_tiny_tied_q8_0(void **state) {
    (void)state;
    lop_model *m;
    assert_int_equal(lop_model_load(FIX "tiny-tied-q8_0.gguf", NULL, &m), LOP_OK);
    assert_int_equal(m->cfg.tie_embeddings, 1);
    assert_false(m->w.lm_head.present);
    assert_int_equal(m->cfg.head_dim, 16);
    assert_int_equal(m->cfg.n_heads, 4);
    assert_int_equal(m->cfg.n_kv_heads, 1);
    assert_int_equal(m->cfg.layers[1].ffn_dim, 64);
    assert_true(m->cfg.rope_theta == 50000.0f);
    assert_int_equal(m->cfg.dtype, LOP_F32);
    assert_int_equal(m->w.layers[0].wq.dtype, LOP_F32);
    assert_non_null(strstr(m->file_dtypes, "Q8_0:"));
    assert_non_null(strstr(m->file_dtypes, "F32:"));
    assert_non_null(m->tok);
    assert_int_equal(lop_tokenizer_kind(m->tok), LOP_TOK_SPM);
    assert_int_equal(m->cfg.bos_id, 1);
    assert_int_equal(m->cfg.eos_id, 2);
    compare_with_safetensors(m, FIX "tiny-tied-hf/model.safetensors", 1);
    lop_model_free(m);
}

static void test_tiny_tied_f16(void **state) {
    (void)state;
    lop_model *m;
    assert_int_equal(lop_model_load(FIX "tiny-tied-f16.gguf", NULL, &m), LOP_OK);
    assert_int_equal(m->cfg.dtype, LOP_F16);
    assert_int_equal(m->w.layers[0].wq.dtype, LOP_F16); /* permuted copy keeps the dtype */
    assert_int_equal(m->w.layers[0].wv.dtype, LOP_F16);
    assert_int_equal(m->w.layers[0].attn_norm.dtype, LOP_F32);
    compare_with_safetensors(m, FIX "tiny-tied-hf/model.safetensors", 2);
    lop_model_free(m);
}

/* per-layer head/ffn arrays (a pruned model): each layer un-permuted with its own head counts */
static void test_tiny_pruned(void **state) {
    (void)state;
    lop_model *m;
    assert_int_equal(lop_model_load(FIX "tiny-pruned.gguf", NULL, &m), LOP_OK);
    const lop_config *c = &m->cfg;
    assert_int_equal(c->layers[0].n_heads, 4);
    assert_int_equal(c->layers[0].n_kv_heads, 2);
    assert_int_equal(c->layers[0].ffn_dim, 0);
    assert_int_equal(c->layers[1].n_heads, 2);
    assert_int_equal(c->layers[1].n_kv_heads, 1);
    assert_int_equal(c->layers[1].ffn_dim, 24);
    assert_int_equal(c->layers[1].head_dim, 8);
    assert_false(m->w.layers[0].w_gate.present);
    assert_null(m->tok); /* no vocabulary in this file */
    assert_int_equal(c->bos_id, -1);
    compare_with_safetensors(m, FIX "tiny-pruned-hf/model.safetensors", 0);
    lop_model_free(m);
}

static void test_shapes_only(void **state) {
    (void)state;
    lop_model *m;
    lop_load_opts o = {.shapes_only = 1};
    assert_int_equal(lop_model_load(FIX "tiny-tied-q8_0.gguf", &o, &m), LOP_OK);
    assert_int_equal(m->weights_loaded, 0);
    assert_true(m->w.tok_emb.present);
    assert_null(m->w.tok_emb.data);
    assert_int_equal(m->w.tok_emb.dtype, LOP_F32);
    assert_int_equal(m->w.layers[1].wq.shape[0], 64);
    assert_int_equal(m->w.layers[1].wq.shape[1], 32);
    assert_int_equal(m->w.layers[1].wo.shape[0], 32);
    assert_int_equal(m->w.layers[1].wo.shape[1], 64);
    assert_int_equal(m->cfg.layers[0].n_kv_heads, 1);
    assert_non_null(strstr(m->file_dtypes, "Q8_0:"));
    lop_model_info info;
    lop_model_get_info(m, &info);
    assert_int_equal(info.n_layers, 2);
    lop_model_free(m);
}

/* ---- hostile input ------------------------------------------------------------------------ */
typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }
static void kv_u32(buf *b, const char *k, uint32_t v) { put_str(b, k); put_u32(b, LOP_GGUF_U32); put_u32(b, v); }
static void kv_f32(buf *b, const char *k, float v) { put_str(b, k); put_u32(b, LOP_GGUF_F32); put(b, &v, 4); }
static void kv_str(buf *b, const char *k, const char *v) { put_str(b, k); put_u32(b, LOP_GGUF_STRING); put_str(b, v); }
static void header(buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}
static void tinfo(buf *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    put_str(b, name);
    put_u32(b, nd);
    for (uint32_t i = 0; i < nd; i++) put_u64(b, ne[i]);
    put_u32(b, type);
    put_u64(b, off);
}
/* the 7 llama keys a minimal model needs (arch first) */
static void llama_kvs(buf *b, const char *arch) {
    kv_str(b, "general.architecture", arch);
    kv_u32(b, "llama.block_count", 1);
    kv_u32(b, "llama.context_length", 64);
    kv_u32(b, "llama.embedding_length", 32);
    kv_u32(b, "llama.attention.head_count", 4);
    kv_u32(b, "llama.attention.head_count_kv", 2);
    kv_f32(b, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
}
static void pad_data(buf *b, size_t data_bytes) {
    while (b->n % 32) put(b, "", 1);
    for (size_t i = 0; i < data_bytes; i++) put(b, "\x01", 1);
}

static char g_dir[64];
static int setup_dir(void **state) {
    (void)state;
    strcpy(g_dir, "/tmp/lop_gguf_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}
static int teardown_dir(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes b to DIR/name, loads it (as a model when as_model, else with the reader), expects code
 * and every needle in the message (plus the file's path); frees b. */
static void expect_fail(buf *b, const char *name, int as_model, lop_status code, const char *n1, const char *n2) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (b->n) assert_int_equal(fwrite(b->p, 1, b->n, f), b->n);
    fclose(f);
    free(b->p);
    memset(b, 0, sizeof *b);
    lop_status st;
    if (as_model) {
        lop_model *m = (lop_model *)1;
        st = lop_model_load(path, NULL, &m);
        assert_null(m);
    } else {
        lop_gguf *g = (lop_gguf *)1;
        st = lop_gguf_open(path, &g);
        assert_null(g);
    }
    const char *msg = lop_last_error();
    if (st != code || !strstr(msg, path) || (n1 && !strstr(msg, n1)) || (n2 && !strstr(msg, n2)))
        fail_msg("%s: got %d '%s', want %d with '%s' and '%s'", name, st, msg, code, n1 ? n1 : "", n2 ? n2 : "");
}

static void test_bad_header(void **state) {
    (void)state;
    buf b = {0};
    put(&b, "GGUX", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 0);
    expect_fail(&b, "magic.gguf", 1, LOP_ERR_FORMAT, "magic", NULL);
    header(&b, 7, 0, 0);
    expect_fail(&b, "version.gguf", 0, LOP_ERR_UNSUPPORTED, "version 7", NULL);
    header(&b, 1, 0, 0);
    expect_fail(&b, "v1.gguf", 1, LOP_ERR_UNSUPPORTED, "version 1", NULL);
    put(&b, "GG", 2);
    expect_fail(&b, "short.gguf", 0, LOP_ERR_FORMAT, "magic", NULL);
    expect_fail(&b, "empty.gguf", 1, LOP_ERR_FORMAT, "magic", NULL);
    header(&b, 3, 1ull << 40, 0);
    expect_fail(&b, "ntensors.gguf", 0, LOP_ERR_FORMAT, "tensor count", NULL);
    header(&b, 3, 0, 1ull << 62);
    expect_fail(&b, "nkv.gguf", 0, LOP_ERR_FORMAT, "metadata count", NULL);
}

static void test_bad_metadata(void **state) {
    (void)state;
    buf b = {0};
    /* value truncated: a u32 with only 2 bytes left */
    header(&b, 3, 0, 1);
    put_str(&b, "llama.block_count");
    put_u32(&b, LOP_GGUF_U32);
    put(&b, "\x01\x00", 2);
    expect_fail(&b, "trunc.gguf", 0, LOP_ERR_FORMAT, "metadata key 'llama.block_count'", "truncated");
    /* key itself truncated */
    header(&b, 3, 0, 2);
    kv_u32(&b, "a.b", 1);
    put_u64(&b, 100);
    put(&b, "general.na", 10);
    expect_fail(&b, "trunckey.gguf", 0, LOP_ERR_FORMAT, "metadata entry #1", "past the end");
    /* string length past EOF */
    header(&b, 3, 0, 1);
    put_str(&b, "general.name");
    put_u32(&b, LOP_GGUF_STRING);
    put_u64(&b, 1000);
    put(&b, "abc", 3);
    expect_fail(&b, "strlen.gguf", 0, LOP_ERR_FORMAT, "metadata key 'general.name'", "past the end");
    /* absurd array count */
    header(&b, 3, 0, 1);
    put_str(&b, "tokenizer.ggml.scores");
    put_u32(&b, LOP_GGUF_ARRAY);
    put_u32(&b, LOP_GGUF_F32);
    put_u64(&b, 1ull << 60);
    put(&b, "abcdabcd", 8);
    expect_fail(&b, "arrcount.gguf", 0, LOP_ERR_FORMAT, "metadata key 'tokenizer.ggml.scores'", "array count");
    /* string array whose count is absurd / element past EOF */
    header(&b, 3, 0, 1);
    put_str(&b, "tokenizer.ggml.tokens");
    put_u32(&b, LOP_GGUF_ARRAY);
    put_u32(&b, LOP_GGUF_STRING);
    put_u64(&b, 2);
    put_str(&b, "ok");
    put_u64(&b, 1ull << 50);
    expect_fail(&b, "strarr.gguf", 0, LOP_ERR_FORMAT, "metadata key 'tokenizer.ggml.tokens'", "past the end");
    /* unknown value type, and deep nesting */
    header(&b, 3, 0, 1);
    put_str(&b, "x.y");
    put_u32(&b, 13);
    expect_fail(&b, "vtype.gguf", 0, LOP_ERR_FORMAT, "metadata key 'x.y'", "unknown value type 13");
    header(&b, 3, 0, 1);
    put_str(&b, "x.deep");
    put_u32(&b, LOP_GGUF_ARRAY);
    for (int i = 0; i < 20; i++) {
        put_u32(&b, LOP_GGUF_ARRAY);
        put_u64(&b, 1);
    }
    put_u32(&b, LOP_GGUF_U8);
    put_u64(&b, 1);
    put(&b, "\x01", 1);
    expect_fail(&b, "deep.gguf", 0, LOP_ERR_FORMAT, "metadata key 'x.deep'", "nested");
    /* duplicate key; bad alignment */
    header(&b, 3, 0, 2);
    kv_u32(&b, "a.b", 1);
    kv_u32(&b, "a.b", 2);
    expect_fail(&b, "dupkey.gguf", 0, LOP_ERR_FORMAT, "duplicate metadata key 'a.b'", NULL);
    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 48);
    expect_fail(&b, "align.gguf", 0, LOP_ERR_FORMAT, "general.alignment", "power of two");
}

static void test_bad_tensors(void **state) {
    (void)state;
    buf b = {0};
    uint64_t ne[2] = {64, 8};
    header(&b, 3, 1, 0);
    tinfo(&b, "blk.0.attn_q.weight", 2, ne, 12 /* Q4_K */, 0);
    expect_fail(&b, "qtype.gguf", 0, LOP_ERR_UNSUPPORTED, "tensor 'blk.0.attn_q.weight'", "type 12 (Q4_K)");
    header(&b, 3, 1, 0);
    tinfo(&b, "t.x", 2, ne, 99, 0);
    expect_fail(&b, "qtype99.gguf", 0, LOP_ERR_UNSUPPORTED, "tensor 't.x'", "type 99");
    header(&b, 3, 1, 0);
    tinfo(&b, "t.range", 2, ne, LOP_GGML_F32, 0);
    pad_data(&b, 64 * 8 * 4 - 1); /* one byte short */
    expect_fail(&b, "range.gguf", 0, LOP_ERR_FORMAT, "tensor 't.range'", "past the end");
    header(&b, 3, 1, 0);
    tinfo(&b, "t.off", 2, ne, LOP_GGML_F32, 0xffffffffffffffe0ull);
    pad_data(&b, 64);
    expect_fail(&b, "offset.gguf", 0, LOP_ERR_FORMAT, "tensor 't.off'", "past the end");
    header(&b, 3, 1, 0);
    tinfo(&b, "t.misaligned", 2, ne, LOP_GGML_F32, 4);
    pad_data(&b, 4096);
    expect_fail(&b, "misaligned.gguf", 0, LOP_ERR_FORMAT, "tensor 't.misaligned'", "alignment");
    uint64_t ne16[2] = {16, 2};
    header(&b, 3, 1, 0);
    tinfo(&b, "t.block", 2, ne16, LOP_GGML_Q8_0, 0);
    pad_data(&b, 128);
    expect_fail(&b, "block.gguf", 0, LOP_ERR_FORMAT, "tensor 't.block'", "block size");
    uint64_t huge[5] = {1ull << 32, 1ull << 32, 1ull << 32, 4, 1};
    header(&b, 3, 1, 0);
    tinfo(&b, "t.huge", 4, huge, LOP_GGML_F32, 0);
    expect_fail(&b, "huge.gguf", 0, LOP_ERR_FORMAT, "tensor 't.huge'", "overflow");
    header(&b, 3, 1, 0);
    tinfo(&b, "t.dims", 5, huge, LOP_GGML_F32, 0);
    expect_fail(&b, "dims.gguf", 0, LOP_ERR_FORMAT, "tensor 't.dims'", "dimensions");
    header(&b, 3, 2, 0);
    tinfo(&b, "t.dup", 2, ne, LOP_GGML_F32, 0);
    tinfo(&b, "t.dup", 2, ne, LOP_GGML_F32, 2048);
    pad_data(&b, 4096);
    expect_fail(&b, "duptensor.gguf", 0, LOP_ERR_FORMAT, "duplicate tensor 't.dup'", NULL);
    header(&b, 3, 1, 0);
    put_str(&b, "t.truncated_after_the_first_dimension");
    put_u32(&b, 2);
    put_u64(&b, 64);
    expect_fail(&b, "tinfo.gguf", 0, LOP_ERR_FORMAT, "tensor 't.truncated_after_the_first_dimension'", "truncated");
}

static void test_bad_llama(void **state) {
    (void)state;
    buf b = {0};
    header(&b, 3, 0, 1);
    kv_str(&b, "general.architecture", "gpt2");
    expect_fail(&b, "arch.gguf", 1, LOP_ERR_UNSUPPORTED, "general.architecture", "'gpt2'");
    header(&b, 3, 0, 0);
    expect_fail(&b, "noarch.gguf", 1, LOP_ERR_FORMAT, "missing metadata key 'general.architecture'", NULL);
    /* wrong type for a llama key */
    header(&b, 3, 0, 3);
    kv_str(&b, "general.architecture", "llama");
    kv_u32(&b, "llama.block_count", 1);
    kv_str(&b, "llama.embedding_length", "32");
    expect_fail(&b, "keytype.gguf", 1, LOP_ERR_FORMAT, "'llama.embedding_length' has type string", "expected an integer");
    /* a required key missing: llama_kvs writes the eps last, drop it and say 6 keys */
    header(&b, 3, 0, 6);
    llama_kvs(&b, "llama");
    b.n -= 8 + strlen("llama.attention.layer_norm_rms_epsilon") + 4 + 4;
    expect_fail(&b, "noeps.gguf", 1, LOP_ERR_FORMAT, "missing metadata key 'llama.attention.layer_norm_rms_epsilon'",
                NULL);
    /* per-layer head count array of the wrong length */
    header(&b, 3, 0, 7);
    kv_str(&b, "general.architecture", "llama");
    kv_u32(&b, "llama.block_count", 2);
    kv_u32(&b, "llama.context_length", 64);
    kv_u32(&b, "llama.embedding_length", 32);
    put_str(&b, "llama.attention.head_count");
    put_u32(&b, LOP_GGUF_ARRAY);
    put_u32(&b, LOP_GGUF_U32);
    put_u64(&b, 3);
    put_u32(&b, 4), put_u32(&b, 4), put_u32(&b, 4);
    kv_u32(&b, "llama.attention.head_count_kv", 2);
    kv_f32(&b, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    expect_fail(&b, "headarr.gguf", 1, LOP_ERR_FORMAT, "'llama.attention.head_count' has 3 entries", NULL);
    /* rope_freqs (Llama-3.1 scaling) */
    uint64_t ne1[1] = {4};
    header(&b, 3, 1, 7);
    llama_kvs(&b, "llama");
    tinfo(&b, "rope_freqs.weight", 1, ne1, LOP_GGML_F32, 0);
    pad_data(&b, 16);
    expect_fail(&b, "ropefreqs.gguf", 1, LOP_ERR_UNSUPPORTED, "rope_freqs.weight", NULL);
    /* q rows that do not match head_count x head_dim */
    uint64_t neq[2] = {32, 24};
    header(&b, 3, 1, 7);
    llama_kvs(&b, "llama");
    tinfo(&b, "blk.0.attn_q.weight", 2, neq, LOP_GGML_F32, 0);
    pad_data(&b, 32 * 24 * 4);
    expect_fail(&b, "qrows.gguf", 1, LOP_ERR_FORMAT, "blk.0.attn_q.weight", "llama.attention.head_count");
    /* layer index past block_count; unknown tensor */
    header(&b, 3, 1, 7);
    llama_kvs(&b, "llama");
    tinfo(&b, "blk.5.ffn_norm.weight", 1, ne1, LOP_GGML_F32, 0);
    pad_data(&b, 16);
    expect_fail(&b, "layer.gguf", 1, LOP_ERR_FORMAT, "blk.5.ffn_norm.weight", "block_count");
    header(&b, 3, 1, 7);
    llama_kvs(&b, "llama");
    tinfo(&b, "blk.0.ffn_gate_exps.weight", 1, ne1, LOP_GGML_F32, 0);
    pad_data(&b, 16);
    expect_fail(&b, "unknown.gguf", 1, LOP_ERR_UNSUPPORTED, "blk.0.ffn_gate_exps.weight", NULL);
    /* a model missing its tensors */
    header(&b, 3, 0, 7);
    llama_kvs(&b, "llama");
    expect_fail(&b, "notensors.gguf", 1, LOP_ERR_FORMAT, "embed_tokens", NULL);
}

/* Every truncation of a real file, and deterministic byte corruption of its header, must fail
 * cleanly (or, for corruption that happens to be harmless, load): never crash or leak. */
static void test_truncation_and_corruption(void **state) {
    (void)state;
    const char *srcs[] = {FIX "tiny.gguf", FIX "tiny-tied-q8_0.gguf"};
    for (int s = 0; s < 2; s++) {
        size_t n;
        unsigned char *d = read_all(srcs[s], &n);
        lop_gguf *g;
        assert_int_equal(lop_gguf_parse("x", d, n, &g), LOP_OK);
        size_t hdr = g->data_offset;
        lop_gguf_close(g);
        for (size_t len = 0; len < n; len += len < hdr + 64 ? 1 : 997) {
            lop_status st = lop_gguf_parse("trunc", d, len, &g);
            if (st == LOP_OK) fail_msg("%s truncated to %zu bytes parsed", srcs[s], len);
            assert_non_null(strstr(lop_last_error(), "trunc"));
        }
        char path[256];
        snprintf(path, sizeof path, "%s/corrupt.gguf", g_dir);
        uint64_t rng = 0x9e3779b97f4a7c15ull + (uint64_t)s;
        for (int it = 0; it < 300; it++) {
            unsigned char *c = malloc(n);
            memcpy(c, d, n);
            for (int k = 0; k < 4; k++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                size_t at = (size_t)((rng >> 33) % hdr);
                c[at] = (unsigned char)(rng >> 17);
            }
            FILE *f = fopen(path, "wb");
            fwrite(c, 1, n, f);
            fclose(f);
            free(c);
            lop_model *m = NULL;
            if (lop_model_load(path, NULL, &m) == LOP_OK) lop_model_free(m);
            else assert_null(m);
        }
        free(d);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata_types),
        cmocka_unit_test(test_dequant_types),
        cmocka_unit_test(test_tiny_f32_matches_hf),
        cmocka_unit_test(test_tiny_tied_q8_0),
        cmocka_unit_test(test_tiny_tied_f16),
        cmocka_unit_test(test_tiny_pruned),
        cmocka_unit_test(test_shapes_only),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_bad_llama),
        cmocka_unit_test(test_truncation_and_corruption),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
