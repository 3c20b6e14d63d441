/* Zero-shot multiple-choice tasks: items built from each task's ORIGINAL files with
 * lm-evaluation-harness's prompt templates and preprocessing, ready to be tokenised and scored.
 *
 * What lm-eval does, and so what an item holds: every choice is a request (context, continuation)
 * with continuation = " " + choice text (the target delimiter); the choice with the highest
 * log-likelihood is the prediction (acc), or the highest log-likelihood divided by the length of
 * the choice text (acc_norm; lm-eval divides by len() of the Python string, i.e. Unicode
 * characters — bytes for ASCII text). Templates, per task (lm-eval task YAMLs):
 *   piqa           "Question: {goal}\nAnswer:"                       + " {sol1|sol2}"
 *   arc_easy/_challenge "Question: {question.stem}\nAnswer:"          + " {choice text}"
 *   openbookqa     "{question.stem}"                                 + " {choice text}"
 *   boolq          "{passage}\nQuestion: {question}?\nAnswer:"       + " no" | " yes"
 *   winogrande     partial evaluation: context = sentence up to "_" + option (differs per choice),
 *                  continuation = " " + (sentence after "_").strip()  (shared)
 *   hellaswag      preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())
 *                  + " " + preprocess(ending); preprocess = strip, " [title]" -> ". ",
 *                  drop every "[...]", "  " -> " ".
 * HellaSwag from the derived llama.cpp text file (the original jsonl is not always available):
 * its first line is the context already joined as activity_label + ": " + ctx (ctx_b NOT
 * capitalised, tags removed by llama.cpp's rules); lm-eval's preprocess is applied on top. The
 * task is then flagged `derived`: close to, not the same as, lm-eval's text. */
#ifndef LOP_EVAL_TASK_H
#define LOP_EVAL_TASK_H
#include <stddef.h>

#include "lop.h"

#define LOP_MC_MAX_CHOICES 8

typedef struct lop_mc_item {
    int line;       /* 1-based line of the item in its file (derived HellaSwag: the item's first line) */
    int gold;       /* index of the correct choice */
    int n_choices;
    int shared_ctx; /* 1: all choices share ctx[0] (every task but WinoGrande) */
    char *ctx[LOP_MC_MAX_CHOICES];  /* context(s) */
    char *cont[LOP_MC_MAX_CHOICES]; /* continuations, with the leading " " */
    int norm_len[LOP_MC_MAX_CHOICES]; /* acc_norm divisor: characters of the choice text */
} lop_mc_item;

typedef enum lop_metric { LOP_METRIC_ACC = 0, LOP_METRIC_ACC_NORM = 1 } lop_metric;

typedef struct lop_task_info {
    const char *name;
    lop_metric metric;   /* the one the paper's average uses for this task */
    const char *files;   /* the files looked for under the data folder, for messages */
} lop_task_info;

typedef struct lop_task {
    const lop_task_info *info;
    char *path;          /* the file the items came from */
    int derived;         /* 1: HellaSwag from llama.cpp's derived text (approximate) */
    int n_items, cap;
    lop_mc_item *items;
} lop_task;

/* The seven tasks, in the paper's table order: boolq piqa hellaswag winogrande arc_easy
 * arc_challenge openbookqa. */
int lop_task_count(void);
const lop_task_info *lop_task_at(int i);
const lop_task_info *lop_task_find(const char *name);

/* Loads task `name` from dir (laid out as ../shared/data/zeroshot: piqa/valid.jsonl +
 * valid-labels.lst, arc_easy/ARC-Easy-Test.jsonl, arc_challenge/ARC-Challenge-Test.jsonl,
 * boolq/dev.jsonl, winogrande/dev.jsonl, openbookqa/test.jsonl, hellaswag/hellaswag_val.jsonl or
 * else hellaswag/hellaswag_val_full.txt). limit > 0 keeps the first `limit` items.
 * When a required file is absent: LOP_OK with *missing = the malloc'd path looked for and t empty.
 * Malformed files: LOP_ERR_FORMAT naming the file and line. */
lop_status lop_task_load(const char *name, const char *dir, int limit, lop_task *t, char **missing);
void lop_task_free(lop_task *t);

/* ---- parsers (one per original format; used by lop_task_load) ------------------------------ */
lop_status lop_task_parse_piqa(const char *jsonl, const char *labels, int limit, lop_task *t);
lop_status lop_task_parse_arc(const char *jsonl, int openbookqa, int limit, lop_task *t);
lop_status lop_task_parse_boolq(const char *jsonl, int limit, lop_task *t);
lop_status lop_task_parse_winogrande(const char *jsonl, int limit, lop_task *t);
lop_status lop_task_parse_hellaswag_jsonl(const char *jsonl, int limit, lop_task *t);
lop_status lop_task_parse_hellaswag_text(const char *txt, int limit, lop_task *t);

/* ---- text helpers with Python's semantics (shared by the parsers and lm-eval's encoding) ---- */
/* Length in bytes of s without its trailing whitespace as Python's str.rstrip() sees it. */
size_t lop_py_rstrip_len(const char *s, size_t n);
/* Bytes of leading whitespace (str.lstrip()). */
size_t lop_py_lstrip_len(const char *s, size_t n);
/* Unicode characters in UTF-8 text (Python len()). */
int lop_utf8_chars(const char *s, size_t n);
/* 1 when s is valid UTF-8. */
int lop_utf8_valid(const char *s, size_t n);
/* lm-eval's HellaSwag preprocess; malloc'd result (NULL when out of memory). */
char *lop_hellaswag_preprocess(const char *text);
#endif
