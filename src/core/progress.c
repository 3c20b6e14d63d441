/* Terminal progress bar; see progress.h. One line on stderr, redrawn in place with '\r':
 *   label [#########.........]  45%  1234/2740  12.3 s  ETA 15.0 s */
#include "core/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/timer.h"

struct lop_progress {
    char label[48];
    int64_t total, done;
    double t0, last_draw;
};

lop_progress *lop_progress_new(const char *label, int64_t total, int force) {
    if (!force && (lop_log_level == 0 || !isatty(STDERR_FILENO))) return NULL;
    lop_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->t0 = lop_now();
    p->last_draw = -1;
    return p;
}

static void draw(lop_progress *p, double now) {
    enum { W = 28 };
    double frac = p->total > 0 ? (double)p->done / (double)p->total : 0;
    if (frac > 1) frac = 1;
    char bar[W + 1];
    int fill = (int)(frac * W + 0.5);
    for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
    bar[W] = 0;
    double el = now - p->t0;
    char eta[32] = "";
    if (p->done > 0 && p->done < p->total) snprintf(eta, sizeof eta, "  ETA %.0f s", el * (1 - frac) / frac);
    fprintf(stderr, "\r%s [%s] %3d%%  %lld/%lld  %.1f s%s   ", p->label, bar, (int)(100 * frac), (long long)p->done,
            (long long)p->total, el, eta);
    fflush(stderr);
    p->last_draw = now;
}

void lop_progress_set(lop_progress *p, int64_t done) {
    if (!p) return;
    p->done = done;
    double now = lop_now();
    if (p->last_draw < 0 || now - p->last_draw >= 0.1 || done >= p->total) draw(p, now);
}

void lop_progress_add(lop_progress *p, int64_t n) {
    if (p) lop_progress_set(p, p->done + n);
}

void lop_progress_total(lop_progress *p, int64_t total) {
    if (p) p->total = total;
}

void lop_progress_end(lop_progress *p) {
    if (!p) return;
    /* blank the line so the next output starts clean */
    fprintf(stderr, "\r%*s\r", (int)strlen(p->label) + 80, "");
    fflush(stderr);
    free(p);
}
