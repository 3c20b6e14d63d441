/* gnuplot script and data generation for the efficiency figure; see plot.h.
 * Layout of the files for OUTPUT = dir/fig.png: dir/fig.gp (the script), dir/fig-heat-K.dat and
 * dir/fig-lat-L-K.dat (one per model and panel). Heatmap cells are boxes coloured by a palette,
 * so irregular batch lists (…, 256, 384, 512) and missing cells need no special case. */
#include "bench/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

#include "core/status.h"
#include "io/file.h"

#define MAX_AXIS 64
#define MAX_GROUPS 16

typedef struct axis {
    int v[MAX_AXIS], n;
} axis;

static void axis_add(axis *a, int x) {
    for (int i = 0; i < a->n; i++)
        if (a->v[i] == x) return;
    if (a->n == MAX_AXIS) return;
    int i = a->n++;
    while (i > 0 && a->v[i - 1] > x) a->v[i] = a->v[i - 1], i--;
    a->v[i] = x;
}

/* a (model, card) panel */
typedef struct group {
    char model[64], card[64];
    int role; /* 0 original, 1 width, 2 depth, 3 other */
} group;

static int role_of(const char *label) {
    if (strcasestr(label, "orig")) return 0;
    if (strcasestr(label, "width")) return 1;
    if (strcasestr(label, "depth")) return 2;
    return 3;
}

int lop_plot_parse_metric(const char *s, lop_plot_metric *m) {
    static const char *names[] = {"util", "mbu", "mfu", "latency", "throughput"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) return *m = (lop_plot_metric)i, 0;
    return -1;
}

static double metric_of(const lop_cell *c, lop_plot_metric m) {
    switch (m) {
    case LOP_METRIC_UTIL: return c->util_gpu;
    case LOP_METRIC_MBU: return c->mbu >= 0 ? 100 * c->mbu : -1;
    case LOP_METRIC_MFU: return c->mfu >= 0 ? 100 * c->mfu : -1;
    case LOP_METRIC_LATENCY: return c->latency_ms >= 0 ? c->latency_ms / 1000 : -1;
    case LOP_METRIC_THROUGHPUT: return c->throughput;
    }
    return -1;
}

static const char *metric_title(lop_plot_metric m) {
    static const char *t[] = {"GPU utilization (%)", "memory-bandwidth utilization (%)", "FLOP utilization (%)",
                              "latency (s)", "throughput (tokens/s)"};
    return t[m];
}

static const lop_cell *find(const lop_results *r, const group *g, int batch, int len) {
    for (int i = 0; i < r->n; i++) {
        const lop_cell *c = &r->cells[i];
        if (c->batch == batch && c->len == len && !strcmp(c->model, g->model) && !strcmp(c->card, g->card)) return c;
    }
    return NULL;
}

static int is_oom(const lop_cell *c) { return c && (c->status == LOP_CELL_OOM || c->status == LOP_CELL_OOM_PREDICTED); }

