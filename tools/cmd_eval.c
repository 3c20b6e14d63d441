/* lop eval MODEL: perplexity (the paper's window protocol) and zero-shot accuracy (lm-eval's
 * templates) with a readable table on stdout and, with --json, every number in one JSON file
 * (written atomically). Engines are sized per job: windows × ctx for perplexity, the longest
 * item of each task for zero-shot. */
#include <cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/status.h"
#include "core/threads.h"
#include "core/timer.h"
#include "eval/ppl.h"
#include "eval/zeroshot.h"
#include "io/file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define MAX_CTX 8

typedef struct eval_args {
    const char *model, *ppl, *tasks, *data, *json;
    int ctx[MAX_CTX], n_ctx;
    lop_ppl_bos bos;
    int64_t ppl_windows;
    int limit, max_len, batch, threads, dump, no_share;
    lop_device dev;
} eval_args;

/* ---- small helpers ---------------------------------------------------------------------------- */
static const char *default_data(char *buf, size_t n, const char *sub) {
    const char *d = getenv("LOP_DATA");
    snprintf(buf, n, "%s/%s", d && *d ? d : "../shared/data", sub);
    return buf;
}

static void cpu_name(char *buf, size_t n) {
    snprintf(buf, n, "cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && c) {
            c += 1 + (c[1] == ' ');
            c[strcspn(c, "\n")] = 0;
            snprintf(buf, n, "%s", c);
            break;
        }
    }
    fclose(f);
}

static const char *bos_name(lop_ppl_bos b) {
    return b == LOP_PPL_BOS_FIRST ? "first" : b == LOP_PPL_BOS_EACH ? "each" : "none";
}

static void commas(int64_t v, char *o) {
    char s[32];
    int n = snprintf(s, sizeof s, "%lld", (long long)v), j = 0;
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) o[j++] = ',';
        o[j++] = s[i];
    }
    o[j] = 0;
}

