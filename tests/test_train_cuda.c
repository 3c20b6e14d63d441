/* The CUDA trainer against the CPU trainer (which test_backward checks against finite differences
 * and test_grad_hf against HF autograd), on the tiny model families and a wider model:
 *  - loss, every forward piece (embed, each module, its projection input, layer ranges, head);
 *  - every tensor's gradient (full-gradient sink, two calls accumulating) and the W * dL/dW sums
 *    reduced on the device, with skipped modules;
 *  - the pruning criteria built on it: depth scores (Taylor, PPL, BI) and width plans (LLM-Pruner,
 *    Wanda-sp, FLAP) on CUDA equal the CPU's, the same units selected.
 * Tolerances are normalised by the largest reference value and stated in each printed line: the
 * two sides differ only in fp32 summation order. Needs a GPU: skipped without one (CI). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "prune/criteria.h"
#include "prune/width.h"
#include "train/train.h"
#include "nerr.h"
#include "train_families.h"

#ifndef LOP_HAVE_CUDA
static void test_cuda_not_built(void **st) {
    (void)st;
    printf("SKIPPED: CUDA trainer tests: this build has no CUDA backend (nvcc was not found, or CUDA=0)\n");
    skip();
}
int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cuda_not_built)};
    return cmocka_run_group_tests_name("train_cuda", tests, NULL, NULL);
}
#else
#include "runtime/cuda/cuda_api.h"

static int g_gpu;
#define NEED_GPU()                                                                                 \
    do {                                                                                           \
        if (!g_gpu) skip();                                                                        \
    } while (0)
#define OK(expr)                                                                                   \
    do {                                                                                           \
        lop_status _s = (expr);                                                                    \
        if (_s != LOP_OK) fail_msg("%s: %s", #expr, lop_last_error());                            \
    } while (0)

static double g_worst;
static void check(const char *what, double e, double tol) {
    if (e > g_worst || isnan(e)) g_worst = e;
    if (!(e <= tol)) fail_msg("%s: normalised error %.3e > %.0e", what, e, tol);
}

static int group_setup(void **st) {
    (void)st;
    const char *why = NULL;
    g_gpu = lop_cuda_device_count(&why) > 0;
    if (!g_gpu) printf("SKIPPED: CUDA trainer tests need a GPU (%s)\n", why ? why : "none");
    return 0;
}

enum { NSEQ = 3, SEQ = 9, FIRST = 2 };

static void trainers(lop_model *m, lop_trainer **cpu, lop_trainer **gpu) {
    lop_trainer_opts oc = {.max_tokens = 64, .n_threads = 2};
    lop_trainer_opts og = {.max_tokens = 64, .device = LOP_DEVICE_CUDA};
    OK(lop_trainer_create(m, &oc, cpu));
    OK(lop_trainer_create(m, &og, gpu));
}

/* ---- forward pieces and loss ------------------------------------------------------------------ */
static void test_forward_pieces(void **st) {
    (void)st;
    NEED_GPU();
    g_worst = 0;
    for (int fi = 0; fi < N_TRAIN_FAMILIES; fi++) {
        lop_model *m = train_family_make(&TRAIN_FAMILIES[fi], 31 + fi);
        lop_trainer *c, *g;
        trainers(m, &c, &g);
        int n = NSEQ * SEQ, D = m->cfg.dim;
        int32_t tok[NSEQ * SEQ];
        train_tokens(tok, n, m->cfg.vocab_size, 7 + fi);
        double lc, lg;
        int64_t nc, ng;
        OK(lop_trainer_loss(c, tok, NSEQ, SEQ, FIRST, &lc, &nc));
        OK(lop_trainer_loss(g, tok, NSEQ, SEQ, FIRST, &lg, &ng));
        assert_int_equal(nc, ng);
        check("loss", fabs(lg - lc) / fabs(lc), 1e-5);
        float *xc = malloc((size_t)n * D * 4), *xg = malloc((size_t)n * D * 4);
        OK(lop_trainer_embed(c, tok, n, xc));
        OK(lop_trainer_embed(g, tok, n, xg));
        check("embed", nerr(xg, xc, (int64_t)n * D), 0);
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int mod = LOP_SKIP_ATTN; mod <= LOP_SKIP_FFN; mod <<= 1) {
                OK(lop_trainer_module(c, l, mod, xc, NSEQ, SEQ));
                OK(lop_trainer_module(g, l, mod, xg, NSEQ, SEQ));
                check("module output", nerr(xg, xc, (int64_t)n * D), 1e-5);
                const lop_layer_shape *s = &m->cfg.layers[l];
                int w = mod == LOP_SKIP_ATTN ? s->n_heads * s->head_dim : s->ffn_dim;
                if (!w) continue;
                const float *pc = lop_trainer_proj_input(c, mod), *pg = lop_trainer_proj_input(g, mod);
                assert_non_null(pg);
                check("projection input", nerr(pg, pc, (int64_t)n * w), 1e-5);
                memcpy(xg, xc, (size_t)n * D * 4); /* next module from the same input */
            }
        double hc, hg;
        OK(lop_trainer_head_nll(c, xc, tok, NSEQ, SEQ, FIRST, &hc, NULL));
        OK(lop_trainer_head_nll(g, xc, tok, NSEQ, SEQ, FIRST, &hg, NULL));
        check("head nll", fabs(hg - hc) / fabs(hc), 1e-5);
        /* a layer range with a skipped module */
        uint8_t skip[4] = {0, LOP_SKIP_FFN, LOP_SKIP_ATTN, 0};
        OK(lop_trainer_set_skip(c, skip));
        OK(lop_trainer_set_skip(g, skip));
        OK(lop_trainer_embed(c, tok, n, xc));
        memcpy(xg, xc, (size_t)n * D * 4);
        OK(lop_trainer_layers(c, 0, m->cfg.n_layers, xc, NSEQ, SEQ));
        OK(lop_trainer_layers(g, 0, m->cfg.n_layers, xg, NSEQ, SEQ));
        check("layers with skipped modules", nerr(xg, xc, (int64_t)n * D), 1e-5);
        OK(lop_trainer_loss(c, tok, NSEQ, SEQ, FIRST, &lc, NULL));
        OK(lop_trainer_loss(g, tok, NSEQ, SEQ, FIRST, &lg, NULL));
        check("loss with skipped modules", fabs(lg - lc) / fabs(lc), 1e-5);
        free(xc), free(xg);
        lop_trainer_free(c);
        lop_trainer_free(g);
        lop_model_free(m);
    }
    printf("  forward pieces of %d families: worst normalised error %.2e (tolerance 1e-5)\n", N_TRAIN_FAMILIES, g_worst);
}

