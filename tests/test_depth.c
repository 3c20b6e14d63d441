/* Depth pruning: criteria against hand-computed values on tiny models (magnitude by summing |W|;
 * Taylor as the derivative of the float64 calibration loss along the block's own weights, since
 * sum W*dL/dW = d/de L(W (1 + e)) at e = 0; PPL and BI from the float64 reference forward), the
 * "+" rule, targets, one-shot vs iterative, and the pruned model (skipping = removing). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "prune/depth.h"
#include "ref_double.h"
#include "runtime/engine.h"
#include "tiny_model.h"
#include "train/train.h"

static const tiny_layer L6[6] = {{4, 2, 4, 24, 1, 0, 0}, {4, 4, 4, 20, 0, 1, 0}, {2, 1, 8, 16, 0, 0, 1},
                                 {4, 2, 4, 24, 0, 0, 0}, {0, 0, 4, 24, 0, 0, 0}, {4, 2, 4, 0, 0, 0, 0}};

static lop_model *model6(uint64_t seed) {
    lop_model *m = tiny_model(43, 16, 6, L6, 0, seed);
    assert_non_null(m);
    return m;
}

/* a uniform model of n layers (for the "+" rule and targets) */
static lop_model *uniform(int n, int tie, uint64_t seed) {
    tiny_layer ls[16];
    for (int i = 0; i < n; i++) ls[i] = (tiny_layer){2, 1, 4, 12, 0, 0, 0};
    lop_model *m = tiny_model(31, 8, n, ls, tie, seed);
    assert_non_null(m);
    return m;
}

/* ---- criteria vs hand-computed values ------------------------------------------------------ */
static void expect_close(const char *what, int l, double got, double want, double rel) {
    if (isnan(want) && isnan(got)) return;
    if (!(fabs(got - want) <= rel * fabs(want) + 1e-12))
        fail_msg("%s, layer %d: %.10g, want %.10g (rel. %.2e)", what, l, got, want, fabs(got - want) / fabs(want));
}

static uint8_t unit_mask(lop_unit u) { return lop_unit_bits(u); }

