/* Depth-pruning criteria; see criteria.h. All model evaluation goes through the trainer
 * (src/train): its forward pieces let PPL start from a cached block input, and its backward gives
 * the Taylor sums without keeping any gradient.
 *
 * PPL cost: with the input of block n cached (it is the same hidden state the full model has
 * there), "remove block n" only runs blocks n+1..N-1 and the head, so the N evaluations cost
 * N(N+1)/2 block passes + N heads instead of N^2 block passes: about half. The cache is rolling:
 * one hidden state x advances block by block, a copy y runs the rest of the model without block n. */
#include "prune/criteria.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "train/train.h"

static const char *const CRIT_NAMES[LOP_CRIT_COUNT] = {"magnitude", "taylor", "ppl", "bi"};
static const char *const UNIT_NAMES[3] = {"block", "attn", "ffn"};

const char *lop_criterion_name(lop_criterion c) { return c >= 0 && c < LOP_CRIT_COUNT ? CRIT_NAMES[c] : "?"; }
const char *lop_unit_name(lop_unit u) { return u >= 0 && u <= LOP_UNIT_FFN ? UNIT_NAMES[u] : "?"; }

lop_status lop_criterion_parse(const char *s, lop_criterion *out) {
    for (int i = 0; i < LOP_CRIT_COUNT; i++)
        if (s && !strcmp(s, CRIT_NAMES[i])) {
            *out = (lop_criterion)i;
            return LOP_OK;
        }
    return lop_fail(LOP_ERR_ARG, "unknown criterion '%s' (expected magnitude, taylor, ppl or bi)", s ? s : "");
}

lop_status lop_unit_parse(const char *s, lop_unit *out) {
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, UNIT_NAMES[i])) {
            *out = (lop_unit)i;
            return LOP_OK;
        }
    return lop_fail(LOP_ERR_ARG, "unknown unit '%s' (expected block, attn or ffn)", s ? s : "");
}

uint8_t lop_unit_bits(lop_unit u) {
    return u == LOP_UNIT_ATTN ? LOP_SKIP_ATTN : u == LOP_UNIT_FFN ? LOP_SKIP_FFN : LOP_SKIP_ATTN | LOP_SKIP_FFN;
}

/* the modules of layer l that exist and are not removed */
static uint8_t live_modules(const lop_model *m, int l, const uint8_t *removed) {
    uint8_t b = (m->cfg.layers[l].n_heads ? LOP_SKIP_ATTN : 0) | (m->cfg.layers[l].ffn_dim ? LOP_SKIP_FFN : 0);
    return removed ? (uint8_t)(b & ~removed[l]) : b;
}

int lop_unit_exists(const lop_model *m, lop_unit u, int layer, const uint8_t *removed) {
    return (live_modules(m, layer, removed) & lop_unit_bits(u)) != 0;
}

static int field_in(int field, uint8_t bits) {
    return (bits & (field < LOP_LF_N_ATTN ? LOP_SKIP_ATTN : LOP_SKIP_FFN)) != 0;
}

int64_t lop_unit_n_params(const lop_model *m, lop_unit u, int layer, const uint8_t *removed) {
    uint8_t bits = live_modules(m, layer, removed) & lop_unit_bits(u);
    int64_t n = 0;
    for (int f = 0; f < LOP_LF_COUNT; f++)
        if (field_in(f, bits)) n += lop_tensor_numel(lop_layer_tensor_c(&m->w.layers[layer], f));
    return n;
}

/* ---- scorer ----------------------------------------------------------------------------- */
struct lop_scorer {
    lop_model *m;
    const lop_calib *cal;
    lop_trainer *t;
    int bwd_samples, fwd_samples; /* samples per backward / forward call */
    float *x, *y;                 /* [fwd_samples * seq_len][dim] */
};

