/* Sampling; see sampler.h. top-k / top-p follow HF's TopKLogitsWarper / TopPLogitsWarper:
 * top-p keeps the smallest set of most likely tokens whose probability mass reaches p. */
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

int lop_sample(float *logits, int n, const lop_sampling *s, lop_rng *rng, void *work) {
    if (s->temperature <= 0) return lop_argmax(logits, n);
    cand *c = work;
    int m = n;
    for (int i = 0; i < n; i++) c[i] = (cand){logits[i] / s->temperature, i};
    if (s->top_k > 0 && s->top_k < n) {
        /* partial selection would do; a full sort keeps it simple and exact on ties */
        qsort(c, n, sizeof *c, cmp_desc);
        m = s->top_k;
    } else {
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
