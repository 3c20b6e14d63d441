/* Prefix-shared continuation scoring; see prefix_score.h for the scheme and the backend contract
 * it relies on. One chunk = up to max_batch requests (one slot each): a forward over their
 * prefixes, then one forward per continuation round. */
#include "eval/prefix_score.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threads.h"

typedef struct row_job {
    const float *logits;
    int V;
    double *lse;
    int *argmax;
} row_job;

static void rows_lse(void *ctx, int64_t r0, int64_t r1, int thread) {
    (void)thread;
    row_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) j->lse[r] = lop_logits_lse(j->logits + (size_t)r * j->V, j->V, &j->argmax[r]);
}

typedef struct scratch {
    int32_t *tok, *seq, *pos, *oidx;
    int cap;
    float *logits;
    double *lse;
    int *argmax;
    int rows_cap;
} scratch;

static lop_status grow(scratch *s, int tokens, int rows, int V) {
    if (tokens > s->cap) {
        free(s->tok);
        s->tok = malloc((size_t)tokens * 4 * sizeof(int32_t));
        if (!s->tok) return lop_fail(LOP_ERR_OOM, "out of memory (scoring %d tokens)", tokens);
        s->seq = s->tok + tokens;
        s->pos = s->tok + 2 * (size_t)tokens;
        s->oidx = s->tok + 3 * (size_t)tokens;
        s->cap = tokens;
    }
    if (rows > s->rows_cap) {
        free(s->logits);
        free(s->lse);
        free(s->argmax);
        s->logits = malloc((size_t)rows * V * sizeof(float));
        s->lse = malloc((size_t)rows * sizeof(double));
        s->argmax = malloc((size_t)rows * sizeof(int));
        s->rows_cap = rows;
        if (!s->logits || !s->lse || !s->argmax) {
            s->rows_cap = 0;
            return lop_fail(LOP_ERR_OOM, "out of memory: logits for %d positions", rows);
        }
    }
    return LOP_OK;
}

static lop_status forward_rows(lop_engine *e, scratch *s, int nt, int no) {
    lop_batch b = {nt, s->tok, s->seq, s->pos, no, s->oidx};
    LOP_TRY(lop_engine_forward(e, &b, s->logits));
    row_job job = {s->logits, e->m->cfg.vocab_size, s->lse, s->argmax};
    lop_parallel_for(no, 16, rows_lse, &job);
    return LOP_OK;
}

lop_status lop_score_prefixed(lop_engine *e, const lop_prefix_req *reqs, int n, int batch_tokens, lop_score *out) {
    int slots = e->opts.max_batch > 0 ? e->opts.max_batch : 1;
    int max_len = e->opts.max_seq_len, V = e->m->cfg.vocab_size;
    if (batch_tokens <= 0) batch_tokens = 2048;
    int max_conts = 0;
    for (int r = 0; r < n; r++) {
        const lop_prefix_req *q = &reqs[r];
        if (q->n_prefix < 1) return lop_fail(LOP_ERR_ARG, "request %d: empty prefix", r);
        if (q->n_cont < 1) return lop_fail(LOP_ERR_ARG, "request %d: no continuation", r);
        for (int j = 0; j < q->n_cont; j++) {
            if (q->cont_len[j] < 1) return lop_fail(LOP_ERR_ARG, "request %d: continuation %d is empty", r, j);
            if (q->n_prefix + q->cont_len[j] - 1 > max_len)
                return lop_fail(LOP_ERR_ARG, "request %d: %d + %d tokens exceed the engine's %d positions", r,
                                q->n_prefix, q->cont_len[j], max_len);
        }
        if (q->n_cont > max_conts) max_conts = q->n_cont;
    }
    scratch s = {0};
    lop_status st = LOP_OK;
    int64_t out_base = 0; /* index in out of the chunk's first request's first continuation */
    for (int r0 = 0; r0 < n && st == LOP_OK;) {
        /* the chunk: up to `slots` requests whose prefixes fit batch_tokens (at least one) */
        int r1 = r0, nt = 0;
        while (r1 < n && r1 - r0 < slots && (r1 == r0 || nt + reqs[r1].n_prefix <= batch_tokens)) nt += reqs[r1++].n_prefix;
        int nr = r1 - r0, round_tokens = 0;
        for (int j = 0; j < max_conts; j++) {
            int t = 0;
            for (int r = r0; r < r1; r++)
                if (j < reqs[r].n_cont) t += reqs[r].cont_len[j] - 1;
            if (t > round_tokens) round_tokens = t;
        }
        if ((st = grow(&s, nt > round_tokens ? nt : round_tokens, nr > round_tokens ? nr : round_tokens, V)) != LOP_OK)
            break;
        /* 1. prefixes; the logits at each last position score every continuation's first token */
        int k = 0;
        for (int r = r0; r < r1; r++) {
            const lop_prefix_req *q = &reqs[r];
            for (int t = 0; t < q->n_prefix; t++, k++) {
                s.tok[k] = q->prefix[t];
                s.seq[k] = r - r0;
                s.pos[k] = t;
            }
            s.oidx[r - r0] = k - 1;
        }
        if ((st = forward_rows(e, &s, nt, nr)) != LOP_OK) break;
        int64_t o = out_base;
        for (int r = r0; r < r1; r++) {
            const lop_prefix_req *q = &reqs[r];
            const float *row = s.logits + (size_t)(r - r0) * V;
            for (int j = 0; j < q->n_cont; j++, o++) {
                int32_t t0 = q->cont[j][0];
                if (t0 < 0 || t0 >= V) {
                    st = lop_fail(LOP_ERR_ARG, "request %d: token id %d out of range (vocab %d)", r, t0, V);
                    break;
                }
                out[o] = (lop_score){(double)row[t0] - s.lse[r - r0], 1, s.argmax[r - r0] == t0};
            }
        }
        /* 2. continuation rounds: continuation j of every request, after its prefix */
        for (int j = 0; j < max_conts && st == LOP_OK; j++) {
            int nt2 = 0;
            for (int r = r0; r < r1; r++) {
                const lop_prefix_req *q = &reqs[r];
                if (j >= q->n_cont) continue;
                for (int t = 0; t < q->cont_len[j] - 1; t++, nt2++) {
                    s.tok[nt2] = q->cont[j][t];
                    s.seq[nt2] = r - r0;
                    s.pos[nt2] = q->n_prefix + t;
                    s.oidx[nt2] = nt2;
                }
            }
            if (nt2 == 0) continue;
            if ((st = forward_rows(e, &s, nt2, nt2)) != LOP_OK) break;
            int row = 0;
            o = out_base;
            for (int r = r0; r < r1; r++) {
                const lop_prefix_req *q = &reqs[r];
                if (j < q->n_cont) {
                    lop_score *sc = &out[o + j];
                    for (int t = 1; t < q->cont_len[j]; t++, row++) {
                        const float *lr = s.logits + (size_t)row * V;
                        int32_t id = q->cont[j][t];
                        sc->logprob += (double)lr[id] - s.lse[row];
                        sc->n_scored++;
                        sc->greedy &= s.argmax[row] == id;
                    }
                }
                o += q->n_cont;
            }
        }
        for (int r = r0; r < r1; r++) out_base += reqs[r].n_cont;
        r0 = r1;
    }
    free(s.tok);
    free(s.logits);
    free(s.lse);
    free(s.argmax);
    return st;
}