lop_status lop_scorer_new(lop_model *m, const lop_calib *cal, const lop_scorer_opts *o, lop_scorer **out) {
    *out = NULL;
    lop_scorer_opts def = {0};
    if (!o) o = &def;
    for (int64_t i = 0; i < (int64_t)cal->n_samples * cal->seq_len; i++)
        if (cal->tokens[i] < 0 || cal->tokens[i] >= m->cfg.vocab_size)
            return lop_fail(LOP_ERR_ARG, "calibration token %d out of range (vocab %d)", cal->tokens[i], m->cfg.vocab_size);
    lop_scorer *s = calloc(1, sizeof *s);
    if (!s) return lop_fail(LOP_ERR_OOM, "out of memory");
    s->m = m;
    s->cal = cal;
    int bwd_default = o->device == LOP_DEVICE_CUDA ? cal->n_samples : 512 / cal->seq_len > 0 ? 512 / cal->seq_len : 1;
    s->bwd_samples = o->bwd_samples > 0 ? o->bwd_samples : bwd_default;
    if (s->bwd_samples > cal->n_samples) s->bwd_samples = cal->n_samples;
    s->fwd_samples = o->fwd_samples > 0 ? o->fwd_samples : (4096 / cal->seq_len > 0 ? 4096 / cal->seq_len : 1);
    if (s->fwd_samples < s->bwd_samples) s->fwd_samples = s->bwd_samples;
    if (s->fwd_samples > cal->n_samples) s->fwd_samples = cal->n_samples;
    int total = s->fwd_samples * cal->seq_len;
    lop_trainer_opts to = {.max_tokens = total, .max_bwd_tokens = s->bwd_samples * cal->seq_len, .n_threads = o->n_threads,
                           .device = o->device};
    lop_status st = lop_trainer_create(m, &to, &s->t);
    size_t bytes = (size_t)total * m->cfg.dim * sizeof(float);
    if (st == LOP_OK) {
        s->x = malloc(bytes);
        s->y = malloc(bytes);
        if (!s->x || !s->y) st = lop_fail(LOP_ERR_OOM, "out of memory: hidden states of the calibration set");
    }
    if (st != LOP_OK) {
        lop_scorer_free(s);
        return st;
    }
    *out = s;
    return LOP_OK;
}

void lop_scorer_free(lop_scorer *s) {
    if (!s) return;
    lop_trainer_free(s->t);
    free(s->x);
    free(s->y);
    free(s);
}

/* ---- magnitude -------------------------------------------------------------------------- */
void lop_magnitude_scores(const lop_model *m, lop_unit u, const uint8_t *removed, double *scores) {
    float buf[4096];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        uint8_t bits = live_modules(m, l, removed) & lop_unit_bits(u);
        double sum = 0;
        for (int f = 0; f < LOP_LF_COUNT; f++) {
            const lop_tensor *t = lop_layer_tensor_c(&m->w.layers[l], f);
            if (!field_in(f, bits) || !t->present) continue;
            int64_t n = lop_tensor_numel(t);
            size_t es = lop_dtype_size(t->dtype);
            for (int64_t i = 0; i < n; i += 4096) { /* widen in chunks: works for any stored dtype */
                int64_t k = n - i < 4096 ? n - i : 4096;
                lop_convert_to_f32(buf, (const char *)t->data + i * es, t->dtype, k);
                for (int64_t j = 0; j < k; j++) sum += fabs(buf[j]);
            }
        }
        scores[l] = bits ? sum : NAN;
    }
}

/* ---- taylor ----------------------------------------------------------------------------- */
static lop_status taylor(lop_scorer *s, lop_unit u, const uint8_t *removed, double *scores, double *loss,
                         lop_progress *p) {
    const lop_model *m = s->m;
    const lop_calib *c = s->cal;
    int64_t len = lop_wgrad_acc_len(m);
    double *acc = calloc((size_t)len, sizeof(double));
    if (!acc) return lop_fail(LOP_ERR_OOM, "out of memory");
    lop_wgrad wg = {acc, m->cfg.n_layers, 0};
    lop_grad_sink sink = lop_wgrad_sink(&wg);
    double weight = 1.0 / ((double)c->n_samples * (c->seq_len - 1)), nll_sum = 0;
    lop_status st = LOP_OK;
    lop_progress_total(p, c->n_samples);
    for (int k = 0; k < c->n_samples && st == LOP_OK; k += s->bwd_samples) {
        int n = c->n_samples - k < s->bwd_samples ? c->n_samples - k : s->bwd_samples;
        double nll;
        st = lop_trainer_backward(s->t, c->tokens + (size_t)k * c->seq_len, n, c->seq_len, 1, weight, &sink, &nll, NULL);
        nll_sum += nll;
        lop_progress_set(p, k + n);
    }
    for (int l = 0; st == LOP_OK && l < m->cfg.n_layers; l++) {
        uint8_t bits = live_modules(m, l, removed) & lop_unit_bits(u);
        double sum = 0;
        for (int f = 0; f < LOP_LF_COUNT; f++)
            if (field_in(f, bits)) sum += acc[(int64_t)l * LOP_LF_COUNT + f];
        scores[l] = bits ? fabs(sum) : NAN;
    }
    *loss = nll_sum * weight;
    free(acc);
    return st;
}

