/* lop plot RESULTS... -o FIGURE.png|svg: the efficiency figure (heatmaps + latency curves) from
 * lop bench results, rendered by gnuplot; the .gp script and data are written beside the image. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/plot.h"
#include "cli.h"

int cmd_plot(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'}, {"metric", required_argument, 0, 'm'},
                                         {"kind", required_argument, 0, 'k'},   {"lengths", required_argument, 0, 'L'},
                                         {"no-render", no_argument, 0, 'N'},    {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    lop_plot_opts po = {.output = NULL, .kind = LOP_PLOT_PAPER, .metric = LOP_METRIC_UTIL, .run_gnuplot = 1};
    int c;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': po.output = optarg; break;
        case 'm':
            if (lop_plot_parse_metric(optarg, &po.metric))
                return cli_usage_error("plot", "--metric must be util, mbu, mfu, latency or throughput");
            break;
        case 'k':
            if (!strcmp(optarg, "paper")) po.kind = LOP_PLOT_PAPER;
            else if (!strcmp(optarg, "heatmap")) po.kind = LOP_PLOT_HEATMAP;
            else if (!strcmp(optarg, "latency")) po.kind = LOP_PLOT_LATENCY;
            else return cli_usage_error("plot", "--kind must be paper, heatmap or latency");
            break;
        case 'L':
            if (sscanf(optarg, "%d,%d", &po.lat_len[0], &po.lat_len[1]) != 2 || po.lat_len[0] < 1 || po.lat_len[1] < 1)
                return cli_usage_error("plot", "--lengths expects two lengths, e.g. 128,512");
            break;
        case 'N': po.run_gnuplot = 0; break;
        case 'h':
            printf("Usage: lop plot RESULTS.json... -o FIGURE.png|svg [--metric util|mbu|mfu|latency|throughput]\n"
                   "                [--kind paper|heatmap|latency] [--lengths 128,512] [--no-render]\n\n"
                   "Draws the efficiency figure from lop bench results: a heatmap per model and card (y: generated\n"
                   "length, x: batch, the metric printed in each cell, OOM cells grey) and latency vs batch at two\n"
                   "lengths for Original (grey x), Width (green triangle) and Depth (blue square; dotted where the\n"
                   "original is OOM) — roles are read from the model labels. --kind paper (default) combines both.\n"
                   "FIGURE.gp and FIGURE-*.dat are written beside the image; edit and rerun gnuplot to restyle.\n");
            return 0;
        default: return cli_usage_error("plot", "unknown option");
        }
    }
    if (!po.output) return cli_usage_error("plot", "-o FIGURE.png|svg is required");
    if (optind >= argc) return cli_usage_error("plot", "give at least one RESULTS.json");
    lop_results r = {0};
    lop_status st = LOP_OK;
    for (int i = optind; i < argc && st == LOP_OK; i++) st = lop_results_read(argv[i], &r);
    int rendered = 0;
    if (st == LOP_OK) st = lop_plot(&r, &po, &rendered);
    lop_results_free(&r);
    if (st != LOP_OK) return cli_fail(st);
    printf("%s %s\n", rendered ? "wrote" : "wrote the script and data for", po.output);
    return 0;
}
