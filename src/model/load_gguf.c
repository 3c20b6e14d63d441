/* GGUF model loader (llama architecture): metadata → lop_config, tensors → lop_weights in HF
 * layout, tokenizer metadata → lop_vocab_src.
 * Why the extra work over "point at the data": GGUF stores q/k projection rows permuted for
 * llama.cpp's interleaved RoPE, while lop implements HF's rotate-half RoPE, so q/k rows (and
 * biases) are un-permuted here, per layer with that layer's head counts. Quantised tensors
 * (Q4_0/Q4_1/Q8_0) become model-owned F32; F32/F16/BF16 tensors that need no permutation stay
 * in the file mapping, which the model owns. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/file.h"
#include "io/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define ARCH "llama"
#define MAX_LAYERS 65536

typedef struct loader {
    lop_model *m;
    lop_gguf *g;
    const char *path;
    const lop_load_opts *o;
    int *n_head, *n_head_kv; /* [n_layers], from metadata (scalar or per-layer array) */
    int head_dim;
    int64_t type_count[64];  /* tensors per ggml type in the file */
} loader;

/* ---- metadata helpers --------------------------------------------------------------------- */
static const char *lkey(char *buf, size_t n, const char *suffix) {
    snprintf(buf, n, "%s.%s", ARCH, suffix);
    return buf;
}

static lop_status get_int_range(loader *L, const char *key, int required, int64_t def, int64_t lo, int64_t hi,
                                int64_t *out) {
    if (!lop_gguf_find_kv(L->g, key)) {
        if (required) return lop_fail(LOP_ERR_FORMAT, "%s: missing metadata key '%s'", L->path, key);
        *out = def;
        return LOP_OK;
    }
    LOP_TRY(lop_gguf_get_int(L->g, key, out));
    if (*out < lo || *out > hi)
        return lop_fail(LOP_ERR_FORMAT, "%s: metadata key '%s' = %lld is out of range [%lld, %lld]", L->path, key,
                        (long long)*out, (long long)lo, (long long)hi);
    return LOP_OK;
}

/* A per-layer hyper-parameter given either as one integer or as an array with one entry per layer.
 * found (may be NULL) tells whether the key exists; when it does not, out[] = def. */
static lop_status get_per_layer(loader *L, const char *key, int required, int def, int lo, int hi, int *out,
                                int *found) {
    int n = L->m->cfg.n_layers;
    const lop_gguf_kv *kv = lop_gguf_find_kv(L->g, key);
    if (found) *found = kv != NULL;
    if (!kv) {
        if (required) return lop_fail(LOP_ERR_FORMAT, "%s: missing metadata key '%s'", L->path, key);
        for (int i = 0; i < n; i++) out[i] = def;
        return LOP_OK;
    }
    if (kv->type != LOP_GGUF_ARRAY) {
        int64_t v;
        LOP_TRY(get_int_range(L, key, 1, 0, lo, hi, &v));
        for (int i = 0; i < n; i++) out[i] = (int)v;
        return LOP_OK;
    }
    if (kv->count != (uint64_t)n)
        return lop_fail(LOP_ERR_FORMAT, "%s: metadata key '%s' has %llu entries, expected one per layer (%d)",
                        L->path, key, (unsigned long long)kv->count, n);
    for (int i = 0; i < n; i++) {
        int64_t v;
        if (kv->arr_type == LOP_GGUF_BOOL || !lop_gguf_arr_int(kv, (uint64_t)i, &v))
            return lop_fail(LOP_ERR_FORMAT, "%s: metadata key '%s' is an array of %s, expected integers", L->path,
                            key, lop_gguf_type_name(kv->arr_type));
        if (v < lo || v > hi)
            return lop_fail(LOP_ERR_FORMAT, "%s: metadata key '%s'[%d] = %lld is out of range [%d, %d]", L->path, key,
                            i, (long long)v, lo, hi);
        out[i] = (int)v;
    }
    return LOP_OK;
}

static int str_eq(const char *s, size_t len, const char *lit) { return len == strlen(lit) && !memcmp(s, lit, len); }