/* ---- forward groups --------------------------------------------------------------------- */
/* PPL and BI run the calibration set in groups of samples (fwd_samples at a time, <= 4096 tokens)
 * so memory does not grow with the calibration size; per-unit sums accumulate over groups. */
typedef struct group {
    const int32_t *tokens;
    int n_seq, seq_len;
} group;

static lop_status run_modules(lop_scorer *s, const group *g, int l, uint8_t bits, float *x) {
    if (bits & LOP_SKIP_ATTN) LOP_TRY(lop_trainer_module(s->t, l, LOP_SKIP_ATTN, x, g->n_seq, g->seq_len));
    if (bits & LOP_SKIP_FFN) LOP_TRY(lop_trainer_module(s->t, l, LOP_SKIP_FFN, x, g->n_seq, g->seq_len));
    return LOP_OK;
}

/* adds the group's summed NLL to *nll */
static lop_status head_nll(lop_scorer *s, const group *g, const float *x, double *nll) {
    double v;
    LOP_TRY(lop_trainer_head_nll(s->t, x, g->tokens, g->n_seq, g->seq_len, 1, &v, NULL));
    *nll += v;
    return LOP_OK;
}

/* ---- ppl -------------------------------------------------------------------------------- */
static lop_status ppl_group(lop_scorer *s, const group *g, lop_unit u, const uint8_t *removed, double *nll,
                            double *base, lop_progress *p, int64_t *done) {
    const lop_model *m = s->m;
    int N = m->cfg.n_layers, ntok = g->n_seq * g->seq_len;
    size_t bytes = (size_t)ntok * m->cfg.dim * sizeof(float);
    LOP_TRY(lop_trainer_embed(s->t, g->tokens, ntok, s->x));
    for (int l = 0; l < N; l++) {
        uint8_t live = live_modules(m, l, removed);
        if (live & lop_unit_bits(u)) {
            memcpy(s->y, s->x, bytes);
            LOP_TRY(run_modules(s, g, l, live & ~lop_unit_bits(u), s->y)); /* the block without the unit */
            LOP_TRY(lop_trainer_layers(s->t, l + 1, N, s->y, g->n_seq, g->seq_len));
            LOP_TRY(head_nll(s, g, s->y, &nll[l]));
        }
        LOP_TRY(run_modules(s, g, l, live, s->x)); /* advance the cached input to block l + 1 */
        *done += N - l;
        lop_progress_set(p, *done);
    }
    LOP_TRY(head_nll(s, g, s->x, base));
    *done += N;
    lop_progress_set(p, *done);
    return LOP_OK;
}

/* ---- block influence -------------------------------------------------------------------- */
static double sum_cos(const float *a, const float *b, int n, int dim) {
    double sum = 0;
    for (int i = 0; i < n; i++) {
        const float *x = a + (size_t)i * dim, *y = b + (size_t)i * dim;
        double xy = 0, xx = 0, yy = 0;
        for (int d = 0; d < dim; d++) {
            xy += (double)x[d] * y[d];
            xx += (double)x[d] * x[d];
            yy += (double)y[d] * y[d];
        }
        sum += xx > 0 && yy > 0 ? xy / sqrt(xx * yy) : 1.0;
    }
    return sum;
}

