/* Perplexity: the window/BOS layouts of the paper's protocol checked against a hand computation on
 * a model whose next-token distribution is known in closed form, and window independence (no
 * context carried across windows) on a random tiny model with attention. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "eval/ppl.h"
#include "tiny_model.h"

/* ---- the closed-form model -----------------------------------------------------------------
 * vocab 4, dim 4, one layer with neither attention nor FFN, so the hidden state is the embedding.
 * emb[t] = 2·e_t, out_norm = 1  →  h = 2/sqrt(1+eps)·e_t;  lm_head[v][d] = A when v == d+1 (mod 4).
 * So logits = s at v = t+1 (mod 4) and 0 elsewhere, s = 2A/sqrt(1+eps):
 *   NLL(next == t+1) = log(e^s + 3) - s,   NLL(any other next) = log(e^s + 3). */
#define A 1.5

static lop_model *hand_model(void) {
    static const tiny_layer none[1] = {{0, 0, 4, 0, 0, 0, 0}};
    lop_model *m = tiny_model(4, 4, 1, none, 0, 1);
    assert_non_null(m);
    float *emb = m->w.tok_emb.data, *head = m->w.lm_head.data, *norm = m->w.out_norm.data;
    for (int v = 0; v < 4; v++)
        for (int d = 0; d < 4; d++) {
            emb[v * 4 + d] = v == d ? 2.0f : 0.0f;
            head[v * 4 + d] = v == (d + 1) % 4 ? (float)A : 0.0f;
        }
    for (int d = 0; d < 4; d++) norm[d] = 1.0f;
    return m;
}

static double hand_nll(int32_t prev, int32_t next, float eps) {
    double s = 2 * A / sqrt(1.0 + (double)(float)eps);
    return log(exp(s) + 3) - (next == (prev + 1) % 4 ? s : 0);
}

static const int32_t TEXT[10] = {0, 1, 2, 3, 3, 0, 1, 1, 2, 0};
#define BOS 2

static void check(lop_engine *e, const lop_model *m, lop_ppl_bos bos, int ctx, int64_t max_windows,
                  /* expected: */ int64_t nw, int64_t dropped, const int32_t (*pairs)[2], int n_pairs) {
    lop_ppl_opts o = {ctx, bos, max_windows, 2, NULL};
    lop_ppl_result r;
    assert_int_equal(lop_ppl_eval_tokens(e, TEXT, 10, BOS, &o, &r), LOP_OK);
    assert_int_equal(r.n_windows, nw);
    assert_int_equal(r.n_dropped, dropped);
    int each = bos == LOP_PPL_BOS_EACH;
    assert_int_equal(r.n_scored, n_pairs);
    assert_int_equal(r.n_scored, nw * (ctx - 1 + each));
    assert_int_equal(r.n_fed, nw * (ctx + each));
    assert_int_equal(r.n_text_tokens, 10);
    double sum = 0;
    for (int i = 0; i < n_pairs; i++) sum += hand_nll(pairs[i][0], pairs[i][1], m->cfg.norm_eps);
    if (fabs(r.mean_nll - sum / n_pairs) > 1e-5) fail_msg("mean NLL %.8f, by hand %.8f", r.mean_nll, sum / n_pairs);
    if (fabs(r.ppl - exp(sum / n_pairs)) > 1e-4 * r.ppl) fail_msg("PPL %.6f, by hand %.6f", r.ppl, exp(sum / n_pairs));
    double wsum = 0;
    for (int64_t w = 0; w < r.n_windows; w++) wsum += r.window_nll[w];
    assert_true(fabs(wsum - r.mean_nll * r.n_scored) < 1e-6 * (1 + wsum));
    lop_ppl_result_free(&r);
}

