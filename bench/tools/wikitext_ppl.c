/* WikiText-2 perplexity with the paper's protocol, through lop_score_sequences, until `lop eval
 * --ppl` lands (the eval work): the raw test file is tokenised once with BOS at the start, cut into
 * non-overlapping windows of SEQ tokens (the last partial window dropped, as LLM-Pruner's
 * PPLMetric), each window scored on its own (tokens 1..SEQ-1 predicted), PPL = exp(mean NLL over
 * all predicted tokens). Prints one JSON line. Timing is reported, never asserted.
 *   build/wikitext_ppl MODEL TEXT [--seq 128] [--max-windows N] [--batch 8] [--drop 4,5,17]
 *                      [--ids-out FILE]
 * --drop evaluates MODEL without those blocks (lop_model_remove_modules, the model lop prune writes);
 * --ids-out writes the token ids (int32, little-endian) for other evaluators.
 * Build from the repository root (bench/depth/run_smollm2.sh does it, linking like the Makefile):
 *   make build/liblop.a && cc -O2 -Iinclude -Isrc $(pkg-config --cflags libcjson openblas) \
 *      bench/tools/wikitext_ppl.c build/liblop.a LDLIBS-of-the-Makefile -o build/wikitext_ppl */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval/logprob.h"
#include "io/file.h"
#include "lop.h"
#include "prune/depth.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {{"seq", required_argument, 0, 's'},   {"max-windows", required_argument, 0, 'w'},
                                         {"batch", required_argument, 0, 'b'}, {"drop", required_argument, 0, 'd'},
                                         {"ids-out", required_argument, 0, 'o'}, {0, 0, 0, 0}};
    int seq = 128, max_w = 0, batch = 8, c;
    const char *drop = NULL, *ids_out = NULL;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 's') seq = atoi(optarg);
        else if (c == 'w') max_w = atoi(optarg);
        else if (c == 'b') batch = atoi(optarg);
        else if (c == 'd') drop = optarg;
        else if (c == 'o') ids_out = optarg;
        else return 2;
    }
    if (optind + 2 != argc || seq < 2 || batch < 1) {
        fprintf(stderr, "usage: %s MODEL TEXT [--seq 128] [--max-windows N] [--batch 8] [--drop LIST] [--ids-out F]\n",
                argv[0]);
        return 2;
    }
    lop_model *m, *eval = NULL;
    lop_status st = lop_model_load(argv[optind], NULL, &m);
    char *text = NULL;
    size_t len = 0;
    if (st == LOP_OK) st = lop_read_file(argv[optind + 1], &text, &len);
    int32_t *ids = NULL;
    int n = 0;
    if (st == LOP_OK) st = lop_model_encode(m, text, len, 1, &ids, &n);
    free(text);
    if (st == LOP_OK && ids_out) {
        FILE *f = fopen(ids_out, "wb");
        if (!f || fwrite(ids, sizeof(int32_t), (size_t)n, f) != (size_t)n || fclose(f)) st = LOP_ERR_IO;
    }
    uint8_t *skip = calloc((size_t)m->cfg.n_layers + 1, 1);
    for (const char *p = drop; st == LOP_OK && p && *p;) {
        char *e;
        long l = strtol(p, &e, 10);
        if (e == p || l < 0 || l >= m->cfg.n_layers) {
            fprintf(stderr, "bad --drop list '%s'\n", drop);
            return 2;
        }
        skip[l] = 3;
        p = *e == ',' ? e + 1 : e;
    }
    if (st == LOP_OK) st = lop_model_remove_modules(m, skip, &eval);
    lop_engine *e = NULL;
    lop_engine_opts eo = {.device = LOP_DEVICE_CPU, .max_batch = batch, .max_seq_len = seq};
    if (st == LOP_OK) st = lop_engine_create(eval, &eo, &e);
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
    printf("{\"model\": \"%s\", \"drop\": \"%s\", \"layers\": %d, \"params\": %lld, \"ppl\": %.4f, \"mean_nll\": %.6f, "
           "\"text_tokens\": %d, \"windows\": %d, \"seq_len\": %d, \"scored_tokens\": %ld, \"bos\": true, "
           "\"seconds\": %.1f, \"tok_per_s\": %.0f}\n",
           argv[optind], drop ? drop : "", eval->cfg.n_layers, (long long)lop_model_n_params(eval), exp(nll / cnt),
           nll / cnt, n, nw, seq, cnt, dt, nw * (double)seq / dt);
    free(req);
    free(sc);
    free(ids);
    free(skip);
    lop_engine_free(e);
    lop_model_free(eval);
    lop_model_free(m);
    return 0;
}
