/* lop bench MODEL... : the efficiency sweep (batch x generated length) with the paper's protocol,
 * written as PREFIX.csv and PREFIX.json (with card, driver, commit, date, shapes, protocol) and a
 * table on stdout in the spirit of llama-batched-bench. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "bench/nvml.h"
#include "bench/roofline.h"
#include "bench/sweep.h"
#include "cli.h"
#include "commit.h"
#include "core/status.h"
#include "io/file.h"
#include "model/model.h"
#ifdef LOP_HAVE_CUDA
#include "runtime/cuda/cuda_api.h"
#endif

#define MAX_LIST 64
#define MAX_MODELS 16

static int parse_list(const char *s, int *v, int max) {
    int n = 0;
    while (*s && n < max) {
        char *e;
        long x = strtol(s, &e, 10);
        if (e == s || x < 1 || x > 1 << 20) return -1;
        v[n++] = (int)x;
        if (*e == ',') e++;
        else if (*e) return -1;
        s = e;
    }
    return n;
}

static void split_labels(char *s, char **out, int max, int *n) {
    *n = 0;
    for (char *t = strtok(s, ","); t && *n < max; t = strtok(NULL, ",")) out[(*n)++] = t;
}

/* the fixed prompt: the model's tokenizer on a fixed sentence, else deterministic ids */
static int32_t *make_prompt(const lop_model *m, int len) {
    static const char *TEXT = "The history of the English language begins with the arrival of three Germanic tribes "
                              "who invaded Britain during the fifth century AD and settled there for good";
    int32_t *p = malloc((size_t)len * sizeof *p), *ids = NULL;
    int n = 0;
    if (!p) return NULL;
    if (m->tok && lop_model_encode(m, TEXT, strlen(TEXT), 1, &ids, &n) != LOP_OK) n = 0;
    for (int i = 0; i < len; i++) p[i] = i < n ? ids[i] : (int32_t)((1000003LL * (i + 1) + 17) % m->cfg.vocab_size);
    free(ids);
    return p;
}

static double num_or_null(cJSON *o, const char *k, double v) {
    if (v < 0) cJSON_AddNullToObject(o, k);
    else cJSON_AddNumberToObject(o, k, v);
    return v;
}

