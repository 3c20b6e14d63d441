/* Benchmark results as lop bench writes them (JSON: meta, models, cells) and as lop plot reads
 * them back. One cell = one (model, batch, generated length) point of the sweep. */
#ifndef LOP_BENCH_RESULTS_H
#define LOP_BENCH_RESULTS_H
#include "lop.h"

typedef enum lop_cell_status {
    LOP_CELL_OK = 0,
    LOP_CELL_OOM = 1,           /* an allocation failed */
    LOP_CELL_OOM_PREDICTED = 2, /* the memory planner said it would not fit; not run */
    LOP_CELL_ERROR = 3,
    LOP_CELL_SKIPPED = 4
} lop_cell_status;

const char *lop_cell_status_name(lop_cell_status s);

typedef struct lop_cell {
    char model[64]; /* the model's label, e.g. "Original", "Width 4.9B" */
    char card[64];
    int batch, len, prompt_len;
    lop_cell_status status;
    double latency_ms, prefill_ms, decode_step_ms, throughput; /* throughput = batch*len/latency */
    double util_gpu, util_mem, sm_active, dram_bw;             /* %, -1 when not measured */
    double mem_used_mib, mem_planned_mib;
    double bytes_per_step, flops_per_step, mbu, mfu, roofline_ms;
    int runs;
} lop_cell;

typedef struct lop_results {
    lop_cell *cells;
    int n, cap;
} lop_results;

lop_status lop_results_add(lop_results *r, const lop_cell *c);
void lop_results_free(lop_results *r);
/* Appends the cells of a results JSON file (the card comes from its meta when a cell has none). */
lop_status lop_results_read(const char *path, lop_results *r);
#endif
