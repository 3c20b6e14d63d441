/* WikiText-2 perplexity with the paper's protocol, through lop_score_sequences, until `lop eval
 * --ppl` lands (the eval work, issue 3): the raw test file is tokenised once with BOS at the start,
 * cut into non-overlapping windows of SEQ tokens (the last partial window dropped, as LLM-Pruner's
 * PPLMetric), each window scored on its own (tokens 1..SEQ-1 predicted), PPL = exp(mean NLL over
 * all predicted tokens). Prints one JSON line. Timing is reported, never asserted.
 * Build and run from the repository root:
 *   make build/liblop.a && cc -O2 -Iinclude -Isrc $(pkg-config --cflags libcjson openblas) \
 *      bench/tools/wikitext_ppl.c build/liblop.a $(pkg-config --libs libcjson openblas libpcre2-8) -lm -lpthread \
 *      -o build/wikitext_ppl
 *   build/wikitext_ppl MODEL ../shared/data/wikitext2/wiki.test.raw [SEQ=128] [MAX_WINDOWS=0 (all)] [BATCH=8] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "eval/logprob.h"
#include "io/file.h"
#include "lop.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL TEXT [SEQ=128] [MAX_WINDOWS=0] [BATCH=8]\n", argv[0]);
        return 2;
    }
    int seq = argc > 3 ? atoi(argv[3]) : 128, max_w = argc > 4 ? atoi(argv[4]) : 0, batch = argc > 5 ? atoi(argv[5]) : 8;
    lop_model *m;
    lop_status st = lop_model_load(argv[1], NULL, &m);
    char *text = NULL;
    size_t len = 0;
    if (st == LOP_OK) st = lop_read_file(argv[2], &text, &len);
    int32_t *ids = NULL;
    int n = 0;
    if (st == LOP_OK) st = lop_model_encode(m, text, len, 1, &ids, &n);
    free(text);
    lop_engine *e = NULL;
    lop_engine_opts eo = {.device = LOP_DEVICE_CPU, .max_batch = batch, .max_seq_len = seq};
    if (st == LOP_OK) st = lop_engine_create(m, &eo, &e);
    if (st != LOP_OK) {
        fprintf(stderr, "error: %s\n", lop_last_error());
        return 1;
    }
    int nw = n / seq;
    if (max_w > 0 && max_w < nw) nw = max_w;
    lop_score_req *req = malloc((size_t)nw * sizeof *req);
    lop_score *sc = malloc((size_t)nw * sizeof *sc);
    for (int w = 0; w < nw; w++) req[w] = (lop_score_req){ids + (size_t)w * seq, seq, 1};
    double t0 = now();
    st = lop_score_sequences(e, req, nw, sc, NULL);
    double dt = now() - t0;
    if (st != LOP_OK) {
        fprintf(stderr, "error: %s\n", lop_last_error());
        return 1;
    }
    double nll = 0;
    long cnt = 0;
    for (int w = 0; w < nw; w++) nll -= sc[w].logprob, cnt += sc[w].n_scored;
    printf("{\"model\": \"%s\", \"ppl\": %.4f, \"mean_nll\": %.6f, \"text_tokens\": %d, \"windows\": %d, "
           "\"seq_len\": %d, \"scored_tokens\": %ld, \"bos\": true, \"seconds\": %.1f, \"tok_per_s\": %.0f}\n",
           argv[1], exp(nll / cnt), nll / cnt, n, nw, seq, cnt, dt, nw * (double)seq / dt);
    free(req);
    free(sc);
    free(ids);
    lop_engine_free(e);
    lop_model_free(m);
    return 0;
}