/* gnuplot string literal: single quotes, quotes doubled */
static void gp_str(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

typedef struct ctx {
    const lop_results *r;
    const lop_plot_opts *o;
    char base[1024]; /* output path without extension */
    const char *base_name; /* file part of base, for paths inside the script */
    group g[MAX_GROUPS];
    int ng;
    axis batches, lens;
} ctx;

static lop_status write_heat_data(ctx *x, int gi) {
    char path[1100];
    snprintf(path, sizeof path, "%s-heat-%d.dat", x->base, gi);
    lop_atomic_file af;
    LOP_TRY(lop_atomic_open(&af, path));
    fprintf(af.fp, "# batch_index len_index value label batch len status  (model %s, card %s)\n", x->g[gi].model,
            x->g[gi].card);
    for (int yi = 0; yi < x->lens.n; yi++)
        for (int xi = 0; xi < x->batches.n; xi++) {
            const lop_cell *c = find(x->r, &x->g[gi], x->batches.v[xi], x->lens.v[yi]);
            if (!c) continue;
            double v = metric_of(c, x->o->metric);
            if (is_oom(c))
                fprintf(af.fp, "%d %d NaN \"OOM\" %d %d %s\n", xi, yi, c->batch, c->len, lop_cell_status_name(c->status));
            else if (c->status == LOP_CELL_OK && v >= 0)
                fprintf(af.fp, "%d %d %.6g \"%.*f\" %d %d ok\n", xi, yi, v, v < 10 ? 1 : 0, v, c->batch, c->len);
        }
    return lop_atomic_commit(&af);
}

/* latency vs batch at one length; for Depth/Width, the points where Original is OOM go to a
 * second block (index 1) drawn dotted, joined to the last common point */
static lop_status write_lat_data(ctx *x, int gi, int len) {
    char path[1100];
    snprintf(path, sizeof path, "%s-lat-%d-%d.dat", x->base, len, gi);
    lop_atomic_file af;
    LOP_TRY(lop_atomic_open(&af, path));
    const group *orig = NULL;
    for (int k = 0; k < x->ng; k++)
        if (x->g[k].role == 0 && !strcmp(x->g[k].card, x->g[gi].card)) orig = &x->g[k];
    fprintf(af.fp, "# batch latency_s  (model %s, card %s, len %d); block 1: batches where Original is OOM\n",
            x->g[gi].model, x->g[gi].card, len);
    double last_b = -1, last_v = -1;
    int in_second = 0;
    for (int xi = 0; xi < x->batches.n; xi++) {
        const lop_cell *c = find(x->r, &x->g[gi], x->batches.v[xi], len);
        if (!c || c->status != LOP_CELL_OK || c->latency_ms < 0) continue;
        int beyond = orig && &x->g[gi] != orig && is_oom(find(x->r, orig, x->batches.v[xi], len));
        if (beyond && !in_second) {
            fprintf(af.fp, "\n\n");
            if (last_b > 0) fprintf(af.fp, "%g %.6g\n", last_b, last_v);
            in_second = 1;
        }
        fprintf(af.fp, "%d %.6g\n", c->batch, c->latency_ms / 1000);
        last_b = c->batch;
        last_v = c->latency_ms / 1000;
    }
    if (!in_second) fprintf(af.fp, "\n\n"); /* empty block 1 */
    return lop_atomic_commit(&af);
}

static void heat_panel(FILE *f, ctx *x, int gi) {
    fprintf(f, "set title ");
    char t[256];
    snprintf(t, sizeof t, "%s%s%s", x->g[gi].model, x->g[gi].card[0] ? " - " : "", x->g[gi].card);
    gp_str(f, t);
    fprintf(f, "\nunset logscale x\nset xlabel 'batch size'\nset ylabel 'output length'\nset xtics (");
    for (int i = 0; i < x->batches.n; i++) fprintf(f, "%s'%d' %d", i ? ", " : "", x->batches.v[i], i);
    fprintf(f, ")\nset ytics (");
    for (int i = 0; i < x->lens.n; i++) fprintf(f, "%s'%d' %d", i ? ", " : "", x->lens.v[i], i);
    fprintf(f, ")\nset xrange [-0.5:%g]\nset yrange [-0.5:%g]\nunset key\n", x->batches.n - 0.5, x->lens.n - 0.5);
    if (x->o->metric != LOP_METRIC_LATENCY && x->o->metric != LOP_METRIC_THROUGHPUT) fprintf(f, "set cbrange [0:100]\n");
    else fprintf(f, "set autoscale cb\n");
    fprintf(f, "set cblabel ");
    gp_str(f, metric_title(x->o->metric));
    fprintf(f, "\nplot '%s-heat-%d.dat' using 1:2:(0.5):(0.5):($3) with boxxyerror fs solid 1.0 noborder lc palette, \\\n"
               "     '' using 1:2:(strcol(7) eq 'ok' ? NaN : 0.5):(0.5) with boxxyerror fs solid 1.0 noborder lc rgb '#bdbdbd', \\\n"
               "     '' using 1:2:4 with labels font ',7'\n",
            x->base_name, gi);
}

static void lat_panel(FILE *f, ctx *x, int len) {
    static const char *color[] = {"#7f7f7f", "#2ca02c", "#1f77b4", "#d62728"};
    static const int point[] = {2, 8, 4, 6}; /* x, open triangle, open square, open circle */
    fprintf(f, "set title 'Latency vs batch, L = %d'\nset logscale x 2\nset xlabel 'batch size'\n"
               "set ylabel 'latency of the whole generation (s)'\nset xtics auto\nset ytics auto\n"
               "set autoscale xy\nset offsets graph 0, 0, 0.2, 0\nset key top left\nplot ", len);
    int first = 1;
    for (int gi = 0; gi < x->ng; gi++) {
        int r = x->g[gi].role;
        char t[160];
        snprintf(t, sizeof t, "%s%s%s", x->g[gi].model, x->ng > 3 && x->g[gi].card[0] ? " " : "",
                 x->ng > 3 ? x->g[gi].card : "");
        fprintf(f, "%s'%s-lat-%d-%d.dat' index 0 using 1:2 with linespoints lw 2 pt %d ps 1.2 lc rgb '%s' title ",
                first ? "" : ", \\\n     ", x->base_name, len, gi, point[r], color[r]);
        gp_str(f, t);
        fprintf(f, ", \\\n     '%s-lat-%d-%d.dat' index 1 using 1:2 with linespoints lw 2 dt 3 pt %d ps 1.2 lc rgb '%s' notitle",
                x->base_name, len, gi, point[r], color[r]);
        first = 0;
    }
    fprintf(f, "\n");
}

static const char *ext_of(const char *p) {
    const char *d = strrchr(p, '.'), *s = strrchr(p, '/');
    return d && (!s || d > s) ? d + 1 : "";
}

lop_status lop_plot(const lop_results *r, const lop_plot_opts *o, int *rendered) {
    *rendered = 0;
    ctx x;
    memset(&x, 0, sizeof x);
    x.r = r;
    x.o = o;
    const char *ext = ext_of(o->output);
    int svg = !strcasecmp(ext, "svg");
    if (!svg && strcasecmp(ext, "png")) return lop_fail(LOP_ERR_ARG, "%s: the figure must be .png or .svg", o->output);
    size_t bl = strlen(o->output) - strlen(ext) - 1;
    if (bl >= sizeof x.base) return lop_fail(LOP_ERR_ARG, "output path too long");
    memcpy(x.base, o->output, bl);
    const char *slash = strrchr(x.base, '/');
    x.base_name = slash ? slash + 1 : x.base;
    if (r->n == 0) return lop_fail(LOP_ERR_ARG, "no benchmark cells to plot");
    for (int i = 0; i < r->n; i++) {
        const lop_cell *c = &r->cells[i];
        axis_add(&x.batches, c->batch);
        axis_add(&x.lens, c->len);
        int k;
        for (k = 0; k < x.ng; k++)
            if (!strcmp(x.g[k].model, c->model) && !strcmp(x.g[k].card, c->card)) break;
        if (k == x.ng) {
            if (x.ng == MAX_GROUPS) return lop_fail(LOP_ERR_ARG, "more than %d model x card groups", MAX_GROUPS);
            snprintf(x.g[k].model, sizeof x.g[k].model, "%s", c->model);
            snprintf(x.g[k].card, sizeof x.g[k].card, "%s", c->card);
            x.g[k].role = role_of(c->model);
            x.ng++;
        }
    }
    /* latency panels: the requested lengths that have at least one measured point */
    int want[2] = {o->lat_len[0] ? o->lat_len[0] : 128, o->lat_len[1] ? o->lat_len[1] : 512}, lens[2], n_lens = 0;
    for (int k = 0; k < 2; k++) {
        int have = 0;
        for (int i = 0; i < r->n && !have; i++)
            have = r->cells[i].len == want[k] && r->cells[i].status == LOP_CELL_OK && r->cells[i].latency_ms >= 0;
        if (have) lens[n_lens++] = want[k];
    }
    for (int gi = 0; gi < x.ng; gi++) {
        LOP_TRY(write_heat_data(&x, gi));
        for (int k = 0; k < n_lens; k++) LOP_TRY(write_lat_data(&x, gi, lens[k]));
    }
    /* the script runs from the output's folder, so data paths are relative to it */
    char gp[1100];
    snprintf(gp, sizeof gp, "%s.gp", x.base);
    int n_heat = o->kind == LOP_PLOT_LATENCY ? 0 : x.ng;
    int n_lat = o->kind == LOP_PLOT_HEATMAP ? 0 : n_lens;
    if (n_heat + n_lat == 0)
        return lop_fail(LOP_ERR_ARG, "no latency measured at lengths %d or %d (use --lengths)", want[0], want[1]);
    lop_atomic_file af;
    LOP_TRY(lop_atomic_open(&af, gp));
    FILE *f = af.fp;
    int cols = n_heat > n_lat ? n_heat : n_lat, rows = (n_heat > 0) + (n_lat > 0);
    fprintf(f, "# lop plot: %s. Edit freely; run: cd <this folder> && gnuplot %s.gp\n", metric_title(o->metric),
            x.base_name);
    fprintf(f, "set terminal %s size %d,%d font ',10'\nset output '%s.%s'\n", svg ? "svg" : "pngcairo",
            420 * cols + 80, 360 * rows + 40, x.base_name, ext);
    fprintf(f, "set palette defined (0 '#ffffcc', 25 '#fed976', 50 '#fd8d3c', 75 '#e31a1c', 100 '#800026')\n");
    fprintf(f, "set style fill solid 1.0\nset multiplot layout %d,%d\n", rows, cols);
    for (int gi = 0; gi < n_heat; gi++) heat_panel(f, &x, gi);
    for (int k = n_heat; k < cols && n_heat; k++) fprintf(f, "set multiplot next\n");
    for (int k = 0; k < n_lat; k++) lat_panel(f, &x, lens[k]);
    fprintf(f, "unset multiplot\n");
    LOP_TRY(lop_atomic_commit(&af));
    if (!o->run_gnuplot) return LOP_OK;
    /* the output's folder: "." for a bare name, "/" for a file at the root */
    char dir[1024];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else snprintf(dir, sizeof dir, "%.*s", slash == x.base ? 1 : (int)(slash - x.base), x.base);
    if (system("command -v gnuplot >/dev/null 2>&1") != 0)
        return lop_fail(LOP_ERR_UNSUPPORTED,
                        "gnuplot not found: wrote %s and its data; install gnuplot (Debian: apt-get install gnuplot-nox) "
                        "and run: cd %s && gnuplot %s.gp",
                        gp, dir, x.base_name);
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot '%s.gp' 2>&1", dir, x.base_name);
    FILE *p = popen(cmd, "r");
    char msg[512] = "";
    size_t n = p ? fread(msg, 1, sizeof msg - 1, p) : 0;
    msg[n] = 0;
    int rc = p ? pclose(p) : -1;
    if (rc != 0) return lop_fail(LOP_ERR_IO, "gnuplot failed on %s: %s", gp, msg);
    *rendered = 1;
    return LOP_OK;
}