static void check_unit(lop_unit u, const uint8_t *removed) {
    lop_model *m = model6(3 + u);
    lop_calib cal;
    assert_int_equal(lop_calib_random(m, 3, 7, 42, &cal), LOP_OK);
    lop_scorer *s;
    /* 2 backward and 2 forward groups: sums must carry over */
    lop_scorer_opts so = {.n_threads = 2, .bwd_samples = 2, .fwd_samples = 2};
    assert_int_equal(lop_scorer_new(m, &cal, &so, &s), LOP_OK);
    int L = m->cfg.n_layers, T = cal.seq_len, D = m->cfg.dim, count = cal.n_samples * (T - 1);
    double sc[4][8], loss[4];
    for (int c = 0; c < LOP_CRIT_COUNT; c++)
        assert_int_equal(lop_scorer_run(s, (lop_criterion)c, u, removed, sc[c], &loss[c], NULL), LOP_OK);
    dref *d = dref_new(m);
    double base = dref_loss(d, cal.tokens, cal.n_samples, T, 1, removed) / count;
    for (int c = 1; c < LOP_CRIT_COUNT; c++) expect_close("calibration loss", c, loss[c], base, 1e-5);
    assert_true(isnan(loss[0]));
    for (int l = 0; l < L; l++) {
        uint8_t live = (m->cfg.layers[l].n_heads ? LOP_SKIP_ATTN : 0) | (m->cfg.layers[l].ffn_dim ? LOP_SKIP_FFN : 0);
        if (removed) live &= (uint8_t)~removed[l];
        uint8_t mine = live & unit_mask(u);
        if (!mine) {
            for (int c = 0; c < LOP_CRIT_COUNT; c++)
                if (!isnan(sc[c][l])) fail_msg("criterion %d layer %d: a missing unit must score NAN", c, l);
            continue;
        }
        /* magnitude: sum |W| over the unit's tensors */
        double mag = 0;
        for (int f = 0; f < LOP_LF_COUNT; f++) {
            const lop_tensor *t = lop_layer_tensor_c(&m->w.layers[l], f);
            if (!t->present || !(mine & (f < LOP_LF_N_ATTN ? LOP_SKIP_ATTN : LOP_SKIP_FFN))) continue;
            for (int64_t i = 0; i < lop_tensor_numel(t); i++) mag += fabs(((const float *)t->data)[i]);
        }
        expect_close("magnitude", l, sc[LOP_CRIT_MAGNITUDE][l], mag, 1e-9);
        /* taylor: |d/de L(W_unit (1 + e))| by central differences of the float64 loss */
        double h = 1e-6, lp = 0, lm = 0;
        for (int sign = 1; sign >= -1; sign -= 2) {
            for (int f = 0; f < LOP_LF_COUNT; f++) {
                double *w = dref_tensor(d, (lop_param_id){l, f});
                if (!w || !(mine & (f < LOP_LF_N_ATTN ? LOP_SKIP_ATTN : LOP_SKIP_FFN))) continue;
                const float *w0 = lop_layer_tensor_c(&m->w.layers[l], f)->data;
                for (int64_t i = 0; i < lop_tensor_numel(lop_layer_tensor_c(&m->w.layers[l], f)); i++)
                    w[i] = w0[i] * (1 + sign * h);
            }
            double v = dref_loss(d, cal.tokens, cal.n_samples, T, 1, removed) / count;
            if (sign > 0) lp = v;
            else lm = v;
        }
        for (int f = 0; f < LOP_LF_COUNT; f++) { /* restore */
            double *w = dref_tensor(d, (lop_param_id){l, f});
            if (!w) continue;
            const float *w0 = lop_layer_tensor_c(&m->w.layers[l], f)->data;
            for (int64_t i = 0; i < lop_tensor_numel(lop_layer_tensor_c(&m->w.layers[l], f)); i++) w[i] = w0[i];
        }
        expect_close("taylor", l, sc[LOP_CRIT_TAYLOR][l], fabs((lp - lm) / (2 * h)), 1e-4);
        /* ppl: the model without the unit */
        uint8_t skip[8] = {0};
        for (int k = 0; k < L; k++) skip[k] = removed ? removed[k] : 0;
        skip[l] |= mine;
        expect_close("ppl", l, sc[LOP_CRIT_PPL][l], exp(dref_loss(d, cal.tokens, cal.n_samples, T, 1, skip) / count), 1e-5);
        /* bi: hidden states around the unit */
        double *a = malloc((size_t)T * D * sizeof(double)), *b = malloc((size_t)T * D * sizeof(double)), cs = 0;
        for (int k = 0; k < cal.n_samples; k++) {
            uint8_t sk_in[8], sk_out[8];
            memcpy(sk_in, skip, sizeof skip);
            memcpy(sk_out, skip, sizeof skip);
            for (int q = 0; q < L; q++) sk_in[q] = sk_out[q] = removed ? removed[q] : 0;
            int l_in = l;
            if (u == LOP_UNIT_FFN) { l_in = l + 1; sk_in[l] |= LOP_SKIP_FFN; }  /* after the attention */
            if (u == LOP_UNIT_ATTN) sk_out[l] |= LOP_SKIP_FFN;                  /* before the FFN */
            dref_hidden(d, cal.tokens + k * T, T, l_in, sk_in, a);
            dref_hidden(d, cal.tokens + k * T, T, l + 1, sk_out, b);
            for (int t = 0; t < T; t++) {
                double xy = 0, xx = 0, yy = 0;
                for (int i = 0; i < D; i++) xy += a[t * D + i] * b[t * D + i], xx += a[t * D + i] * a[t * D + i],
                                            yy += b[t * D + i] * b[t * D + i];
                cs += xy / sqrt(xx * yy);
            }
        }
        expect_close("bi", l, sc[LOP_CRIT_BI][l], 1 - cs / (cal.n_samples * T), 2e-4);
        free(a);
        free(b);
    }
    printf("  unit %-5s%s: layer 0 magnitude %.4f taylor %.6f ppl %.4f bi %.6f (all layers as hand-computed)\n",
           lop_unit_name(u), removed ? " (some removed)" : "", sc[0][0], sc[1][0], sc[2][0], sc[3][0]);
    dref_free(d);
    lop_scorer_free(s);
    lop_calib_free(&cal);
    lop_model_free(m);
}

