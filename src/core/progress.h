/* Progress bars for long jobs (perplexity, zero-shot, pruning sweeps).
 * Why a handle passed in: library code never decides to print; the caller (the CLI) creates a bar
 * and hands it down, and the bar draws on stderr only when stderr is a terminal. Every function
 * accepts NULL, so library code calls them unconditionally and tests pass NULL. */
#ifndef LOP_CORE_PROGRESS_H
#define LOP_CORE_PROGRESS_H
#include <stdint.h>

typedef struct lop_progress lop_progress;

/* A bar for `total` units named `label`; NULL (silent) when stderr is not a terminal, when
 * lop_log_level is 0, or when out of memory. force = 1 draws even when stderr is not a terminal
 * (tests). */
lop_progress *lop_progress_new(const char *label, int64_t total, int force);
/* Sets the units done so far; redraws at most ~10 times a second (and at the end). */
void lop_progress_set(lop_progress *p, int64_t done);
void lop_progress_add(lop_progress *p, int64_t n);
/* Changes the total (e.g. once a file has been tokenised). */
void lop_progress_total(lop_progress *p, int64_t total);
/* Erases the bar and frees it. */
void lop_progress_end(lop_progress *p);
#endif
