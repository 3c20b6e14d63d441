/* Parameter ids and the two standard gradient sinks: the W * dL/dW accumulator (Taylor importance)
 * and the full-gradient store (tests, finite differences, LoRA-style consumers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "train/train.h"

const lop_tensor *lop_param_tensor(const lop_model *m, lop_param_id id) {
    if (id.layer < 0) {
        switch (id.field) {
        case LOP_GF_TOK_EMB: return &m->w.tok_emb;
        case LOP_GF_OUT_NORM: return &m->w.out_norm;
        case LOP_GF_LM_HEAD: return m->cfg.tie_embeddings ? &m->w.tok_emb : &m->w.lm_head;
        }
        return NULL;
    }
    if (id.layer >= m->cfg.n_layers || id.field < 0 || id.field >= LOP_LF_COUNT) return NULL;
    return lop_layer_tensor_c(&m->w.layers[id.layer], id.field);
}

const char *lop_param_name(lop_param_id id, char *buf, int cap) {
    static const char *const global[] = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
    if (id.layer < 0) snprintf(buf, (size_t)cap, "%s", id.field >= 0 && id.field < LOP_GF_COUNT ? global[id.field] : "?");
    else snprintf(buf, (size_t)cap, "model.layers.%d.%s", id.layer, lop_layer_field_name(id.field));
    return buf;
}

/* ---- sum of W * dL/dW ------------------------------------------------------------------- */
int64_t lop_wgrad_acc_len(const lop_model *m) { return (int64_t)m->cfg.n_layers * LOP_LF_COUNT + LOP_GF_COUNT; }

int64_t lop_wgrad_index(int n_layers, lop_param_id id) {
    return id.layer < 0 ? (int64_t)n_layers * LOP_LF_COUNT + id.field : (int64_t)id.layer * LOP_LF_COUNT + id.field;
}

static int wgrad_wants(void *user, lop_param_id id) {
    const lop_wgrad *w = user;
    return id.layer >= 0 || w->with_global;
}

static void wgrad_grad(void *user, lop_param_id id, const float *wt, const float *g, int64_t n) {
    lop_wgrad *w = user;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)wt[i] * g[i];
    w->acc[lop_wgrad_index(w->n_layers, id)] += s;
}

lop_grad_sink lop_wgrad_sink(lop_wgrad *w) { return (lop_grad_sink){.wants = wgrad_wants, .grad = wgrad_grad, .user = w, .wgrad = w}; }

double lop_wgrad_get(const lop_wgrad *w, lop_param_id id) { return w->acc[lop_wgrad_index(w->n_layers, id)]; }

/* ---- full gradients --------------------------------------------------------------------- */
struct lop_grad_store {
    const lop_model *m;
    float **g;   /* [n_layers * LOP_LF_COUNT + LOP_GF_COUNT], NULL until received */
    int64_t *n;
    lop_status st; /* first allocation failure */
};

lop_status lop_grad_store_new(const lop_model *m, lop_grad_store **out) {
    *out = NULL;
    lop_grad_store *s = calloc(1, sizeof *s);
    int64_t len = lop_wgrad_acc_len(m);
    if (s) {
        s->g = calloc((size_t)len, sizeof *s->g);
        s->n = calloc((size_t)len, sizeof *s->n);
    }
    if (!s || !s->g || !s->n) {
        lop_grad_store_free(s);
        return lop_fail(LOP_ERR_OOM, "out of memory (gradient store)");
    }
    s->m = m;
    *out = s;
    return LOP_OK;
}

void lop_grad_store_free(lop_grad_store *s) {
    if (!s) return;
    if (s->g)
        for (int64_t i = 0; i < lop_wgrad_acc_len(s->m); i++) free(s->g[i]);
    free(s->g);
    free(s->n);
    free(s);
}

static void store_grad(void *user, lop_param_id id, const float *w, const float *g, int64_t n) {
    (void)w;
    lop_grad_store *s = user;
    int64_t k = lop_wgrad_index(s->m->cfg.n_layers, id);
    if (!s->g[k]) { /* the first gradient of a tensor is copied, later ones added */
        s->g[k] = malloc((size_t)n * sizeof(float));
        if (!s->g[k]) {
            if (s->st == LOP_OK) s->st = lop_fail(LOP_ERR_OOM, "out of memory (gradient store)");
            return;
        }
        s->n[k] = n;
        memcpy(s->g[k], g, (size_t)n * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < n; i++) s->g[k][i] += g[i];
}

lop_grad_sink lop_grad_store_sink(lop_grad_store *s) { return (lop_grad_sink){.grad = store_grad, .user = s}; }

const float *lop_grad_store_get(const lop_grad_store *s, lop_param_id id) {
    if (id.layer >= s->m->cfg.n_layers || id.field < 0) return NULL;
    return s->g[lop_wgrad_index(s->m->cfg.n_layers, id)];
}
