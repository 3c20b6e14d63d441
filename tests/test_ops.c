/* CPU reference operators against hand computations, and the sampler's rules. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "runtime/cpu/ops.h"
#include "runtime/cpu/skinny.h"
#include "runtime/sampler.h"

#define NEAR(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

static void test_rmsnorm(void **st) {
    (void)st;
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 0.5f, 2, 1}, o[4];
    lop_cpu_rmsnorm(o, x, w, 1, 4, 0.0f);
    double r = sqrt((1 + 4 + 9 + 16) / 4.0);
    NEAR(o[0], 1 / r, 1e-6);
    NEAR(o[1], 0.5 * 2 / r, 1e-6);
    NEAR(o[2], 2 * 3 / r, 1e-6);
    NEAR(o[3], 4 / r, 1e-6);
}

static void test_linear(void **st) {
    (void)st;
    /* X [2][3], W [2][3] (out 2, in 3), bias */
    float X[6] = {1, 2, 3, -1, 0, 2}, W[6] = {1, 0, 1, 2, 1, 0}, b[2] = {0.5f, -1}, Y[4];
    lop_cpu_linear(Y, X, W, b, 2, 2, 3);
    NEAR(Y[0], 4.5, 1e-6);
    NEAR(Y[1], 3, 1e-6);
    NEAR(Y[2], 1.5, 1e-6);
    NEAR(Y[3], -3, 1e-6);
    lop_cpu_linear(Y, X, W, NULL, 1, 2, 3); /* the sgemv path */
    NEAR(Y[0], 4, 1e-6);
    NEAR(Y[1], 4, 1e-6);
}

/* the decode kernels (AVX2; AVX-512 where present) against a double-precision product: every token
 * count 1..8 and two larger ones (groups of 8, 4, 2, 1), widths with and without vector tails, odd
 * and even row counts (the AVX-512 kernel takes rows in pairs) */
static void test_skinny(void **st) {
    (void)st;
    if (!lop_cpu_skinny_available()) {
        printf("SKIPPED: no AVX2+FMA on this CPU\n");
        skip();
    }
    const int shapes[][2] = {{37, 100}, {64, 576}, {3, 7}, {130, 1536}, {17, 24}};
    for (int isa = 1; isa <= 2; isa++) {
        if (isa == 2 && !lop_cpu_skinny_avx512_available()) continue;
        for (int s = 0; s < 5; s++) {
            int out = shapes[s][0], in = shapes[s][1];
            float *W = malloc((size_t)out * in * 4), *X = malloc((size_t)24 * in * 4), *Y = malloc((size_t)24 * out * 4);
            for (int i = 0; i < out * in; i++) W[i] = (float)((int)((unsigned)i * 7919u % 201u) - 100) / 100.0f;
            for (int i = 0; i < 24 * in; i++) X[i] = (float)((int)((unsigned)i * 104729u % 199u) - 99) / 50.0f;
            static const int ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 15, 24};
            for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
                const int n = ns[t];
                memset(Y, 0, (size_t)24 * out * 4);
                lop_cpu_skinny_gemm_isa(Y, X, W, n, out, in, isa);
                for (int b = 0; b < n; b++)
                    for (int j = 0; j < out; j++) {
                        double r = 0;
                        for (int k = 0; k < in; k++) r += (double)W[(size_t)j * in + k] * X[(size_t)b * in + k];
                        NEAR(Y[(size_t)b * out + j], r, 1e-5 * (1 + fabs(r)) * sqrt(in));
                    }
            }
            free(W), free(X), free(Y);
        }
    }
}

static void test_rope_rotate_half(void **st) {
    (void)st;
    float inv[2];
    lop_cpu_rope_inv_freq(inv, 4, 10000.f, NULL);
    NEAR(inv[0], 1.0, 1e-7);
    NEAR(inv[1], 0.01, 1e-7);
    /* pairs are (0,2) and (1,3): rotate-half, not interleaved */
    float x[4] = {1, 0, 0, 0};
    lop_cpu_rope(x, 1, 4, 3, inv);
    NEAR(x[0], cos(3.0), 1e-6);
    NEAR(x[2], sin(3.0), 1e-6);
    NEAR(x[1], 0, 1e-7);
    NEAR(x[3], 0, 1e-7);
    float y[4] = {0, 1, 0, 2};
    lop_cpu_rope(y, 1, 4, 5, inv);
    NEAR(y[1], cos(0.05) - 2 * sin(0.05), 1e-6);
    NEAR(y[3], 2 * cos(0.05) + sin(0.05), 1e-6);
}