/* ---- hyper-parameters --------------------------------------------------------------------- */
static lop_status read_hparams(loader *L) {
    lop_gguf *g = L->g;
    lop_config *c = &L->m->cfg;
    char k[128];
    const char *s;
    size_t sl;
    LOP_TRY(lop_gguf_get_str(g, "general.architecture", &s, &sl));
    if (!str_eq(s, sl, ARCH))
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: metadata key 'general.architecture' is '%.*s'; lop loads only '%s'",
                        L->path, (int)(sl > 64 ? 64 : sl), s, ARCH);
    int64_t v;
    LOP_TRY(get_int_range(L, lkey(k, sizeof k, "block_count"), 1, 0, 1, MAX_LAYERS, &v));
    LOP_TRY(lop_model_alloc_layers(L->m, (int)v));
    int n = c->n_layers;
    LOP_TRY(get_int_range(L, lkey(k, sizeof k, "embedding_length"), 1, 0, 1, 1 << 20, &v));
    c->dim = (int)v;
    LOP_TRY(get_int_range(L, lkey(k, sizeof k, "context_length"), 1, 0, 1, 1 << 30, &v));
    c->max_seq_len = (int)v;
    LOP_TRY(get_int_range(L, lkey(k, sizeof k, "vocab_size"), 0, 0, 1, 1 << 24, &v));
    c->vocab_size = (int)v; /* 0 = absent; derive_shapes takes the truth from token_embd */
    LOP_TRY(get_int_range(L, lkey(k, sizeof k, "expert_count"), 0, 0, 0, 1 << 16, &v));
    if (v > 0)
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: metadata key '%s' = %lld: mixture-of-experts models are not supported",
                        L->path, k, (long long)v);

    L->n_head = calloc((size_t)n, sizeof *L->n_head);
    L->n_head_kv = calloc((size_t)n, sizeof *L->n_head_kv);
    int *ffn = calloc((size_t)n, sizeof *ffn);
    if (!L->n_head || !L->n_head_kv || !ffn) {
        free(ffn);
        return lop_fail(LOP_ERR_OOM, "%s: out of memory", L->path);
    }
    lop_status st = get_per_layer(L, lkey(k, sizeof k, "feed_forward_length"), 0, 0, 0, 1 << 24, ffn, NULL);
    for (int i = 0; i < n && st == LOP_OK; i++)
        if (ffn[i] > 0 && c->ffn_dim <= 0) c->ffn_dim = ffn[i];
    free(ffn);
    LOP_TRY(st);
    LOP_TRY(get_per_layer(L, lkey(k, sizeof k, "attention.head_count"), 1, 0, 0, 1 << 16, L->n_head, NULL));
    int have_kv;
    LOP_TRY(get_per_layer(L, lkey(k, sizeof k, "attention.head_count_kv"), 0, 0, 0, 1 << 16, L->n_head_kv, &have_kv));
    for (int i = 0; i < n; i++) {
        if (!have_kv) L->n_head_kv[i] = L->n_head[i];
        if (c->n_heads <= 0 && L->n_head[i] > 0) {
            c->n_heads = L->n_head[i];
            c->n_kv_heads = L->n_head_kv[i];
        }
    }
    if (c->n_heads <= 0)
        return lop_fail(LOP_ERR_FORMAT, "%s: metadata key '%s' gives no layer any attention head", L->path,
                        lkey(k, sizeof k, "attention.head_count"));
    /* head_dim: attention.key_length, else embedding_length / head_count (as llama.cpp) */
    int64_t kl, vl;
    LOP_TRY(get_int_range(L, lkey(k, sizeof k, "attention.key_length"), 0, 0, 2, 1 << 16, &kl));
    if (kl == 0) {
        if (c->dim % c->n_heads != 0)
            return lop_fail(LOP_ERR_FORMAT, "%s: embedding_length %d is not a multiple of head_count %d "
                            "(and metadata key '%s.attention.key_length' is absent)", L->path, c->dim, c->n_heads, ARCH);
        kl = c->dim / c->n_heads;
    }
    LOP_TRY(get_int_range(L, lkey(k, sizeof k, "attention.value_length"), 0, kl, 1, 1 << 16, &vl));
    if (vl != kl)
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: metadata key '%s' = %lld differs from the key length %lld", L->path,
                        k, (long long)vl, (long long)kl);
    if (kl % 2)
        return lop_fail(LOP_ERR_FORMAT, "%s: head dimension %lld is odd (RoPE needs pairs)", L->path, (long long)kl);
    L->head_dim = c->head_dim = (int)kl;
    for (int i = 0; i < n; i++) c->layers[i].head_dim = L->head_dim;
    LOP_TRY(get_int_range(L, lkey(k, sizeof k, "rope.dimension_count"), 0, kl, 1, 1 << 16, &v));
    if (v != kl)
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: metadata key '%s' = %lld: partial rotary embedding (head dim %lld) "
                        "is not supported", L->path, k, (long long)v, (long long)kl);
    if (lop_gguf_find_kv(g, lkey(k, sizeof k, "rope.scaling.type"))) {
        LOP_TRY(lop_gguf_get_str(g, k, &s, &sl));
        if (!str_eq(s, sl, "none"))
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: metadata key '%s' = '%.*s': RoPE scaling is not supported for GGUF",
                            L->path, k, (int)(sl > 32 ? 32 : sl), s);
    }
    double d;
    LOP_TRY(lop_gguf_get_float(g, lkey(k, sizeof k, "attention.layer_norm_rms_epsilon"), &d));
    if (!(d > 0 && d < 1))
        return lop_fail(LOP_ERR_FORMAT, "%s: metadata key '%s' = %g is out of range (0, 1)", L->path, k, d);
    c->norm_eps = (float)d;
    c->rope_theta = 10000.0f;
    if (lop_gguf_find_kv(g, lkey(k, sizeof k, "rope.freq_base"))) {
        LOP_TRY(lop_gguf_get_float(g, k, &d));
        if (!(d > 0 && d < 1e12))
            return lop_fail(LOP_ERR_FORMAT, "%s: metadata key '%s' = %g is out of range", L->path, k, d);
        c->rope_theta = (float)d;
    }
    return LOP_OK;
}

