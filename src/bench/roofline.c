/* Step cost model; see roofline.h. Norms, RoPE, softmax and activations are ignored: they add no
 * weight traffic and < 1 % of the FLOPs at the shapes benchmarked. */
#include "bench/roofline.h"

int64_t lop_linear_params(const lop_config *c) {
    int64_t p = (int64_t)c->vocab_size * c->dim; /* the head (tied or not) */
    for (int i = 0; i < c->n_layers; i++) {
        const lop_layer_shape *s = &c->layers[i];
        int64_t q = (int64_t)s->n_heads * s->head_dim, kv = (int64_t)s->n_kv_heads * s->head_dim;
        if (s->n_heads) p += (int64_t)c->dim * (2 * q + 2 * kv);
        p += 3LL * c->dim * s->ffn_dim;
    }
    return p;
}

/* K+V elements per token summed over layers, and attention FLOPs per (query, key) pair */
static void attn_dims(const lop_config *c, double *kv_elems, double *qk_flops_per_pair) {
    double kv = 0, f = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const lop_layer_shape *s = &c->layers[i];
        kv += 2.0 * s->n_kv_heads * s->head_dim;
        f += 4.0 * s->n_heads * s->head_dim; /* QK^T and PV: 2 FLOPs each per element */
    }
    *kv_elems = kv;
    *qk_flops_per_pair = f;
}

static double weight_bytes(const lop_config *c, int rows_gathered, const lop_cost_opts *o) {
    double w = (double)lop_linear_params(c) * o->weight_bytes;
    if (!c->tie_embeddings) w += (double)rows_gathered * c->dim * o->weight_bytes;
    /* norms: (2 per layer + final) x dim */
    w += (2.0 * c->n_layers + 1) * c->dim * o->weight_bytes;
    return w;
}

lop_cost lop_decode_cost(const lop_config *c, int batch, int ctx, const lop_cost_opts *o) {
    double kv, fp;
    attn_dims(c, &kv, &fp);
    lop_cost k;
    k.bytes = weight_bytes(c, batch, o) + (double)batch * kv * o->kv_bytes * (ctx + 1);
    k.flops = 2.0 * lop_linear_params(c) * batch + (double)batch * fp * (ctx + 1);
    return k;
}

lop_cost lop_prefill_cost(const lop_config *c, int batch, int n, const lop_cost_opts *o) {
    double kv, fp;
    attn_dims(c, &kv, &fp);
    lop_cost k;
    /* weights once; the new K/V written once; causal attention: n(n+1)/2 pairs */
    k.bytes = weight_bytes(c, batch * n, o) + (double)batch * n * kv * o->kv_bytes;
    /* the head runs only for the last position of each prompt */
    double head = 2.0 * c->vocab_size * c->dim;
    k.flops = (2.0 * lop_linear_params(c) - head) * batch * n + head * batch + (double)batch * fp * n * (n + 1) / 2.0;
    return k;
}

lop_cost lop_generation_cost(const lop_config *c, int batch, int prompt_len, int new_tokens, const lop_cost_opts *o) {
    lop_cost t = lop_prefill_cost(c, batch, prompt_len, o);
    for (int s = 0; s < new_tokens - 1; s++) {
        lop_cost d = lop_decode_cost(c, batch, prompt_len + s, o);
        t.bytes += d.bytes;
        t.flops += d.flops;
    }
    return t;
}