static lop_status write_outputs(const char *prefix, const lop_results *r, cJSON *meta, cJSON *models) {
    char path[1024];
    snprintf(path, sizeof path, "%s.csv", prefix);
    lop_atomic_file af;
    LOP_TRY(lop_atomic_open(&af, path));
    fprintf(af.fp, "model,card,batch,len,prompt_len,status,latency_ms,prefill_ms,decode_step_ms,throughput_tok_s,"
                   "util_gpu,util_mem,sm_active,dram_bw_util,mem_used_mib,mem_planned_mib,bytes_per_step,"
                   "flops_per_step,mbu,mfu,roofline_ms,runs\n");
    for (int i = 0; i < r->n; i++) {
        const lop_cell *c = &r->cells[i];
        fprintf(af.fp, "\"%s\",\"%s\",%d,%d,%d,%s", c->model, c->card, c->batch, c->len, c->prompt_len,
                lop_cell_status_name(c->status));
        double v[] = {c->latency_ms, c->prefill_ms, c->decode_step_ms, c->throughput, c->util_gpu, c->util_mem,
                      c->sm_active, c->dram_bw, c->mem_used_mib, c->mem_planned_mib, c->bytes_per_step,
                      c->flops_per_step, c->mbu, c->mfu, c->roofline_ms};
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++)
            if (v[k] < 0) fputs(",", af.fp);
            else fprintf(af.fp, ",%.6g", v[k]);
        fprintf(af.fp, ",%d\n", c->runs);
    }
    LOP_TRY(lop_atomic_commit(&af));
    cJSON *root = cJSON_CreateObject(), *cells = cJSON_CreateArray();
    cJSON_AddItemToObject(root, "meta", cJSON_Duplicate(meta, 1));
    cJSON_AddItemToObject(root, "models", cJSON_Duplicate(models, 1));
    cJSON_AddItemToObject(root, "cells", cells);
    for (int i = 0; i < r->n; i++) {
        const lop_cell *c = &r->cells[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", c->model);
        cJSON_AddStringToObject(o, "card", c->card);
        cJSON_AddNumberToObject(o, "batch", c->batch);
        cJSON_AddNumberToObject(o, "len", c->len);
        cJSON_AddNumberToObject(o, "prompt_len", c->prompt_len);
        cJSON_AddStringToObject(o, "status", lop_cell_status_name(c->status));
        num_or_null(o, "latency_ms", c->latency_ms);
        num_or_null(o, "prefill_ms", c->prefill_ms);
        num_or_null(o, "decode_step_ms", c->decode_step_ms);
        num_or_null(o, "throughput", c->throughput);
        num_or_null(o, "util_gpu", c->util_gpu);
        num_or_null(o, "util_mem", c->util_mem);
        num_or_null(o, "sm_active", c->sm_active);
        num_or_null(o, "dram_bw", c->dram_bw);
        num_or_null(o, "mem_used_mib", c->mem_used_mib);
        num_or_null(o, "mem_planned_mib", c->mem_planned_mib);
        num_or_null(o, "bytes_per_step", c->bytes_per_step);
        num_or_null(o, "flops_per_step", c->flops_per_step);
        num_or_null(o, "mbu", c->mbu);
        num_or_null(o, "mfu", c->mfu);
        num_or_null(o, "roofline_ms", c->roofline_ms);
        cJSON_AddNumberToObject(o, "runs", c->runs);
        cJSON_AddItemToArray(cells, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return lop_fail(LOP_ERR_OOM, "out of memory (results JSON)");
    snprintf(path, sizeof path, "%s.json", prefix);
    lop_status st = lop_write_file_atomic(path, text, strlen(text));
    free(text);
    return st;
}

static void print_table(const lop_results *r, int from) {
    printf("\n| %-22s | %5s | %5s | %-13s | %10s | %9s | %8s | %10s | %6s | %8s | %6s | %6s | %10s |\n", "model", "B", "L",
           "status", "latency s", "prefill ms", "step ms", "tok/s", "util %", "mem MiB", "MBU %", "MFU %", "roofline s");
    printf("|%.24s|%.7s|%.7s|%.15s|%.12s|%.11s|%.10s|%.12s|%.8s|%.10s|%.8s|%.8s|%.12s|\n",
           "------------------------", "-------", "-------", "---------------", "------------", "-----------",
           "----------", "------------", "--------", "----------", "--------", "--------", "------------");
    for (int i = from; i < r->n; i++) {
        const lop_cell *c = &r->cells[i];
        char f[13][32];
        snprintf(f[0], 32, c->latency_ms >= 0 ? "%.3f" : "-", c->latency_ms / 1e3);
        snprintf(f[1], 32, c->prefill_ms >= 0 ? "%.2f" : "-", c->prefill_ms);
        snprintf(f[2], 32, c->decode_step_ms >= 0 ? "%.3f" : "-", c->decode_step_ms);
        snprintf(f[3], 32, c->throughput >= 0 ? "%.1f" : "-", c->throughput);
        snprintf(f[4], 32, c->util_gpu >= 0 ? "%.0f" : "-", c->util_gpu);
        snprintf(f[5], 32, c->mem_used_mib >= 0 ? "%.0f" : "-", c->mem_used_mib);
        snprintf(f[6], 32, c->mbu >= 0 ? "%.1f" : "-", 100 * c->mbu);
        snprintf(f[7], 32, c->mfu >= 0 ? "%.1f" : "-", 100 * c->mfu);
        snprintf(f[8], 32, c->roofline_ms >= 0 ? "%.3f" : "-", c->roofline_ms / 1e3);
        printf("| %-22.22s | %5d | %5d | %-13s | %10s | %9s | %8s | %10s | %6s | %8s | %6s | %6s | %10s |\n", c->model,
               c->batch, c->len, lop_cell_status_name(c->status), f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]);
    }
}

int cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {
        {"batch", required_argument, 0, 'b'},   {"len", required_argument, 0, 'L'},
        {"prompt-len", required_argument, 0, 'P'}, {"warmup", required_argument, 0, 'W'},
        {"runs", required_argument, 0, 'R'},    {"device", required_argument, 0, 'd'},
        {"sample", no_argument, 0, 'S'},        {"greedy", no_argument, 0, 'G'},
        {"labels", required_argument, 0, 'l'},  {"out", required_argument, 0, 'o'},
        {"force", no_argument, 0, 'F'},         {"dtype", required_argument, 0, 'D'},
        {"threads", required_argument, 0, 'j'}, {"peak-bw", required_argument, 0, 'B'},
        {"peak-tflops", required_argument, 0, 'T'}, {"seed", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int batches[MAX_LIST] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512}, n_b = 11;
    int lens[MAX_LIST] = {16, 32, 64, 128, 256, 512, 1024}, n_l = 7;
    int prompt_len = 12, warmup = 1, runs = 3, sample = 1, force = 0, threads = 0;
    double peak_bw = 0, peak_tf = 0;
    unsigned long long seed = 0;
    char *labels_arg = NULL;
    const char *out = NULL;
    lop_device dev = LOP_DEVICE_CUDA;
    lop_weight_dtype wdt = LOP_WEIGHTS_DEFAULT;
    int c;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        char *e = NULL;
        switch (c) {
        case 'b': if ((n_b = parse_list(optarg, batches, MAX_LIST)) < 1) return cli_usage_error("bench", "bad --batch list"); break;
        case 'L': if ((n_l = parse_list(optarg, lens, MAX_LIST)) < 1) return cli_usage_error("bench", "bad --len list"); break;
        case 'P': prompt_len = (int)strtol(optarg, &e, 10); break;
        case 'W': warmup = (int)strtol(optarg, &e, 10); break;
        case 'R': runs = (int)strtol(optarg, &e, 10); break;
        case 'j': threads = (int)strtol(optarg, &e, 10); break;
        case 's': seed = strtoull(optarg, &e, 10); break;
        case 'B': peak_bw = strtod(optarg, &e) * 1e9; break;
        case 'T': peak_tf = strtod(optarg, &e) * 1e12; break;
        case 'S': sample = 1; break;
        case 'G': sample = 0; break;
        case 'F': force = 1; break;
        case 'l': labels_arg = optarg; break;
        case 'o': out = optarg; break;
        case 'D':
            if (!strcmp(optarg, "f16")) wdt = LOP_WEIGHTS_F16;
            else if (!strcmp(optarg, "bf16")) wdt = LOP_WEIGHTS_BF16;
            else return cli_usage_error("bench", "--dtype must be f16 or bf16");
            break;
        case 'd':
            if (!strcmp(optarg, "cpu")) dev = LOP_DEVICE_CPU;
            else if (!strcmp(optarg, "cuda")) dev = LOP_DEVICE_CUDA;
            else return cli_usage_error("bench", "--device must be cpu or cuda");
            break;
        case 'h':
            printf("Usage: lop bench MODEL [MODEL...] --out PREFIX [--batch LIST] [--len LIST] [--prompt-len 12]\n"
                   "                 [--warmup N] [--runs N] [--device cuda|cpu] [--sample|--greedy] [--labels A,B,...]\n"
                   "                 [--force] [--dtype f16|bf16] [--peak-bw GB/s] [--peak-tflops T] [--seed S]\n\n"
                   "Sweeps each model over batch x generated length with the paper's protocol: a fixed prompt of\n"
                   "prompt-len tokens repeated over the batch, exactly L new tokens, top-k 50 / top-p 0.95 sampling\n"
                   "(--greedy for argmax), warm-up runs (32 tokens) then timed runs (median reported). One generation of the longest\n"
                   "length times every shorter one. Per cell: latency (prefill + L steps), prefill, median decode\n"
                   "step, throughput B*L/latency, NVML utilization.gpu / memory (and GPM SM / DRAM activity where\n"
                   "offered) averaged over the timed runs, planned and used memory, MBU / MFU and the roofline time\n"
                   "(datasheet peaks of the card unless --peak-bw / --peak-tflops). Cells the memory planner\n"
                   "predicts will not fit are marked oom-predicted without running (--force runs them); a real\n"
                   "allocation failure is marked oom and the sweep goes on.\n"
                   "Defaults: --batch 1,2,4,8,16,32,64,128,256,384,512 --len 16,32,64,128,256,512,1024\n"
                   "          --warmup 1 --runs 3 --device cuda.  Writes PREFIX.csv and PREFIX.json; draw with lop plot.\n"
                   "Labels name the models in the results and the figure (roles Original / Width / Depth are read\n"
                   "from them).\n\n%s",
                   CLI_MODEL_HELP);
            return 0;
        default: return cli_usage_error("bench", "unknown option");
        }
        if (e && *e) return cli_usage_error("bench", "bad numeric value");
    }
    int n_models = argc - optind;
    if (n_models < 1 || n_models > MAX_MODELS) return cli_usage_error("bench", "give 1 to 16 MODELs");
    if (!out) return cli_usage_error("bench", "--out PREFIX is required");
    if (prompt_len < 1 || runs < 1 || warmup < 0) return cli_usage_error("bench", "bad --prompt-len, --runs or --warmup");
    char *labels[MAX_MODELS];
    int n_labels = 0;
    if (labels_arg) split_labels(labels_arg, labels, MAX_MODELS, &n_labels);
    if (labels_arg && n_labels != n_models) return cli_usage_error("bench", "--labels needs one label per MODEL");

    lop_nvml *nvml = NULL;
    lop_gpu_info gi;
    memset(&gi, 0, sizeof gi);
    char pci[32] = "";
#ifdef LOP_HAVE_CUDA
    /* the card CUDA runs on (CUDA_VISIBLE_DEVICES applies), found in NVML by its bus id */
    if (dev == LOP_DEVICE_CUDA && lop_cuda_pci_bus_id(pci, sizeof pci) != LOP_OK) pci[0] = 0;
#endif
    if (dev == LOP_DEVICE_CUDA && lop_nvml_open(pci, &nvml, &gi) != LOP_OK)
        fprintf(stderr, "lop bench: %s: utilisation and memory readings will be empty\n", lop_last_error());
    char card[96];
    snprintf(card, sizeof card, "%s", dev == LOP_DEVICE_CPU ? "cpu" : gi.name[0] ? gi.name : "unknown GPU");
    double bw = peak_bw, fl = peak_tf;
    if (bw == 0 || fl == 0) {
        double dbw, dfl;
        lop_card_peaks(card, &dbw, &dfl);
        if (bw == 0) bw = dbw;
        if (fl == 0) fl = dfl;
    }
    cJSON *meta = cJSON_CreateObject(), *models = cJSON_CreateArray(), *proto = cJSON_CreateObject();
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddStringToObject(meta, "tool", "lop bench");
    cJSON_AddStringToObject(meta, "commit", LOP_COMMIT);
    cJSON_AddStringToObject(meta, "date", date);
    cJSON_AddStringToObject(meta, "device", dev == LOP_DEVICE_CPU ? "cpu" : "cuda");
    cJSON_AddStringToObject(meta, "card", card);
    cJSON_AddStringToObject(meta, "driver", gi.driver);
    cJSON_AddNumberToObject(meta, "cuda_driver_version", gi.cuda_driver_version);
    cJSON_AddBoolToObject(meta, "gpm", gi.gpm_supported);
    cJSON_AddNumberToObject(meta, "peak_bw_bytes_per_s", bw);
    cJSON_AddNumberToObject(meta, "peak_flops_per_s", fl);
    cJSON_AddItemToObject(meta, "protocol", proto);
    cJSON_AddNumberToObject(proto, "prompt_len", prompt_len);
    cJSON_AddNumberToObject(proto, "warmup", warmup);
    cJSON_AddStringToObject(proto, "warmup_tokens", "min(32, longest length)");
    cJSON_AddNumberToObject(proto, "runs", runs);
    cJSON_AddStringToObject(proto, "sampling", sample ? "top-k 50, top-p 0.95, temperature 1" : "greedy");
    cJSON_AddStringToObject(proto, "weights", wdt == LOP_WEIGHTS_BF16 ? "bf16" : dev == LOP_DEVICE_CPU ? "fp32" : "fp16");
    cJSON_AddStringToObject(proto, "latency", "whole generation: prefill + L new tokens (exactly L, EOS ignored)");
    cJSON_AddStringToObject(proto, "nvml", "utilization.gpu polled every 25 ms, averaged over each length's prefix of the timed runs");

    lop_results res = {0};
    lop_status st = LOP_OK;
    lop_progress *pb = lop_progress_new("bench", (int64_t)n_models * n_b * (warmup + runs), 0);
    for (int k = 0; k < n_models && st == LOP_OK; k++) {
        const char *spec = argv[optind + k], *label = n_labels ? labels[k] : spec;
        lop_model *m;
        if ((st = lop_model_load(spec, NULL, &m)) != LOP_OK) break;
        cJSON *mo = cJSON_CreateObject();
        cJSON_AddStringToObject(mo, "label", label);
        cJSON_AddStringToObject(mo, "spec", spec);
        cJSON_AddNumberToObject(mo, "n_params", (double)lop_model_n_params(m));
        cJSON_AddNumberToObject(mo, "n_layers", m->cfg.n_layers);
        cJSON_AddNumberToObject(mo, "hidden", m->cfg.dim);
        cJSON *ls = cJSON_CreateArray();
        for (int i = 0; i < m->cfg.n_layers; i++) {
            const lop_layer_shape *s = &m->cfg.layers[i];
            cJSON *lo = cJSON_CreateObject();
            cJSON_AddNumberToObject(lo, "heads", s->n_heads);
            cJSON_AddNumberToObject(lo, "kv_heads", s->n_kv_heads);
            cJSON_AddNumberToObject(lo, "head_dim", s->head_dim);
            cJSON_AddNumberToObject(lo, "ffn", s->ffn_dim);
            cJSON_AddItemToArray(ls, lo);
        }
        cJSON_AddItemToObject(mo, "layers", ls);
        cJSON_AddItemToArray(models, mo);
        int32_t *prompt = make_prompt(m, prompt_len);
        lop_sweep_opts so = {batches, n_b, lens, n_l, prompt, prompt_len, warmup, runs, sample, seed, force, dev, wdt,
                             threads, bw, fl, 25, pb};
        int from = res.n;
        st = prompt ? lop_sweep(m, label, card, &so, nvml, &res) : lop_fail(LOP_ERR_OOM, "out of memory");
        free(prompt);
        lop_model_free(m);
        if (st == LOP_OK) {
            lop_progress_end(pb);
            pb = NULL;
            print_table(&res, from);
            fflush(stdout);
            /* results so far, rewritten after every model: a long sweep cut short keeps what it measured */
            st = write_outputs(out, &res, meta, models);
            if (k + 1 < n_models) pb = lop_progress_new("bench", (int64_t)(n_models - k - 1) * n_b * (warmup + runs), 0);
        }
    }
    lop_progress_end(pb);
    cJSON_Delete(meta);
    cJSON_Delete(models);
    lop_results_free(&res);
    lop_nvml_close(nvml);
    if (st != LOP_OK) return cli_fail(st);
    printf("\nwrote %s.csv and %s.json (%s)\n", out, out, card);
    return 0;
}