static void test_criteria_block(void **st) {
    (void)st;
    check_unit(LOP_UNIT_BLOCK, NULL);
}
static void test_criteria_attn(void **st) {
    (void)st;
    check_unit(LOP_UNIT_ATTN, NULL);
}
static void test_criteria_ffn(void **st) {
    (void)st;
    check_unit(LOP_UNIT_FFN, NULL);
}
static void test_criteria_with_removed(void **st) {
    (void)st;
    uint8_t removed[6] = {0, LOP_SKIP_ATTN, 0, LOP_SKIP_ATTN | LOP_SKIP_FFN, 0, 0};
    check_unit(LOP_UNIT_BLOCK, removed);
    check_unit(LOP_UNIT_FFN, removed);
}

/* ---- targets, the "+" rule, one-shot vs iterative ------------------------------------------ */
static void test_target_parse(void **st) {
    (void)st;
    lop_depth_target t;
    assert_int_equal(lop_depth_target_parse("9", &t), LOP_OK);
    assert_true(t.kind == LOP_DEPTH_COUNT && t.count == 9);
    assert_int_equal(lop_depth_target_parse("27%", &t), LOP_OK);
    assert_true(t.kind == LOP_DEPTH_RATIO && fabs(t.ratio - 0.27) < 1e-12);
    assert_int_equal(lop_depth_target_parse("params=4.9B", &t), LOP_OK);
    assert_true(t.kind == LOP_DEPTH_PARAMS && t.params == 4900000000LL);
    assert_int_equal(lop_depth_target_parse("params=120K", &t), LOP_OK);
    assert_true(t.params == 120000);
    const char *bad[] = {"0", "abc", "100%", "0%", "params=", "params=-3B", "-3", "9x", "", "params=5Q"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(lop_depth_target_parse(bad[i], &t), LOP_ERR_ARG);
        assert_non_null(strstr(lop_last_error(), "target"));
    }
}

/* scales every weight of layer l by f (magnitude then ranks it as told) */
static void scale_layer(lop_model *m, int l, float f) {
    for (int k = 0; k < LOP_LF_COUNT; k++) {
        lop_tensor *t = lop_layer_tensor(&m->w.layers[l], k);
        for (int64_t i = 0; t->present && i < lop_tensor_numel(t); i++) ((float *)t->data)[i] *= f;
    }
}

static void test_plus_rule(void **st) {
    (void)st;
    lop_model *m = uniform(10, 1, 7);
    int small[] = {0, 1, 2, 3, 8, 9}; /* the protected blocks look least important */
    for (int i = 0; i < 6; i++) scale_layer(m, small[i], 0.01f + 0.001f * i);
    lop_depth_opts o = {.criterion = LOP_CRIT_MAGNITUDE, .target = {LOP_DEPTH_COUNT, 4, 0, 0}};
    lop_depth_result r;
    assert_int_equal(lop_depth_plan(m, NULL, &o, &r), LOP_OK);
    assert_int_equal(r.n_removed, 4);
    for (int i = 0; i < 10; i++) assert_int_equal(r.protect[i], i < 4 || i >= 8);
    for (int i = 0; i < 4; i++) assert_true(r.removed[i] >= 4 && r.removed[i] <= 7);
    lop_depth_result_free(&r);
    /* five cannot be removed under the rule */
    o.target.count = 5;
    assert_int_equal(lop_depth_plan(m, NULL, &o, &r), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "cannot remove 5 block units: the model has 4 that may be removed"));
    assert_non_null(strstr(lop_last_error(), "--no-plus"));
    /* without it, the small ones go first, in order of magnitude */
    o.no_plus = 1;
    assert_int_equal(lop_depth_plan(m, NULL, &o, &r), LOP_OK);
    int want[5] = {0, 1, 2, 3, 8};
    for (int i = 0; i < 5; i++) assert_int_equal(r.removed[i], want[i]);
    lop_depth_result_free(&r);
    o.target.count = 11;
    assert_int_equal(lop_depth_plan(m, NULL, &o, &r), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "cannot remove 11 block units: the model has 10"));
    lop_model_free(m);
}

