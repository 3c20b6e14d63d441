/* The efficiency sweep: one model over a batch x generated-length grid, with the paper's protocol
 * (a fixed prompt repeated over the batch, exactly L new tokens, top-k 50 / top-p 0.95 sampling,
 * warm-up then timed runs). Why one generation per batch size: a generation of the longest length
 * passes through every shorter one on its way, so each run times all lengths at once (the time at
 * which the L-th token of every sequence exists, prefill included) and NVML samples are averaged
 * over each prefix. Cells the memory planner says will not fit are marked without running (unless
 * forced); a real allocation failure is caught, marked OOM, and the sweep goes on. */
#ifndef LOP_BENCH_SWEEP_H
#define LOP_BENCH_SWEEP_H
#include "bench/nvml.h"
#include "bench/results.h"
#include "core/progress.h"
#include "model/model.h"

typedef struct lop_sweep_opts {
    const int *batches;
    int n_batches;
    const int *lens; /* generated lengths */
    int n_lens;
    const int32_t *prompt; /* the fixed prompt (token ids) */
    int prompt_len;
    int warmup, runs;
    int sample;      /* 1: top-k 50 / top-p 0.95 at temperature 1 (the paper); 0: greedy */
    uint64_t seed;
    int force;       /* run cells the planner predicts will not fit */
    lop_device device;
    lop_weight_dtype dtype;
    int n_threads;
    double peak_bw, peak_flops; /* bytes/s and FLOP/s for MBU / MFU / roofline; 0 = not reported */
    int nvml_period_ms;
    lop_progress *progress;     /* advanced by one per (batch, run) */
} lop_sweep_opts;

/* Appends one cell per (batch, length) for MODEL (label = its name in the results). */
lop_status lop_sweep(lop_model *m, const char *label, const char *card, const lop_sweep_opts *o, lop_nvml *nvml,
                     lop_results *out);

/* Datasheet peak bandwidth (bytes/s) and dense fp16 tensor FLOP/s for a card name; 0 if unknown. */
void lop_card_peaks(const char *card, double *bw, double *flops);
#endif
