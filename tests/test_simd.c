/* The CPU backend's fast kernels against the scalar reference operators: the AVX2 ones (attention,
 * SwiGLU, softmax, log-sum-exp of logits) over head sizes and lengths that hit every loop tail
 * (skipped, visibly, on a CPU without AVX2+FMA), and BLAS attention over runs of positions. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "runtime/cpu/attn_run.h"
#include "runtime/cpu/ops.h"
#include "runtime/cpu/simd.h"
#include "runtime/engine.h"
#include "tiny_model.h"

static float rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f * 2 - 1;
}

/* every query head of one KV head at once: groups of 2 to 7 heads (three-head passes and the rest) */
static void test_attention_group(void **st) {
    (void)st;
    if (!lop_cpu_simd_available()) skip();
    uint64_t seed = 11;
    static const int hds[] = {32, 64, 128}, ctxs[] = {1, 3, 4, 5, 17, 130, 1030}, groups[] = {2, 3, 4, 5, 7};
    for (size_t a = 0; a < sizeof hds / sizeof *hds; a++)
        for (size_t b = 0; b < sizeof ctxs / sizeof *ctxs; b++)
            for (size_t c = 0; c < sizeof groups / sizeof *groups; c++) {
                int hd = hds[a], n = ctxs[b], nkv = 2, nh = nkv * groups[c], stride = nkv * hd + 8;
                float *q = malloc(sizeof(float) * nh * hd), *K = malloc(sizeof(float) * n * stride),
                      *V = malloc(sizeof(float) * n * stride), *o1 = malloc(sizeof(float) * nh * hd),
                      *o2 = malloc(sizeof(float) * nh * hd), *s1 = malloc(sizeof(float) * n),
                      *s2 = malloc(sizeof(float) * n * groups[c]);
                for (int i = 0; i < nh * hd; i++) q[i] = 3 * rnd(&seed), o2[i] = NAN;
                for (int i = 0; i < n * stride; i++) K[i] = rnd(&seed), V[i] = rnd(&seed);
                lop_cpu_attention(o1, q, K, V, n, stride, nh, nkv, hd, 0, nh, s1);
                for (int g = 0; g < nkv; g++) lop_cpu_attention_group_avx2(o2, q, K, V, n, stride, nh, nkv, hd, g, s2);
                for (int i = 0; i < nh * hd; i++)
                    if (!(fabsf(o1[i] - o2[i]) <= 2e-5f * (1 + fabsf(o1[i]))))
                        fail_msg("group %d hd %d ctx %d [%d]: %.7f vs %.7f", groups[c], hd, n, i, o1[i], o2[i]);
                free(q), free(K), free(V), free(o1), free(o2), free(s1), free(s2);
            }
}

static void test_attention(void **st) {
    (void)st;
    if (!lop_cpu_simd_available()) skip();
    uint64_t seed = 7;
    static const int hds[] = {8, 16, 64, 72, 128, 136}, ctxs[] = {1, 3, 4, 5, 17, 130, 1030};
    for (size_t a = 0; a < sizeof hds / sizeof *hds; a++)
        for (size_t b = 0; b < sizeof ctxs / sizeof *ctxs; b++) {
            int hd = hds[a], n = ctxs[b], nh = 6, nkv = 2, stride = nkv * hd + 8; /* padded rows */
            float *q = malloc(sizeof(float) * nh * hd), *K = malloc(sizeof(float) * n * stride),
                  *V = malloc(sizeof(float) * n * stride), *o1 = malloc(sizeof(float) * nh * hd),
                  *o2 = malloc(sizeof(float) * nh * hd), *s1 = malloc(sizeof(float) * n), *s2 = malloc(sizeof(float) * n);
            for (int i = 0; i < nh * hd; i++) q[i] = 3 * rnd(&seed);
            for (int i = 0; i < n * stride; i++) K[i] = rnd(&seed), V[i] = rnd(&seed);
            lop_cpu_attention(o1, q, K, V, n, stride, nh, nkv, hd, 1, nh, s1);
            lop_cpu_attention_avx2(o2, q, K, V, n, stride, nh, nkv, hd, 1, nh, s2);
            for (int i = hd; i < nh * hd; i++)
                if (fabsf(o1[i] - o2[i]) > 2e-5f * (1 + fabsf(o1[i])))
                    fail_msg("hd %d ctx %d [%d]: %.7f vs %.7f", hd, n, i, o1[i], o2[i]);
            free(q), free(K), free(V), free(o1), free(o2), free(s1), free(s2);
        }
}

