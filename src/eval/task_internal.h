/* Shared by the task parsers (task_*.c): a line reader that knows file and line for error
 * messages, item allocation, and typed JSON field access that fails with "FILE:LINE: ...". */
#ifndef LOP_EVAL_TASK_INTERNAL_H
#define LOP_EVAL_TASK_INTERNAL_H
#include <cJSON.h>

#include "eval/task.h"

typedef struct lop_lines {
    char *buf;
    size_t size, off;
    int line; /* 1-based number of the line last returned */
    const char *path;
} lop_lines;

lop_status lop_lines_open(lop_lines *L, const char *path);
/* Next line (without '\n', NUL-terminated in place); 0 at the end of the file. */
int lop_lines_next(lop_lines *L, char **s, size_t *n);
/* Next non-empty line of a JSONL file parsed as a JSON object; *obj = NULL at the end. */
lop_status lop_lines_json(lop_lines *L, cJSON **obj);
void lop_lines_close(lop_lines *L);
/* One task item from one parsed line o of L (the JSON object is freed by the caller). */
typedef lop_status (*lop_jsonl_item_fn)(lop_lines *L, const cJSON *o, lop_task *t, void *arg);
/* t->path, then every JSON line of the file through fn, up to limit items (<= 0: all) */
lop_status lop_parse_jsonl(const char *jsonl, int limit, lop_task *t, lop_jsonl_item_fn fn, void *arg);

/* A string field / a JSON boolean / an array; errors name L->path and L->line. */
lop_status lop_json_str(lop_lines *L, const cJSON *o, const char *key, const char **out);
lop_status lop_json_bool(lop_lines *L, const cJSON *o, const char *key, int *out);
lop_status lop_json_array(lop_lines *L, const cJSON *o, const char *key, const cJSON **out, int *n);

/* Appends an empty item (line set) to t; NULL (error set) when out of memory. */
lop_mc_item *lop_task_add(lop_task *t, int line);
/* malloc'd printf; NULL when out of memory. */
char *lop_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Sets choice j: context (NULL = shared ctx[0] already set), " " + text as continuation, and the
 * acc_norm length of text. Fails on out of memory or invalid UTF-8 (naming path:line). */
lop_status lop_item_choice(lop_mc_item *it, int j, const char *ctx, const char *text, const char *path);
lop_status lop_item_context(lop_mc_item *it, char *ctx_owned, const char *path); /* shared ctx[0] */
#endif