static cJSON *num_array(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *int_array(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

/* ---- perplexity --------------------------------------------------------------------------------- */
static lop_status run_ppl(lop_model *m, const eval_args *a, const char *path, cJSON *out) {
    printf("perplexity  %s  (BOS %s; non-overlapping windows, tail dropped)\n", path, bos_name(a->bos));
    printf("  %6s %8s %14s %10s %9s %9s\n", "ctx", "windows", "tokens scored", "PPL", "time", "tok/s");
    for (int c = 0; c < a->n_ctx; c++) {
        int ctx = a->ctx[c];
        int slots = a->batch > 0 ? a->batch : (1024 / ctx > 0 ? 1024 / ctx : 1);
        lop_engine_opts eo = {.device = a->dev, .max_batch = slots, .max_seq_len = ctx + (a->bos == LOP_PPL_BOS_EACH), .n_threads = a->threads};
        lop_engine *e;
        LOP_TRY(lop_engine_create(m, &eo, &e));
        char label[32];
        snprintf(label, sizeof label, "ppl ctx %d", ctx);
        lop_ppl_opts po = {ctx, a->bos, a->ppl_windows, 0, lop_progress_new(label, 0, 0)};
        /* the bar counts windows; its total is known once the text is tokenised */
        lop_ppl_result r;
        char *text = NULL;
        size_t len;
        lop_status st = lop_read_text_lf(path, &text, &len);
        int32_t *ids = NULL;
        int n_ids = 0;
        if (st == LOP_OK && !m->tok) st = lop_fail(LOP_ERR_ARG, "%s: the model has no tokenizer; perplexity needs one", m->source);
        if (st == LOP_OK) st = lop_model_encode(m, text, len, 0, &ids, &n_ids);
        if (st == LOP_OK) {
            int64_t nw, dr;
            lop_ppl_layout(n_ids, ctx, a->bos, &nw, &dr);
            lop_progress_total(po.progress, a->ppl_windows > 0 && a->ppl_windows < nw ? a->ppl_windows : nw);
            st = lop_ppl_eval_tokens(e, ids, n_ids, lop_tokenizer_bos(m->tok), &po, &r);
        }
        lop_progress_end(po.progress);
        free(text);
        free(ids);
        lop_engine_free(e);
        if (st != LOP_OK) {
            lop_error_prefix("%s", path);
            return st;
        }
        char sc[32];
        commas(r.n_scored, sc);
        double tps = r.seconds > 0 ? r.n_fed / r.seconds : 0;
        printf("  %6d %8lld %14s %10.4f %7.1f s %9.1f\n", ctx, (long long)r.n_windows, sc, r.ppl, r.seconds, tps);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "file", path);
        cJSON_AddNumberToObject(j, "ctx", ctx);
        cJSON_AddStringToObject(j, "bos", bos_name(r.bos));
        cJSON_AddNumberToObject(j, "ppl", r.ppl);
        cJSON_AddNumberToObject(j, "mean_nll", r.mean_nll);
        cJSON_AddNumberToObject(j, "windows", (double)r.n_windows);
        cJSON_AddNumberToObject(j, "tokens_scored", (double)r.n_scored);
        cJSON_AddNumberToObject(j, "tokens_fed", (double)r.n_fed);
        cJSON_AddNumberToObject(j, "text_tokens", (double)r.n_text_tokens);
        cJSON_AddNumberToObject(j, "tokens_dropped", (double)r.n_dropped);
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        cJSON_AddNumberToObject(j, "tokens_per_s", tps);
        cJSON_AddNumberToObject(j, "windows_per_forward", slots);
        if (a->dump) cJSON_AddItemToObject(j, "window_nll", num_array(r.window_nll, (int)r.n_windows));
        cJSON_AddItemToArray(out, j);
        lop_ppl_result_free(&r);
    }
    printf("\n");
    return LOP_OK;
}

/* ---- zero-shot ---------------------------------------------------------------------------------- */
static cJSON *item_json(const lop_mc_item *it, const lop_zs_item *x) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "line", it->line);
    cJSON_AddNumberToObject(o, "gold", x->gold);
    cJSON_AddNumberToObject(o, "pred", x->pred);
    cJSON_AddNumberToObject(o, "pred_norm", x->pred_norm);
    cJSON_AddItemToObject(o, "ll", num_array(x->ll, x->n_choices));
    cJSON_AddItemToObject(o, "greedy", int_array(x->greedy, x->n_choices));
    cJSON_AddItemToObject(o, "n_ctx", int_array(x->n_ctx, x->n_choices));
    cJSON_AddItemToObject(o, "n_cont", int_array(x->n_cont, x->n_choices));
    cJSON_AddItemToObject(o, "norm_len", int_array(it->norm_len, x->n_choices));
    if (x->truncated) cJSON_AddTrueToObject(o, "truncated");
    return o;
}

static lop_status run_task(lop_model *m, const eval_args *a, const char *name, cJSON *out, double *score, int *ok) {
    lop_task t;
    char *missing = NULL;
    const lop_task_info *info = lop_task_find(name);
    const char *metric = info->metric == LOP_METRIC_ACC ? "acc" : "acc_norm";
    *ok = 0;
    LOP_TRY(lop_task_load(name, a->data, a->limit, &t, &missing));
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "task", name);
    cJSON_AddStringToObject(j, "metric", metric);
    cJSON_AddItemToArray(out, j);
    if (missing) {
        printf("  %-15s missing: %s not found\n", name, missing);
        cJSON_AddStringToObject(j, "status", "missing");
        cJSON_AddStringToObject(j, "missing_file", missing);
        free(missing);
        return LOP_OK;
    }
    int longest;
    lop_status st = lop_zeroshot_longest(m, &t, &longest);
    int max_len = a->max_len;
    int need = longest < max_len ? longest : max_len;
    /* slots: about 4096 positions of KV in all, 4..64 sequences */
    int slots = a->batch > 0 ? a->batch : 4096 / (need > 0 ? need : 1);
    if (a->batch <= 0) slots = slots < 4 ? 4 : slots > 64 ? 64 : slots;
    lop_engine_opts eo = {.device = a->dev, .max_batch = slots, .max_seq_len = need, .n_threads = a->threads};
    lop_engine *e = NULL;
    if (st == LOP_OK) st = lop_engine_create(m, &eo, &e);
    lop_zs_result r;
    if (st == LOP_OK) {
        lop_zs_opts zo = {need, 2048, a->no_share, lop_progress_new(name, t.n_items, 0)};
        st = lop_zeroshot_eval(e, &t, &zo, &r);
        lop_progress_end(zo.progress);
    }
    lop_engine_free(e);
    if (st != LOP_OK) {
        lop_task_free(&t);
        return st;
    }
    *score = lop_zs_score(&r, info->metric);
    *ok = 1;
    char nm[40];
    snprintf(nm, sizeof nm, "%s%s", name, t.derived ? "*" : "");
    printf("  %-15s %6d %8.4f %9.4f  %-8s %7.1f s\n", nm, r.n_items, r.acc, r.acc_norm, metric, r.seconds);
    cJSON_AddStringToObject(j, "status", "ok");
    cJSON_AddStringToObject(j, "file", t.path);
    if (t.derived) cJSON_AddStringToObject(j, "note", "derived llama.cpp text (original jsonl missing): approximate");
    cJSON_AddNumberToObject(j, "items", r.n_items);
    cJSON_AddNumberToObject(j, "acc", r.acc);
    cJSON_AddNumberToObject(j, "acc_norm", r.acc_norm);
    cJSON_AddNumberToObject(j, "score", *score);
    cJSON_AddNumberToObject(j, "seconds", r.seconds);
    cJSON_AddNumberToObject(j, "tokens_fed", (double)r.n_tokens);
    cJSON_AddNumberToObject(j, "truncated_items", r.n_truncated);
    cJSON_AddNumberToObject(j, "longest_input", longest);
    if (a->dump) {
        cJSON *items = cJSON_AddArrayToObject(j, "items_detail");
        for (int i = 0; i < r.n_items; i++) cJSON_AddItemToArray(items, item_json(&t.items[i], &r.items[i]));
    }
    lop_zs_result_free(&r);
    lop_task_free(&t);
    return LOP_OK;
}

