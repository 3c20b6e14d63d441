/* Forward-pass consistency and generation on tiny heterogeneous models (CPU): one prefill equals
 * token-by-token decode, a ragged batch equals its sequences run alone, EOS / exact-N stopping,
 * seeded sampling is reproducible, bad batches are refused. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "runtime/engine.h"
#include "tiny_model.h"

static const tiny_layer HETERO[4] = {
    {4, 2, 8, 40, 0, 0, 0}, /* GQA */
    {2, 1, 8, 24, 1, 1, 0}, /* narrower, o/down biases */
    {0, 0, 8, 32, 0, 0, 0}, /* no attention */
    {3, 3, 8, 0, 0, 0, 1},  /* no FFN, qkv biases */
};

static lop_model *model(void) {
    lop_model *m = tiny_model(97, 24, 4, HETERO, 0, 11);
    assert_non_null(m);
    return m;
}

static lop_engine *engine(lop_model *m, int batch) {
    lop_engine_opts o = {.device = LOP_DEVICE_CPU, .max_batch = batch, .max_seq_len = 64, .n_threads = 1};
    lop_engine *e;
    assert_int_equal(lop_engine_create(m, &o, &e), LOP_OK);
    return e;
}

static double max_rel_diff(const float *a, const float *b, int n) {
    double mx = 0, scale = 0;
    for (int i = 0; i < n; i++) {
        if (fabs(a[i] - b[i]) > mx) mx = fabs(a[i] - b[i]);
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
    }
    return mx / (scale > 0 ? scale : 1);
}

static void test_prefill_equals_decode(void **st) {
    (void)st;
    lop_model *m = model();
    lop_engine *e = engine(m, 1);
    int32_t toks[9] = {5, 17, 3, 88, 42, 1, 60, 7, 33}, seq[9] = {0}, pos[9], all[9];
    for (int i = 0; i < 9; i++) pos[i] = i, all[i] = i;
    int V = 97;
    float *full = malloc(9 * V * sizeof(float)), *step = malloc(V * sizeof(float));
    lop_batch b = {9, toks, seq, pos, 9, all};
    assert_int_equal(lop_engine_forward(e, &b, full), LOP_OK);
    for (int i = 0; i < 9; i++) {
        int32_t zero = 0;
        lop_batch d = {1, toks + i, seq, pos + i, 1, &zero};
        assert_int_equal(lop_engine_forward(e, &d, step), LOP_OK);
        assert_true(max_rel_diff(step, full + i * V, V) < 1e-5);
    }
    /* logits are not degenerate */
    assert_true(fabs(full[0] - full[1]) > 1e-3);
    free(full);
    free(step);
    lop_engine_free(e);
    lop_model_free(m);
}

static void test_ragged_batch_equals_alone(void **st) {
    (void)st;
    lop_model *m = model();
    int32_t p0[] = {4, 8, 15, 16, 23, 42}, p1[] = {9}, p2[] = {50, 51, 52};
    const int32_t *prompts[3] = {p0, p1, p2};
    int lens[3] = {6, 1, 3};
    lop_gen_params gp = {.max_new_tokens = 12, .ignore_eos = 1, .sampling = {0, 0, 1, 0}};
    lop_engine *eb = engine(m, 3);
    lop_gen_result rb;
    assert_int_equal(lop_generate(eb, prompts, lens, 3, &gp, &rb), LOP_OK);
    for (int s = 0; s < 3; s++) {
        lop_engine *e1 = engine(m, 1);
        lop_gen_result r1;
        assert_int_equal(lop_generate(e1, &prompts[s], &lens[s], 1, &gp, &r1), LOP_OK);
        assert_int_equal(r1.n_tokens[0], 12);
        assert_int_equal(rb.n_tokens[s], 12);
        assert_memory_equal(r1.tokens[0], rb.tokens[s], 12 * sizeof(int32_t));
        lop_gen_result_free(&r1);
        lop_engine_free(e1);
    }
    /* the three sequences do not all say the same thing */
    assert_true(memcmp(rb.tokens[0], rb.tokens[2], 12 * sizeof(int32_t)) != 0);
    lop_gen_result_free(&rb);
    lop_engine_free(eb);
    lop_model_free(m);
}

