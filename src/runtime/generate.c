/* Batched generation: one prefill over all prompts (logits only at each prompt's last token), then
 * one decode step per new token over the sequences still running. Stops a sequence at EOS unless
 * ignore_eos (benchmark mode: exactly max_new_tokens each). */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threads.h"
#include "core/timer.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"

void lop_gen_result_free(lop_gen_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n_seq && r->tokens; i++) free(r->tokens[i]);
    free(r->tokens);
    free(r->n_tokens);
    memset(r, 0, sizeof *r);
}

/* Sampling of the sequences of one step on the thread pool (each has its own rng and scratch, so the
 * tokens do not depend on the threads): at batch 8 the sequential loop was a serial ~1 ms per step. */
#define SAMPLE_PAR_MAX 64 /* sequences with their own scratch; larger batches sample one by one */
typedef struct sample_job {
    float *logits;
    int V;
    const lop_sampling *sp;
    lop_rng *rng;
    char *work;
    size_t work_size;
    const int *row; /* logits row of sequence s, -1 when it is done */
    int32_t *out;
} sample_job;

static void sample_range(void *ctx, int64_t s0, int64_t s1, int thread) {
    (void)thread;
    const sample_job *j = ctx;
    for (int64_t s = s0; s < s1; s++)
        if (j->row[s] >= 0)
            j->out[s] = lop_sample(j->logits + (int64_t)j->row[s] * j->V, j->V, j->sp, &j->rng[s], j->work + s * j->work_size);
}

lop_status lop_generate(lop_engine *e, const int32_t *const *prompts, const int *prompt_lens, int n_seq,
                        const lop_gen_params *p, lop_gen_result *res) {
    memset(res, 0, sizeof *res);
    const lop_config *c = &e->m->cfg;
    int max_batch = e->opts.max_batch > 0 ? e->opts.max_batch : 1;
    if (n_seq < 1 || n_seq > max_batch)
        return lop_fail(LOP_ERR_ARG, "batch of %d prompts, engine holds %d sequences", n_seq, max_batch);
    if (p->max_new_tokens < 0) return lop_fail(LOP_ERR_ARG, "negative number of tokens to generate");
    int total = 0;
    for (int s = 0; s < n_seq; s++) {
        if (prompt_lens[s] < 1) return lop_fail(LOP_ERR_ARG, "prompt %d is empty", s);
        total += prompt_lens[s];
    }
    int V = c->vocab_size, N = p->max_new_tokens;
    res->n_seq = n_seq;
    res->tokens = calloc((size_t)n_seq, sizeof *res->tokens);
    res->n_tokens = calloc((size_t)n_seq, sizeof *res->n_tokens);
    int32_t *tok = malloc((size_t)(total > n_seq ? total : n_seq) * 3 * sizeof(int32_t));
    int32_t *out_idx = malloc((size_t)n_seq * 2 * sizeof(int32_t));
    float *logits = malloc((size_t)n_seq * V * sizeof(float));
    lop_rng *rng = malloc((size_t)n_seq * sizeof *rng);
    int par = n_seq > 1 && n_seq <= SAMPLE_PAR_MAX;
    size_t work_size = (lop_sample_work_size(V) + 63) & ~(size_t)63;
    char *work = malloc(work_size * (size_t)(par ? n_seq : 1));
    int *row_of = malloc((size_t)n_seq * sizeof(int));
    int *done = calloc((size_t)n_seq, sizeof *done), *len = calloc((size_t)n_seq, sizeof *len);
    lop_status st = LOP_OK;
    if (!res->tokens || !res->n_tokens || !tok || !out_idx || !logits || !rng || !work || !row_of || !done || !len)
        st = lop_fail(LOP_ERR_OOM, "out of memory (generation buffers)");
    for (int s = 0; st == LOP_OK && s < n_seq; s++) {
        res->tokens[s] = malloc((size_t)(N > 0 ? N : 1) * sizeof(int32_t));
        if (!res->tokens[s]) st = lop_fail(LOP_ERR_OOM, "out of memory");
        lop_rng_seed(&rng[s], p->sampling.seed, (uint64_t)s);
        len[s] = prompt_lens[s];
    }
    if (st != LOP_OK || N == 0) goto done;

    /* prefill */
    int32_t *seq = tok + total, *pos = tok + 2 * total, *sel = out_idx + n_seq;
    int k = 0;
    for (int s = 0; s < n_seq; s++) {
        for (int i = 0; i < prompt_lens[s]; i++, k++) {
            tok[k] = prompts[s][i];
            seq[k] = s;
            pos[k] = i;
        }
        out_idx[s] = k - 1;
    }
    lop_batch b = {total, tok, seq, pos, n_seq, out_idx};
    if (e->ops->decode) {
        /* the backend samples and decodes on its device: no host round trip per token */
        uint64_t *rs = malloc((size_t)n_seq * sizeof *rs);
        if (!rs) {
            st = lop_fail(LOP_ERR_OOM, "out of memory");
            goto done;
        }
        for (int s = 0; s < n_seq; s++) rs[s] = rng[s].s;
        lop_decode_req req = {&b, n_seq, prompt_lens, p, rs, c->eos_id, res};
        st = e->ops->decode(e->be, &req);
        free(rs);
        goto done;
    }
    double t0 = lop_now();
    st = lop_engine_forward(e, &b, logits);
    res->prefill_s = lop_now() - t0;
    t0 = lop_now();
    int32_t *step_tok = malloc((size_t)n_seq * sizeof(int32_t));
    if (!step_tok && st == LOP_OK) st = lop_fail(LOP_ERR_OOM, "out of memory");
    for (int step = 0; st == LOP_OK; step++) {
        /* sample from the logits of the last forward (rows follow sel/out order) */
        int row = 0;
        for (int s = 0; s < n_seq; s++) row_of[s] = done[s] ? -1 : row++;
        sample_job sj = {logits, V, &p->sampling, rng, work, work_size, row_of, step_tok};
        if (par) lop_parallel_for(n_seq, 1, sample_range, &sj);
        else
            for (int s = 0; s < n_seq; s++)
                if (row_of[s] >= 0) step_tok[s] = lop_sample(logits + (int64_t)row_of[s] * V, V, &p->sampling, &rng[s], work);
        for (int s = 0; s < n_seq; s++) {
            if (done[s]) {
                step_tok[s] = -1;
                continue;
            }
            int t = step_tok[s];
            res->tokens[s][res->n_tokens[s]++] = t;
            if ((!p->ignore_eos && t == c->eos_id) || res->n_tokens[s] >= N) done[s] = 1;
        }
        if (p->on_step) p->on_step(p->user, step, step_tok, n_seq);
        /* next decode step over the running sequences */
        int n = 0;
        for (int s = 0; s < n_seq; s++) {
            if (done[s]) continue;
            tok[n] = step_tok[s];
            seq[n] = s;
            pos[n] = len[s]++;
            sel[n] = n;
            n++;
        }
        if (n == 0) break;
        lop_batch d = {n, tok, seq, pos, n, sel};
        st = lop_engine_forward(e, &d, logits);
        res->n_decode_steps++;
    }
    res->decode_s = lop_now() - t0;
    free(step_tok);
done:
    free(tok);
    free(out_idx);
    free(logits);
    free(rng);
    free(work);
    free(row_of);
    free(done);
    free(len);
    if (st != LOP_OK) lop_gen_result_free(res);
    return st;
}
