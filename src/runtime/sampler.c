/* Sampling; see sampler.h. top-k / top-p follow HF's TopKLogitsWarper / TopPLogitsWarper:
 * top-k keeps every token whose logit reaches the k-th largest (ties with it included, as HF and
 * the GPU sampler do), top-p the smallest set of most likely tokens whose mass reaches p, and the
 * tokens tied with the last of them (as the GPU sampler, whose radix select cannot split a tie;
 * HF's order inside a tie is its sort's). */
#include "runtime/sampler.h"

#include <math.h>
#include <stdlib.h>

#include "model/synth.h"

void lop_rng_seed(lop_rng *r, uint64_t seed, uint64_t stream) { r->s = lop_splitmix64(seed * 0x9e3779b97f4a7c15ull ^ stream); }

double lop_rng_uniform(lop_rng *r) {
    r->s = lop_splitmix64(r->s);
    return (double)(r->s >> 11) * (1.0 / 9007199254740992.0);
}

int lop_argmax(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

typedef struct cand {
    float logit;
    int id;
} cand;

static int cmp_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return x->id - y->id;
}

size_t lop_sample_work_size(int n) { return (size_t)n * sizeof(cand); }

/* h[0..k) is a heap whose root is the candidate that ranks last (cmp_desc order) */
static void sift_down(cand *h, int k, int p) {
    for (;;) {
        int l = 2 * p + 1, r = l + 1, w = p;
        if (l < k && cmp_desc(&h[l], &h[w]) > 0) w = l;
        if (r < k && cmp_desc(&h[r], &h[w]) > 0) w = r;
        if (w == p) return;
        cand t = h[p];
        h[p] = h[w], h[w] = t;
        p = w;
    }
}

/* c[0..k) = the k candidates that rank first (logit descending, id ascending), in that order: the
 * same as the first k of a full sort, at ~n comparisons instead of n log n (a 49k-token vocabulary,
 * k = 50: microseconds instead of milliseconds a token) */
static void top_k_sorted(const float *logits, int n, float t, int k, cand *c) {
    for (int i = 0; i < k; i++) c[i] = (cand){logits[i] / t, i};
    for (int p = k / 2 - 1; p >= 0; p--) sift_down(c, k, p);
    for (int i = k; i < n; i++) {
        cand x = {logits[i] / t, i};
        if (cmp_desc(&x, &c[0]) < 0) {
            c[0] = x;
            sift_down(c, k, 0);
        }
    }
    qsort(c, k, sizeof *c, cmp_desc);
}

int lop_sample(float *logits, int n, const lop_sampling *s, lop_rng *rng, void *work) {
    if (s->temperature <= 0) return lop_argmax(logits, n);
    cand *c = work;
    int m = n;
    if (s->top_k > 0 && s->top_k < n) {
        m = s->top_k;
        top_k_sorted(logits, n, s->temperature, m, c);
        /* tokens tied with the k-th that the id order left out: those after it, in id order */
        for (int i = c[m - 1].id + 1, last = m - 1; i < n; i++)
            if (logits[i] / s->temperature == c[last].logit) c[m++] = (cand){c[last].logit, i};
    } else {
        for (int i = 0; i < n; i++) c[i] = (cand){logits[i] / s->temperature, i};
        qsort(c, n, sizeof *c, cmp_desc);
    }
    double mx = c[0].logit, sum = 0;
    for (int i = 0; i < m; i++) sum += exp(c[i].logit - mx);
    if (s->top_p > 0 && s->top_p < 1) {
        double cum = 0;
        int keep = m;
        for (int i = 0; i < m; i++) {
            cum += exp(c[i].logit - mx) / sum;
            if (cum >= s->top_p) {
                keep = i + 1;
                break;
            }
        }
        while (keep < m && c[keep].logit == c[keep - 1].logit) keep++; /* ties with the last kept */
        m = keep;
        sum = 0;
        for (int i = 0; i < m; i++) sum += exp(c[i].logit - mx);
    }
    double r = lop_rng_uniform(rng) * sum, acc = 0;
    for (int i = 0; i < m; i++) {
        acc += exp(c[i].logit - mx);
        if (r < acc) return c[i].id;
    }
    return c[m - 1].id;
}