static lop_status run_zeroshot(lop_model *m, const eval_args *a, cJSON *root) {
    /* the task list: "all" or names separated by commas */
    const char *names[16];
    int n = 0, any_derived = 0;
    char *list = strdup(a->tasks);
    if (!list) return lop_fail(LOP_ERR_OOM, "out of memory");
    if (!strcmp(list, "all")) {
        for (int i = 0; i < lop_task_count(); i++) names[n++] = lop_task_at(i)->name;
    } else {
        for (char *s = strtok(list, ","); s && n < 16; s = strtok(NULL, ",")) names[n++] = s;
    }
    printf("zero-shot  %s  (lm-eval templates; acc_norm = ll / characters of the choice)%s\n", a->data,
           a->limit > 0 ? "" : "");
    if (a->limit > 0) printf("  first %d items per task (--limit)\n", a->limit);
    printf("  %-15s %6s %8s %9s  %-8s %9s\n", "task", "items", "acc", "acc_norm", "paper", "time");
    cJSON *zs = cJSON_AddObjectToObject(root, "zeroshot");
    cJSON_AddStringToObject(zs, "data", a->data);
    cJSON_AddNumberToObject(zs, "limit", a->limit);
    cJSON_AddNumberToObject(zs, "max_len", a->max_len);
    cJSON *tasks = cJSON_AddArrayToObject(zs, "tasks");
    double sum = 0;
    int n_ok = 0;
    lop_status st = LOP_OK;
    for (int i = 0; i < n && st == LOP_OK; i++) {
        double score;
        int ok;
        st = run_task(m, a, names[i], tasks, &score, &ok);
        if (ok) {
            sum += score;
            n_ok++;
            const cJSON *last = cJSON_GetArrayItem(tasks, cJSON_GetArraySize(tasks) - 1);
            any_derived |= cJSON_GetObjectItem(last, "note") != NULL;
        }
    }
    free(list);
    if (st != LOP_OK) return st;
    if (n_ok) {
        printf("  %-15s %6s %8.4f %9s  over %d of %d tasks (the paper's metric for each)\n", "average", "", sum / n_ok,
               "", n_ok, n);
        cJSON_AddNumberToObject(zs, "average", sum / n_ok);
    }
    cJSON_AddNumberToObject(zs, "average_tasks", n_ok);
    cJSON_AddNumberToObject(zs, "tasks_asked", n);
    if (any_derived) printf("  * HellaSwag from llama.cpp's derived text (the original jsonl is missing): approximate\n");
    return LOP_OK;
}

