/* Sequence scoring (perplexity, zero-shot, PPL criterion) against a direct forward pass with a
 * hand-written log-softmax, across batch packing boundaries. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "eval/logprob.h"
#include "tiny_model.h"

static const tiny_layer LAYERS[2] = {{4, 2, 8, 40, 0, 0, 0}, {2, 1, 8, 24, 0, 1, 0}};

static void test_scores_match_forward(void **st) {
    (void)st;
    lop_model *m = tiny_model(61, 16, 2, LAYERS, 1, 5);
    assert_non_null(m);
    int32_t s0[] = {1, 5, 9, 2, 33, 60, 7}, s1[] = {4, 4}, s2[] = {10, 20, 30, 40, 50}, s3[] = {8, 9, 10}, s4[] = {3, 1, 4, 1, 5, 9};
    lop_score_req req[5] = {{s0, 7, 1}, {s1, 2, 1}, {s2, 5, 3}, {s3, 3, 2}, {s4, 6, 6}};
    lop_engine_opts o = {.device = LOP_DEVICE_CPU, .max_batch = 2, .max_seq_len = 8, .n_threads = 1}; /* 2 slots x 8 positions: several batches */
    lop_engine *e;
    assert_int_equal(lop_engine_create(m, &o, &e), LOP_OK);
    lop_score sc[5];
    double tl[32];
    assert_int_equal(lop_score_sequences(e, req, 5, sc, tl), LOP_OK);
    int V = 61, k = 0;
    float *lg = malloc(8 * V * sizeof(float));
    for (int r = 0; r < 5; r++) {
        int n = req[r].n_tokens;
        int32_t seq[8] = {0}, pos[8];
        for (int t = 0; t < n; t++) pos[t] = t;
        lop_batch b = {n, req[r].tokens, seq, pos, n, pos};
        assert_int_equal(lop_engine_forward(e, &b, lg), LOP_OK);
        double sum = 0;
        int greedy = 1;
        for (int t = req[r].first; t < n; t++) {
            const float *row = lg + (t - 1) * V;
            double z = 0, mx = -1e30;
            int arg = 0;
            for (int i = 0; i < V; i++)
                if (row[i] > mx) mx = row[i], arg = i;
            for (int i = 0; i < V; i++) z += exp(row[i] - mx);
            double lp = row[req[r].tokens[t]] - mx - log(z);
            if (fabs(lp - tl[k]) > 1e-5) fail_msg("request %d token %d: %.9f vs %.9f", r, t, lp, tl[k]);
            k++;
            sum += lp;
            greedy &= arg == req[r].tokens[t];
        }
        assert_int_equal(sc[r].n_scored, n - req[r].first);
        assert_true(fabs(sc[r].logprob - sum) < 1e-4); /* batches differ only in float rounding */
        assert_int_equal(sc[r].greedy, greedy);
    }
    assert_true(sc[0].logprob < 0);
    /* a sequence longer than the engine's positions is refused */
    int32_t long_seq[9] = {0};
    lop_score_req bad = {long_seq, 9, 1};
    assert_int_equal(lop_score_sequences(e, &bad, 1, sc, NULL), LOP_ERR_ARG);
    free(lg);
    lop_engine_free(e);
    lop_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_scores_match_forward)};
    return cmocka_run_group_tests_name("logprob", tests, NULL, NULL);
}
