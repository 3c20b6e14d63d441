/* pruning.json for depth pruning: everything needed to understand and repeat a run (criterion,
 * unit, mode, the "+" rule, every unit's score in every round, what was removed and in which
 * order, the old index of every kept layer, the calibration windows and their token ids, the
 * parameter counts). The HF writer adds an "output" object. Schema "lop-pruning/1". */
#include "prune/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "train/train.h"

static cJSON *num_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

static cJSON *int_array(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *score_array(const double *s, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, num_or_null(s[i]));
    return a;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

cJSON *lop_calib_report(const lop_calib *cal, const char *path) {
    cJSON *c = cJSON_CreateObject();
    if (!cal) {
        cJSON_AddStringToObject(c, "source", "none (magnitude needs no data)");
        return c;
    }
    cJSON_AddStringToObject(c, "source", cal->random_ids ? "random token ids (the model has no tokenizer)" : path);
    cJSON_AddNumberToObject(c, "n_samples", cal->n_samples);
    cJSON_AddNumberToObject(c, "seq_len", cal->seq_len);
    cJSON_AddNumberToObject(c, "seed", (double)cal->seed);
    cJSON_AddStringToObject(c, "sampling",
                            cal->random_ids ? "uniform ids from splitmix64(seed)"
                                            : "each file tokenised whole without BOS; each sample a window of seq_len "
                                              "tokens whose start is uniform over all windows of all files");
    cJSON_AddStringToObject(c, "loss", "mean next-token NLL over every position of every sample");
    if (!cal->random_ids) {
        cJSON *files = cJSON_AddArrayToObject(c, "files");
        for (int f = 0; f < cal->n_files; f++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "path", cal->files[f]);
            cJSON_AddNumberToObject(e, "tokens", (double)cal->file_tokens[f]);
            cJSON_AddItemToArray(files, e);
        }
    }
    cJSON *samples = cJSON_AddArrayToObject(c, "samples");
    for (int k = 0; k < cal->n_samples; k++) {
        cJSON *e = cJSON_CreateObject();
        if (cal->samples[k].file >= 0) cJSON_AddNumberToObject(e, "file", cal->samples[k].file);
        cJSON_AddNumberToObject(e, "token_offset", (double)cal->samples[k].offset);
        cJSON *ids = cJSON_AddArrayToObject(e, "ids");
        for (int t = 0; t < cal->seq_len; t++)
            cJSON_AddItemToArray(ids, cJSON_CreateNumber(cal->tokens[(size_t)k * cal->seq_len + t]));
        cJSON_AddItemToArray(samples, e);
    }
    return c;
}