static void test_swiglu_lse(void **st) {
    (void)st;
    if (!lop_cpu_simd_available()) skip();
    uint64_t seed = 3;
    enum { N = 1003 };
    float g[N], u[N], h1[N], h2[N];
    for (int i = 0; i < N; i++) g[i] = 20 * rnd(&seed), u[i] = rnd(&seed);
    g[0] = -120, g[1] = 95; /* beyond exp's float range */
    lop_cpu_swiglu(h1, g, u, N);
    lop_cpu_swiglu_avx2(h2, g, u, N);
    for (int i = 0; i < N; i++)
        if (fabsf(h1[i] - h2[i]) > 1e-5f * (1 + fabsf(h1[i]))) fail_msg("swiglu [%d] g %g: %.7g vs %.7g", i, g[i], h1[i], h2[i]);
    float x[37], y[37];
    for (int n = 1; n <= 37; n += 4) {
        double mx = -1e30, z = 0;
        for (int i = 0; i < n; i++) x[i] = y[i] = 10 * rnd(&seed), mx = x[i] > mx ? x[i] : mx;
        for (int i = 0; i < n; i++) z += exp(x[i] - mx);
        lop_cpu_softmax_avx2(y, n);
        for (int i = 0; i < n; i++)
            if (fabs(y[i] - exp(x[i] - mx) / z) > 1e-6) fail_msg("softmax n %d [%d]: %.8f vs %.8f", n, i, y[i], exp(x[i] - mx) / z);
    }
    static const int Vs[] = {1, 7, 8, 9, 255, 256, 257, 49152};
    for (size_t k = 0; k < sizeof Vs / sizeof *Vs; k++) {
        int V = Vs[k];
        float *row = malloc(sizeof(float) * V);
        for (int i = 0; i < V; i++) row[i] = 15 * rnd(&seed);
        row[V / 2] = row[V - 1] = 40; /* two equal maxima: the first is the argmax */
        double mx = -1e30, z = 0;
        for (int i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
        for (int i = 0; i < V; i++) z += exp(row[i] - mx);
        int am;
        double lse = lop_cpu_lse_avx2(row, V, &am);
        if (fabs(lse - (mx + log(z))) > 1e-6 * (1 + fabs(lse))) fail_msg("lse V %d: %.9f vs %.9f", V, lse, mx + log(z));
        assert_int_equal(am, V / 2);
        free(row);
    }
}

/* a run of n positions from p0 (prefill after a cached prefix) == the reference token by token */
static void test_attention_run(void **st) {
    (void)st;
    uint64_t seed = 11;
    static const int runs[][2] = {{0, 300}, {37, 260}, {0, 5}, {500, 64}};
    for (size_t k = 0; k < sizeof runs / sizeof *runs; k++) {
        int p0 = runs[k][0], n = runs[k][1], nh = 6, nkv = 2, hd = 24, qd = nh * hd, stride = nkv * hd, T = p0 + n;
        float *q = malloc(sizeof(float) * n * qd), *K = malloc(sizeof(float) * T * stride),
              *V = malloc(sizeof(float) * T * stride), *o1 = malloc(sizeof(float) * n * qd),
              *o2 = malloc(sizeof(float) * n * qd), *sc = malloc(sizeof(float) * T),
              *S = malloc(sizeof(float) * (n < 256 ? n : 256) * T);
        for (int i = 0; i < n * qd; i++) q[i] = 2 * rnd(&seed);
        for (int i = 0; i < T * stride; i++) K[i] = rnd(&seed), V[i] = rnd(&seed);
        for (int r = 0; r < n; r++) lop_cpu_attention(o1 + r * qd, q + r * qd, K, V, p0 + r + 1, stride, nh, nkv, hd, 0, nh, sc);
        lop_cpu_attention_run(o2, qd, q, qd, K, V, stride, p0, n, nh, nkv, hd, S);
        for (int i = 0; i < n * qd; i++)
            if (fabsf(o1[i] - o2[i]) > 2e-5f * (1 + fabsf(o1[i])))
                fail_msg("run p0 %d n %d: row %d [%d]: %.7f vs %.7f", p0, n, i / qd, i % qd, o1[i], o2[i]);
        free(q), free(K), free(V), free(o1), free(o2), free(sc), free(S);
    }
}

/* the backend end to end: a 300-token prefill (one run: BLAS attention) gives the logits of the
 * same tokens fed in chunks of 100 (per-token kernel) */
static void test_backend_long_run(void **st) {
    (void)st;
    static const tiny_layer L[2] = {{4, 2, 8, 40, 0, 0, 0}, {6, 3, 16, 24, 0, 1, 0}};
    lop_model *m = tiny_model(50, 32, 2, L, 1, 21);
    lop_engine_opts eo = {.device = LOP_DEVICE_CPU, .max_batch = 2, .max_seq_len = 320, .n_threads = 1};
    lop_engine *e;
    assert_int_equal(lop_engine_create(m, &eo, &e), LOP_OK);
    enum { N = 300 };
    int32_t tok[N], seq[N], pos[N], out[N];
    for (int i = 0; i < N; i++) tok[i] = (i * 7 + 3) % 50, seq[i] = 0, pos[i] = i, out[i] = i;
    float *a = malloc(sizeof(float) * N * 50), *b = malloc(sizeof(float) * N * 50);
    lop_batch one = {N, tok, seq, pos, N, out};
    assert_int_equal(lop_engine_forward(e, &one, a), LOP_OK);
    for (int c = 0; c < N; c += 100) {
        for (int i = 0; i < 100; i++) seq[c + i] = 1;
        lop_batch part = {100, tok + c, seq + c, pos + c, 100, out};
        assert_int_equal(lop_engine_forward(e, &part, b + c * 50), LOP_OK);
    }
    for (int i = 0; i < N * 50; i++)
        if (fabsf(a[i] - b[i]) > 1e-4f * (1 + fabsf(a[i]))) fail_msg("logit [%d][%d]: %.6f vs %.6f", i / 50, i % 50, a[i], b[i]);
    free(a);
    free(b);
    lop_engine_free(e);
    lop_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_attention), cmocka_unit_test(test_attention_group),
                                       cmocka_unit_test(test_swiglu_lse),
                                       cmocka_unit_test(test_attention_run), cmocka_unit_test(test_backend_long_run)};
    return cmocka_run_group_tests_name("simd", tests, NULL, NULL);
}