static void test_param_targets(void **st) {
    (void)st;
    lop_model *m = uniform(12, 0, 9);
    int64_t P = lop_model_n_params(m), p = lop_layer_n_params(m, 5);
    lop_depth_opts o = {.criterion = LOP_CRIT_MAGNITUDE};
    lop_depth_result r;
    for (double ratio = 0.05; ratio < 0.7; ratio += 0.07) {
        o.target = (lop_depth_target){LOP_DEPTH_RATIO, 0, ratio, 0};
        int best = 0; /* nearest count by hand */
        for (int k = 0; k <= 6; k++)
            if (fabs(k * (double)p - ratio * P) < fabs(best * (double)p - ratio * P)) best = k;
        lop_status s = lop_depth_plan(m, NULL, &o, &r);
        if (best == 0) {
            assert_int_equal(s, LOP_ERR_ARG);
            continue;
        }
        assert_int_equal(s, LOP_OK);
        assert_int_equal(r.n_removed, best);
        assert_int_equal(r.params_after, P - best * p);
        lop_model *v;
        assert_int_equal(lop_model_remove_modules(m, r.skip, &v), LOP_OK);
        assert_int_equal(lop_model_n_params(v), r.params_after);
        assert_int_equal(v->cfg.n_layers, 12 - best);
        lop_model_free(v);
        lop_depth_result_free(&r);
    }
    o.target = (lop_depth_target){LOP_DEPTH_PARAMS, 0, 0, P - 3 * p + p / 3};
    assert_int_equal(lop_depth_plan(m, NULL, &o, &r), LOP_OK);
    assert_int_equal(r.n_removed, 3);
    lop_depth_result_free(&r);
    o.target = (lop_depth_target){LOP_DEPTH_PARAMS, 0, 0, P + 5};
    assert_int_equal(lop_depth_plan(m, NULL, &o, &r), LOP_ERR_ARG);
    o.target = (lop_depth_target){LOP_DEPTH_RATIO, 0, 0.95, 0};
    assert_int_equal(lop_depth_plan(m, NULL, &o, &r), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "cannot remove"));
    lop_model_free(m);
}

/* iterative round k scores = one-shot scores of the model with the first k removals really removed */
static void test_oneshot_vs_iterative(void **st) {
    (void)st;
    for (int c = 0; c < LOP_CRIT_COUNT; c++) {
        lop_model *m = uniform(8, 1, 21 + c);
        lop_calib cal;
        assert_int_equal(lop_calib_random(m, 2, 9, 5, &cal), LOP_OK);
        lop_depth_opts o = {.criterion = (lop_criterion)c, .target = {LOP_DEPTH_COUNT, 3, 0, 0}, .no_plus = 1};
        lop_depth_result one, it;
        assert_int_equal(lop_depth_plan(m, &cal, &o, &one), LOP_OK);
        o.iterative = 1;
        assert_int_equal(lop_depth_plan(m, &cal, &o, &it), LOP_OK);
        assert_int_equal(one.n_rounds, 1);
        assert_int_equal(it.n_rounds, 3);
        /* one-shot removes the 3 lowest of its scores */
        for (int k = 0; k < 3; k++) {
            int l = one.removed[k], lower = 0;
            for (int q = 0; q < 8; q++) lower += one.scores[q] < one.scores[l];
            assert_int_equal(lower, k);
        }
        assert_memory_equal(it.scores, one.scores, 8 * sizeof(double));
        assert_int_equal(it.removed[0], one.removed[0]);
        uint8_t skip[8] = {0};
        for (int k = 1; k < 3; k++) {
            skip[it.removed[k - 1]] = LOP_SKIP_ATTN | LOP_SKIP_FFN;
            lop_model *v;
            assert_int_equal(lop_model_remove_modules(m, skip, &v), LOP_OK);
            double sv[8];
            if (c == LOP_CRIT_MAGNITUDE) {
                lop_magnitude_scores(v, LOP_UNIT_BLOCK, NULL, sv);
            } else {
                lop_scorer *s;
                assert_int_equal(lop_scorer_new(v, &cal, NULL, &s), LOP_OK);
                assert_int_equal(lop_scorer_run(s, o.criterion, LOP_UNIT_BLOCK, NULL, sv, NULL, NULL), LOP_OK);
                lop_scorer_free(s);
            }
            const double *round = it.scores + k * 8;
            for (int l = 0, j = 0; l < 8; l++) {
                if (skip[l]) {
                    assert_true(isnan(round[l]));
                    continue;
                }
                expect_close(lop_criterion_name(o.criterion), l, round[l], sv[j++], 1e-5);
            }
            lop_model_free(v);
        }
        if (c == LOP_CRIT_MAGNITUDE) /* nothing to re-score: the same blocks */
            for (int k = 0; k < 3; k++) assert_int_equal(it.removed[k], one.removed[k]);
        printf("  %-9s one-shot removes %d %d %d, iterative %d %d %d\n", lop_criterion_name(o.criterion), one.removed[0],
               one.removed[1], one.removed[2], it.removed[0], it.removed[1], it.removed[2]);
        lop_depth_result_free(&one);
        lop_depth_result_free(&it);
        lop_calib_free(&cal);
        lop_model_free(m);
    }
}

