/* The task registry: names, the paper's metric per task, where each task's files live under the
 * data folder, and loading (a task whose files are absent is reported missing, not an error). */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "eval/task.h"
#include "io/file.h"

static const lop_task_info TASKS[] = {
    {"boolq", LOP_METRIC_ACC, "boolq/dev.jsonl"},
    {"piqa", LOP_METRIC_ACC, "piqa/valid.jsonl + piqa/valid-labels.lst"},
    {"hellaswag", LOP_METRIC_ACC_NORM, "hellaswag/hellaswag_val.jsonl (or the derived hellaswag/hellaswag_val_full.txt)"},
    {"winogrande", LOP_METRIC_ACC, "winogrande/dev.jsonl"},
    {"arc_easy", LOP_METRIC_ACC, "arc_easy/ARC-Easy-Test.jsonl"},
    {"arc_challenge", LOP_METRIC_ACC_NORM, "arc_challenge/ARC-Challenge-Test.jsonl"},
    {"openbookqa", LOP_METRIC_ACC_NORM, "openbookqa/test.jsonl"},
};
#define N_TASKS ((int)(sizeof TASKS / sizeof TASKS[0]))

int lop_task_count(void) { return N_TASKS; }
const lop_task_info *lop_task_at(int i) { return i >= 0 && i < N_TASKS ? &TASKS[i] : NULL; }

const lop_task_info *lop_task_find(const char *name) {
    for (int i = 0; i < N_TASKS; i++)
        if (!strcmp(TASKS[i].name, name)) return &TASKS[i];
    return NULL;
}

/* dir/rel if it exists; else NULL with *missing = that path (the first one asked for) */
static char *need(const char *dir, const char *rel, char **missing, lop_status *st) {
    char *p = lop_path_join(dir, rel);
    if (!p) {
        *st = lop_fail(LOP_ERR_OOM, "out of memory");
        return NULL;
    }
    if (lop_file_exists(p)) return p;
    if (!*missing) *missing = p;
    else free(p);
    return NULL;
}

lop_status lop_task_load(const char *name, const char *dir, int limit, lop_task *t, char **missing) {
    memset(t, 0, sizeof *t);
    *missing = NULL;
    const lop_task_info *info = lop_task_find(name);
    if (!info) return lop_fail(LOP_ERR_ARG, "unknown task '%s'", name);
    t->info = info;
    lop_status st = LOP_OK;
    char *a = NULL, *b = NULL;
    if (!strcmp(name, "piqa")) {
        a = need(dir, "piqa/valid.jsonl", missing, &st);
        b = need(dir, "piqa/valid-labels.lst", missing, &st);
        if (a && b) st = lop_task_parse_piqa(a, b, limit, t);
    } else if (!strcmp(name, "arc_easy") || !strcmp(name, "arc_challenge")) {
        a = need(dir, name[4] == 'e' ? "arc_easy/ARC-Easy-Test.jsonl" : "arc_challenge/ARC-Challenge-Test.jsonl", missing, &st);
        if (a) st = lop_task_parse_arc(a, 0, limit, t);
    } else if (!strcmp(name, "openbookqa")) {
        if ((a = need(dir, "openbookqa/test.jsonl", missing, &st))) st = lop_task_parse_arc(a, 1, limit, t);
    } else if (!strcmp(name, "boolq")) {
        if ((a = need(dir, "boolq/dev.jsonl", missing, &st))) st = lop_task_parse_boolq(a, limit, t);
    } else if (!strcmp(name, "winogrande")) {
        if ((a = need(dir, "winogrande/dev.jsonl", missing, &st))) st = lop_task_parse_winogrande(a, limit, t);
    } else { /* hellaswag: the original if present, else the derived text */
        if ((a = need(dir, "hellaswag/hellaswag_val.jsonl", missing, &st))) {
            st = lop_task_parse_hellaswag_jsonl(a, limit, t);
        } else if ((b = need(dir, "hellaswag/hellaswag_val_full.txt", missing, &st))) {
            free(*missing);
            *missing = NULL;
            st = lop_task_parse_hellaswag_text(b, limit, t);
        }
    }
    if (*missing) { /* not an error: the caller lists the task as missing */
        free(a);
        free(b);
        lop_task_free(t);
        t->info = info;
        return st;
    }
    free(a);
    free(b);
    if (st == LOP_OK && t->n_items == 0) st = lop_fail(LOP_ERR_FORMAT, "%s: no items", t->path);
    if (st != LOP_OK) {
        lop_task_free(t);
        t->info = info;
    }
    return st;
}

void lop_task_free(lop_task *t) {
    for (int i = 0; i < t->n_items; i++) {
        lop_mc_item *it = &t->items[i];
        for (int j = 0; j < LOP_MC_MAX_CHOICES; j++) {
            free(it->ctx[j]);
            free(it->cont[j]);
        }
    }
    free(t->items);
    free(t->path);
    memset(t, 0, sizeof *t);
}
