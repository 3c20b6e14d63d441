/* lop prune MODEL --depth TARGET -o OUTDIR: depth pruning (Shortened LLaMA). Scores every block
 * (or attention / FFN module) with a criterion on calibration text, removes the least important
 * ones under the "+" rule, prints the score table, and writes a stock HF checkpoint plus
 * pruning.json. lop prune MODEL --width TARGET --method M -o OUTDIR: width pruning (heads and FFN
 * channels; src/prune/width.h), the same calibration, writer and pruning.json. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/progress.h"
#include "core/status.h"
#include "io/file.h"
#include "model/model.h"
#include "model/save_hf.h"
#include "prune/depth.h"
#include "prune/report.h"
#include "prune/width.h"
#include "train/train.h"

static void help(void) {
    printf("Usage: lop prune MODEL --depth TARGET [options] -o OUTDIR\n"
           "       lop prune MODEL --width TARGET [--method M] [options] -o OUTDIR\n\n"
           "Width pruning (docs/width-pruning.md): remove attention heads and FFN channels.\n"
           "  --width TARGET       27%% (of the parameters) or params=100M (parameters kept)\n"
           "  --method M           magnitude | wanda-sp (default) | flap | llm-pruner\n"
           "  --gqa G              query (default): query heads inside each KV group, groups kept equal;\n"
           "                       kv: whole KV groups\n"
           "  --round R            kept FFN widths are multiples of R: 1 (default), 8, 64 or 128\n"
           "  --layers A:B         prune only blocks A..B-1 (default: all; llm-pruner: 4..n-3)\n"
           "  --export-padded      per-layer widths (flap) written as a stock HF checkpoint: zero rows /\n"
           "                       columns up to the widest layer (same function)\n\n"
           "Depth pruning (Shortened LLaMA): score every block by a criterion, remove the least important.\n\n"
           "  --depth TARGET       9 (units), 27%% (of the parameters) or params=4.9B (parameters kept);\n"
           "                       a percentage or count of parameters removes the nearest reachable amount\n"
           "  --criterion C        taylor (default) | ppl | magnitude | bi\n"
           "                         magnitude  sum |W| of the unit's tensors (norms included)\n"
           "                         taylor     |sum W * dL/dW| over the unit's tensors (L: calibration NLL)\n"
           "                         ppl        calibration perplexity without the unit\n"
           "                         bi         1 - cos(input, output) of the unit, mean over tokens\n"
           "  --unit U             block (default) | attn | ffn: remove whole blocks or only one module;\n"
           "                       module removal writes lop's per-layer config.json (not stock HF)\n"
           "  --no-plus            allow removing blocks 0-3 and the last 2 (the \"+\" rule is on by default)\n"
           "  --iterative          remove one unit, re-score, repeat (default: score once)\n"
           "  --calib PATH         calibration text: a file, or a directory of *.txt\n"
           "                       (default $LOP_DATA/austen, else ../shared/data/austen)\n"
           "  --samples N          calibration samples (default 10)\n"
           "  --seq-len N          tokens per sample (default 128)\n"
           "  --seed N             sampling seed (default 0)\n"
           "  --threads N          CPU threads (default: all cores)\n"
           "  --device D           cpu (default) | cuda: where the criterion's forward / backward runs\n"
           "                       (fp32 either way; CUDA holds fp32 weights: 27 GB for a 7B model)\n"
           "  --dry-run            score and report only; write nothing (-o not needed)\n"
           "  -o, --out OUTDIR     output directory (must not exist, or be empty; never the input's)\n\n"
           "OUTDIR receives config.json, the safetensors (sharded like the input), the tokenizer files\n"
           "(copied, or for a GGUF generated from its vocabulary) and pruning.json (scores, removed blocks,\n"
           "calibration, parameters). Written atomically; the input is never touched.\n\n%s",
           CLI_MODEL_HELP);
}

static const char *default_calib(char *buf, size_t cap) {
    const char *d = getenv("LOP_DATA");
    snprintf(buf, cap, "%s/austen", d && *d ? d : "../shared/data");
    return buf;
}

static void print_table(const lop_model *m, const lop_depth_opts *o, const lop_depth_result *r) {
    int L = r->n_layers;
    printf("\n %5s  %14s  %s\n", lop_unit_name(o->unit), lop_criterion_name(o->criterion), "");
    for (int l = 0; l < L; l++) {
        double s = r->scores[l];
        int order = -1;
        for (int k = 0; k < r->n_removed; k++)
            if (r->removed[k] == l) order = k;
        char note[64] = "";
        if (order >= 0) snprintf(note, sizeof note, "removed (#%d)", order + 1);
        else if (r->protect[l]) snprintf(note, sizeof note, "kept (+ rule)");
        if (isnan(s)) printf(" %5d  %14s  %s\n", l, "-", note);
        else printf(" %5d  %14.6g  %s\n", l, s, note);
    }
    if (o->iterative)
        for (int k = 1; k < r->n_rounds; k++)
            printf(" round %d: removed %d (score %.6g)\n", k + 1, r->removed[k], r->scores[(size_t)k * L + r->removed[k]]);
    (void)m;
}

static int prune_width(const char *spec, const char *target, lop_width_opts *wo, int padded, const char *calib_arg,
                       int n_samples, int seq_len, unsigned long long seed, int dry, const char *out) {
    lop_model *m = NULL, *pruned = NULL;
    lop_calib cal = {0};
    lop_width_plan p = {0};
    cJSON *rep = NULL;
    char calib_buf[1024];
    const char *calib_path = calib_arg ? calib_arg : default_calib(calib_buf, sizeof calib_buf);
    int have_cal = 0;
    lop_status st = lop_model_load(spec, NULL, &m);
    if (st == LOP_OK && wo->method != LOP_WM_MAGNITUDE) {
        if (!m->tok && !calib_arg) {
            fprintf(stderr, "note: %s has no tokenizer: calibrating on random token ids\n", m->source);
            st = lop_calib_random(m, n_samples, seq_len, seed, &cal);
        } else if (!calib_arg && !lop_file_exists(calib_path))
            st = lop_fail(LOP_ERR_IO, "no calibration text at %s (pass --calib FILE or set LOP_DATA)", calib_path);
        else st = lop_calib_from_text(m, calib_path, n_samples, seq_len, seed, &cal);
        have_cal = st == LOP_OK;
    }
    if (st == LOP_OK) st = lop_width_plan_make(m, have_cal ? &cal : NULL, wo, &p);
    if (st == LOP_OK) st = lop_width_apply(m, &p, padded, &pruned);
    if (st == LOP_OK) {
        int64_t after = lop_model_n_params(pruned);
        printf("method %s, gqa %s, round %d; scored in %.1f s\n %5s %6s %4s %6s\n", lop_width_method_name(wo->method),
               wo->gqa == LOP_GQA_QUERY ? "query" : "kv", wo->round, p.seconds, "layer", "heads", "kv", "ffn");
        for (int l = 0; l < pruned->cfg.n_layers; l++)
            printf(" %5d %6d %4d %6d\n", l, pruned->cfg.layers[l].n_heads, pruned->cfg.layers[l].n_kv_heads,
                   pruned->cfg.layers[l].ffn_dim);
        printf("parameters %lld -> %lld (%.1f%% removed)\n", (long long)p.params_before, (long long)after,
               100.0 * (p.params_before - after) / p.params_before);
    }
    if (st == LOP_OK && !dry) {
        rep = lop_width_report(m, pruned, wo, target, &p, have_cal ? &cal : NULL, calib_path);
        if (!rep) st = lop_fail(LOP_ERR_OOM, "out of memory");
        else cJSON_AddBoolToObject(rep, "padded", padded);
    }
    if (st == LOP_OK && !dry) {
        lop_save_opts so = {.out_dir = out, .input = m->source, .report_name = "pruning.json", .report = rep};
        st = lop_model_save_hf(pruned, &so);
        if (st == LOP_OK)
            printf("wrote %s: %s\n", out, lop_model_is_stock_hf(pruned) ? "stock HF checkpoint"
                                          : "per-layer config (lop_layers); --export-padded writes stock HF");
    }
    cJSON_Delete(rep);
    lop_model_free(pruned);
    lop_width_plan_free(&p);
    lop_calib_free(&cal);
    lop_model_free(m);
    return st ? cli_fail(st) : 0;
}

int cmd_prune(int argc, char **argv) {
    static const struct option opts[] = {
        {"depth", required_argument, 0, 'D'},  {"criterion", required_argument, 0, 'c'},
        {"unit", required_argument, 0, 'u'},   {"no-plus", no_argument, 0, 'P'},
        {"iterative", no_argument, 0, 'i'},    {"calib", required_argument, 0, 'C'},
        {"samples", required_argument, 0, 'n'}, {"seq-len", required_argument, 0, 'L'},
        {"seed", required_argument, 0, 's'},   {"threads", required_argument, 0, 'j'},
        {"dry-run", no_argument, 0, 'N'},      {"out", required_argument, 0, 'o'},
        {"width", required_argument, 0, 'W'},  {"method", required_argument, 0, 'm'},
        {"gqa", required_argument, 0, 'G'},    {"round", required_argument, 0, 'R'},
        {"layers", required_argument, 0, 'Y'}, {"export-padded", no_argument, 0, 'X'},
        {"device", required_argument, 0, 'd'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *depth = NULL, *calib_arg = NULL, *out = NULL;
    lop_depth_opts o = {.criterion = LOP_CRIT_TAYLOR, .unit = LOP_UNIT_BLOCK};
    int n_samples = 10, seq_len = 128, dry = 0;
    const char *width = NULL;
    lop_width_opts wo = {.method = LOP_WM_WANDA_SP, .gqa = LOP_GQA_QUERY, .round = 1};
    int padded = 0;
    unsigned long long seed = 0;
    int c;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        char *e = NULL;
        switch (c) {
        case 'D': depth = optarg; break;
        case 'c':
            if (lop_criterion_parse(optarg, &o.criterion)) return cli_usage_error("prune", lop_last_error());
            break;
        case 'u':
            if (lop_unit_parse(optarg, &o.unit)) return cli_usage_error("prune", lop_last_error());
            break;
        case 'P': o.no_plus = 1; break;
        case 'i': o.iterative = 1; break;
        case 'C': calib_arg = optarg; break;
        case 'n': n_samples = (int)strtol(optarg, &e, 10); break;
        case 'L': seq_len = (int)strtol(optarg, &e, 10); break;
        case 's': seed = strtoull(optarg, &e, 10); break;
        case 'j': o.scorer.n_threads = (int)strtol(optarg, &e, 10); break;
        case 'N': dry = 1; break;
        case 'o': out = optarg; break;
        case 'W': width = optarg; break;
        case 'm':
            if (lop_width_method_parse(optarg, &wo.method)) return cli_usage_error("prune", lop_last_error());
            break;
        case 'G':
            if (lop_gqa_mode_parse(optarg, &wo.gqa)) return cli_usage_error("prune", lop_last_error());
            break;
        case 'R': wo.round = (int)strtol(optarg, &e, 10); break;
        case 'Y':
            if (sscanf(optarg, "%d:%d", &wo.layer0, &wo.layer1) != 2 || wo.layer1 <= wo.layer0 || wo.layer0 < 0)
                return cli_usage_error("prune", "--layers expects A:B with 0 <= A < B (blocks A..B-1)");
            break;
        case 'X': padded = 1; break;
        case 'd':
            if (!strcmp(optarg, "cpu")) o.scorer.device = LOP_DEVICE_CPU;
            else if (!strcmp(optarg, "cuda")) o.scorer.device = LOP_DEVICE_CUDA;
            else return cli_usage_error("prune", "--device must be cpu or cuda");
            break;
        case 'h': help(); return 0;
        default: return cli_usage_error("prune", "unknown option");
        }
        if (e && (*e || e == optarg)) return cli_usage_error("prune", "numeric options expect a number");
    }
    if (optind + 1 != argc) return cli_usage_error("prune", "expected exactly one MODEL");
    if (depth && width) return cli_usage_error("prune", "--depth and --width cannot be combined");
    if (width) {
        wo.n_threads = o.scorer.n_threads;
        wo.device = o.scorer.device;
        if (!out && !dry) return cli_usage_error("prune", "-o OUTDIR is required (or --dry-run)");
        if (wo.round != 1 && wo.round != 8 && wo.round != 64 && wo.round != 128)
            return cli_usage_error("prune", "--round expects 1, 8, 64 or 128");
        if (n_samples < 1 || seq_len < 2) return cli_usage_error("prune", "--samples must be >= 1, --seq-len >= 2");
        if (lop_depth_target_parse(width, &wo.target)) return cli_usage_error("prune", lop_last_error());
        if (wo.target.kind == LOP_DEPTH_COUNT)
            return cli_usage_error("prune", "--width takes a percentage (20%) or params=COUNT, not a unit count");
        return prune_width(argv[optind], width, &wo, padded, calib_arg, n_samples, seq_len, seed, dry, out);
    }
    if (!depth) return cli_usage_error("prune", "--depth TARGET is required (or --width TARGET; e.g. --depth 9, 27% or params=4.9B)");
    if (!out && !dry) return cli_usage_error("prune", "-o OUTDIR is required (or --dry-run)");
    if (n_samples < 1 || seq_len < 2 || o.scorer.n_threads < 0)
        return cli_usage_error("prune", "--samples must be >= 1, --seq-len >= 2, --threads >= 0");
    if (lop_depth_target_parse(depth, &o.target)) return cli_usage_error("prune", lop_last_error());

    lop_model *m = NULL, *pruned = NULL;
    lop_calib cal = {0};
    lop_depth_result r = {0};
    cJSON *rep = NULL;
    char calib_buf[1024];
    const char *calib_path = calib_arg ? calib_arg : default_calib(calib_buf, sizeof calib_buf);
    int have_cal = 0;
    lop_status st = lop_model_load(argv[optind], NULL, &m);
    if (st == LOP_OK && o.criterion != LOP_CRIT_MAGNITUDE) {
        if (!m->tok && !calib_arg) {
            fprintf(stderr, "note: %s has no tokenizer: calibrating on random token ids\n", m->source);
            st = lop_calib_random(m, n_samples, seq_len, seed, &cal);
        } else {
            if (!calib_arg && !lop_file_exists(calib_path))
                st = lop_fail(LOP_ERR_IO, "no calibration text at %s (pass --calib FILE or set LOP_DATA)", calib_path);
            else st = lop_calib_from_text(m, calib_path, n_samples, seq_len, seed, &cal);
        }
        have_cal = st == LOP_OK;
    }
    if (st == LOP_OK) {
        o.progress = lop_progress_new("scoring", 0, 0);
        st = lop_depth_plan(m, have_cal ? &cal : NULL, &o, &r);
        lop_progress_end(o.progress);
    }
    if (st == LOP_OK) {
        printf("criterion %s, unit %s, %s, \"+\" rule %s; ", lop_criterion_name(o.criterion), lop_unit_name(o.unit),
               o.iterative ? "iterative" : "one-shot", o.no_plus ? "off" : "on");
        if (have_cal)
            printf("calibration %d x %d tokens from %s (seed %llu)\n", cal.n_samples, cal.seq_len,
                   cal.random_ids ? "random ids" : calib_path, seed);
        else
            printf("no calibration data needed\n");
        print_table(m, &o, &r);
        printf("\nremoved %d %s unit%s:", r.n_removed, lop_unit_name(o.unit), r.n_removed == 1 ? "" : "s");
        for (int k = 0; k < r.n_removed; k++) printf(" %d", r.removed[k]);
        printf("\nparameters %lld -> %lld (%.1f%% removed); scored in %.1f s\n", (long long)r.params_before,
               (long long)r.params_after, 100.0 * (r.params_before - r.params_after) / r.params_before, r.seconds);
        if (!isnan(r.calib_loss[0])) printf("calibration perplexity of the input model %.3f\n", exp(r.calib_loss[0]));
    }
    if (st == LOP_OK && !dry) {
        rep = lop_depth_report(m, &o, depth, &r, have_cal ? &cal : NULL, calib_path);
        if (!rep) st = lop_fail(LOP_ERR_OOM, "out of memory");
    }
    if (st == LOP_OK && !dry) st = lop_model_remove_modules(m, r.skip, &pruned);
    if (st == LOP_OK && !dry) {
        lop_save_opts so = {.out_dir = out, .input = m->source, .report_name = "pruning.json", .report = rep};
        st = lop_model_save_hf(pruned, &so);
        if (st == LOP_OK) {
            int stock = lop_model_is_stock_hf(pruned);
            const cJSON *tok = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rep, "output"), "tokenizer");
            printf("wrote %s: %d layers, %s; tokenizer %s\n", out, pruned->cfg.n_layers,
                   stock ? "stock HF checkpoint" : "per-layer config (lop_layers): stock transformers cannot load it",
                   cJSON_GetStringValue(tok));
        }
    }
    cJSON_Delete(rep);
    lop_model_free(pruned);
    lop_depth_result_free(&r);
    lop_calib_free(&cal);
    lop_model_free(m);
    return st ? cli_fail(st) : 0;
}