/* the pruned model computes what the trainer computes with the modules skipped */
static void test_remove_modules(void **st) {
    (void)st;
    lop_model *m = model6(31);
    uint8_t skip[6] = {LOP_SKIP_FFN, LOP_SKIP_ATTN | LOP_SKIP_FFN, 0, LOP_SKIP_ATTN, LOP_SKIP_FFN, 0};
    lop_model *v;
    assert_int_equal(lop_model_remove_modules(m, skip, &v), LOP_OK);
    /* layer 1 goes; layer 4 had only an FFN, now removed: goes too */
    assert_int_equal(v->cfg.n_layers, 4);
    assert_int_equal(v->cfg.layers[0].ffn_dim, 0);
    assert_int_equal(v->cfg.layers[0].n_heads, 4);
    assert_int_equal(v->cfg.layers[2].n_heads, 0);
    assert_int_equal(v->cfg.layers[2].ffn_dim, 24);
    assert_false(v->w.layers[0].ffn_norm.present);
    lop_calib cal;
    assert_int_equal(lop_calib_random(m, 2, 8, 1, &cal), LOP_OK);
    lop_trainer *a, *b;
    assert_int_equal(lop_trainer_create(m, NULL, &a), LOP_OK);
    assert_int_equal(lop_trainer_create(v, NULL, &b), LOP_OK);
    assert_int_equal(lop_trainer_set_skip(a, skip), LOP_OK);
    double la, lb;
    assert_int_equal(lop_trainer_loss(a, cal.tokens, 2, 8, 1, &la, NULL), LOP_OK);
    assert_int_equal(lop_trainer_loss(b, cal.tokens, 2, 8, 1, &lb, NULL), LOP_OK);
    assert_true(la == lb);
    uint8_t all[6] = {3, 3, 3, 3, 3, 3};
    lop_model *none;
    assert_int_equal(lop_model_remove_modules(m, all, &none), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "removing every layer"));
    lop_trainer_free(a);
    lop_trainer_free(b);
    lop_calib_free(&cal);
    lop_model_free(v);
    lop_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_criteria_block), cmocka_unit_test(test_criteria_attn), cmocka_unit_test(test_criteria_ffn),
        cmocka_unit_test(test_criteria_with_removed), cmocka_unit_test(test_target_parse),
        cmocka_unit_test(test_plus_rule), cmocka_unit_test(test_param_targets), cmocka_unit_test(test_oneshot_vs_iterative),
        cmocka_unit_test(test_remove_modules)};
    return cmocka_run_group_tests_name("depth", tests, NULL, NULL);
}