static void test_hand_computation_layouts(void **st) {
    (void)st;
    lop_model *m = hand_model();
    lop_engine_opts eo = {.device = LOP_DEVICE_CPU, .max_batch = 2, .max_seq_len = 8, .n_threads = 1};
    lop_engine *e;
    assert_int_equal(lop_engine_create(m, &eo, &e), LOP_OK);

    /* BOS first, ctx 4: stream B 0 1 2 | 3 3 0 1 | (1 2 0 dropped). Predicted: 3 per window; the
     * first token of window 2 (3) is context only, never predicted. */
    static const int32_t first[][2] = {{BOS, 0}, {0, 1}, {1, 2}, {3, 3}, {3, 0}, {0, 1}};
    check(e, m, LOP_PPL_BOS_FIRST, 4, 0, 2, 3, first, 6);
    /* only the first window */
    check(e, m, LOP_PPL_BOS_FIRST, 4, 1, 1, 7, first, 3);
    /* BOS each window (Shortened-LLM's add_bos_to_every), ctx 4: B 0 1 2 3 | B 3 0 1 1 | (2 0
     * dropped); 5 tokens fed per window, every text token of a window predicted */
    static const int32_t each[][2] = {{BOS, 0}, {0, 1}, {1, 2}, {2, 3}, {BOS, 3}, {3, 0}, {0, 1}, {1, 1}};
    check(e, m, LOP_PPL_BOS_EACH, 4, 0, 2, 2, each, 8);
    /* ... which needs ctx + 1 positions: ctx 8 with BOS each does not fit the 8-position engine */
    lop_ppl_opts oe = {8, LOP_PPL_BOS_EACH, 0, 0, NULL};
    lop_ppl_result re;
    assert_int_equal(lop_ppl_eval_tokens(e, TEXT, 10, BOS, &oe, &re), LOP_ERR_ARG);
    /* no BOS, ctx 4: 0 1 2 3 | 3 0 1 1 | (2 0 dropped) */
    static const int32_t none[][2] = {{0, 1}, {1, 2}, {2, 3}, {3, 0}, {0, 1}, {1, 1}};
    check(e, m, LOP_PPL_BOS_NONE, 4, 0, 2, 2, none, 6);
    /* ctx 5 with BOS first: B 0 1 2 3 | 3 0 1 1 2 | (0 dropped) */
    static const int32_t first5[][2] = {{BOS, 0}, {0, 1}, {1, 2}, {2, 3}, {3, 0}, {0, 1}, {1, 1}, {1, 2}};
    check(e, m, LOP_PPL_BOS_FIRST, 5, 0, 2, 1, first5, 8);

    /* the layout helper agrees, and a model without BOS falls back to NONE */
    int64_t nw, dr;
    lop_ppl_layout(301948, 128, LOP_PPL_BOS_FIRST, &nw, &dr);
    assert_int_equal(nw, 2358);
    assert_int_equal(dr, 301948 - (2358 * 128 - 1));
    lop_ppl_opts o = {4, LOP_PPL_BOS_FIRST, 0, 0, NULL};
    lop_ppl_result r;
    assert_int_equal(lop_ppl_eval_tokens(e, TEXT, 10, -1, &o, &r), LOP_OK);
    assert_int_equal(r.bos, LOP_PPL_BOS_NONE);
    assert_int_equal(r.n_windows, 2);
    lop_ppl_result_free(&r);

    /* errors: window longer than the engine, too short a text, ctx < 2 */
    o.ctx = 9;
    assert_int_equal(lop_ppl_eval_tokens(e, TEXT, 10, BOS, &o, &r), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "exceeds"));
    o.ctx = 8;
    assert_int_equal(lop_ppl_eval_tokens(e, TEXT, 5, BOS, &o, &r), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "fewer than one window"));
    o.ctx = 1;
    assert_int_equal(lop_ppl_eval_tokens(e, TEXT, 10, BOS, &o, &r), LOP_ERR_ARG);
    lop_engine_free(e);
    lop_model_free(m);
}

/* Windows are independent sequences: batching several windows into one forward gives the same NLL
 * as running each window alone, and differs from running the stream as one long sequence. */