static lop_status bi_group(lop_scorer *s, const group *g, lop_unit u, const uint8_t *removed, double *cos_sum,
                           double *base, lop_progress *p, int64_t *done) {
    const lop_model *m = s->m;
    int N = m->cfg.n_layers, ntok = g->n_seq * g->seq_len;
    size_t bytes = (size_t)ntok * m->cfg.dim * sizeof(float);
    LOP_TRY(lop_trainer_embed(s->t, g->tokens, ntok, s->x));
    for (int l = 0; l < N; l++) {
        uint8_t live = live_modules(m, l, removed), mine = live & lop_unit_bits(u);
        if (!mine) {
            LOP_TRY(run_modules(s, g, l, live, s->x));
            continue;
        }
        /* modules before the unit (the attention, when the unit is the FFN), the unit, the rest */
        if (u == LOP_UNIT_FFN) LOP_TRY(run_modules(s, g, l, live & LOP_SKIP_ATTN, s->x));
        memcpy(s->y, s->x, bytes);
        LOP_TRY(run_modules(s, g, l, mine, s->x));
        cos_sum[l] += sum_cos(s->y, s->x, ntok, m->cfg.dim);
        if (u == LOP_UNIT_ATTN) LOP_TRY(run_modules(s, g, l, live & LOP_SKIP_FFN, s->x));
        lop_progress_set(p, ++*done);
    }
    return head_nll(s, g, s->x, base);
}

/* PPL or BI over every group, then per-unit scores */
static lop_status forward_criterion(lop_scorer *s, lop_criterion c, lop_unit u, const uint8_t *removed,
                                    double *scores, double *loss, lop_progress *p) {
    const lop_model *m = s->m;
    const lop_calib *cal = s->cal;
    int N = m->cfg.n_layers;
    double *acc = calloc((size_t)N, sizeof(double)), base = 0;
    if (!acc) return lop_fail(LOP_ERR_OOM, "out of memory");
    int64_t groups = (cal->n_samples + s->fwd_samples - 1) / s->fwd_samples, done = 0;
    lop_progress_total(p, groups * (c == LOP_CRIT_PPL ? (int64_t)N * (N + 1) / 2 + N : N));
    lop_status st = LOP_OK;
    for (int k = 0; k < cal->n_samples && st == LOP_OK; k += s->fwd_samples) {
        group g = {cal->tokens + (size_t)k * cal->seq_len,
                   cal->n_samples - k < s->fwd_samples ? cal->n_samples - k : s->fwd_samples, cal->seq_len};
        st = c == LOP_CRIT_PPL ? ppl_group(s, &g, u, removed, acc, &base, p, &done)
                               : bi_group(s, &g, u, removed, acc, &base, p, &done);
    }
    double scored = (double)cal->n_samples * (cal->seq_len - 1), tokens = (double)cal->n_samples * cal->seq_len;
    for (int l = 0; l < N; l++) {
        if (!lop_unit_exists(m, u, l, removed)) scores[l] = NAN;
        else scores[l] = c == LOP_CRIT_PPL ? exp(acc[l] / scored) : 1.0 - acc[l] / tokens;
    }
    *loss = base / scored;
    free(acc);
    return st;
}

lop_status lop_scorer_run(lop_scorer *s, lop_criterion c, lop_unit u, const uint8_t *removed, double *scores,
                          double *calib_loss, lop_progress *progress) {
    double loss = NAN;
    LOP_TRY(lop_trainer_set_skip(s->t, removed));
    lop_status st = LOP_OK;
    switch (c) {
    case LOP_CRIT_MAGNITUDE: lop_magnitude_scores(s->m, u, removed, scores); break;
    case LOP_CRIT_TAYLOR: st = taylor(s, u, removed, scores, &loss, progress); break;
    case LOP_CRIT_PPL:
    case LOP_CRIT_BI: st = forward_criterion(s, c, u, removed, scores, &loss, progress); break;
    default: st = lop_fail(LOP_ERR_ARG, "unknown criterion %d", (int)c);
    }
    if (calib_loss) *calib_loss = loss;
    return st;
}
