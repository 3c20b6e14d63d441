/* Internals shared by the trainer's forward (trainer.c), backward (backward.c) and primitive
 * backward operators (ops_bwd.c). Why private: the buffer layout is a detail of the CPU trainer. */
#ifndef LOP_TRAIN_TRAIN_INTERNAL_H
#define LOP_TRAIN_TRAIN_INTERNAL_H
#include <stdint.h>

#include "train/train.h"

/* fp32 views of one layer's weights, indexed by lop_layer_field (NULL = absent). */
typedef struct tr_layer {
    const float *w[LOP_LF_COUNT];
    float *inv_freq; /* [head_dim / 2], attention layers only */
} tr_layer;

/* Activations of one layer kept by the forward for the backward ([n_tokens] rows each). */
typedef struct tr_saved {
    float *x_attn;     /* [N][dim] residual entering the attention module */
    float *q, *k, *v;  /* [N][q_dim], [N][kv_dim] x 2: q and k after RoPE */
    float *att;        /* [N][q_dim] attention output (o_proj input) */
    float *x_ffn;      /* [N][dim] residual entering the FFN module */
    float *g, *u;      /* [N][ffn] gate and up projections (before SiLU) */
} tr_saved;

struct lop_trainer {
    lop_model *m;
    struct lop_cu_trainer *cu; /* the CUDA trainer when on that device: every call goes there */
    int n_threads, max_tokens, max_bwd;
    int max_qd, max_kvd, max_ffn; /* widest layer */
    tr_layer *L;
    const float *emb, *norm, *head;
    uint8_t *skip;
    void **owned;
    int n_owned, cap_owned;
    /* forward scratch [max_tokens] rows */
    float *xb, *q, *k, *v, *att, *g, *u;
    float *hbuf;   /* head chunk: logits [C][vocab], rows [C][dim], their gradient [C][dim] */
    float *scores; /* [n_threads][max_tokens] attention rows */
    /* backward: activations (allocated on first use) and scratch */
    tr_saved *saved;
    float *x_final;
    int have_bwd;
    float *dx, *dxb, *dq, *dk, *dv, *datt, *dg, *du, *dkh, *dvh, *dw;
    float *dvocab;  /* [vocab][dim] head / embedding gradient, when wanted */
    double *dnorm;  /* [dim] norm-weight gradient accumulator */
    float *bscratch; /* [n_threads][2][max_tokens] attention backward rows */
};

/* Token ids in [0, vocab) and a first scored position in 1..seq_len, else a clear error. */
lop_status tr_check_tokens(const lop_trainer *t, const int32_t *tokens, int64_t n);
lop_status tr_check_first(int first, int seq_len);
/* Allocation the trainer owns (freed with it); sets *st and returns NULL on failure. */
void *tr_alloc(lop_trainer *t, size_t bytes, const char *what, lop_status *st);
/* Sets the thread pool and OpenBLAS to the trainer's thread count (another engine may have
 * changed them). */
void tr_threads(lop_trainer *t);
/* Runs module `module` of layer l on x in place; saved != NULL keeps its activations. */
void tr_module_fwd(lop_trainer *t, int l, int module, float *x, int n_seq, int seq_len, tr_saved *saved);
/* Final RMSNorm of x, the head on the rows that predict a scored token, log-softmax and NLL.
 * With dxf != NULL (backward) dxf[n][dim] receives d(weight * NLL)/d(normed x) (zero on unscored
 * rows), and dvocab[vocab][dim] (when not NULL) += the head weight gradient. */
lop_status tr_head(lop_trainer *t, const float *x, const int32_t *tokens, int n_seq, int seq_len, int first,
                   double weight, float *dxf, float *dvocab, double *nll, int64_t *n_scored);

/* ---- primitive backward operators (ops_bwd.c) ------------------------------------------ */
/* y = w * x * r with r = 1/sqrt(mean(x^2) + eps): dx (=, or += when accumulate) from dy, and
 * dw[dim] += sum over rows of dy * x * r (dw may be NULL). */
void tr_rmsnorm_bwd(float *dx, double *dw, const float *x, const float *w, const float *dy, int n, int dim, float eps,
                    int accumulate);
/* dX (=, or += when beta = 1) dY[n][out] . W[out][in] */
void tr_linear_bwd_x(float *dX, float beta, const float *dY, const float *W, int n, int out, int in);
/* dW[out][in] = dY^T . X ; db[out] = column sums of dY (when db != NULL) */
void tr_linear_bwd_w(float *dW, const float *dY, const float *X, int n, int out, int in);
void tr_bias_bwd(float *db, const float *dY, int n, int out);
/* h = silu(g) * u: dg, du from dh (dg may alias dh) */
void tr_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n);

#endif