/* ---- main --------------------------------------------------------------------------------------- */
static int usage_help(void) {
    printf("Usage: lop eval MODEL [--ppl FILE] [--ctx N[,N...]] [--bos-each | --no-bos] [--ppl-windows N]\n"
           "                      [--tasks LIST|all] [--data DIR] [--limit N] [--max-len N]\n"
           "                      [--batch B] [--device cpu|cuda] [--threads N] [--json OUT] [--dump]\n\n"
           "Perplexity (the Shortened-LLaMA protocol): the text is tokenised once, BOS only at the very\n"
           "start, cut into non-overlapping windows of ctx tokens (tail dropped); each window scores its\n"
           "ctx-1 next-token predictions; PPL = exp(mean NLL).\n"
           "  --ppl FILE          text file (UTF-8; CRLF read as LF); 'wikitext2' = $LOP_DATA/wikitext2/wiki.test.raw\n"
           "  --ctx N[,N...]      window lengths (default 128; the common protocol is 2048)\n"
           "  --bos-each          BOS before every window of ctx text tokens (Shortened-LLM's add_bos_to_every)\n"
           "  --no-bos            no BOS at all\n"
           "  --ppl-windows N     only the first N windows (quick runs)\n\n"
           "Zero-shot accuracy (lm-evaluation-harness templates, acc and acc_norm):\n"
           "  --tasks LIST|all    boolq,piqa,hellaswag,winogrande,arc_easy,arc_challenge,openbookqa\n"
           "  --data DIR          the tasks' original files (default $LOP_DATA/zeroshot, else\n"
           "                      ../shared/data/zeroshot); tasks whose files are absent are listed as missing\n"
           "  --limit N           first N items of each task\n"
           "  --max-len N         lm-eval's max_length: longer inputs are cut on the left (default 2048)\n\n"
           "  --batch B           sequences per forward (default: ~1024 tokens for perplexity, ~4096\n"
           "                      positions of KV cache for zero-shot)\n"
           "  --json OUT          all results as JSON (atomic write); --dump adds per-window NLLs and\n"
           "                      per-item log-likelihoods\n\n%s",
           CLI_MODEL_HELP);
    return 0;
}

static int parse_ctx(eval_args *a, const char *s) {
    a->n_ctx = 0;
    while (*s) {
        char *e;
        long v = strtol(s, &e, 10);
        if (e == s || v < 2 || v > 1 << 20 || a->n_ctx == MAX_CTX) return -1;
        a->ctx[a->n_ctx++] = (int)v;
        if (*e == ',') e++;
        else if (*e) return -1;
        s = e;
    }
    return a->n_ctx ? 0 : -1;
}