/* ---- gradients ---------------------------------------------------------------------------------- */
static void grads_case(const train_family *f, uint64_t seed, const uint8_t *skip, double *worst_g, double *worst_w) {
    lop_model *m = train_family_make(f, seed);
    lop_trainer *c, *g;
    trainers(m, &c, &g);
    OK(lop_trainer_set_skip(c, skip));
    OK(lop_trainer_set_skip(g, skip));
    int32_t tok[NSEQ * SEQ];
    train_tokens(tok, NSEQ * SEQ, m->cfg.vocab_size, seed * 3);
    lop_grad_store *sc, *sg;
    OK(lop_grad_store_new(m, &sc));
    OK(lop_grad_store_new(m, &sg));
    lop_grad_sink kc = lop_grad_store_sink(sc), kg = lop_grad_store_sink(sg);
    /* two calls: the store accumulates */
    double nc, ng;
    OK(lop_trainer_backward(c, tok, 2, SEQ, FIRST, 0.5, &kc, &nc, NULL));
    OK(lop_trainer_backward(g, tok, 2, SEQ, FIRST, 0.5, &kg, &ng, NULL));
    check("backward loss", fabs(ng - nc) / fabs(nc), 1e-5);
    OK(lop_trainer_backward(c, tok + 2 * SEQ, 1, SEQ, FIRST, 0.5, &kc, NULL, NULL));
    OK(lop_trainer_backward(g, tok + 2 * SEQ, 1, SEQ, FIRST, 0.5, &kg, NULL, NULL));
    lop_param_id ids[128];
    int np = train_all_params(m, ids);
    for (int k = 0; k < np; k++) {
        const float *a = lop_grad_store_get(sc, ids[k]), *b = lop_grad_store_get(sg, ids[k]);
        char name[96];
        lop_param_name(ids[k], name, sizeof name);
        if (!a) { /* skipped: neither side has it */
            if (b) fail_msg("%s: CUDA gave a gradient the CPU did not", name);
            continue;
        }
        if (!b) fail_msg("%s: no CUDA gradient", name);
        double e = nerr(b, a, lop_tensor_numel(lop_param_tensor(m, ids[k])));
        if (e > *worst_g) *worst_g = e;
        check(name, e, 1e-4);
    }
    /* W * dL/dW, reduced on the device, globals included, accumulated over two calls */
    int64_t len = lop_wgrad_acc_len(m);
    double *ac = calloc((size_t)len, sizeof(double)), *ag = calloc((size_t)len, sizeof(double));
    lop_wgrad wc = {ac, m->cfg.n_layers, 1}, wgd = {ag, m->cfg.n_layers, 1};
    lop_grad_sink kwc = lop_wgrad_sink(&wc), kwg = lop_wgrad_sink(&wgd);
    for (int call = 0; call < 2; call++) {
        OK(lop_trainer_backward(c, tok + call * SEQ, 1, SEQ, FIRST, 1.0, &kwc, NULL, NULL));
        OK(lop_trainer_backward(g, tok + call * SEQ, 1, SEQ, FIRST, 1.0, &kwg, NULL, NULL));
    }
    double e = nerr_d(ag, ac, len);
    if (e > *worst_w) *worst_w = e;
    check("W * dL/dW sums", e, 1e-4);
    free(ac), free(ag);
    lop_grad_store_free(sc);
    lop_grad_store_free(sg);
    lop_trainer_free(c);
    lop_trainer_free(g);
    lop_model_free(m);
}