static void test_eos_and_exact_n(void **st) {
    (void)st;
    lop_model *m = model();
    lop_engine *e = engine(m, 1);
    int32_t p[] = {3, 1, 4, 1, 5};
    const int32_t *pp = p;
    int len = 5;
    lop_gen_params gp = {.max_new_tokens = 10, .ignore_eos = 1, .sampling = {0, 0, 1, 0}};
    lop_gen_result r;
    assert_int_equal(lop_generate(e, &pp, &len, 1, &gp, &r), LOP_OK);
    assert_int_equal(r.n_tokens[0], 10);
    int third = r.tokens[0][2];
    int first_occ = 0;
    while (r.tokens[0][first_occ] != third) first_occ++;
    lop_gen_result_free(&r);
    m->cfg.eos_id = third; /* make the 3rd greedy token the EOS: generation stops there */
    gp.ignore_eos = 0;
    assert_int_equal(lop_generate(e, &pp, &len, 1, &gp, &r), LOP_OK);
    assert_int_equal(r.n_tokens[0], first_occ + 1);
    assert_int_equal(r.tokens[0][first_occ], third);
    lop_gen_result_free(&r);
    lop_engine_free(e);
    lop_model_free(m);
}

static void test_sampling_reproducible(void **st) {
    (void)st;
    lop_model *m = model();
    lop_engine *e = engine(m, 2);
    int32_t p[] = {7, 7, 7};
    const int32_t *pp[2] = {p, p};
    int lens[2] = {3, 3};
    lop_gen_params gp = {.max_new_tokens = 20, .ignore_eos = 1, .sampling = {1.0f, 50, 0.95f, 1234}};
    lop_gen_result a, b;
    assert_int_equal(lop_generate(e, pp, lens, 2, &gp, &a), LOP_OK);
    assert_int_equal(lop_generate(e, pp, lens, 2, &gp, &b), LOP_OK);
    assert_memory_equal(a.tokens[0], b.tokens[0], 20 * sizeof(int32_t));
    assert_memory_equal(a.tokens[1], b.tokens[1], 20 * sizeof(int32_t));
    /* two sequences of one batch draw from different streams */
    assert_true(memcmp(a.tokens[0], a.tokens[1], 20 * sizeof(int32_t)) != 0);
    lop_gen_result_free(&a);
    lop_gen_result_free(&b);
    lop_engine_free(e);
    lop_model_free(m);
}

static void test_bad_batches(void **st) {
    (void)st;
    lop_model *m = model();
    lop_engine *e = engine(m, 1);
    float logits[97];
    int32_t t = 5, s = 0, p = 64, z = 0, bad = 97, seq1 = 1;
    lop_batch b = {1, &t, &s, &p, 1, &z};
    assert_int_equal(lop_engine_forward(e, &b, logits), LOP_ERR_ARG); /* past the KV length */
    assert_non_null(strstr(lop_last_error(), "KV cache"));
    p = 0;
    b.tokens = &bad;
    assert_int_equal(lop_engine_forward(e, &b, logits), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "token id 97"));
    b.tokens = &t;
    b.seq = &seq1;
    assert_int_equal(lop_engine_forward(e, &b, logits), LOP_ERR_ARG);
    int32_t pr[2] = {1, 2};
    const int32_t *pp[2] = {pr, pr};
    int lens[2] = {2, 2};
    lop_gen_params gp = {.max_new_tokens = 4};
    lop_gen_result r;
    assert_int_equal(lop_generate(e, pp, lens, 2, &gp, &r), LOP_ERR_ARG); /* batch of 2, engine holds 1 */
    lop_engine_free(e);
    lop_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefill_equals_decode), cmocka_unit_test(test_ragged_batch_equals_alone),
        cmocka_unit_test(test_eos_and_exact_n),       cmocka_unit_test(test_sampling_reproducible),
        cmocka_unit_test(test_bad_batches),
    };
    return cmocka_run_group_tests_name("generate", tests, NULL, NULL);
}