/* ---- tensors ------------------------------------------------------------------------------ */
enum { PERM_NONE = 0, PERM_Q = 1, PERM_K = 2 };

static const struct slot {
    const char *suffix; /* after "blk.N." */
    size_t off;         /* offset of the lop_tensor in lop_layer_weights */
    int vec;            /* 1-D */
    int perm;
} k_slots[] = {
    {"attn_norm.weight", offsetof(lop_layer_weights, attn_norm), 1, PERM_NONE},
    {"attn_q.weight", offsetof(lop_layer_weights, wq), 0, PERM_Q},
    {"attn_k.weight", offsetof(lop_layer_weights, wk), 0, PERM_K},
    {"attn_v.weight", offsetof(lop_layer_weights, wv), 0, PERM_NONE},
    {"attn_output.weight", offsetof(lop_layer_weights, wo), 0, PERM_NONE},
    {"attn_q.bias", offsetof(lop_layer_weights, bq), 1, PERM_Q},
    {"attn_k.bias", offsetof(lop_layer_weights, bk), 1, PERM_K},
    {"attn_v.bias", offsetof(lop_layer_weights, bv), 1, PERM_NONE},
    {"attn_output.bias", offsetof(lop_layer_weights, bo), 1, PERM_NONE},
    {"ffn_norm.weight", offsetof(lop_layer_weights, ffn_norm), 1, PERM_NONE},
    {"ffn_gate.weight", offsetof(lop_layer_weights, w_gate), 0, PERM_NONE},
    {"ffn_up.weight", offsetof(lop_layer_weights, w_up), 0, PERM_NONE},
    {"ffn_down.weight", offsetof(lop_layer_weights, w_down), 0, PERM_NONE},
    {"ffn_gate.bias", offsetof(lop_layer_weights, b_gate), 1, PERM_NONE},
    {"ffn_up.bias", offsetof(lop_layer_weights, b_up), 1, PERM_NONE},
    {"ffn_down.bias", offsetof(lop_layer_weights, b_down), 1, PERM_NONE},
};

/* Row of the GGUF tensor that holds HF row r, for convert_hf_to_gguf.py's permutation
 *   w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2).reshape(w.shape):
 * GGUF row h*hd + 2*j + t  =  HF row h*hd + t*hd/2 + j. */
static int64_t gguf_row_of(int64_t r, int64_t hd) {
    int64_t h = r / hd, w = r % hd, half = hd / 2;
    return h * hd + 2 * (w % half) + w / half;
}

/* Converts the tensor's rows into dst (dtype out), un-permuting q/k rows when hd > 0. */
static void convert_rows(const lop_gguf_tensor *t, int64_t rows, int64_t cols, int64_t hd, void *dst, lop_dtype out) {
    size_t src_row = (size_t)(cols / lop_ggml_block_size(t->type)) * lop_ggml_block_bytes(t->type);
    size_t esz = lop_dtype_size(out);
    for (int64_t r = 0; r < rows; r++) {
        int64_t sr = hd > 0 ? gguf_row_of(r, hd) : r;
        const unsigned char *src = t->data + (size_t)sr * src_row;
        if (out == LOP_F32) lop_ggml_dequantize(t->type, src, (float *)dst + r * cols, cols);
        else memcpy((char *)dst + (size_t)r * cols * esz, src, (size_t)cols * esz);
    }
}

