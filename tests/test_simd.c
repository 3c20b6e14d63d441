/* The AVX2 kernels of the CPU backend (attention, SwiGLU, log-sum-exp of logits) against the
 * scalar reference operators, over head sizes and context lengths that hit every loop tail.
 * Skipped, visibly, on a CPU without AVX2+FMA. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "runtime/cpu/ops.h"
#include "runtime/cpu/simd.h"

static float rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f * 2 - 1;
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

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_attention), cmocka_unit_test(test_swiglu_lse)};
    return cmocka_run_group_tests_name("simd", tests, NULL, NULL);
}
