/* The CPU backward pass (src/train) on tiny models of every shape family (MHA with every bias,
 * tied GQA, per-layer pruned shapes with missing modules, llama3 RoPE scaling):
 *  - the trainer's loss equals the inference engine's (lop_score_sequences) and a float64 loss;
 *  - every tensor's gradient agrees with central finite differences of the float64 loss, along a
 *    random direction over the whole tensor and element by element at its largest entries;
 *  - finite differences of the trainer's own fp32 loss agree too (looser: fp32 noise);
 *  - skipped modules get no gradient and the rest equal the gradients of the smaller model;
 *  - the W*dL/dW sink equals sum(W * g) from the stored gradients, and accumulates over calls.
 * Agreement numbers are printed (worst relative error per model). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "eval/logprob.h"
#include "model/synth.h"
#include "ref_double.h"
#include "tiny_model.h"
#include "train_families.h"
#include "train/train.h"

enum { NSEQ = 2, SEQ = 7, FIRST = 2 };

/* ---- loss: trainer = engine = float64 ----------------------------------------------------- */
static void test_loss_matches_engine(void **st) {
    (void)st;
    for (int fi = 0; fi < N_TRAIN_FAMILIES; fi++) {
        lop_model *m = train_family_make(&TRAIN_FAMILIES[fi], 11 + fi);
        int32_t tok[NSEQ * SEQ];
        train_tokens(tok, NSEQ * SEQ, m->cfg.vocab_size, 100 + fi);
        lop_trainer *t;
        lop_trainer_opts to = {.max_tokens = 64, .n_threads = 1};
        assert_int_equal(lop_trainer_create(m, &to, &t), LOP_OK);
        double nll;
        int64_t cnt;
        assert_int_equal(lop_trainer_loss(t, tok, NSEQ, SEQ, FIRST, &nll, &cnt), LOP_OK);
        assert_int_equal(cnt, NSEQ * (SEQ - FIRST));
        lop_engine *e;
        lop_engine_opts eo = {.device = LOP_DEVICE_CPU, .max_batch = NSEQ, .max_seq_len = SEQ, .n_threads = 1};
        assert_int_equal(lop_engine_create(m, &eo, &e), LOP_OK);
        lop_score_req req[NSEQ];
        lop_score sc[NSEQ];
        for (int s = 0; s < NSEQ; s++) req[s] = (lop_score_req){tok + s * SEQ, SEQ, FIRST};
        assert_int_equal(lop_score_sequences(e, req, NSEQ, sc, NULL), LOP_OK);
        double eng = -(sc[0].logprob + sc[1].logprob);
        dref *d = dref_new(m);
        double ref = dref_loss(d, tok, NSEQ, SEQ, FIRST, NULL);
        printf("  %-16s loss trainer %.9f engine %.9f float64 %.9f\n", TRAIN_FAMILIES[fi].name, nll, eng, ref);
        assert_true(fabs(nll - eng) <= 1e-5 * fabs(eng));
        assert_true(fabs(nll - ref) <= 1e-5 * fabs(ref));
        /* backward reports the same loss */
        double nll2;
        lop_grad_sink none = {0};
        assert_int_equal(lop_trainer_backward(t, tok, NSEQ, SEQ, FIRST, 1.0, &none, &nll2, NULL), LOP_OK);
        assert_true(fabs(nll2 - nll) <= 1e-9 * fabs(nll));
        dref_free(d);
        lop_engine_free(e);
        lop_trainer_free(t);
        lop_model_free(m);
    }
}

/* ---- gradients against float64 finite differences ----------------------------------------- */
/* Checks every gradient of model family fi (with skip mask) and returns the worst relative errors:
 * err[0] directional (|sum g r - fd| / sum |g r|), err[1] elementwise (|g - fd| / max |g|). */
