/* Model bookkeeping: ownership of buffers and mappings, per-layer shape derivation and validation,
 * parameter counts, dtype conversion, and the public lop_model_* entry points. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/half.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"

size_t lop_dtype_size(lop_dtype t) { return t == LOP_F32 ? 4 : 2; }

const char *lop_dtype_name(lop_dtype t) {
    switch (t) {
    case LOP_F32: return "F32";
    case LOP_F16: return "F16";
    case LOP_BF16: return "BF16";
    }
    return "?";
}

lop_status lop_model_own(lop_model *m, void *ptr, size_t size, int is_map) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        lop_owned *o = realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) return lop_fail(LOP_ERR_OOM, "out of memory (model bookkeeping)");
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = (lop_owned){ptr, size, is_map};
    return LOP_OK;
}

void *lop_model_malloc(lop_model *m, size_t size, const char *what) {
    void *p = malloc(size ? size : 1);
    if (!p) {
        lop_fail(LOP_ERR_OOM, "out of memory allocating %zu bytes for %s", size, what);
        return NULL;
    }
    if (lop_model_own(m, p, size, 0) != LOP_OK) {
        free(p);
        return NULL;
    }
    return p;
}

lop_status lop_model_alloc_layers(lop_model *m, int n_layers) {
    if (n_layers <= 0 || n_layers > 100000) return lop_fail(LOP_ERR_FORMAT, "bad number of layers %d", n_layers);
    m->cfg.n_layers = n_layers;
    m->cfg.layers = calloc((size_t)n_layers, sizeof *m->cfg.layers);
    m->w.layers = calloc((size_t)n_layers, sizeof *m->w.layers);
    if (!m->cfg.layers || !m->w.layers) return lop_fail(LOP_ERR_OOM, "out of memory (layers)");
    return LOP_OK;
}

lop_status lop_model_new_view(const lop_model *src, int n_layers, lop_model **out) {
    *out = NULL;
    lop_model *m = calloc(1, sizeof *m);
    if (!m) return lop_fail(LOP_ERR_OOM, "out of memory");
    m->source = strdup(src->source);
    m->format = strdup(src->format);
    m->cfg = src->cfg;
    m->cfg.layers = NULL;
    m->w = src->w;
    m->w.layers = NULL;
    m->weights_loaded = 1;
    lop_status st = m->source && m->format ? lop_model_alloc_layers(m, n_layers) : lop_fail(LOP_ERR_OOM, "out of memory");
    if (st != LOP_OK) {
        lop_model_free(m);
        return st;
    }
    *out = m;
    return LOP_OK;
}

void lop_model_free(lop_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) {
        if (m->owned[i].is_map)
            munmap(m->owned[i].ptr, m->owned[i].size);
        else
            free(m->owned[i].ptr);
    }
    free(m->owned);
    if (m->tok) lop_tokenizer_free(m->tok);
    free(m->cfg.layers);
    free(m->w.layers);
    free(m->source);
    free(m->format);
    free(m);
}

/* ---- shapes ------------------------------------------------------------------------------- */
static lop_status check_shape(const char *file, int layer, const char *name, const lop_tensor *t, int ndim,
                              int64_t d0, int64_t d1) {
    if (!t->present) {
        if (layer >= 0) return lop_fail(LOP_ERR_FORMAT, "%s: missing tensor 'model.layers.%d.%s'", file, layer, name);
        return lop_fail(LOP_ERR_FORMAT, "%s: missing tensor '%s'", file, name);
    }
    int ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (!ok) {
        char got[64], want[64];
        if (t->ndim == 2) snprintf(got, sizeof got, "[%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
        else snprintf(got, sizeof got, "[%lld]", (long long)t->shape[0]);
        if (ndim == 2) snprintf(want, sizeof want, "[%lld, %lld]", (long long)d0, (long long)d1);
        else snprintf(want, sizeof want, "[%lld]", (long long)d0);
        if (layer >= 0)
            return lop_fail(LOP_ERR_FORMAT, "%s: tensor 'model.layers.%d.%s' has shape %s, expected %s", file, layer,
                            name, got, want);
        return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", file, name, got, want);
    }
    return LOP_OK;
}

static lop_status check_absent(const char *file, int layer, const char *name, const lop_tensor *t, const char *why) {
    if (t->present)
        return lop_fail(LOP_ERR_FORMAT, "%s: tensor 'model.layers.%d.%s' present but %s", file, layer, name, why);
    return LOP_OK;
}

lop_status lop_model_derive_shapes(lop_model *m, const char *file) {
    lop_config *c = &m->cfg;
    lop_weights *w = &m->w;
    if (!w->tok_emb.present) return lop_fail(LOP_ERR_FORMAT, "%s: missing tensor 'model.embed_tokens.weight'", file);
    if (w->tok_emb.ndim != 2)
        return lop_fail(LOP_ERR_FORMAT, "%s: tensor 'model.embed_tokens.weight' must be 2-D", file);
    int64_t vocab = w->tok_emb.shape[0], dim = w->tok_emb.shape[1];
    if (c->dim && c->dim != dim)
        return lop_fail(LOP_ERR_FORMAT, "%s: hidden_size %d does not match embed_tokens width %lld", file, c->dim,
                        (long long)dim);
    if (vocab <= 0 || dim <= 0 || vocab > (1 << 24) || dim > (1 << 20))
        return lop_fail(LOP_ERR_FORMAT, "%s: implausible embed_tokens shape [%lld, %lld]", file, (long long)vocab,
                        (long long)dim);
    c->dim = (int)dim;
    c->vocab_size = (int)vocab;
    LOP_TRY(check_shape(file, -1, "model.norm.weight", &w->out_norm, 1, dim, 1));
    if (c->tie_embeddings) {
        if (w->lm_head.present) c->tie_embeddings = 0; /* an explicit head wins */
    }
    if (!c->tie_embeddings) {
        if (!w->lm_head.present)
            return lop_fail(LOP_ERR_FORMAT, "%s: missing tensor 'lm_head.weight' (and tie_word_embeddings is false)",
                            file);
        LOP_TRY(check_shape(file, -1, "lm_head.weight", &w->lm_head, 2, vocab, dim));
    }
    int def_hd = c->head_dim > 0 ? c->head_dim : (c->n_heads > 0 ? c->dim / c->n_heads : 0);
    for (int i = 0; i < c->n_layers; i++) {
        lop_layer_shape *s = &c->layers[i];
        lop_layer_weights *L = &w->layers[i];
        /* attention */
        if (L->wq.present) {
            int hd = s->head_dim > 0 ? s->head_dim : def_hd;
            if (hd <= 0) return lop_fail(LOP_ERR_FORMAT, "%s: cannot tell head_dim (set head_dim or num_attention_heads)", file);
            if (L->wq.ndim != 2 || L->wq.shape[0] % hd != 0)
                return lop_fail(LOP_ERR_FORMAT, "%s: tensor 'model.layers.%d.self_attn.q_proj.weight' rows %lld not a multiple of head_dim %d",
                                file, i, (long long)L->wq.shape[0], hd);
            if (!L->wk.present)
                return lop_fail(LOP_ERR_FORMAT, "%s: missing tensor 'model.layers.%d.self_attn.k_proj.weight'", file, i);
            if (L->wk.ndim != 2 || L->wk.shape[0] % hd != 0 || L->wk.shape[0] == 0)
                return lop_fail(LOP_ERR_FORMAT, "%s: tensor 'model.layers.%d.self_attn.k_proj.weight' rows %lld not a multiple of head_dim %d",
                                file, i, (long long)L->wk.shape[0], hd);
            int nh = (int)(L->wq.shape[0] / hd), nkv = (int)(L->wk.shape[0] / hd);
            if (nh == 0 || nh % nkv != 0)
                return lop_fail(LOP_ERR_FORMAT, "%s: layer %d: %d query heads not a multiple of %d key/value heads", file, i, nh, nkv);
            int64_t q = (int64_t)nh * hd, kv = (int64_t)nkv * hd;
            LOP_TRY(check_shape(file, i, "self_attn.q_proj.weight", &L->wq, 2, q, dim));
            LOP_TRY(check_shape(file, i, "self_attn.k_proj.weight", &L->wk, 2, kv, dim));
            LOP_TRY(check_shape(file, i, "self_attn.v_proj.weight", &L->wv, 2, kv, dim));
            LOP_TRY(check_shape(file, i, "self_attn.o_proj.weight", &L->wo, 2, dim, q));
            LOP_TRY(check_shape(file, i, "input_layernorm.weight", &L->attn_norm, 1, dim, 1));
            if (L->bq.present) LOP_TRY(check_shape(file, i, "self_attn.q_proj.bias", &L->bq, 1, q, 1));
            if (L->bk.present) LOP_TRY(check_shape(file, i, "self_attn.k_proj.bias", &L->bk, 1, kv, 1));
            if (L->bv.present) LOP_TRY(check_shape(file, i, "self_attn.v_proj.bias", &L->bv, 1, kv, 1));
            if (L->bo.present) LOP_TRY(check_shape(file, i, "self_attn.o_proj.bias", &L->bo, 1, dim, 1));
            s->n_heads = nh;
            s->n_kv_heads = nkv;
            s->head_dim = hd;
        } else {
            const char *why = "the layer has no q_proj (attention removed)";
            LOP_TRY(check_absent(file, i, "input_layernorm.weight", &L->attn_norm, why));
            LOP_TRY(check_absent(file, i, "self_attn.k_proj.weight", &L->wk, why));
            LOP_TRY(check_absent(file, i, "self_attn.v_proj.weight", &L->wv, why));
            LOP_TRY(check_absent(file, i, "self_attn.o_proj.weight", &L->wo, why));
            LOP_TRY(check_absent(file, i, "self_attn.q_proj.bias", &L->bq, why));
            LOP_TRY(check_absent(file, i, "self_attn.k_proj.bias", &L->bk, why));
            LOP_TRY(check_absent(file, i, "self_attn.v_proj.bias", &L->bv, why));
            LOP_TRY(check_absent(file, i, "self_attn.o_proj.bias", &L->bo, why));
            s->n_heads = s->n_kv_heads = 0;
            if (s->head_dim <= 0) s->head_dim = def_hd;
        }
        /* FFN */
        if (L->w_gate.present) {
            if (L->w_gate.ndim != 2 || L->w_gate.shape[0] <= 0)
                return lop_fail(LOP_ERR_FORMAT, "%s: tensor 'model.layers.%d.mlp.gate_proj.weight' must be 2-D", file, i);
            int64_t f = L->w_gate.shape[0];
            LOP_TRY(check_shape(file, i, "mlp.gate_proj.weight", &L->w_gate, 2, f, dim));
            LOP_TRY(check_shape(file, i, "mlp.up_proj.weight", &L->w_up, 2, f, dim));
            LOP_TRY(check_shape(file, i, "mlp.down_proj.weight", &L->w_down, 2, dim, f));
            LOP_TRY(check_shape(file, i, "post_attention_layernorm.weight", &L->ffn_norm, 1, dim, 1));
            if (L->b_gate.present) LOP_TRY(check_shape(file, i, "mlp.gate_proj.bias", &L->b_gate, 1, f, 1));
            if (L->b_up.present) LOP_TRY(check_shape(file, i, "mlp.up_proj.bias", &L->b_up, 1, f, 1));
            if (L->b_down.present) LOP_TRY(check_shape(file, i, "mlp.down_proj.bias", &L->b_down, 1, dim, 1));
            s->ffn_dim = (int)f;
        } else {
            const char *why = "the layer has no gate_proj (FFN removed)";
            LOP_TRY(check_absent(file, i, "post_attention_layernorm.weight", &L->ffn_norm, why));
            LOP_TRY(check_absent(file, i, "mlp.up_proj.weight", &L->w_up, why));
            LOP_TRY(check_absent(file, i, "mlp.down_proj.weight", &L->w_down, why));
            LOP_TRY(check_absent(file, i, "mlp.gate_proj.bias", &L->b_gate, why));
            LOP_TRY(check_absent(file, i, "mlp.up_proj.bias", &L->b_up, why));
            LOP_TRY(check_absent(file, i, "mlp.down_proj.bias", &L->b_down, why));
            s->ffn_dim = 0;
        }
    }
    if (c->n_heads <= 0 || c->n_kv_heads <= 0 || c->ffn_dim <= 0 || c->head_dim <= 0) {
        /* defaults from the first full layer when config.json did not give them */
        for (int i = 0; i < c->n_layers; i++) {
            if (c->layers[i].n_heads && c->n_heads <= 0) c->n_heads = c->layers[i].n_heads;
            if (c->layers[i].n_kv_heads && c->n_kv_heads <= 0) c->n_kv_heads = c->layers[i].n_kv_heads;
            if (c->layers[i].ffn_dim && c->ffn_dim <= 0) c->ffn_dim = c->layers[i].ffn_dim;
            if (c->layers[i].n_heads && c->head_dim <= 0) c->head_dim = c->layers[i].head_dim;
        }
    }
    if (c->head_dim <= 0) c->head_dim = def_hd;
    if (c->norm_eps <= 0) c->norm_eps = 1e-6f;
    if (c->rope_theta <= 0) c->rope_theta = 10000.0f;
    if (c->max_seq_len <= 0) c->max_seq_len = 2048;
    return LOP_OK;
}

int64_t lop_layer_n_params(const lop_model *m, int i) {
    const lop_layer_weights *L = &m->w.layers[i];
    int64_t n = 0;
#define X(f, name) n += lop_tensor_numel(&L->f);
    LOP_LAYER_TENSORS(X)
#undef X
    return n;
}

int64_t lop_model_n_params(const lop_model *m) {
    int64_t n = lop_tensor_numel(&m->w.tok_emb) + lop_tensor_numel(&m->w.out_norm);
    if (!m->cfg.tie_embeddings) n += lop_tensor_numel(&m->w.lm_head);
    for (int i = 0; i < m->cfg.n_layers; i++) n += lop_layer_n_params(m, i);
    return n;
}

/* ---- tensors by field ---------------------------------------------------------------------- */
lop_tensor *lop_layer_tensor(lop_layer_weights *L, int field) {
    switch (field) {
#define X(f, name)                                                                                                     \
    case LOP_LF_##f: return &L->f;
        LOP_LAYER_TENSORS(X)
#undef X
    }
    return NULL;
}

const lop_tensor *lop_layer_tensor_c(const lop_layer_weights *L, int field) {
    return lop_layer_tensor((lop_layer_weights *)L, field);
}

const char *lop_layer_field_name(int field) {
    static const char *const names[] = {
#define X(f, name) name,
        LOP_LAYER_TENSORS(X)
#undef X
    };
    return field >= 0 && field < LOP_LF_COUNT ? names[field] : "?";
}

/* ---- dtype conversion --------------------------------------------------------------------- */
void lop_convert_to_f32(float *dst, const void *src, lop_dtype t, int64_t n) {
    const uint16_t *h = src;
    if (t == LOP_F32) memcpy(dst, src, (size_t)n * sizeof(float));
    else if (t == LOP_F16)
        for (int64_t i = 0; i < n; i++) dst[i] = lop_f16_to_f32(h[i]);
    else
        for (int64_t i = 0; i < n; i++) dst[i] = lop_bf16_to_f32(h[i]);
}

/* ---- public entry points ------------------------------------------------------------------ */
void lop_model_get_info(const lop_model *m, lop_model_info *info) {
    memset(info, 0, sizeof *info);
    info->n_layers = m->cfg.n_layers;
    info->dim = m->cfg.dim;
    info->vocab_size = m->cfg.vocab_size;
    info->max_seq_len = m->cfg.max_seq_len;
    info->tie_embeddings = m->cfg.tie_embeddings;
    info->n_params = lop_model_n_params(m);
    int64_t kv = 0;
    for (int i = 0; i < m->cfg.n_layers; i++)
        kv += 2LL * m->cfg.layers[i].n_kv_heads * m->cfg.layers[i].head_dim * 2;
    info->kv_bytes_per_token_f16 = kv;
}

lop_status lop_model_encode(const lop_model *m, const char *text, size_t len, int add_bos, int32_t **ids,
                            int *n_ids) {
    if (!m->tok) return lop_fail(LOP_ERR_UNSUPPORTED, "%s: model has no tokenizer", m->source);
    return lop_tokenizer_encode(m->tok, text, len, add_bos, ids, n_ids);
}

lop_status lop_model_decode(const lop_model *m, const int32_t *ids, int n_ids, char **text) {
    if (!m->tok) return lop_fail(LOP_ERR_UNSUPPORTED, "%s: model has no tokenizer", m->source);
    return lop_tokenizer_decode(m->tok, ids, n_ids, text);
}