int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        {"ppl", required_argument, 0, 'p'},      {"ctx", required_argument, 0, 'c'},
        {"bos-each", no_argument, 0, 'B'},        {"no-bos", no_argument, 0, 'N'},
        {"ppl-windows", required_argument, 0, 'W'}, {"tasks", required_argument, 0, 't'},
        {"data", required_argument, 0, 'D'},     {"limit", required_argument, 0, 'l'},
        {"max-len", required_argument, 0, 'L'},  {"batch", required_argument, 0, 'b'},
        {"device", required_argument, 0, 'd'},   {"threads", required_argument, 0, 'j'},
        {"json", required_argument, 0, 'o'},     {"dump", no_argument, 0, 'U'},
        {"no-share", no_argument, 0, 'S'},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    eval_args a = {0};
    a.ctx[0] = 128;
    a.n_ctx = 1;
    a.max_len = 2048;
    char data_buf[1024], ppl_buf[1024];
    int c;
    while ((c = getopt_long(argc, argv, "j:h", opts, NULL)) != -1) {
        char *e = NULL;
        switch (c) {
        case 'p': a.ppl = optarg; break;
        case 'c':
            if (parse_ctx(&a, optarg)) return cli_usage_error("eval", "--ctx expects window lengths >= 2, e.g. 128,2048");
            break;
        case 'B': a.bos = LOP_PPL_BOS_EACH; break;
        case 'N': a.bos = LOP_PPL_BOS_NONE; break;
        case 'W': a.ppl_windows = strtoll(optarg, &e, 10); break;
        case 't': a.tasks = optarg; break;
        case 'D': a.data = optarg; break;
        case 'l': a.limit = (int)strtol(optarg, &e, 10); break;
        case 'L': a.max_len = (int)strtol(optarg, &e, 10); break;
        case 'b': a.batch = (int)strtol(optarg, &e, 10); break;
        case 'j': a.threads = (int)strtol(optarg, &e, 10); break;
        case 'o': a.json = optarg; break;
        case 'U': a.dump = 1; break;
        case 'S': a.no_share = 1; break;
        case 'd':
            if (!strcmp(optarg, "cpu")) a.dev = LOP_DEVICE_CPU;
            else if (!strcmp(optarg, "cuda")) a.dev = LOP_DEVICE_CUDA;
            else return cli_usage_error("eval", "--device must be cpu or cuda");
            break;
        case 'h': return usage_help();
        default: return cli_usage_error("eval", "unknown option");
        }
        if (e && *e) return cli_usage_error("eval", "bad numeric value");
    }
    if (optind + 1 != argc) return cli_usage_error("eval", "expected exactly one MODEL");
    if (!a.ppl && !a.tasks) return cli_usage_error("eval", "give --ppl FILE and/or --tasks LIST");
    if (a.ppl_windows < 0 || a.limit < 0 || a.max_len < 2 || a.batch < 0 || a.threads < 0)
        return cli_usage_error("eval", "bad --ppl-windows, --limit, --max-len, --batch or --threads");
    if (a.tasks && strcmp(a.tasks, "all")) {
        char *l = strdup(a.tasks);
        for (char *s = l ? strtok(l, ",") : NULL; s; s = strtok(NULL, ","))
            if (!lop_task_find(s)) {
                fprintf(stderr, "lop eval: unknown task '%s' (known: boolq piqa hellaswag winogrande arc_easy "
                                "arc_challenge openbookqa)\n", s);
                free(l);
                return EXIT_USAGE;
            }
        free(l);
    }
    if (!a.data) a.data = default_data(data_buf, sizeof data_buf, "zeroshot");
    if (a.ppl && !strcmp(a.ppl, "wikitext2") && !lop_file_exists(a.ppl))
        a.ppl = default_data(ppl_buf, sizeof ppl_buf, "wikitext2/wiki.test.raw");
    a.model = argv[optind];

    double t0 = lop_now();
    lop_model *m;
    lop_status st = lop_model_load(a.model, NULL, &m);
    if (st) return cli_fail(st);
    char dev[160], started[32];
    time_t now = time(NULL);
    strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    int threads = a.threads > 0 ? a.threads : lop_n_cpus();
    if (a.dev == LOP_DEVICE_CPU) cpu_name(dev, sizeof dev);
    else {
        /* the card's name (e.g. "NVIDIA H100 80GB HBM3") from a memory plan, which allocates nothing */
        lop_engine_opts eo = {.device = LOP_DEVICE_CUDA, .max_batch = 1, .max_seq_len = 16};
        lop_mem_plan pl;
        snprintf(dev, sizeof dev, "%s", lop_engine_plan(m, &eo, &pl) == LOP_OK && pl.device[0] ? pl.device : "cuda");
        lop_clear_error();
    }
    printf("lop eval  %s  on %s (%s%s%d threads)\n\n", a.model, a.dev ? "cuda" : "cpu", dev, ", ",
           threads);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", "lop-eval/1");
    cJSON_AddStringToObject(root, "model", a.model);
    cJSON_AddStringToObject(root, "device", a.dev ? "cuda" : "cpu");
    cJSON_AddStringToObject(root, "device_name", dev);
    if (a.dev == LOP_DEVICE_CPU) cJSON_AddNumberToObject(root, "threads", threads);
    cJSON_AddStringToObject(root, "started", started);
    if (a.ppl) st = run_ppl(m, &a, a.ppl, cJSON_AddArrayToObject(root, "perplexity"));
    if (st == LOP_OK && a.tasks) st = run_zeroshot(m, &a, root);
    double secs = lop_now() - t0;
    cJSON_AddNumberToObject(root, "seconds", secs);
    if (st == LOP_OK) printf("\ntotal %.1f s\n", secs);
    if (st == LOP_OK && a.json) {
        char *txt = cJSON_Print(root);
        st = txt ? lop_write_file_atomic(a.json, txt, strlen(txt)) : lop_fail(LOP_ERR_OOM, "out of memory (JSON)");
        free(txt);
    }
    cJSON_Delete(root);
    lop_model_free(m);
    return st ? cli_fail(st) : 0;
}