static void check_grads(const train_family *f, uint64_t seed, const uint8_t *skip, double err[2]) {
    lop_model *m = train_family_make(f, seed);
    int32_t tok[NSEQ * SEQ];
    train_tokens(tok, NSEQ * SEQ, m->cfg.vocab_size, seed * 7);
    lop_trainer *t;
    lop_trainer_opts to = {.max_tokens = 64, .n_threads = 2};
    assert_int_equal(lop_trainer_create(m, &to, &t), LOP_OK);
    assert_int_equal(lop_trainer_set_skip(t, skip), LOP_OK);
    lop_grad_store *gs;
    assert_int_equal(lop_grad_store_new(m, &gs), LOP_OK);
    lop_grad_sink sink = lop_grad_store_sink(gs);
    /* two calls of one sequence each = one call of both (gradients are sums) */
    assert_int_equal(lop_trainer_backward(t, tok, 1, SEQ, FIRST, 1.0, &sink, NULL, NULL), LOP_OK);
    assert_int_equal(lop_trainer_backward(t, tok + SEQ, 1, SEQ, FIRST, 1.0, &sink, NULL, NULL), LOP_OK);
    dref *d = dref_new(m);
    lop_param_id ids[128];
    int np = train_all_params(m, ids);
    err[0] = err[1] = 0;
    for (int k = 0; k < np; k++) {
        const lop_tensor *tt = lop_param_tensor(m, ids[k]);
        int64_t n = lop_tensor_numel(tt);
        const float *g = lop_grad_store_get(gs, ids[k]);
        int skipped = ids[k].layer >= 0 && skip &&
                      (skip[ids[k].layer] & (ids[k].field < LOP_LF_N_ATTN ? LOP_SKIP_ATTN : LOP_SKIP_FFN));
        if (skipped) {
            if (g) fail_msg("%s: skipped module received a gradient", f->name);
            continue;
        }
        char name[96];
        lop_param_name(ids[k], name, sizeof name);
        if (!g) fail_msg("%s: no gradient for %s", f->name, name);
        double *w = dref_tensor(d, ids[k]);
        /* directional: r uniform in [-1, 1] */
        double *r = malloc((size_t)n * sizeof(double)), dot = 0, mag = 0, gmax = 0, h = 1e-6;
        for (int64_t i = 0; i < n; i++) {
            r[i] = lop_synth_value(seed, 999, (uint64_t)(k * 100003 + i), 0.577f);
            dot += g[i] * r[i];
            mag += fabs(g[i] * r[i]);
            if (fabs(g[i]) > gmax) gmax = fabs(g[i]);
        }
        for (int64_t i = 0; i < n; i++) w[i] += h * r[i];
        double lp = dref_loss(d, tok, NSEQ, SEQ, FIRST, skip);
        for (int64_t i = 0; i < n; i++) w[i] -= 2 * h * r[i];
        double lm = dref_loss(d, tok, NSEQ, SEQ, FIRST, skip);
        for (int64_t i = 0; i < n; i++) w[i] += h * r[i];
        double fd = (lp - lm) / (2 * h), e0 = fabs(dot - fd) / (mag + 1e-12);
        if (e0 > err[0]) err[0] = e0;
        if (!(e0 < 1e-4)) fail_msg("%s %s: directional derivative %.9g, finite difference %.9g", f->name, name, dot, fd);
        /* elementwise at the 3 largest entries and 2 pseudo-random ones */
        int64_t pick[5] = {0, 0, 0, (int64_t)(lop_splitmix64(seed + k) % (uint64_t)n),
                           (int64_t)(lop_splitmix64(seed + k + 77) % (uint64_t)n)};
        for (int j = 0; j < 3; j++)
            for (int64_t i = 0; i < n; i++) {
                int taken = 0;
                for (int q = 0; q < j; q++) taken |= pick[q] == i;
                if (!taken && fabs(g[i]) > fabs(g[pick[j]])) pick[j] = i;
            }
        for (int j = 0; j < 5; j++) {
            int64_t i = pick[j];
            double w0 = w[i];
            w[i] = w0 + 1e-5;
            double a = dref_loss(d, tok, NSEQ, SEQ, FIRST, skip);
            w[i] = w0 - 1e-5;
            double b = dref_loss(d, tok, NSEQ, SEQ, FIRST, skip);
            w[i] = w0;
            double fdi = (a - b) / 2e-5, e1 = fabs(g[i] - fdi) / (gmax + 1e-12);
            if (e1 > err[1]) err[1] = e1;
            if (!(e1 < 1e-4)) fail_msg("%s %s[%lld]: gradient %.9g, finite difference %.9g", f->name, name, (long long)i,
                                       g[i], fdi);
        }
        free(r);
    }
    dref_free(d);
    lop_grad_store_free(gs);
    lop_trainer_free(t);
    lop_model_free(m);
}