static void test_rope_llama3(void **st) {
    (void)st;
    lop_rope_scaling s = {LOP_ROPE_LLAMA3, 8.f, 1.f, 4.f, 64};
    int hd = 32;
    float plain[16], scaled[16];
    lop_cpu_rope_inv_freq(plain, hd, 500000.f, NULL);
    lop_cpu_rope_inv_freq(scaled, hd, 500000.f, &s);
    int n_hi = 0, n_lo = 0, n_mid = 0;
    for (int i = 0; i < hd / 2; i++) {
        double wl = 2 * M_PI / plain[i];
        if (wl < 64 / 4.0) {
            NEAR(scaled[i], plain[i], 1e-12);
            n_hi++;
        } else if (wl > 64 / 1.0) {
            NEAR(scaled[i], plain[i] / 8, 1e-9 * plain[i]);
            n_lo++;
        } else {
            double sm = (64 / wl - 1) / (4 - 1);
            NEAR(scaled[i], (1 - sm) * plain[i] / 8 + sm * plain[i], 1e-6 * plain[i]);
            n_mid++;
        }
    }
    assert_true(n_hi > 0 && n_lo > 0 && n_mid > 0); /* the case exercises all three bands */
}

static void test_attention_gqa(void **st) {
    (void)st;
    /* 2 query heads share 1 kv head, hd 2, 3 cached positions */
    float q[4] = {1, 0, 0, 1};
    float K[6] = {1, 0, 0, 1, 1, 1}, V[6] = {1, 2, 3, 4, 5, 6};
    float out[4], scratch[3];
    lop_cpu_attention(out, q, K, V, 3, 2, 2, 1, 2, 0, 2, scratch);
    for (int h = 0; h < 2; h++) {
        double s[3], m = -1e9, z = 0, o0 = 0, o1 = 0;
        for (int t = 0; t < 3; t++) {
            s[t] = (q[2 * h] * K[2 * t] + q[2 * h + 1] * K[2 * t + 1]) / sqrt(2.0);
            if (s[t] > m) m = s[t];
        }
        for (int t = 0; t < 3; t++) z += exp(s[t] - m);
        for (int t = 0; t < 3; t++) {
            double p = exp(s[t] - m) / z;
            o0 += p * V[2 * t];
            o1 += p * V[2 * t + 1];
        }
        NEAR(out[2 * h], o0, 1e-5);
        NEAR(out[2 * h + 1], o1, 1e-5);
    }
}

static void test_swiglu(void **st) {
    (void)st;
    float g[2] = {0, 2}, u[2] = {3, -1}, h[2];
    lop_cpu_swiglu(h, g, u, 2);
    NEAR(h[0], 0, 1e-7);
    NEAR(h[1], -2 / (1 + exp(-2.0)), 1e-6);
}

static void test_sampler(void **st) {
    (void)st;
    float base[5] = {1, 3, 3, 0.5f, -2}, l[5];
    void *work = malloc(lop_sample_work_size(5));
    lop_rng r;
    lop_rng_seed(&r, 1, 0);
    assert_int_equal(lop_argmax(base, 5), 1); /* first of the tie, like torch.argmax */
    lop_sampling greedy = {0, 0, 1, 0}, k1 = {1.0f, 1, 1, 0}, p_small = {1.0f, 0, 0.01f, 0};
    memcpy(l, base, sizeof l);
    assert_int_equal(lop_sample(l, 5, &greedy, &r, work), 1);
    /* top-k 1 and a tiny top-p keep the tie at the top whole (the two 3s), never another token */
    for (int i = 0; i < 50; i++) {
        memcpy(l, base, sizeof l);
        int t = lop_sample(l, 5, &k1, &r, work);
        assert_true(t == 1 || t == 2);
        memcpy(l, base, sizeof l);
        t = lop_sample(l, 5, &p_small, &r, work);
        assert_true(t == 1 || t == 2);
    }
    /* with a single best token they keep it alone */
    float one[5] = {1, 3, 2.5f, 0.5f, -2};
    memcpy(l, one, sizeof l);
    assert_int_equal(lop_sample(l, 5, &k1, &r, work), 1);
    memcpy(l, one, sizeof l);
    assert_int_equal(lop_sample(l, 5, &p_small, &r, work), 1);
    /* top-k 2 never picks outside the two best; frequencies follow softmax of the survivors */
    lop_sampling k2 = {1.0f, 2, 1, 0};
    int cnt[5] = {0};
    for (int i = 0; i < 20000; i++) {
        memcpy(l, base, sizeof l);
        cnt[lop_sample(l, 5, &k2, &r, work)]++;
    }
    assert_int_equal(cnt[0] + cnt[3] + cnt[4], 0);
    assert_true(abs(cnt[1] - cnt[2]) < 800);
    /* top-p 0.9 over probs {e^1, e^3, e^3, e^.5, e^-2}: keeps the two 3s and the 1 */
    lop_sampling p9 = {1.0f, 0, 0.9f, 0};
    int seen[5] = {0};
    for (int i = 0; i < 20000; i++) {
        memcpy(l, base, sizeof l);
        seen[lop_sample(l, 5, &p9, &r, work)]++;
    }
    assert_true(seen[0] > 0 && seen[3] == 0 && seen[4] == 0);
    /* same seed, same stream -> same draws */
    lop_rng a, b;
    lop_rng_seed(&a, 42, 3);
    lop_rng_seed(&b, 42, 3);
    lop_sampling t = {0.7f, 50, 0.95f, 42};
    for (int i = 0; i < 100; i++) {
        float la[5], lb[5];
        memcpy(la, base, sizeof la);
        memcpy(lb, base, sizeof lb);
        assert_int_equal(lop_sample(la, 5, &t, &a, work), lop_sample(lb, 5, &t, &b, work));
    }
    free(work);
}