static lop_status load_tensor(loader *L, const lop_gguf_tensor *gt, lop_tensor *t, int vec, int perm_heads,
                              const char *heads_key) {
    if (t->present) return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s' given twice", L->path, gt->name);
    for (int d = 2; d < LOP_GGUF_MAX_DIMS; d++)
        if (gt->ne[d] != 1)
            return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s' has %d dimensions, expected %d", L->path, gt->name,
                            gt->n_dims, vec ? 1 : 2);
    if (gt->ne[0] > INT32_MAX || gt->ne[1] > INT32_MAX)
        return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s' is implausibly large", L->path, gt->name);
    if (gt->n_dims == 1 || (vec && gt->ne[1] == 1)) {
        t->ndim = 1;
        t->shape[0] = gt->ne[0];
        t->shape[1] = 1;
    } else {
        t->ndim = 2;
        t->shape[0] = gt->ne[1]; /* HF [out, in] = GGUF [ne1, ne0] */
        t->shape[1] = gt->ne[0];
    }
    t->present = 1;
    t->dtype = gt->type == LOP_GGML_F16 ? LOP_F16 : gt->type == LOP_GGML_BF16 ? LOP_BF16 : LOP_F32;
    int64_t rows = t->shape[0], hd = 0;
    if (perm_heads >= 0) { /* q or k: rows must split into perm_heads heads of head_dim */
        if (perm_heads == 0 || rows != (int64_t)perm_heads * L->head_dim)
            return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s' has %lld rows, expected %d heads x head_dim %d "
                            "(metadata key '%s')", L->path, gt->name, (long long)rows, perm_heads, L->head_dim,
                            heads_key);
        hd = L->head_dim;
    }
    if (L->o->shapes_only) return LOP_OK;
    size_t esz = lop_dtype_size(t->dtype);
    int aligned = ((uintptr_t)gt->data % esz) == 0;
    if (hd == 0 && !lop_ggml_is_quantized(gt->type) && aligned) {
        t->data = (void *)gt->data; /* zero copy: points into the (read-only) mapping */
        return LOP_OK;
    }
    void *buf = lop_model_malloc(L->m, (size_t)gt->numel * esz, gt->name);
    if (!buf) return lop_fail(LOP_ERR_OOM, "%s: out of memory for tensor '%s'", L->path, gt->name);
    if (t->ndim == 2) {
        convert_rows(gt, rows, t->shape[1], hd, buf, t->dtype);
    } else if (hd == 0) {
        convert_rows(gt, 1, rows, 0, buf, t->dtype);
    } else { /* q/k bias: one row holding the whole vector; permute its elements */
        unsigned char *tmp = malloc((size_t)rows * esz);
        if (!tmp) return lop_fail(LOP_ERR_OOM, "%s: out of memory for tensor '%s'", L->path, gt->name);
        convert_rows(gt, 1, rows, 0, tmp, t->dtype);
        for (int64_t r = 0; r < rows; r++)
            memcpy((unsigned char *)buf + r * esz, tmp + gguf_row_of(r, hd) * esz, esz);
        free(tmp);
    }
    t->data = buf;
    return LOP_OK;
}

/* "blk.N.rest" → layer N and rest; 0 when the name has another form. */
static int parse_block_name(const char *name, int *layer, const char **rest) {
    if (strncmp(name, "blk.", 4) != 0) return 0;
    const char *p = name + 4;
    long v = 0;
    int nd = 0;
    while (*p >= '0' && *p <= '9' && nd < 9) v = v * 10 + (*p++ - '0'), nd++;
    if (nd == 0 || *p != '.') return 0;
    *layer = (int)v;
    *rest = p + 1;
    return 1;
}