static void test_grads_vs_float64_fd(void **st) {
    (void)st;
    for (int fi = 0; fi < N_TRAIN_FAMILIES; fi++) {
        double err[2];
        check_grads(&TRAIN_FAMILIES[fi], 21 + fi, NULL, err);
        printf("  %-16s every tensor: directional rel. error %.1e, elementwise (/max|g|) %.1e\n", TRAIN_FAMILIES[fi].name,
               err[0], err[1]);
    }
}

static void test_grads_with_skipped_modules(void **st) {
    (void)st;
    uint8_t skip_hetero[4] = {LOP_SKIP_FFN, 0, LOP_SKIP_ATTN, LOP_SKIP_ATTN | LOP_SKIP_FFN};
    uint8_t skip_mha[2] = {LOP_SKIP_ATTN, 0};
    double err[2];
    check_grads(&TRAIN_FAMILIES[2], 5, skip_hetero, err);
    printf("  hetero, skipping modules: directional %.1e, elementwise %.1e\n", err[0], err[1]);
    check_grads(&TRAIN_FAMILIES[0], 6, skip_mha, err);
    printf("  mha, attention 0 skipped: directional %.1e, elementwise %.1e\n", err[0], err[1]);
}

/* ---- the trainer's own fp32 loss -------------------------------------------------------- */
static void test_grads_vs_fp32_fd(void **st) {
    (void)st;
    const train_family *f = &TRAIN_FAMILIES[0];
    lop_model *m = train_family_make(f, 3);
    int32_t tok[NSEQ * SEQ];
    train_tokens(tok, NSEQ * SEQ, m->cfg.vocab_size, 3);
    lop_trainer *t;
    lop_trainer_opts to = {.max_tokens = 64, .n_threads = 1};
    assert_int_equal(lop_trainer_create(m, &to, &t), LOP_OK);
    lop_grad_store *gs;
    assert_int_equal(lop_grad_store_new(m, &gs), LOP_OK);
    lop_grad_sink sink = lop_grad_store_sink(gs);
    assert_int_equal(lop_trainer_backward(t, tok, NSEQ, SEQ, FIRST, 1.0, &sink, NULL, NULL), LOP_OK);
    lop_param_id ids[64];
    int np = train_all_params(m, ids);
    double worst = 0;
    for (int k = 0; k < np; k++) {
        const lop_tensor *tt = lop_param_tensor(m, ids[k]);
        float *w = tt->data; /* F32: the trainer reads it in place */
        int64_t n = lop_tensor_numel(tt);
        const float *g = lop_grad_store_get(gs, ids[k]);
        float *w0 = malloc((size_t)n * sizeof(float));
        memcpy(w0, w, (size_t)n * sizeof(float));
        double dot = 0, mag = 0, h = 1e-3, lp, lm;
        for (int64_t i = 0; i < n; i++) {
            double r = lop_synth_value(4, 5, (uint64_t)(k * 7919 + i), 0.577f);
            dot += g[i] * r;
            mag += fabs(g[i] * r);
            w[i] = (float)(w0[i] + h * r);
        }
        assert_int_equal(lop_trainer_loss(t, tok, NSEQ, SEQ, FIRST, &lp, NULL), LOP_OK);
        for (int64_t i = 0; i < n; i++) w[i] = (float)(w0[i] - h * lop_synth_value(4, 5, (uint64_t)(k * 7919 + i), 0.577f));
        assert_int_equal(lop_trainer_loss(t, tok, NSEQ, SEQ, FIRST, &lm, NULL), LOP_OK);
        memcpy(w, w0, (size_t)n * sizeof(float));
        free(w0);
        double e = fabs(dot - (lp - lm) / (2 * h)) / mag;
        if (e > worst) worst = e;
        if (!(e < 2e-2)) fail_msg("tensor %d: fp32 finite difference off by %.3g (relative)", k, e);
    }
    printf("  fp32 finite differences of the trainer's own loss: worst directional rel. error %.1e\n", worst);
    lop_grad_store_free(gs);
    lop_trainer_free(t);
    lop_model_free(m);
}