cJSON *lop_depth_report(const lop_model *m, const lop_depth_opts *o, const char *target_text,
                        const lop_depth_result *r, const lop_calib *cal, const char *calib_path) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    int L = r->n_layers;
    cJSON_AddStringToObject(j, "schema", "lop-pruning/1");
    cJSON_AddStringToObject(j, "method", "depth (Shortened LLaMA): remove whole blocks or their attention / FFN modules");
    cJSON_AddStringToObject(j, "input", m->source);
    cJSON_AddStringToObject(j, "criterion", lop_criterion_name(o->criterion));
    cJSON_AddStringToObject(j, "unit", lop_unit_name(o->unit));
    cJSON_AddStringToObject(j, "mode", o->iterative ? "iterative" : "one-shot");
    cJSON_AddStringToObject(j, "score_meaning", "higher = more important; the lowest-scoring units are removed");
    cJSON *plus = cJSON_AddObjectToObject(j, "plus_rule");
    cJSON_AddBoolToObject(plus, "on", !o->no_plus);
    cJSON *prot = cJSON_AddArrayToObject(plus, "protected_layers");
    for (int l = 0; l < L; l++)
        if (r->protect[l]) cJSON_AddItemToArray(prot, cJSON_CreateNumber(l));
    cJSON *tg = cJSON_AddObjectToObject(j, "target");
    cJSON_AddStringToObject(tg, "spec", target_text ? target_text : "");
    const char *kinds[] = {"units", "fraction of parameters", "parameters kept"};
    cJSON_AddStringToObject(tg, "kind", kinds[o->target.kind]);
    if (o->target.kind == LOP_DEPTH_COUNT) cJSON_AddNumberToObject(tg, "units", o->target.count);
    if (o->target.kind == LOP_DEPTH_RATIO) cJSON_AddNumberToObject(tg, "fraction", o->target.ratio);
    if (o->target.kind == LOP_DEPTH_PARAMS) cJSON_AddNumberToObject(tg, "params", (double)o->target.params);
    if (o->target.kind != LOP_DEPTH_COUNT) {
        cJSON_AddNumberToObject(tg, "params_to_remove", (double)r->target_removed);
        cJSON_AddStringToObject(tg, "rule", "lowest score first, every unit that brings the count closer to the target");
    }
    cJSON *rounds = cJSON_AddArrayToObject(j, "rounds");
    for (int k = 0; k < r->n_rounds; k++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToObject(e, "scores", score_array(r->scores + (size_t)k * L, L));
        cJSON_AddItemToObject(e, "calib_loss", num_or_null(r->calib_loss[k]));
        cJSON_AddItemToObject(e, "calib_ppl", num_or_null(exp(r->calib_loss[k])));
        if (o->iterative && k < r->n_removed) cJSON_AddNumberToObject(e, "removed", r->removed[k]);
        cJSON_AddItemToArray(rounds, e);
    }
    cJSON_AddItemToObject(j, "scores", score_array(r->scores, L));
    int *sorted = malloc((size_t)(L + 1) * sizeof(int)), *kept = malloc((size_t)(L + 1) * sizeof(int)), n_kept = 0;
    if (!sorted || !kept) {
        free(sorted);
        free(kept);
        cJSON_Delete(j);
        return NULL;
    }
    memcpy(sorted, r->removed, (size_t)r->n_removed * sizeof(int));
    qsort(sorted, (size_t)r->n_removed, sizeof(int), cmp_int);
    cJSON_AddItemToObject(j, "removed", int_array(sorted, r->n_removed));
    cJSON_AddItemToObject(j, "removal_order", int_array(r->removed, r->n_removed));
    uint8_t all = LOP_SKIP_ATTN | LOP_SKIP_FFN;
    for (int l = 0; l < L; l++) {
        uint8_t live = (m->cfg.layers[l].n_heads ? LOP_SKIP_ATTN : 0) | (m->cfg.layers[l].ffn_dim ? LOP_SKIP_FFN : 0);
        if ((live & ~r->skip[l] & all) != 0) kept[n_kept++] = l;
    }
    cJSON_AddItemToObject(j, "kept_layers", int_array(kept, n_kept));
    cJSON_AddStringToObject(j, "kept_layers_meaning", "output layer i is input layer kept_layers[i]");
    if (o->unit != LOP_UNIT_BLOCK) {
        cJSON *mods = cJSON_AddArrayToObject(j, "removed_modules");
        for (int k = 0; k < r->n_removed; k++) {
            char b[64];
            snprintf(b, sizeof b, "model.layers.%d.%s", sorted[k], o->unit == LOP_UNIT_ATTN ? "self_attn" : "mlp");
            cJSON_AddItemToArray(mods, cJSON_CreateString(b));
        }
    }
    free(sorted);
    free(kept);
    cJSON *p = cJSON_AddObjectToObject(j, "params");
    cJSON_AddNumberToObject(p, "before", (double)r->params_before);
    cJSON_AddNumberToObject(p, "after", (double)r->params_after);
    cJSON_AddNumberToObject(p, "removed", (double)(r->params_before - r->params_after));
    cJSON_AddNumberToObject(p, "removed_fraction", (double)(r->params_before - r->params_after) / r->params_before);
    cJSON_AddItemToObject(j, "calibration", lop_calib_report(cal, calib_path));
    cJSON *t = cJSON_AddObjectToObject(j, "timing");
    cJSON_AddNumberToObject(t, "scoring_seconds", r->seconds);
    cJSON_AddNumberToObject(t, "rounds", r->n_rounds);
    cJSON_AddStringToObject(t, "device", o->scorer.device == LOP_DEVICE_CUDA ? "cuda" : "cpu");
    return j;
}
