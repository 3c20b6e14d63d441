/* lop generate MODEL -p TEXT: batched generation with streaming output for batch 1, then prefill
 * and decode speed (tok/s, ms per step, achieved GB/s) on stderr; on CUDA the memory plan first. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/log.h"
#include "core/status.h"
#include "core/timer.h"
#include "model/model.h"
#include "runtime/engine.h"
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

int cli_parse_ids(const char *s, int32_t **ids, int *n) {
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
        {"dtype", required_argument, 0, 'D'},  {"no-graphs", no_argument, 0, 'G'},
        {"runs", required_argument, 0, 'R'},   {"warmup", required_argument, 0, 'W'},
        {"plan", no_argument, 0, 'Q'},         {0, 0, 0, 0}};
    const char *prompt = NULL, *ids_arg = NULL;
    int n_new = 32, batch = 1, top_k = 0, threads = 0, ignore_eos = 0, no_graphs = 0, runs = 1, warmup = 0, plan_only = 0;
    lop_weight_dtype wdt = LOP_WEIGHTS_DEFAULT;
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
        case 'G': no_graphs = 1; break;
        case 'Q': plan_only = 1; break;
        case 'R': runs = (int)strtol(optarg, &e, 10); break;
        case 'W': warmup = (int)strtol(optarg, &e, 10); break;
        case 'D':
            if (!strcmp(optarg, "f16") || !strcmp(optarg, "fp16")) wdt = LOP_WEIGHTS_F16;
            else if (!strcmp(optarg, "bf16")) wdt = LOP_WEIGHTS_BF16;
            else return cli_usage_error("generate", "--dtype must be f16 or bf16");
            break;
        case 'd':
            if (!strcmp(optarg, "cpu")) dev = LOP_DEVICE_CPU;
            else if (!strcmp(optarg, "cuda")) dev = LOP_DEVICE_CUDA;
            else return cli_usage_error("generate", "--device must be cpu or cuda");
            break;
        case 'h':
            printf("Usage: lop generate MODEL (-p TEXT | --ids LIST) [-n N] [--batch B] [--temp T]\n"
                   "                    [--top-k K] [--top-p P] [--seed S] [--ignore-eos]\n"
                   "                    [--device cpu|cuda] [--threads N] [--dtype f16|bf16] [--no-graphs]\n"
                   "                    [--warmup W] [--runs R] [--plan]\n\n"
                   "Generates N new tokens (default 32) for B copies of the prompt (default 1) and prints\n"
                   "the text (batch 1 streams it), then prefill and decode speed on stderr.\n"
                   "  -p, --prompt TEXT   prompt text (the model's tokenizer encodes it, BOS as the model says)\n"
                   "      --ids LIST      prompt as token ids, e.g. 1,450,7483 (models without a tokenizer)\n"
                   "  -n N                new tokens per sequence; stops early at EOS unless --ignore-eos\n"
                   "      --temp T        temperature; 0 = greedy (default)\n"
                   "      --top-k K       keep the K most likely tokens (0 = off)\n"
                   "      --top-p P       nucleus sampling mass (1 = off)\n"
                   "      --seed S        sampling seed (reproducible)\n"
                   "      --device D      cpu (fp32 reference) or cuda (prints the memory plan first)\n"
                   "      --dtype T       cuda weights: f16 (default) or bf16\n"
                   "      --no-graphs     cuda: launch each decode step's kernels instead of one CUDA graph\n"
                   "      --warmup W      untimed generations before the timed ones (default 0)\n"
                   "      --runs R        timed generations; speed lines show the median decode (default 1)\n"
                   "      --plan          print the memory plan (weights, KV cache, activations) and exit\n\n%s",
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
    if (runs < 1 || warmup < 0) return cli_usage_error("generate", "bad --runs or --warmup");

    lop_model *m;
    double t0 = lop_now();
    lop_status st = lop_model_load(argv[optind], NULL, &m);
    if (st) return cli_fail(st);
    int32_t *ids = NULL;
    int n_ids = 0;
    if (ids_arg) {
        if (cli_parse_ids(ids_arg, &ids, &n_ids)) {
            free(ids);
            lop_model_free(m);
            return cli_usage_error("generate", "--ids expects comma-separated token ids");
        }
    } else if ((st = lop_model_encode(m, prompt, strlen(prompt), -1, &ids, &n_ids)) != LOP_OK) {
        lop_model_free(m);
        return cli_fail(st);
    }
    lop_engine_opts eo = {.device = dev, .max_batch = batch, .max_seq_len = n_ids + n_new + 1, .n_threads = threads,
                          .weight_dtype = wdt, .no_graphs = no_graphs};
    if (dev == LOP_DEVICE_CUDA || plan_only) {
        lop_mem_plan pl;
        if ((st = lop_engine_plan(m, &eo, &pl)) != LOP_OK) {
            free(ids);
            lop_model_free(m);
            return cli_fail(st);
        }
        const double G = 1073741824.0;
        fprintf(stderr, "plan:    weights %.2f GiB + KV cache %.2f GiB + activations %.2f GiB + workspace %.2f GiB = %.2f GiB",
                pl.weight_bytes / G, pl.kv_bytes / G, pl.act_bytes / G, pl.workspace_bytes / G, pl.total_bytes / G);
        if (pl.fits >= 0)
            fprintf(stderr, "; %.2f of %.2f GiB free on %s: %s\n", pl.device_free / G, pl.device_total / G, pl.device,
                    pl.fits ? "fits" : "DOES NOT FIT (out of memory predicted)");
        else
            fprintf(stderr, " (%s)\n", pl.device);
        if (plan_only) {
            free(ids);
            lop_model_free(m);
            return pl.fits == 0 ? 1 : 0;
        }
    }
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
    int total_runs = warmup + runs;
    double *dec = malloc((size_t)total_runs * sizeof *dec), *pre = malloc((size_t)total_runs * sizeof *pre);
    if (total_runs > 1) gp.on_step = NULL; /* timing runs: no streaming */
    if (prompt && m->tok && batch == 1 && gp.on_step) fputs(prompt, stdout);
    st = prompts && lens && dec && pre ? LOP_OK : LOP_ERR_OOM;
    lop_gen_result best = {0};
    double med = 0;
    for (int run = 0; st == LOP_OK && run < total_runs; run++) {
        st = lop_generate(e, (const int32_t *const *)prompts, lens, batch, &gp, &r);
        if (st != LOP_OK) break;
        if (run < warmup) {
            lop_gen_result_free(&r);
            continue;
        }
        dec[run - warmup] = r.decode_s;
        pre[run - warmup] = r.prefill_s;
        /* keep the run whose decode time is the median so far (the last one decides) */
        double sorted[256];
        int k = run - warmup + 1 < 256 ? run - warmup + 1 : 256;
        memcpy(sorted, dec, (size_t)k * sizeof *sorted);
        for (int a = 0; a < k; a++)
            for (int b = a + 1; b < k; b++)
                if (sorted[b] < sorted[a]) {
                    double t = sorted[a];
                    sorted[a] = sorted[b];
                    sorted[b] = t;
                }
        double m2 = sorted[k / 2];
        if (run == warmup || fabs(r.decode_s - m2) < fabs(med - m2)) {
            lop_gen_result_free(&best);
            best = r;
        } else {
            lop_gen_result_free(&r);
        }
        med = m2;
    }
    if (st == LOP_OK) r = best;
    if (st == LOP_OK && runs > 1) {
        double lo = dec[0], hi = dec[0];
        for (int k = 1; k < runs; k++) lo = dec[k] < lo ? dec[k] : lo, hi = dec[k] > hi ? dec[k] : hi;
        for (int a = 0; a < runs; a++) /* prefill median */
            for (int b = a + 1; b < runs; b++)
                if (pre[b] < pre[a]) {
                    double t = pre[a];
                    pre[a] = pre[b];
                    pre[b] = t;
                }
        fprintf(stderr, "runs:    %d timed after %d warm-up; decode time median %.1f ms (min %.1f, max %.1f), prefill median %.2f ms; lines below: the median-decode run\n",
                runs, warmup, 1e3 * med, 1e3 * lo, 1e3 * hi, 1e3 * pre[runs / 2]);
    }
    free(dec);
    free(pre);
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
