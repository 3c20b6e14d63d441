/* Depth-pruning plan and the pruned model; see depth.h. */
#include "prune/depth.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/timer.h"
#include "model/synth.h"
#include "train/train.h"

/* ---- targets ---------------------------------------------------------------------------- */
lop_status lop_depth_target_parse(const char *s, lop_depth_target *t) {
    memset(t, 0, sizeof *t);
    const char *hint = "expected a number of units (9), a percentage of the parameters (27%) or params=COUNT "
                       "(params=4.9B; suffix K, M or B)";
    if (!s || !*s) return lop_fail(LOP_ERR_ARG, "empty pruning target: %s", hint);
    char *end;
    if (!strncmp(s, "params=", 7)) {
        double v = strtod(s + 7, &end);
        double mul = 1;
        if (*end == 'K' || *end == 'k') mul = 1e3, end++;
        else if (*end == 'M' || *end == 'm') mul = 1e6, end++;
        else if (*end == 'B' || *end == 'b' || *end == 'G' || *end == 'g') mul = 1e9, end++;
        if (end == s + 7 || *end || !(v > 0) || v * mul > 1e15)
            return lop_fail(LOP_ERR_ARG, "bad pruning target '%s': %s", s, hint);
        t->kind = LOP_DEPTH_PARAMS;
        t->params = (int64_t)llround(v * mul);
        return LOP_OK;
    }
    size_t n = strlen(s);
    if (s[n - 1] == '%') {
        double v = strtod(s, &end);
        if (end != s + n - 1 || !(v > 0 && v < 100))
            return lop_fail(LOP_ERR_ARG, "bad pruning target '%s': a percentage must be between 0 and 100 (exclusive)", s);
        t->kind = LOP_DEPTH_RATIO;
        t->ratio = v / 100;
        return LOP_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return lop_fail(LOP_ERR_ARG, "bad pruning target '%s': %s", s, hint);
    long v = strtol(s, NULL, 10);
    if (v < 1 || v > 1000000) return lop_fail(LOP_ERR_ARG, "bad pruning target '%s': remove at least 1 unit", s);
    t->kind = LOP_DEPTH_COUNT;
    t->count = (int)v;
    return LOP_OK;
}

/* ---- plan ------------------------------------------------------------------------------- */
void lop_depth_result_free(lop_depth_result *r) {
    if (!r) return;
    free(r->scores);
    free(r->calib_loss);
    free(r->protect);
    free(r->removed);
    free(r->skip);
    memset(r, 0, sizeof *r);
}

/* lower = remove first: NAN last, ties to the later layer */
static int less_important(double a, int la, double b, int lb) {
    if (isnan(a)) return 0;
    if (isnan(b)) return 1;
    if (a != b) return a < b;
    return la > lb;
}

typedef struct cand {
    double score;
    int layer;
} cand;

static int cmp_cand(const void *x, const void *y) {
    const cand *a = x, *b = y;
    if (less_important(a->score, a->layer, b->score, b->layer)) return -1;
    if (less_important(b->score, b->layer, a->score, a->layer)) return 1;
    return 0;
}

/* removable units, lowest score first */
static int candidates(const lop_model *m, lop_unit u, const lop_depth_result *r, const double *scores, cand *out) {
    int n = 0;
    for (int l = 0; l < r->n_layers; l++)
        if (!r->protect[l] && lop_unit_exists(m, u, l, r->skip)) out[n++] = (cand){scores[l], l};
    qsort(out, (size_t)n, sizeof *out, cmp_cand);
    return n;
}

static void remove_unit(const lop_model *m, lop_unit u, lop_depth_result *r, int layer) {
    int64_t p = lop_unit_n_params(m, u, layer, r->skip);
    r->skip[layer] |= lop_unit_bits(u);
    r->params_after -= p;
    r->removed[r->n_removed++] = layer;
}

static void describe_protect(const lop_depth_result *r, char *buf, size_t cap) {
    buf[0] = 0;
    int n = 0;
    for (int l = 0; l < r->n_layers; l++) n += r->protect[l];
    if (n) snprintf(buf, cap, " (the \"+\" rule keeps blocks 0-3 and %d-%d; --no-plus lifts it)", r->n_layers - 2,
                    r->n_layers - 1);
}

static lop_status alloc_result(lop_depth_result *r, int L, int rounds) {
    r->n_layers = L;
    r->scores = malloc((size_t)rounds * L * sizeof(double));
    r->calib_loss = malloc((size_t)rounds * sizeof(double));
    r->protect = calloc((size_t)L, 1);
    r->removed = malloc((size_t)L * 2 * sizeof(int));
    r->skip = calloc((size_t)L, 1);
    if (!r->scores || !r->calib_loss || !r->protect || !r->removed || !r->skip)
        return lop_fail(LOP_ERR_OOM, "out of memory");
    return LOP_OK;
}

static lop_status score(lop_model *m, lop_scorer *s, const lop_depth_opts *o, lop_depth_result *r) {
    double *sc = r->scores + (size_t)r->n_rounds * r->n_layers;
    double *loss = r->calib_loss + r->n_rounds;
    *loss = NAN;
    if (o->criterion == LOP_CRIT_MAGNITUDE) lop_magnitude_scores(m, o->unit, r->skip, sc); /* no data needed */
    else LOP_TRY(lop_scorer_run(s, o->criterion, o->unit, r->skip, sc, loss, o->progress));
    r->n_rounds++;
    return LOP_OK;
}

/* 1 when some removable unit is small enough to bring the parameter count closer to the target */
static int any_fits(const lop_model *m, lop_unit u, const lop_depth_result *r, int64_t left) {
    for (int l = 0; l < r->n_layers; l++)
        if (!r->protect[l] && lop_unit_exists(m, u, l, r->skip) && lop_unit_n_params(m, u, l, r->skip) < 2 * left)
            return 1;
    return 0;
}

lop_status lop_depth_plan(lop_model *m, const lop_calib *cal, const lop_depth_opts *o, lop_depth_result *r) {
    memset(r, 0, sizeof *r);
    int L = m->cfg.n_layers;
    if (!cal && o->criterion != LOP_CRIT_MAGNITUDE)
        return lop_fail(LOP_ERR_ARG, "criterion %s needs calibration data", lop_criterion_name(o->criterion));
    /* magnitude reads the weights directly (the other criteria materialise through the trainer) */
    lop_status st = m->synthetic ? lop_synth_materialize(m) : LOP_OK;
    if (st == LOP_OK && !m->weights_loaded) st = lop_fail(LOP_ERR_ARG, "%s: weights not loaded", m->source);
    if (st == LOP_OK) st = alloc_result(r, L, o->iterative ? 2 * L + 1 : 1);
    if (st != LOP_OK) {
        lop_depth_result_free(r);
        return st;
    }
    for (int l = 0; !o->no_plus && l < L; l++) r->protect[l] = l < 4 || l >= L - 2;
    r->params_before = r->params_after = lop_model_n_params(m);
    int64_t removable = 0;
    int n_units = 0;
    for (int l = 0; l < L; l++)
        if (!r->protect[l] && lop_unit_exists(m, o->unit, l, NULL)) {
            removable += lop_unit_n_params(m, o->unit, l, NULL);
            n_units++;
        }
    char why[160];
    describe_protect(r, why, sizeof why);
    const lop_depth_target *t = &o->target;
    if (t->kind == LOP_DEPTH_COUNT && t->count > n_units) {
        st = lop_fail(LOP_ERR_ARG, "cannot remove %d %s units: the model has %d that may be removed%s", t->count,
                      lop_unit_name(o->unit), n_units, why);
    } else if (t->kind != LOP_DEPTH_COUNT) {
        r->target_removed = t->kind == LOP_DEPTH_RATIO ? (int64_t)llround(t->ratio * r->params_before)
                                                       : r->params_before - t->params;
        if (r->target_removed <= 0)
            st = lop_fail(LOP_ERR_ARG, "the model has %lld parameters, not more than the target %lld",
                          (long long)r->params_before, (long long)t->params);
        else if (removable < r->target_removed / 2 || n_units == 0)
            st = lop_fail(LOP_ERR_ARG, "cannot remove %lld parameters: the %s units that may be removed hold %lld%s",
                          (long long)r->target_removed, lop_unit_name(o->unit), (long long)removable, why);
    }
    lop_scorer *s = NULL;
    double t0 = lop_now();
    if (st == LOP_OK && o->criterion != LOP_CRIT_MAGNITUDE) st = lop_scorer_new(m, cal, &o->scorer, &s);
    cand *cs = malloc((size_t)(L + 1) * sizeof *cs);
    if (st == LOP_OK && !cs) st = lop_fail(LOP_ERR_OOM, "out of memory");
    /* one unit at a time: after the first round, only the iterative mode scores again */
    while (st == LOP_OK) {
        if (t->kind == LOP_DEPTH_COUNT && r->n_removed == t->count) break;
        int64_t left = r->target_removed - (r->params_before - r->params_after);
        if (t->kind != LOP_DEPTH_COUNT && !any_fits(m, o->unit, r, left)) break;
        if (r->n_rounds == 0 || o->iterative) {
            st = score(m, s, o, r);
            if (st != LOP_OK) break;
        }
        const double *sc = r->scores + (size_t)(r->n_rounds - 1) * L;
        int n = candidates(m, o->unit, r, sc, cs), pick = -1;
        for (int i = 0; i < n && pick < 0; i++) {
            /* a parameter target takes a unit only when that brings the count closer to it */
            int64_t p = lop_unit_n_params(m, o->unit, cs[i].layer, r->skip);
            if (t->kind == LOP_DEPTH_COUNT || p < 2 * left) pick = cs[i].layer;
        }
        if (pick < 0) {
            if (o->iterative && r->n_rounds > 0 && t->kind != LOP_DEPTH_COUNT) r->n_rounds--; /* unused round */
            break;
        }
        remove_unit(m, o->unit, r, pick);
    }
    r->seconds = lop_now() - t0;
    if (st == LOP_OK && r->n_removed == 0)
        st = lop_fail(LOP_ERR_ARG, "the target removes no %s unit: the nearest parameter count is the model itself",
                      lop_unit_name(o->unit));
    free(cs);
    lop_scorer_free(s);
    if (st != LOP_OK) lop_depth_result_free(r);
    return st;
}

/* ---- the pruned model ------------------------------------------------------------------- */
lop_status lop_model_remove_modules(lop_model *src, const uint8_t *skip, lop_model **out) {
    *out = NULL;
    if (src->synthetic) LOP_TRY(lop_synth_materialize(src));
    if (!src->weights_loaded) return lop_fail(LOP_ERR_ARG, "%s: weights not loaded", src->source);
    int L = src->cfg.n_layers, kept = 0;
    for (int l = 0; l < L; l++) {
        if (skip[l] & ~(LOP_SKIP_ATTN | LOP_SKIP_FFN)) return lop_fail(LOP_ERR_ARG, "bad removal mask for layer %d", l);
        uint8_t live = (src->cfg.layers[l].n_heads ? LOP_SKIP_ATTN : 0) | (src->cfg.layers[l].ffn_dim ? LOP_SKIP_FFN : 0);
        kept += (live & ~skip[l]) != 0;
    }
    if (kept == 0) return lop_fail(LOP_ERR_ARG, "%s: removing every layer leaves no model", src->source);
    lop_model *m;
    lop_status st = lop_model_new_view(src, kept, &m);
    if (st != LOP_OK) return st;
    for (int l = 0, k = 0; st == LOP_OK && l < L; l++) {
        uint8_t live = (src->cfg.layers[l].n_heads ? LOP_SKIP_ATTN : 0) | (src->cfg.layers[l].ffn_dim ? LOP_SKIP_FFN : 0);
        if (!(live & ~skip[l])) continue;
        m->cfg.layers[k] = src->cfg.layers[l];
        m->w.layers[k] = src->w.layers[l];
        for (int f = 0; f < LOP_LF_COUNT; f++)
            if (skip[l] & (f < LOP_LF_N_ATTN ? LOP_SKIP_ATTN : LOP_SKIP_FFN))
                *lop_layer_tensor(&m->w.layers[k], f) = (lop_tensor){0};
        k++;
    }
    if (st == LOP_OK) st = lop_model_derive_shapes(m, m->source);
    if (st != LOP_OK) {
        lop_model_free(m);
        return st;
    }
    *out = m;
    return LOP_OK;
}