static lop_status load_tensors(loader *L) {
    lop_model *m = L->m;
    char k_q[128], k_kv[128];
    lkey(k_q, sizeof k_q, "attention.head_count");
    lkey(k_kv, sizeof k_kv, "attention.head_count_kv");
    if (lop_gguf_find_tensor(L->g, "rope_freqs.weight"))
        return lop_fail(LOP_ERR_UNSUPPORTED,
                        "%s: tensor 'rope_freqs.weight' (Llama-3.1-style RoPE frequency scaling) is not supported "
                        "for GGUF models yet", L->path);
    for (int64_t i = 0; i < L->g->n_tensors; i++) {
        const lop_gguf_tensor *gt = &L->g->tensors[i];
        L->type_count[gt->type]++;
        int layer;
        const char *rest;
        if (!strcmp(gt->name, "token_embd.weight")) {
            LOP_TRY(load_tensor(L, gt, &m->w.tok_emb, 0, -1, NULL));
        } else if (!strcmp(gt->name, "output_norm.weight")) {
            LOP_TRY(load_tensor(L, gt, &m->w.out_norm, 1, -1, NULL));
        } else if (!strcmp(gt->name, "output.weight")) {
            LOP_TRY(load_tensor(L, gt, &m->w.lm_head, 0, -1, NULL));
        } else if (parse_block_name(gt->name, &layer, &rest)) {
            if (layer >= m->cfg.n_layers)
                return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s' is for layer %d but metadata key '%s.block_count' is %d",
                                L->path, gt->name, layer, ARCH, m->cfg.n_layers);
            if (!strcmp(rest, "attn_rot_embd")) continue; /* old converters' RoPE table: recomputed */
            const struct slot *s = NULL;
            for (size_t j = 0; j < sizeof k_slots / sizeof k_slots[0]; j++)
                if (!strcmp(rest, k_slots[j].suffix)) s = &k_slots[j];
            if (!s) return lop_fail(LOP_ERR_UNSUPPORTED, "%s: tensor '%s' is not part of a llama model lop knows", L->path,
                                    gt->name);
            lop_tensor *t = (lop_tensor *)((char *)&m->w.layers[layer] + s->off);
            int heads = s->perm == PERM_Q ? L->n_head[layer] : s->perm == PERM_K ? L->n_head_kv[layer] : -1;
            LOP_TRY(load_tensor(L, gt, t, s->vec, heads, s->perm == PERM_Q ? k_q : k_kv));
        } else {
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: tensor '%s' is not part of a llama model lop knows", L->path,
                            gt->name);
        }
    }
    if (!m->w.lm_head.present) m->cfg.tie_embeddings = 1;
    return LOP_OK;
}

/* "Q4_1:210 F32:61 Q8_0:1", most common type first; and cfg.dtype = the dtype of most parameters. */
static void summarise_types(loader *L) {
    lop_model *m = L->m;
    int used[64] = {0};
    size_t pos = 0;
    for (;;) {
        int best = -1;
        for (int t = 0; t < 64; t++)
            if (L->type_count[t] && !used[t] && (best < 0 || L->type_count[t] > L->type_count[best])) best = t;
        if (best < 0) break;
        used[best] = 1;
        int w = snprintf(m->file_dtypes + pos, sizeof m->file_dtypes - pos, "%s%s:%lld", pos ? " " : "",
                         lop_ggml_type_name(best), (long long)L->type_count[best]);
        if (w < 0 || (size_t)w >= sizeof m->file_dtypes - pos) break;
        pos += (size_t)w;
    }
    int64_t by_dtype[3] = {0};
    by_dtype[m->w.tok_emb.dtype] += lop_tensor_numel(&m->w.tok_emb);
    by_dtype[m->w.lm_head.dtype] += lop_tensor_numel(&m->w.lm_head);
    for (int i = 0; i < m->cfg.n_layers; i++) {
        lop_layer_weights *Lw = &m->w.layers[i];
#define X(f, name) by_dtype[Lw->f.dtype] += lop_tensor_numel(&Lw->f);
        LOP_LAYER_TENSORS(X)
#undef X
    }
    m->cfg.dtype = LOP_F32;
    for (int d = 1; d < 3; d++)
        if (by_dtype[d] > by_dtype[m->cfg.dtype]) m->cfg.dtype = (lop_dtype)d;
}

/* ---- tokenizer ---------------------------------------------------------------------------- */
/* tokenizer.ggml.pre → lop pre-tokenizer, grouped as llama.cpp's llama-vocab.cpp groups the regexes.
 * "default"/absent use GPT-2's regex here; llama.cpp's DEFAULT adds extra splits (punctuation runs,
 * digit groups of 3) that no llama-architecture model we know of relies on. */