static void test_windows_independent(void **st) {
    (void)st;
    static const tiny_layer L[2] = {{4, 2, 8, 40, 0, 0, 0}, {4, 4, 8, 24, 0, 0, 0}};
    lop_model *m = tiny_model(50, 32, 2, L, 1, 9);
    assert_non_null(m);
    int32_t text[64];
    for (int i = 0; i < 64; i++) text[i] = (i * 37 + 11) % 50;
    lop_engine_opts eo = {.device = LOP_DEVICE_CPU, .max_batch = 4, .max_seq_len = 64, .n_threads = 1};
    lop_engine *e;
    assert_int_equal(lop_engine_create(m, &eo, &e), LOP_OK);
    lop_ppl_opts o = {16, LOP_PPL_BOS_FIRST, 0, 3, NULL};
    lop_ppl_result all;
    assert_int_equal(lop_ppl_eval_tokens(e, text, 64, 1, &o, &all), LOP_OK);
    assert_int_equal(all.n_windows, 4); /* 65 / 16 */
    /* window k alone, by a direct forward with a hand-written log-softmax */
    int32_t seq[65];
    seq[0] = 1;
    memcpy(seq + 1, text, sizeof text);
    float lg[16 * 50];
    double total = 0;
    for (int k = 0; k < 4; k++) {
        int32_t sl[16] = {0}, pos[16];
        for (int t = 0; t < 16; t++) pos[t] = t;
        lop_batch b = {16, seq + 16 * k, sl, pos, 16, pos};
        assert_int_equal(lop_engine_forward(e, &b, lg), LOP_OK);
        double w = 0;
        for (int t = 1; t < 16; t++) {
            const float *row = lg + (t - 1) * 50;
            double mx = row[0], z = 0;
            for (int v = 1; v < 50; v++) mx = row[v] > mx ? row[v] : mx;
            for (int v = 0; v < 50; v++) z += exp(row[v] - mx);
            w += -(row[seq[16 * k + t]] - mx - log(z));
        }
        if (fabs(w - all.window_nll[k]) > 1e-4) fail_msg("window %d: %.6f alone, %.6f batched", k, w, all.window_nll[k]);
        total += w;
    }
    assert_true(fabs(exp(total / 60) - all.ppl) < 1e-4 * all.ppl);
    /* a single 64-token sequence (context carried) scores window 2's tokens differently */
    o.ctx = 64;
    o.bos = LOP_PPL_BOS_NONE;
    lop_ppl_result one;
    assert_int_equal(lop_ppl_eval_tokens(e, text, 64, 1, &o, &one), LOP_OK);
    assert_true(fabs(one.mean_nll - all.mean_nll) > 1e-3);
    lop_ppl_result_free(&one);
    lop_ppl_result_free(&all);
    lop_engine_free(e);
    lop_model_free(m);
}

/* CRLF and CR → LF when reading the text, as Python's text mode does. */
static void test_read_text_lf(void **st) {
    (void)st;
    char path[] = "/tmp/lop-ppl-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char raw[] = " = A = \r\n b\r\n\r\nc\rd\n";
    assert_int_equal(write(fd, raw, sizeof raw - 1), (int)(sizeof raw - 1));
    close(fd);
    char *t;
    size_t n;
    assert_int_equal(lop_read_text_lf(path, &t, &n), LOP_OK);
    assert_string_equal(t, " = A = \n b\n\nc\nd\n");
    assert_int_equal(n, strlen(t));
    free(t);
    unlink(path);
    assert_int_equal(lop_read_text_lf("/nonexistent/wiki.raw", &t, &n), LOP_ERR_IO);
    assert_non_null(strstr(lop_last_error(), "/nonexistent/wiki.raw"));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_hand_computation_layouts),
                                       cmocka_unit_test(test_windows_independent),
                                       cmocka_unit_test(test_read_text_lf)};
    return cmocka_run_group_tests_name("ppl", tests, NULL, NULL);
}
