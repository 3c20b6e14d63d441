/* Batched sequence scoring; see logprob.h. Each batch is one forward over the packed sequences with
 * logits only at the positions that predict a scored token; log-softmax rows in parallel, the
 * exponentials in float and their sum and the log in double -- on the host, or on the device when
 * the backend reduces rows itself (forward_logprob: a GPU's logits never cross to the host). */
#include "eval/logprob.h"

#include <math.h>
#include <stdlib.h>

#include "core/status.h"
#include "core/threads.h"
#include "runtime/cpu/simd.h"

double lop_logits_lse(const float *row, int V, int *argmax) {
    if (lop_cpu_simd_available()) return lop_cpu_lse_avx2(row, V, argmax);
    float mx = row[0];
    int arg = 0;
    for (int i = 1; i < V; i++)
        if (row[i] > mx) mx = row[i], arg = i;
    /* exp in float (each term is in (0, 1]), summed in double */
    double z = 0;
    for (int i = 0; i < V; i++) z += expf(row[i] - mx);
    if (argmax) *argmax = arg;
    return (double)mx + log(z);
}

/* log-softmax of the scored rows, in parallel: one row per scored token */
typedef struct rows_job {
    const float *logits;
    const int32_t *target;
    int V;
    double *lp;
    int *is_argmax;
} rows_job;

static void rows_logprob(void *ctx, int64_t r0, int64_t r1, int thread) {
    (void)thread;
    rows_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        const float *row = j->logits + (size_t)r * j->V;
        int am;
        double lse = lop_logits_lse(row, j->V, &am);
        j->lp[r] = (double)row[j->target[r]] - lse;
        j->is_argmax[r] = am == j->target[r];
    }
}

lop_status lop_score_sequences(lop_engine *e, const lop_score_req *reqs, int n, lop_score *out,
                               double *token_logprobs) {
    const lop_config *c = &e->m->cfg;
    int slots = e->opts.max_batch > 0 ? e->opts.max_batch : 1;
    int max_len = e->opts.max_seq_len;
    int V = c->vocab_size;
    /* a batch holds at most `slots` sequences and `budget` tokens */
    int budget = slots * max_len;
    for (int r = 0; r < n; r++) {
        if (reqs[r].n_tokens > max_len)
            return lop_fail(LOP_ERR_ARG, "sequence %d has %d tokens; the engine holds %d positions", r, reqs[r].n_tokens,
                            max_len);
        if (reqs[r].first < 1 || reqs[r].first > reqs[r].n_tokens)
            return lop_fail(LOP_ERR_ARG, "sequence %d: first scored token %d outside 1..%d", r, reqs[r].first,
                            reqs[r].n_tokens);
    }
    int32_t *tok = malloc((size_t)budget * 5 * sizeof(int32_t));
    double *lp = malloc((size_t)budget * sizeof(double));
    int *am = malloc((size_t)budget * sizeof(int));
    float *logits = NULL;
    size_t logits_cap = 0;
    if (!tok || !lp || !am) {
        free(tok);
        free(lp);
        free(am);
        return lop_fail(LOP_ERR_OOM, "out of memory (scoring)");
    }
    int32_t *seq = tok + budget, *pos = tok + 2 * budget, *oidx = tok + 3 * budget, *target = tok + 4 * budget;
    size_t tl_off = 0;
    lop_status st = LOP_OK;
    for (int r0 = 0; r0 < n && st == LOP_OK;) {
        int nt = 0, no = 0, r1 = r0;
        while (r1 < n && r1 - r0 < slots && nt + reqs[r1].n_tokens <= budget) {
            const lop_score_req *q = &reqs[r1];
            for (int t = 0; t < q->n_tokens; t++) {
                tok[nt + t] = q->tokens[t];
                seq[nt + t] = r1 - r0;
                pos[nt + t] = t;
            }
            for (int t = q->first - 1; t < q->n_tokens - 1; t++, no++) {
                oidx[no] = nt + t;
                target[no] = q->tokens[t + 1];
            }
            nt += q->n_tokens;
            r1++;
        }
        lop_batch b = {nt, tok, seq, pos, no, oidx};
        if (e->ops->forward_logprob) {
            /* the device reduces each row to its log-probability: no logits cross to the host */
            st = e->ops->forward_logprob(e->be, &b, target, lp, am);
        } else {
            if ((size_t)no * V > logits_cap) {
                free(logits);
                logits_cap = (size_t)no * V;
                logits = malloc(logits_cap * sizeof(float));
                if (!logits) {
                    st = lop_fail(LOP_ERR_OOM, "out of memory: logits for %d positions", no);
                    break;
                }
            }
            st = lop_engine_forward(e, &b, logits);
            if (st == LOP_OK) {
                rows_job job = {logits, target, V, lp, am};
                lop_parallel_for(no, 16, rows_logprob, &job);
            }
        }
        int row = 0;
        for (int r = r0; r < r1 && st == LOP_OK; r++) {
            const lop_score_req *q = &reqs[r];
            lop_score s = {0, 0, 1};
            for (int t = q->first; t < q->n_tokens; t++, row++) {
                s.logprob += lp[row];
                s.n_scored++;
                s.greedy &= am[row];
                if (token_logprobs) token_logprobs[tl_off++] = lp[row];
            }
            out[r] = s;
        }
        r0 = r1;
    }
    free(tok);
    free(lp);
    free(am);
    free(logits);
    return st;
}