static int map_pretok(const char *s, size_t n, lop_pretok *out) {
    static const char *gpt2[] = {"gpt-2", "default", "phi-2", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de",
                                 "gigachat", "mpt", "olmo", "jais", "trillion", "exaone4", "a.x-4.0", "mellum",
                                 "roberta-bpe", "jina-v1-en", "jina-v2-code", "modern-bert", "granite-docling"};
    static const char *smollm[] = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"};
    static const char *llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                                   "lfm2"};
    for (size_t i = 0; i < sizeof gpt2 / sizeof *gpt2; i++)
        if (str_eq(s, n, gpt2[i])) return *out = LOP_PRETOK_GPT2, 1;
    for (size_t i = 0; i < sizeof smollm / sizeof *smollm; i++)
        if (str_eq(s, n, smollm[i])) return *out = LOP_PRETOK_SMOLLM, 1;
    for (size_t i = 0; i < sizeof llama3 / sizeof *llama3; i++)
        if (str_eq(s, n, llama3[i])) return *out = LOP_PRETOK_LLAMA3, 1;
    return 0;
}

static lop_status special_id(loader *L, const char *key, int n_vocab, int def, int *out) {
    *out = def;
    if (!lop_gguf_find_kv(L->g, key)) return LOP_OK;
    int64_t v;
    LOP_TRY(lop_gguf_get_int(L->g, key, &v));
    if (v >= 0 && v < n_vocab) *out = (int)v; /* out of range: keep the default, as llama.cpp does */
    return LOP_OK;
}

typedef struct vocab_bufs {
    const char **tokens, **merges;
    size_t *token_lens, *merge_lens;
    float *scores;
    int32_t *types;
} vocab_bufs;

