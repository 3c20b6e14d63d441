/* The paper's efficiency figure from benchmark results, drawn by gnuplot: (a) a heatmap per
 * model x card (y: generated length, x: batch; value printed in each cell; OOM cells grey and
 * labelled), (b) latency vs batch at two lengths for Original / Width / Depth, (c) both combined.
 * Why gnuplot scripts: the .gp file and its data files are written beside the image, so a user
 * can restyle the figure without lop; when gnuplot is missing they are still written. */
#ifndef LOP_BENCH_PLOT_H
#define LOP_BENCH_PLOT_H
#include "bench/results.h"

typedef enum lop_plot_kind { LOP_PLOT_PAPER = 0, LOP_PLOT_HEATMAP = 1, LOP_PLOT_LATENCY = 2 } lop_plot_kind;
typedef enum lop_plot_metric {
    LOP_METRIC_UTIL = 0, LOP_METRIC_MBU, LOP_METRIC_MFU, LOP_METRIC_LATENCY, LOP_METRIC_THROUGHPUT
} lop_plot_metric;

typedef struct lop_plot_opts {
    const char *output;   /* FIGURE.png or FIGURE.svg */
    lop_plot_kind kind;
    lop_plot_metric metric; /* heatmap value */
    int lat_len[2];       /* lengths of the latency panels (default 128, 512) */
    int run_gnuplot;      /* 0: only write the .gp and data files */
} lop_plot_opts;

/* Writes OUTPUT's .gp script and data files; runs gnuplot when asked and available.
 * *rendered = 1 when the image was produced. */
lop_status lop_plot(const lop_results *r, const lop_plot_opts *o, int *rendered);

int lop_plot_parse_metric(const char *s, lop_plot_metric *m);
#endif
