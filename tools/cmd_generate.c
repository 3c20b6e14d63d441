/* lop generate MODEL -p TEXT: batched generation with streaming output for batch 1, then prefill
 * and decode speed (tok/s, ms per step, achieved GB/s) on stderr. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/log.h"
#include "core/timer.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* ---- generate ----------------------------------------------------------------------------- */
typedef struct stream_ctx {
    const lop_model *m;
    int prev;
    int ids_only;
} stream_ctx;

static void on_step(void *user, int step, const int32_t *tokens, int n_seq) {
    (void)step;
    stream_ctx *sc = user;
    if (n_seq != 1 || tokens[0] < 0) return;
    if (sc->ids_only || !sc->m->tok) {
        printf("%d ", tokens[0]);
    } else {
        char buf[256];
        int n = lop_tokenizer_token_bytes(sc->m->tok, sc->prev, tokens[0], buf, sizeof buf);
        if (n > 0) fwrite(buf, 1, (size_t)n, stdout);
    }
    sc->prev = tokens[0];
    fflush(stdout);
}

static int parse_ids(const char *s, int32_t **ids, int *n) {
    int cap = 16;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    while (*ids && *s) {
        char *e;
        long v = strtol(s, &e, 10);
        if (e == s || v < 0 || v > 0x7fffffff) return -1;
        if (*n == cap) {
            int32_t *r = realloc(*ids, (size_t)(cap *= 2) * sizeof **ids);
            if (!r) return -1;
            *ids = r;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = *e == ',' ? e + 1 : e;
        if (*e && *e != ',') return -1;
    }
    return *ids && *n > 0 ? 0 : -1;
}

int cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {
        {"prompt", required_argument, 0, 'p'}, {"ids", required_argument, 0, 'I'},
        {"n", required_argument, 0, 'n'},      {"batch", required_argument, 0, 'b'},
        {"temp", required_argument, 0, 't'},   {"top-k", required_argument, 0, 'k'},
        {"top-p", required_argument, 0, 'P'},  {"seed", required_argument, 0, 's'},
        {"device", required_argument, 0, 'd'}, {"threads", required_argument, 0, 'j'},
        {"ignore-eos", no_argument, 0, 'E'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *prompt = NULL, *ids_arg = NULL;
    int n_new = 32, batch = 1, top_k = 0, threads = 0, ignore_eos = 0;
    float temp = 0, top_p = 1;
    unsigned long long seed = 0;
    lop_device dev = LOP_DEVICE_CPU;
    int c;
    while ((c = getopt_long(argc, argv, "p:n:b:s:j:h", opts, NULL)) != -1) {
        char *e = NULL;
        switch (c) {
        case 'p': prompt = optarg; break;
        case 'I': ids_arg = optarg; break;
        case 'n': n_new = (int)strtol(optarg, &e, 10); break;
        case 'b': batch = (int)strtol(optarg, &e, 10); break;
        case 't': temp = strtof(optarg, &e); break;
        case 'k': top_k = (int)strtol(optarg, &e, 10); break;
        case 'P': top_p = strtof(optarg, &e); break;
        case 's': seed = strtoull(optarg, &e, 10); break;
        case 'j': threads = (int)strtol(optarg, &e, 10); break;
        case 'E': ignore_eos = 1; break;
        case 'd':
            if (!strcmp(optarg, "cpu")) dev = LOP_DEVICE_CPU;
            else if (!strcmp(optarg, "cuda")) dev = LOP_DEVICE_CUDA;
            else return cli_usage_error("generate", "--device must be cpu or cuda");
            break;
        case 'h':
            printf("Usage: lop generate MODEL (-p TEXT | --ids LIST) [-n N] [--batch B] [--temp T]\n"
                   "                    [--top-k K] [--top-p P] [--seed S] [--ignore-eos]\n"
                   "                    [--device cpu|cuda] [--threads N]\n\n"
                   "Generates N new tokens (default 32) for B copies of the prompt (default 1) and prints\n"
                   "the text (batch 1 streams it), then prefill and decode speed on stderr.\n"
                   "  -p, --prompt TEXT   prompt text (the model's tokenizer encodes it, BOS as the model says)\n"
                   "      --ids LIST      prompt as token ids, e.g. 1,450,7483 (models without a tokenizer)\n"
                   "  -n N                new tokens per sequence; stops early at EOS unless --ignore-eos\n"
                   "      --temp T        temperature; 0 = greedy (default)\n"
                   "      --top-k K       keep the K most likely tokens (0 = off)\n"
                   "      --top-p P       nucleus sampling mass (1 = off)\n"
                   "      --seed S        sampling seed (reproducible)\n\n%s",
                   CLI_MODEL_HELP);
            return 0;
        default: return cli_usage_error("generate", "unknown option");
        }
        if (e && *e) return cli_usage_error("generate", "bad numeric value");
    }
    if (optind + 1 != argc) return cli_usage_error("generate", "expected exactly one MODEL");
    if (!prompt == !ids_arg) return cli_usage_error("generate", "give exactly one of -p TEXT or --ids LIST");
    if (n_new < 0 || batch < 1 || batch > 4096) return cli_usage_error("generate", "bad -n or --batch");
    if (temp < 0 || top_k < 0 || top_p <= 0 || top_p > 1) return cli_usage_error("generate", "bad sampling option");

    lop_model *m;
    double t0 = lop_now();
    lop_status st = lop_model_load(argv[optind], NULL, &m);
    if (st) return cli_fail(st);
    int32_t *ids = NULL;
    int n_ids = 0;
    if (ids_arg) {
        if (parse_ids(ids_arg, &ids, &n_ids)) {
            free(ids);
            lop_model_free(m);
            return cli_usage_error("generate", "--ids expects comma-separated token ids");
        }
    } else if ((st = lop_model_encode(m, prompt, strlen(prompt), -1, &ids, &n_ids)) != LOP_OK) {
        lop_model_free(m);
        return cli_fail(st);
    }
    lop_engine_opts eo = {.device = dev, .max_batch = batch, .max_seq_len = n_ids + n_new + 1, .n_threads = threads};
    lop_engine *e;
    if ((st = lop_engine_create(m, &eo, &e)) != LOP_OK) {
        free(ids);
        lop_model_free(m);
        return cli_fail(st);
    }
    LOP_INFO("lop: %s on %s, %d-token prompt, batch %d (loaded in %.2f s)", m->source, dev ? "cuda" : "cpu", n_ids,
             batch, lop_now() - t0);
    const int32_t **prompts = malloc((size_t)batch * sizeof *prompts);
    int *lens = malloc((size_t)batch * sizeof *lens);
    for (int i = 0; prompts && lens && i < batch; i++) prompts[i] = ids, lens[i] = n_ids;
    stream_ctx sc = {m, ids[n_ids - 1], ids_arg != NULL};
    lop_gen_params gp = {.max_new_tokens = n_new, .ignore_eos = ignore_eos,
                         .sampling = {.temperature = temp, .top_k = top_k, .top_p = top_p, .seed = seed},
                         .on_step = on_step, .user = &sc};
    lop_gen_result r;
    if (prompt && m->tok && batch == 1) fputs(prompt, stdout);
    st = prompts && lens ? lop_generate(e, (const int32_t *const *)prompts, lens, batch, &gp, &r) : LOP_ERR_OOM;
    if (st == LOP_OK) {
        if (batch == 1) putchar('\n');
        for (int s = 0; batch > 1 && s < r.n_seq; s++) {
            printf("[%d] ", s);
            if (m->tok && !ids_arg) {
                fputs(prompt, stdout);
                char *txt;
                if (lop_model_decode(m, r.tokens[s], r.n_tokens[s], &txt) == LOP_OK) {
                    printf("%s", txt);
                    free(txt);
                }
            } else {
                for (int i = 0; i < r.n_tokens[s]; i++) printf("%d ", r.tokens[s][i]);
            }
            putchar('\n');
        }
        long gen = 0;
        for (int s = 0; s < r.n_seq; s++) gen += r.n_tokens[s];
        double ms_step = r.n_decode_steps ? 1e3 * r.decode_s / r.n_decode_steps : 0;
        double dec_tok = gen - r.n_seq; /* first token of each sequence comes from the prefill */
        fprintf(stderr, "prefill: %d tokens in %.1f ms (%.1f tok/s)\n", n_ids * batch, 1e3 * r.prefill_s,
                n_ids * batch / (r.prefill_s > 0 ? r.prefill_s : 1e-9));
        /* achieved bandwidth at the mean context length of the decode steps */
        int mean_ctx = n_ids + (r.n_decode_steps + 1) / 2;
        double gbs = r.n_decode_steps ? (double)lop_engine_decode_bytes(e, batch, mean_ctx) / (ms_step * 1e6) : 0;
        fprintf(stderr, "decode:  %d steps x batch %d in %.1f ms: %.2f ms/token step, %.1f tok/s, %.1f GB/s\n",
                r.n_decode_steps, batch, 1e3 * r.decode_s, ms_step, r.decode_s > 0 ? dec_tok / r.decode_s : 0.0, gbs);
        lop_gen_result_free(&r);
    }
    free(prompts);
    free(lens);
    free(ids);
    lop_engine_free(e);
    lop_model_free(m);
    return st ? cli_fail(st) : 0;
}