static void test_gradients(void **st) {
    (void)st;
    NEED_GPU();
    double wg = 0, ww = 0;
    for (int fi = 0; fi < N_TRAIN_FAMILIES; fi++) grads_case(&TRAIN_FAMILIES[fi], 41 + fi, NULL, &wg, &ww);
    uint8_t skip_hetero[4] = {LOP_SKIP_FFN, 0, LOP_SKIP_ATTN, LOP_SKIP_ATTN | LOP_SKIP_FFN};
    grads_case(&TRAIN_FAMILIES[2], 9, skip_hetero, &wg, &ww);
    printf("  every gradient (%d families + skipped modules): worst normalised error %.2e, W*dL/dW sums %.2e "
           "(tolerance 1e-4)\n", N_TRAIN_FAMILIES, wg, ww);
}

/* ---- a wider model: long rows, many heads, GQA, a sequence longer than a warp's keys ---------- */
static void test_wider_model(void **st) {
    (void)st;
    NEED_GPU();
    tiny_layer L[3] = {{8, 2, 16, 200, 0, 0, 0}, {6, 3, 16, 136, 0, 1, 0}, {8, 8, 16, 96, 1, 0, 1}};
    lop_model *m = tiny_model(300, 128, 3, L, 0, 77);
    assert_non_null(m);
    enum { S = 2, T = 150 };
    lop_trainer_opts oc = {.max_tokens = S * T, .n_threads = 2}, og = {.max_tokens = S * T, .device = LOP_DEVICE_CUDA};
    lop_trainer *c, *g;
    OK(lop_trainer_create(m, &oc, &c));
    OK(lop_trainer_create(m, &og, &g));
    int32_t *tok = malloc(S * T * sizeof(int32_t));
    train_tokens(tok, S * T, 300, 5);
    int64_t len = lop_wgrad_acc_len(m);
    double *ac = calloc((size_t)len, sizeof(double)), *ag = calloc((size_t)len, sizeof(double)), nc, ng;
    lop_wgrad wc = {ac, 3, 0}, wgd = {ag, 3, 0};
    lop_grad_sink kc = lop_wgrad_sink(&wc), kg = lop_wgrad_sink(&wgd);
    OK(lop_trainer_backward(c, tok, S, T, 1, 1.0 / (S * (T - 1)), &kc, &nc, NULL));
    OK(lop_trainer_backward(g, tok, S, T, 1, 1.0 / (S * (T - 1)), &kg, &ng, NULL));
    g_worst = 0;
    check("loss", fabs(ng - nc) / fabs(nc), 1e-5);
    double e = nerr_d(ag, ac, len);
    printf("  wider model (dim 128, %d x %d tokens): loss %.6f vs %.6f, W*dL/dW sums error %.2e (tolerance 1e-4)\n", S,
           T, ng, nc, e);
    check("W * dL/dW sums", e, 1e-4);
    free(ac), free(ag), free(tok);
    lop_trainer_free(c);
    lop_trainer_free(g);
    lop_model_free(m);
}