/* ---- the Taylor sink -------------------------------------------------------------------- */
static void test_wgrad_sink(void **st) {
    (void)st;
    const train_family *f = &TRAIN_FAMILIES[1];
    lop_model *m = train_family_make(f, 8);
    int32_t tok[NSEQ * SEQ];
    train_tokens(tok, NSEQ * SEQ, m->cfg.vocab_size, 8);
    lop_trainer *t;
    assert_int_equal(lop_trainer_create(m, NULL, &t), LOP_OK);
    lop_grad_store *gs;
    assert_int_equal(lop_grad_store_new(m, &gs), LOP_OK);
    lop_grad_sink s1 = lop_grad_store_sink(gs);
    assert_int_equal(lop_trainer_backward(t, tok, NSEQ, SEQ, 1, 0.5, &s1, NULL, NULL), LOP_OK);
    double *acc = calloc((size_t)lop_wgrad_acc_len(m), sizeof(double));
    lop_wgrad wg = {acc, m->cfg.n_layers, 1};
    lop_grad_sink s2 = lop_wgrad_sink(&wg);
    /* accumulated over two calls of one sequence each */
    for (int s = 0; s < NSEQ; s++)
        assert_int_equal(lop_trainer_backward(t, tok + s * SEQ, 1, SEQ, 1, 0.5, &s2, NULL, NULL), LOP_OK);
    lop_param_id ids[64];
    int np = train_all_params(m, ids);
    for (int k = 0; k < np; k++) {
        const lop_tensor *tt = lop_param_tensor(m, ids[k]);
        const float *w = tt->data, *g = lop_grad_store_get(gs, ids[k]);
        double want = 0;
        for (int64_t i = 0; i < lop_tensor_numel(tt); i++) want += (double)w[i] * g[i];
        double got = lop_wgrad_get(&wg, ids[k]);
        if (!(fabs(got - want) <= 1e-5 * fabs(want) + 1e-9)) fail_msg("tensor %d: sum W*g %.9g, want %.9g", k, got, want);
    }
    /* layer-only accumulator ignores the global tensors */
    memset(acc, 0, (size_t)lop_wgrad_acc_len(m) * sizeof(double));
    wg.with_global = 0;
    assert_int_equal(lop_trainer_backward(t, tok, NSEQ, SEQ, 1, 0.5, &s2, NULL, NULL), LOP_OK);
    assert_true(lop_wgrad_get(&wg, (lop_param_id){-1, LOP_GF_TOK_EMB}) == 0);
    assert_true(lop_wgrad_get(&wg, (lop_param_id){0, LOP_LF_wq}) != 0);
    free(acc);
    lop_grad_store_free(gs);
    lop_trainer_free(t);
    lop_model_free(m);
}

static void test_bad_arguments(void **st) {
    (void)st;
    lop_model *m = train_family_make(&TRAIN_FAMILIES[0], 1);
    lop_trainer *t;
    lop_trainer_opts to = {.max_tokens = 16, .n_threads = 1};
    assert_int_equal(lop_trainer_create(m, &to, &t), LOP_OK);
    int32_t tok[32] = {0};
    assert_int_equal(lop_trainer_loss(t, tok, 2, 16, 1, NULL, NULL), LOP_ERR_ARG); /* 32 > 16 positions */
    assert_int_equal(lop_trainer_loss(t, tok, 1, 8, 0, NULL, NULL), LOP_ERR_ARG);  /* first < 1 */
    tok[3] = 1000;
    assert_int_equal(lop_trainer_loss(t, tok, 1, 8, 1, NULL, NULL), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "token id 1000"));
    uint8_t bad[2] = {4, 0};
    assert_int_equal(lop_trainer_set_skip(t, bad), LOP_ERR_ARG);
    lop_trainer_free(t);
    lop_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_matches_engine), cmocka_unit_test(test_grads_vs_float64_fd),
        cmocka_unit_test(test_grads_with_skipped_modules), cmocka_unit_test(test_grads_vs_fp32_fd),
        cmocka_unit_test(test_wgrad_sink), cmocka_unit_test(test_bad_arguments)};
    return cmocka_run_group_tests_name("backward", tests, NULL, NULL);
}