static lop_status build_vocab(loader *L, lop_vocab_src *src, vocab_bufs *b) {
    lop_gguf *g = L->g;
    const char *s;
    size_t sl;
    LOP_TRY(lop_gguf_get_str(g, "tokenizer.ggml.model", &s, &sl));
    if (str_eq(s, sl, "llama")) src->kind = LOP_TOK_SPM;
    else if (str_eq(s, sl, "gpt2")) src->kind = LOP_TOK_BPE;
    else
        return lop_fail(LOP_ERR_UNSUPPORTED,
                        "%s: metadata key 'tokenizer.ggml.model' is '%.*s'; lop reads 'llama' (SentencePiece) and "
                        "'gpt2' (byte-level BPE) tokenizers", L->path, (int)(sl > 32 ? 32 : sl), s);
    const lop_gguf_kv *kv;
    LOP_TRY(lop_gguf_get_arr(g, "tokenizer.ggml.tokens", LOP_GGUF_STRING, &kv));
    if (kv->count == 0 || kv->count > (uint64_t)L->m->cfg.vocab_size)
        return lop_fail(LOP_ERR_FORMAT, "%s: metadata key 'tokenizer.ggml.tokens' has %llu tokens; token_embd has %d rows",
                        L->path, (unsigned long long)kv->count, L->m->cfg.vocab_size);
    int n = (int)kv->count;
    src->n_vocab = n;
    b->tokens = malloc((size_t)n * sizeof *b->tokens);
    b->token_lens = malloc((size_t)n * sizeof *b->token_lens);
    if (!b->tokens || !b->token_lens) return lop_fail(LOP_ERR_OOM, "%s: out of memory (vocabulary)", L->path);
    for (int i = 0; i < n; i++) lop_gguf_arr_str(kv, (uint64_t)i, &b->tokens[i], &b->token_lens[i]);
    src->tokens = b->tokens;
    src->token_lens = b->token_lens;

    if (lop_gguf_find_kv(g, "tokenizer.ggml.scores")) {
        LOP_TRY(lop_gguf_get_arr(g, "tokenizer.ggml.scores", LOP_GGUF_F32, &kv));
        if (kv->count != (uint64_t)n)
            return lop_fail(LOP_ERR_FORMAT, "%s: metadata key 'tokenizer.ggml.scores' has %llu entries for %d tokens",
                            L->path, (unsigned long long)kv->count, n);
        if (!(b->scores = malloc((size_t)n * sizeof *b->scores)))
            return lop_fail(LOP_ERR_OOM, "%s: out of memory (vocabulary)", L->path);
        for (int i = 0; i < n; i++) {
            double d = 0;
            lop_gguf_arr_float(kv, (uint64_t)i, &d);
            b->scores[i] = (float)d;
        }
        src->scores = b->scores;
    }
    if (lop_gguf_find_kv(g, "tokenizer.ggml.token_type")) {
        LOP_TRY(lop_gguf_get_arr(g, "tokenizer.ggml.token_type", -1, &kv));
        if (kv->count != (uint64_t)n)
            return lop_fail(LOP_ERR_FORMAT, "%s: metadata key 'tokenizer.ggml.token_type' has %llu entries for %d tokens",
                            L->path, (unsigned long long)kv->count, n);
        if (!(b->types = malloc((size_t)n * sizeof *b->types)))
            return lop_fail(LOP_ERR_OOM, "%s: out of memory (vocabulary)", L->path);
        for (int i = 0; i < n; i++) {
            int64_t v;
            if (kv->arr_type == LOP_GGUF_BOOL || !lop_gguf_arr_int(kv, (uint64_t)i, &v))
                return lop_fail(LOP_ERR_FORMAT, "%s: metadata key 'tokenizer.ggml.token_type' is an array of %s, "
                                "expected integers", L->path, lop_gguf_type_name(kv->arr_type));
            b->types[i] = (int32_t)(v >= 1 && v <= 6 ? v : LOP_TT_NORMAL);
        }
        src->token_types = b->types;
    }
    if (lop_gguf_find_kv(g, "tokenizer.ggml.merges") || src->kind == LOP_TOK_BPE) {
        LOP_TRY(lop_gguf_get_arr(g, "tokenizer.ggml.merges", LOP_GGUF_STRING, &kv));
        if (kv->count > (uint64_t)INT32_MAX)
            return lop_fail(LOP_ERR_FORMAT, "%s: metadata key 'tokenizer.ggml.merges' has too many entries", L->path);
        int nm = (int)kv->count;
        b->merges = malloc((size_t)(nm ? nm : 1) * sizeof *b->merges);
        b->merge_lens = malloc((size_t)(nm ? nm : 1) * sizeof *b->merge_lens);
        if (!b->merges || !b->merge_lens) return lop_fail(LOP_ERR_OOM, "%s: out of memory (merges)", L->path);
        for (int i = 0; i < nm; i++) lop_gguf_arr_str(kv, (uint64_t)i, &b->merges[i], &b->merge_lens[i]);
        src->n_merges = nm;
        src->merges = b->merges;
        src->merge_lens = b->merge_lens;
    }
    int spm = src->kind == LOP_TOK_SPM;
    src->pretok = LOP_PRETOK_GPT2;
    if (!spm && lop_gguf_find_kv(g, "tokenizer.ggml.pre")) {
        LOP_TRY(lop_gguf_get_str(g, "tokenizer.ggml.pre", &s, &sl));
        if (!map_pretok(s, sl, &src->pretok))
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: metadata key 'tokenizer.ggml.pre' is '%.*s', a pre-tokenizer lop "
                            "does not know", L->path, (int)(sl > 32 ? 32 : sl), s);
    }
    /* defaults as llama.cpp: SPM has bos 1 / eos 2 / unk 0, adds BOS and a space prefix; BPE adds
     * BOS only for the Llama-3 family */
    LOP_TRY(special_id(L, "tokenizer.ggml.bos_token_id", n, spm ? 1 : -1, &src->bos_id));
    LOP_TRY(special_id(L, "tokenizer.ggml.eos_token_id", n, spm ? 2 : -1, &src->eos_id));
    LOP_TRY(special_id(L, "tokenizer.ggml.unknown_token_id", n, spm ? 0 : -1, &src->unk_id));
    LOP_TRY(special_id(L, "tokenizer.ggml.padding_token_id", n, -1, &src->pad_id));
    src->add_bos = spm || src->pretok == LOP_PRETOK_LLAMA3;
    if (lop_gguf_find_kv(g, "tokenizer.ggml.add_bos_token"))
        LOP_TRY(lop_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &src->add_bos));
    src->add_space_prefix = spm;
    if (lop_gguf_find_kv(g, "tokenizer.ggml.add_space_prefix"))
        LOP_TRY(lop_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &src->add_space_prefix));
    src->byte_fallback = spm;
    src->origin = L->path;
    return LOP_OK;
}

static lop_status load_tokenizer(loader *L) {
    const lop_gguf_kv *kv = lop_gguf_find_kv(L->g, "tokenizer.ggml.model");
    if (!kv) return LOP_OK; /* a GGUF without a vocabulary: the model has no tokenizer */
    if (kv->type == LOP_GGUF_STRING) {
        const char *s;
        size_t sl;
        LOP_TRY(lop_gguf_get_str(L->g, "tokenizer.ggml.model", &s, &sl));
        if (str_eq(s, sl, "none") || str_eq(s, sl, "no_vocab")) return LOP_OK;
    }
    lop_vocab_src src = {0};
    vocab_bufs b = {0};
    lop_status st = build_vocab(L, &src, &b);
    if (st == LOP_OK) st = lop_tokenizer_create(&src, &L->m->tok);
    if (st == LOP_OK) {
        L->m->cfg.bos_id = src.bos_id;
        L->m->cfg.eos_id = src.eos_id;
    }
    free(b.tokens);
    free(b.token_lens);
    free(b.merges);
    free(b.merge_lens);
    free(b.scores);
    free(b.types);
    return st;
}