/* ---- 16-bit weights: widened on upload (CPU: widened on the host) ------------------------------- */
static void test_bf16_weights(void **st) {
    (void)st;
    NEED_GPU();
    lop_model *m = train_family_make(&TRAIN_FAMILIES[1], 61);
    train_bf16_weights(m, 1);
    lop_trainer *c, *g;
    trainers(m, &c, &g);
    int32_t tok[NSEQ * SEQ];
    train_tokens(tok, NSEQ * SEQ, m->cfg.vocab_size, 17);
    int64_t len = lop_wgrad_acc_len(m);
    double *ac = calloc((size_t)len, sizeof(double)), *ag = calloc((size_t)len, sizeof(double)), nc, ng;
    lop_wgrad wc = {ac, m->cfg.n_layers, 0}, wgd = {ag, m->cfg.n_layers, 0};
    lop_grad_sink kc = lop_wgrad_sink(&wc), kg = lop_wgrad_sink(&wgd);
    OK(lop_trainer_backward(c, tok, NSEQ, SEQ, FIRST, 1.0, &kc, &nc, NULL));
    OK(lop_trainer_backward(g, tok, NSEQ, SEQ, FIRST, 1.0, &kg, &ng, NULL));
    g_worst = 0;
    check("bf16 loss", fabs(ng - nc) / fabs(nc), 1e-5);
    double e = nerr_d(ag, ac, len);
    printf("  bf16-stored weights: loss %.6f vs %.6f, W*dL/dW sums error %.2e (tolerance 1e-4)\n", ng, nc, e);
    check("bf16 W * dL/dW sums", e, 1e-4);
    free(ac), free(ag);
    lop_trainer_free(c);
    lop_trainer_free(g);
    lop_model_free(m);
}

/* ---- the criteria on CUDA select what they select on the CPU ---------------------------------- */
static void test_criteria_on_cuda(void **st) {
    (void)st;
    NEED_GPU();
    tiny_layer L[8];
    for (int l = 0; l < 8; l++) L[l] = (tiny_layer){4, 2, 8, 48, 0, 0, 0};
    lop_model *m = tiny_model(97, 32, 8, L, 1, 123);
    assert_non_null(m);
    lop_calib cal;
    OK(lop_calib_random(m, 6, 16, 3, &cal));
    lop_criterion crits[3] = {LOP_CRIT_TAYLOR, LOP_CRIT_PPL, LOP_CRIT_BI};
    for (int k = 0; k < 3; k++) {
        double s[2][8], loss[2];
        for (int dev = 0; dev < 2; dev++) {
            lop_scorer_opts so = {.n_threads = 2, .device = dev ? LOP_DEVICE_CUDA : LOP_DEVICE_CPU};
            lop_scorer *sc;
            OK(lop_scorer_new(m, &cal, &so, &sc));
            OK(lop_scorer_run(sc, crits[k], LOP_UNIT_BLOCK, NULL, s[dev], &loss[dev], NULL));
            lop_scorer_free(sc);
        }
        double e = nerr_d(s[1], s[0], 8);
        printf("  depth %-9s CUDA vs CPU scores: normalised error %.2e (tolerance 1e-4)\n", lop_criterion_name(crits[k]), e);
        check("depth scores", e, 1e-4);
        check("calibration loss", fabs(loss[1] - loss[0]) / fabs(loss[0]), 1e-5);
    }
    lop_width_method ms[3] = {LOP_WM_LLM_PRUNER, LOP_WM_WANDA_SP, LOP_WM_FLAP};
    for (int k = 0; k < 3; k++) {
        lop_width_plan p[2];
        for (int dev = 0; dev < 2; dev++) {
            lop_width_opts wo = {.method = ms[k], .gqa = LOP_GQA_QUERY, .target = {.kind = LOP_DEPTH_RATIO, .ratio = 0.25},
                                 .round = 1, .n_threads = 2, .device = dev ? LOP_DEVICE_CUDA : LOP_DEVICE_CPU};
            memset(&p[dev], 0, sizeof p[dev]);
            OK(lop_width_plan_make(m, &cal, &wo, &p[dev]));
        }
        double e = 0;
        int same = 1;
        for (int l = 0; l < 8; l++) {
            if (!p[0].ch_score[l]) continue;
            double el = nerr_d(p[1].ch_score[l], p[0].ch_score[l], 48);
            if (el > e) e = el;
            if (p[0].head_score[l]) {
                el = nerr_d(p[1].head_score[l], p[0].head_score[l], 4);
                if (el > e) e = el;
                same &= !memcmp(p[1].head_keep[l], p[0].head_keep[l], 4);
            }
            same &= !memcmp(p[1].ch_keep[l], p[0].ch_keep[l], 48);
        }
        printf("  width %-10s CUDA vs CPU scores: normalised error %.2e (tolerance 1e-4), same units kept: %s\n",
               lop_width_method_name(ms[k]), e, same ? "yes" : "NO");
        check("width scores", e, 1e-4);
        assert_true(same);
        lop_width_plan_free(&p[0]);
        lop_width_plan_free(&p[1]);
    }
    lop_calib_free(&cal);
    lop_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_pieces),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_wider_model),
        cmocka_unit_test(test_bf16_weights),
        cmocka_unit_test(test_criteria_on_cuda),
    };
    return cmocka_run_group_tests_name("train_cuda", tests, group_setup, NULL);
}
#endif
