/* float64 reference loss; see ref_double.h. */
#include "ref_double.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/ops.h"

struct dref {
    const lop_model *m;
    double *g[LOP_GF_COUNT];
    double **w; /* [n_layers][LOP_LF_COUNT] */
    float **inv_freq;
};

static double *dup(const lop_tensor *t) {
    if (!t->present) return NULL;
    int64_t n = lop_tensor_numel(t);
    double *d = malloc((size_t)n * sizeof(double));
    float *f = malloc((size_t)n * sizeof(float));
    lop_convert_to_f32(f, t->data, t->dtype, n);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

dref *dref_new(const lop_model *m) {
    dref *d = calloc(1, sizeof *d);
    int L = m->cfg.n_layers;
    d->m = m;
    d->g[LOP_GF_TOK_EMB] = dup(&m->w.tok_emb);
    d->g[LOP_GF_OUT_NORM] = dup(&m->w.out_norm);
    d->g[LOP_GF_LM_HEAD] = m->cfg.tie_embeddings ? NULL : dup(&m->w.lm_head);
    d->w = calloc((size_t)L * LOP_LF_COUNT, sizeof *d->w);
    d->inv_freq = calloc((size_t)L, sizeof *d->inv_freq);
    for (int l = 0; l < L; l++) {
        for (int f = 0; f < LOP_LF_COUNT; f++) d->w[l * LOP_LF_COUNT + f] = dup(lop_layer_tensor_c(&m->w.layers[l], f));
        int hd = m->cfg.layers[l].head_dim;
        d->inv_freq[l] = malloc((size_t)(hd / 2 + 1) * sizeof(float));
        lop_cpu_rope_inv_freq(d->inv_freq[l], hd, m->cfg.rope_theta, &m->cfg.rope_scaling);
    }
    return d;
}

void dref_free(dref *d) {
    if (!d) return;
    for (int i = 0; i < LOP_GF_COUNT; i++) free(d->g[i]);
    for (int i = 0; i < d->m->cfg.n_layers * LOP_LF_COUNT; i++) free(d->w[i]);
    for (int l = 0; l < d->m->cfg.n_layers; l++) free(d->inv_freq[l]);
    free(d->w);
    free(d->inv_freq);
    free(d);
}

double *dref_tensor(dref *d, lop_param_id id) {
    if (id.layer < 0) {
        if (id.field == LOP_GF_LM_HEAD && d->m->cfg.tie_embeddings) return d->g[LOP_GF_TOK_EMB];
        return d->g[id.field];
    }
    return d->w[id.layer * LOP_LF_COUNT + id.field];
}

static void rms(double *y, const double *x, const double *w, int D, double eps) {
    double ss = 0;
    for (int i = 0; i < D; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / D + eps);
    for (int i = 0; i < D; i++) y[i] = w[i] * x[i] * r;
}

/* y[T][out] = x[T][in] W^T + b */
static void lin(double *y, const double *x, const double *W, const double *b, int T, int out, int in) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int i = 0; i < in; i++) s += x[(int64_t)t * in + i] * W[(int64_t)o * in + i];
            y[(int64_t)t * out + o] = s;
        }
}

static void rope(double *v, int n_heads, int hd, int pos, const float *inv_freq) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < hd / 2; i++) {
            double a = pos * (double)inv_freq[i], c = cos(a), s = sin(a);
            double *p = v + h * hd, x0 = p[i], x1 = p[i + hd / 2];
            p[i] = x0 * c - x1 * s;
            p[i + hd / 2] = x1 * c + x0 * s;
        }
}