/* ---- tokenizer alone ---------------------------------------------------------------------- */
struct lop_gguf_vocab {
    lop_mapped map;
    lop_gguf *g;
    lop_model dummy; /* build_vocab checks the vocabulary against cfg.vocab_size */
    lop_vocab_src src;
    vocab_bufs b;
};

void lop_gguf_vocab_close(lop_gguf_vocab *v) {
    if (!v) return;
    free(v->b.tokens);
    free(v->b.token_lens);
    free(v->b.merges);
    free(v->b.merge_lens);
    free(v->b.scores);
    free(v->b.types);
    if (v->g) lop_gguf_close(v->g);
    lop_unmap_file(&v->map);
    free(v);
}

lop_status lop_gguf_vocab_open(const char *path, lop_gguf_vocab **out, const lop_vocab_src **src) {
    *out = NULL;
    lop_gguf_vocab *v = calloc(1, sizeof *v);
    if (!v) return lop_fail(LOP_ERR_OOM, "out of memory");
    v->dummy.cfg.vocab_size = 1 << 24;
    lop_status st = lop_map_file(path, &v->map);
    if (st == LOP_OK) st = lop_gguf_parse(path, v->map.data, v->map.size, &v->g);
    if (st == LOP_OK && !lop_gguf_find_kv(v->g, "tokenizer.ggml.model"))
        st = lop_fail(LOP_ERR_FORMAT, "%s: no tokenizer (metadata key 'tokenizer.ggml.model' missing)", path);
    if (st == LOP_OK) {
        loader L = {.m = &v->dummy, .g = v->g, .path = path};
        st = build_vocab(&L, &v->src, &v->b);
    }
    if (st != LOP_OK) {
        lop_gguf_vocab_close(v);
        return st;
    }
    *out = v;
    *src = &v->src;
    return LOP_OK;
}

lop_status lop_tokenizer_from_gguf(const char *path, lop_tokenizer **out) {
    lop_gguf_vocab *v;
    const lop_vocab_src *src;
    LOP_TRY(lop_gguf_vocab_open(path, &v, &src));
    lop_status st = lop_tokenizer_create(src, out);
    lop_gguf_vocab_close(v);
    return st;
}

/* ---- entry point -------------------------------------------------------------------------- */
lop_status lop_load_gguf(lop_model *m, const char *path, const lop_load_opts *o) {
    lop_load_opts def = {0};
    loader L = {.m = m, .path = path, .o = o ? o : &def};
    lop_mapped mp;
    LOP_TRY(lop_map_file(path, &mp));
    if (mp.data && lop_model_own(m, (void *)mp.data, mp.size, 1) != LOP_OK) {
        lop_unmap_file(&mp);
        return LOP_ERR_OOM;
    }
    lop_status st = lop_gguf_parse(path, mp.data, mp.size, &L.g);
    if (st == LOP_OK) st = read_hparams(&L);
    if (st == LOP_OK) st = load_tensors(&L);
    if (st == LOP_OK) st = lop_model_derive_shapes(m, path);
    if (st == LOP_OK && m->cfg.vocab_size <= 0) st = lop_fail(LOP_ERR_FORMAT, "%s: no vocabulary size", path);
    if (st == LOP_OK) {
        const lop_gguf_kv *vk = lop_gguf_find_kv(L.g, ARCH ".vocab_size");
        int64_t v;
        if (vk && lop_gguf_get_int(L.g, ARCH ".vocab_size", &v) == LOP_OK && v != m->cfg.vocab_size)
            st = lop_fail(LOP_ERR_FORMAT, "%s: metadata key '%s.vocab_size' = %lld but token_embd has %d rows", path,
                          ARCH, (long long)v, m->cfg.vocab_size);
    }
    if (st == LOP_OK) st = load_tokenizer(&L);
    if (st == LOP_OK) {
        summarise_types(&L);
        m->weights_loaded = !L.o->shapes_only;
    }
    free(L.n_head);
    free(L.n_head_kv);
    lop_gguf_close(L.g);
    return st;
}