/* top-k by partial selection == a full sort: a 1000-token vocabulary with many exact ties (ids
 * ascending order them), k cutting inside a run of ties; every token tied with the k-th is kept
 * (HF's TopKLogitsWarper keeps logits >= the k-th, as the GPU sampler does), and every token tied
 * with the last one top-p keeps; same draws as a reference that sorts everything */
typedef struct ref_cand {
    float logit;
    int id;
} ref_cand;
static int ref_cmp(const void *a, const void *b) {
    const ref_cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id - y->id;
}
static int ref_sample(const float *logits, int n, float temp, int k, double top_p, lop_rng *rng) {
    ref_cand *c = malloc((size_t)n * sizeof *c);
    for (int i = 0; i < n; i++) c[i] = (ref_cand){logits[i] / temp, i};
    qsort(c, n, sizeof *c, ref_cmp);
    while (k < n && c[k].logit == c[k - 1].logit) k++;
    double mx = c[0].logit, sum = 0, cum = 0;
    for (int i = 0; i < k; i++) sum += exp(c[i].logit - mx);
    int m = k;
    for (int i = 0; i < k; i++)
        if ((cum += exp(c[i].logit - mx) / sum) >= top_p) {
            m = i + 1;
            break;
        }
    while (m < k && c[m].logit == c[m - 1].logit) m++; /* a tie at the top-p threshold is kept whole */
    sum = 0;
    for (int i = 0; i < m; i++) sum += exp(c[i].logit - mx);
    double r = lop_rng_uniform(rng) * sum, acc = 0;
    int t = c[m - 1].id;
    for (int i = 0; i < m; i++)
        if (r < (acc += exp(c[i].logit - mx))) {
            t = c[i].id;
            break;
        }
    free(c);
    return t;
}

/* 4000 draws over {3, 2, 2, 2, -1} under sp: the 3 and all three 2s are drawn, the -1 never */
static void draws_over_tie(const char *what, const lop_sampling *sp, lop_rng *r, void *work) {
    const float tie[5] = {3.f, 2.f, 2.f, 2.f, -1.f};
    float l[5];
    int cnt[5] = {0};
    for (int i = 0; i < 4000; i++) {
        memcpy(l, tie, sizeof tie);
        cnt[lop_sample(l, 5, sp, r, work)]++;
    }
    printf("  %s over {3, 2, 2, 2, -1}: drawn %d %d %d %d %d times of 4000\n", what, cnt[0], cnt[1], cnt[2], cnt[3], cnt[4]);
    for (int i = 0; i < 4; i++) assert_true(cnt[i] > 0);
    assert_int_equal(cnt[4], 0);
}

static void test_sampler_top_k_selection(void **st) {
    (void)st;
    enum { N = 1000 };
    float logits[N], l[N];
    for (int i = 0; i < N; i++) logits[i] = (float)((i * 37) % 23) * 0.25f; /* 23 distinct values, ~43 ties each */
    void *work = malloc(lop_sample_work_size(N));
    int ks[3] = {50, 43, 44}; /* 43 or 44 cut inside a run of ties */
    for (int c = 0; c < 3; c++) {
        lop_sampling sp = {0.8f, ks[c], 0.9f, 0};
        lop_rng a, b;
        lop_rng_seed(&a, 7, (uint64_t)c);
        lop_rng_seed(&b, 7, (uint64_t)c);
        for (int i = 0; i < 300; i++) {
            memcpy(l, logits, sizeof l);
            assert_int_equal(lop_sample(l, N, &sp, &a, work), ref_sample(logits, N, 0.8f, ks[c], 0.9, &b));
        }
    }
    /* k = 2 cuts a run of three ties: all three can be drawn, the token below them never */
    lop_rng r;
    lop_rng_seed(&r, 11, 0);
    lop_sampling k2 = {1.f, 2, 1.f, 0};
    draws_over_tie("top-k 2", &k2, &r, work);
    /* top-p 0.6 over the same row reaches p at the first 2 (mass 0.645): the tie is kept whole,
     * as the GPU sampler keeps it (its radix select cannot split a tie) */
    lop_sampling p6 = {1.f, 0, 0.6f, 0};
    draws_over_tie("top-p 0.6", &p6, &r, work);
    free(work);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),       cmocka_unit_test(test_linear), cmocka_unit_test(test_skinny),
        cmocka_unit_test(test_rope_rotate_half), cmocka_unit_test(test_rope_llama3),
        cmocka_unit_test(test_attention_gqa), cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_sampler), cmocka_unit_test(test_sampler_top_k_selection),
    };
    return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