static void layers(const dref *d, double *x, int T, int l1, const uint8_t *skip) {
    const lop_config *c = &d->m->cfg;
    int D = c->dim;
    double *xn = malloc((size_t)T * D * sizeof(double)), *y = malloc((size_t)T * D * sizeof(double));
    for (int l = 0; l < l1; l++) {
        const lop_layer_shape *s = &c->layers[l];
        double *const *w = d->w + l * LOP_LF_COUNT;
        if (s->n_heads && !(skip && (skip[l] & LOP_SKIP_ATTN))) {
            int hd = s->head_dim, nh = s->n_heads, nkv = s->n_kv_heads, qd = nh * hd, kvd = nkv * hd;
            double *q = malloc((size_t)T * qd * sizeof(double)), *k = malloc((size_t)T * kvd * sizeof(double)),
                   *v = malloc((size_t)T * kvd * sizeof(double)), *o = calloc((size_t)T * qd, sizeof(double)),
                   *p = malloc((size_t)T * sizeof(double));
            for (int t = 0; t < T; t++) rms(xn + t * D, x + t * D, w[LOP_LF_attn_norm], D, c->norm_eps);
            lin(q, xn, w[LOP_LF_wq], w[LOP_LF_bq], T, qd, D);
            lin(k, xn, w[LOP_LF_wk], w[LOP_LF_bk], T, kvd, D);
            lin(v, xn, w[LOP_LF_wv], w[LOP_LF_bv], T, kvd, D);
            for (int t = 0; t < T; t++) {
                rope(q + t * qd, nh, hd, t, d->inv_freq[l]);
                rope(k + t * kvd, nkv, hd, t, d->inv_freq[l]);
            }
            for (int h = 0; h < nh; h++) {
                int kh = h / (nh / nkv);
                for (int t = 0; t < T; t++) {
                    double mx = -INFINITY, z = 0;
                    for (int u = 0; u <= t; u++) {
                        double s2 = 0;
                        for (int i = 0; i < hd; i++) s2 += q[t * qd + h * hd + i] * k[u * kvd + kh * hd + i];
                        p[u] = s2 / sqrt((double)hd);
                        if (p[u] > mx) mx = p[u];
                    }
                    for (int u = 0; u <= t; u++) z += p[u] = exp(p[u] - mx);
                    for (int u = 0; u <= t; u++)
                        for (int i = 0; i < hd; i++) o[t * qd + h * hd + i] += p[u] / z * v[u * kvd + kh * hd + i];
                }
            }
            lin(y, o, w[LOP_LF_wo], w[LOP_LF_bo], T, D, qd);
            for (int i = 0; i < T * D; i++) x[i] += y[i];
            free(q), free(k), free(v), free(o), free(p);
        }
        if (s->ffn_dim && !(skip && (skip[l] & LOP_SKIP_FFN))) {
            int F = s->ffn_dim;
            double *g = malloc((size_t)T * F * sizeof(double)), *u = malloc((size_t)T * F * sizeof(double));
            for (int t = 0; t < T; t++) rms(xn + t * D, x + t * D, w[LOP_LF_ffn_norm], D, c->norm_eps);
            lin(g, xn, w[LOP_LF_w_gate], w[LOP_LF_b_gate], T, F, D);
            lin(u, xn, w[LOP_LF_w_up], w[LOP_LF_b_up], T, F, D);
            for (int i = 0; i < T * F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            lin(y, g, w[LOP_LF_w_down], w[LOP_LF_b_down], T, D, F);
            for (int i = 0; i < T * D; i++) x[i] += y[i];
            free(g), free(u);
        }
    }
    free(xn);
    free(y);
}

void dref_hidden(const dref *d, const int32_t *tokens, int T, int l1, const uint8_t *skip, double *x) {
    int D = d->m->cfg.dim;
    for (int t = 0; t < T; t++) memcpy(x + t * D, d->g[LOP_GF_TOK_EMB] + (int64_t)tokens[t] * D, D * sizeof(double));
    layers(d, x, T, l1, skip);
}

double dref_loss(const dref *d, const int32_t *tokens, int n_seq, int T, int first, const uint8_t *skip) {
    const lop_config *c = &d->m->cfg;
    int D = c->dim, V = c->vocab_size;
    const double *head = c->tie_embeddings ? d->g[LOP_GF_TOK_EMB] : d->g[LOP_GF_LM_HEAD];
    double *x = malloc((size_t)T * D * sizeof(double)), *xn = malloc((size_t)D * sizeof(double)),
           *lg = malloc((size_t)V * sizeof(double));
    double loss = 0;
    for (int s = 0; s < n_seq; s++) {
        const int32_t *tok = tokens + (int64_t)s * T;
        dref_hidden(d, tok, T, c->n_layers, skip, x);
        for (int t = first - 1; t < T - 1; t++) {
            rms(xn, x + t * D, d->g[LOP_GF_OUT_NORM], D, c->norm_eps);
            lin(lg, xn, head, NULL, 1, V, D);
            double mx = -INFINITY, z = 0;
            for (int k = 0; k < V; k++)
                if (lg[k] > mx) mx = lg[k];
            for (int k = 0; k < V; k++) z += exp(lg[k] - mx);
            loss += mx + log(z) - lg[tok[t + 1]];
        }
    }
    free(x), free(xn), free(lg);
    return loss;
}
