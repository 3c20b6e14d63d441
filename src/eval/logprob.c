/* Batched sequence scoring; see logprob.h. Each batch is one forward over the packed sequences with
 * logits only at the positions that predict a scored token; log-softmax in double precision. */
#include "eval/logprob.h"

#include <math.h>
#include <stdlib.h>

#include "core/status.h"

/* log p(target) from one row of logits, and whether target is the argmax */
static double row_logprob(const float *row, int V, int target, int *is_argmax) {
    float mx = row[0];
    int arg = 0;
    for (int i = 1; i < V; i++)
        if (row[i] > mx) mx = row[i], arg = i;
    double z = 0;
    for (int i = 0; i < V; i++) z += exp((double)row[i] - mx);
    *is_argmax = arg == target;
    return (double)row[target] - mx - log(z);
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
    int32_t *tok = malloc((size_t)budget * 4 * sizeof(int32_t));
    float *logits = NULL;
    size_t logits_cap = 0;
    if (!tok) return lop_fail(LOP_ERR_OOM, "out of memory (scoring)");
    int32_t *seq = tok + budget, *pos = tok + 2 * budget, *oidx = tok + 3 * budget;
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
            for (int t = q->first - 1; t < q->n_tokens - 1; t++) oidx[no++] = nt + t;
            nt += q->n_tokens;
            r1++;
        }
        if ((size_t)no * V > logits_cap) {
            free(logits);
            logits_cap = (size_t)no * V;
            logits = malloc(logits_cap * sizeof(float));
            if (!logits) {
                st = lop_fail(LOP_ERR_OOM, "out of memory: logits for %d positions", no);
                break;
            }
        }
        lop_batch b = {nt, tok, seq, pos, no, oidx};
        st = lop_engine_forward(e, &b, logits);
        int row = 0;
        for (int r = r0; r < r1 && st == LOP_OK; r++) {
            const lop_score_req *q = &reqs[r];
            lop_score s = {0, 0, 1};
            for (int t = q->first; t < q->n_tokens; t++, row++) {
                int am;
                double lp = row_logprob(logits + (size_t)row * V, V, q->tokens[t], &am);
                s.logprob += lp;
                s.n_scored++;
                s.greedy &= am;
                if (token_logprobs) token_logprobs[tl_off++] = lp;
            }
            out[r] = s;
        }
        r0 = r1;
    }
    free(tok);
    free(logits);
    return st;
}
