/* The sweep; see sweep.h. */
#include "bench/sweep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/roofline.h"
#include "core/status.h"
#include "core/timer.h"
#include "runtime/engine.h"

void lop_card_peaks(const char *card, double *bw, double *flops) {
    /* SXM parts, dense (no sparsity) fp16/bf16 tensor rates */
    static const struct { const char *key; double bw, flops; } T[] = {
        {"H200", 4.8e12, 989e12}, {"H100 PCIe", 2.0e12, 756e12}, {"H100", 3.35e12, 989e12},
        {"A100-SXM4-80GB", 2.04e12, 312e12}, {"A100", 1.555e12, 312e12}, {"RTX 3090", 0.936e12, 142e12},
    };
    *bw = *flops = 0;
    for (size_t i = 0; card && i < sizeof T / sizeof T[0]; i++)
        if (strstr(card, T[i].key)) {
            *bw = T[i].bw;
            *flops = T[i].flops;
            return;
        }
}

/* per-step wall times of one run, recorded by the on_step callback */
typedef struct run_clock {
    double *t; /* t[k] = when token k+1 of every running sequence existed */
    int n, cap;
} run_clock;

static void on_step(void *user, int step, const int32_t *tokens, int n_seq) {
    (void)tokens, (void)n_seq;
    run_clock *c = user;
    if (step < c->cap) c->t[step] = lop_now();
    if (step + 1 > c->n) c->n = step + 1;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void mark_all(lop_results *out, const char *label, const char *card, int batch, const lop_sweep_opts *o,
                     int from_len_idx, lop_cell_status st, double planned_mib) {
    for (int li = from_len_idx; li < o->n_lens; li++) {
        lop_cell c;
        memset(&c, 0, sizeof c);
        snprintf(c.model, sizeof c.model, "%s", label);
        snprintf(c.card, sizeof c.card, "%s", card);
        c.batch = batch;
        c.len = o->lens[li];
        c.prompt_len = o->prompt_len;
        c.status = st;
        c.latency_ms = c.prefill_ms = c.decode_step_ms = c.throughput = -1;
        c.util_gpu = c.util_mem = c.sm_active = c.dram_bw = c.mem_used_mib = -1;
        c.bytes_per_step = c.flops_per_step = c.mbu = c.mfu = c.roofline_ms = -1;
        c.mem_planned_mib = planned_mib;
        lop_results_add(out, &c);
    }
}

/* One batch size: the generations, then a cell per length ≤ max_len. */
static lop_status run_batch(lop_model *m, const char *label, const char *card, const lop_sweep_opts *o, int B,
                            int n_len, lop_nvml *nvml, double planned_mib, lop_results *out) {
    int Lmax = o->lens[n_len - 1];
    lop_engine_opts eo = {.device = o->device, .max_batch = B, .max_seq_len = o->prompt_len + Lmax,
                          .n_threads = o->n_threads, .weight_dtype = o->dtype};
    lop_engine *e = NULL;
    lop_status st = lop_engine_create(m, &eo, &e);
    if (st == LOP_ERR_OOM) {
        mark_all(out, label, card, B, o, 0, LOP_CELL_OOM, planned_mib);
        return LOP_OK;
    }
    if (st != LOP_OK) return st;
    const int32_t **prompts = malloc((size_t)B * sizeof *prompts);
    int *plens = malloc((size_t)B * sizeof *plens);
    int R = o->runs;
    run_clock clk = {malloc((size_t)Lmax * sizeof(double)), 0, Lmax};
    double *t0s = malloc((size_t)R * sizeof(double)), *lat = malloc((size_t)R * n_len * sizeof(double));
    double *pre = malloc((size_t)R * sizeof(double)), *steps = malloc((size_t)R * Lmax * sizeof(double));
    if (!prompts || !plens || !clk.t || !t0s || !lat || !pre || !steps) st = lop_fail(LOP_ERR_OOM, "out of memory");
    for (int i = 0; st == LOP_OK && i < B; i++) prompts[i] = o->prompt, plens[i] = o->prompt_len;
    lop_gen_params gp = {.max_new_tokens = Lmax, .ignore_eos = 1, .on_step = on_step, .user = &clk};
    if (o->sample) gp.sampling = (lop_sampling){1.0f, 50, 0.95f, o->seed};
    else gp.sampling = (lop_sampling){0, 0, 1, o->seed};
    int nsteps = 0, sampling = 0;
    for (int r = 0; st == LOP_OK && r < o->warmup + R; r++) {
        int timed = r >= o->warmup, k = r - o->warmup;
        if (timed && k == 0 && nvml) {
            if ((st = lop_nvml_start(nvml, o->nvml_period_ms)) != LOP_OK) break;
            sampling = 1;
        }
        lop_gen_result res;
        clk.n = 0;
        /* warm-up: a short generation is enough to load kernels, capture graphs and touch memory */
        gp.max_new_tokens = timed ? Lmax : (Lmax < 32 ? Lmax : 32);
        double t0 = lop_now();
        st = lop_generate(e, (const int32_t *const *)prompts, plens, B, &gp, &res);
        if (st != LOP_OK) break;
        if (timed) {
            t0s[k] = t0;
            pre[k] = res.prefill_s;
            for (int li = 0; li < n_len; li++) lat[li * R + k] = clk.t[o->lens[li] - 1] - t0;
            for (int s = 1; s < Lmax; s++) steps[nsteps++] = clk.t[s] - clk.t[s - 1];
        }
        lop_gen_result_free(&res);
        lop_progress_add(o->progress, 1);
    }
    lop_nvml_window all;
    if (sampling) lop_nvml_stop(nvml, &all);
    if (st == LOP_ERR_OOM) { /* e.g. activations of a larger batch: the cell is OOM, the sweep goes on */
        mark_all(out, label, card, B, o, 0, LOP_CELL_OOM, planned_mib);
        st = LOP_OK;
    } else if (st == LOP_OK) {
        lop_cost_opts co = {o->device == LOP_DEVICE_CPU ? 4 : 2, o->device == LOP_DEVICE_CPU ? 4 : 2};
        double step_med = nsteps ? median(steps, nsteps) : 0;
        for (int li = 0; li < n_len; li++) {
            int L = o->lens[li];
            lop_cell c;
            memset(&c, 0, sizeof c);
            snprintf(c.model, sizeof c.model, "%s", label);
            snprintf(c.card, sizeof c.card, "%s", card);
            c.batch = B;
            c.len = L;
            c.prompt_len = o->prompt_len;
            c.status = LOP_CELL_OK;
            c.runs = R;
            double tmp[256];
            int nr = R < 256 ? R : 256;
            memcpy(tmp, lat + li * R, (size_t)nr * sizeof *tmp);
            double latency = median(tmp, nr);
            memcpy(tmp, pre, (size_t)nr * sizeof *tmp);
            c.latency_ms = 1e3 * latency;
            c.prefill_ms = 1e3 * median(tmp, nr);
            c.decode_step_ms = 1e3 * step_med;
            c.throughput = (double)B * L / latency;
            c.util_gpu = c.util_mem = c.sm_active = c.dram_bw = c.mem_used_mib = -1;
            if (nvml) {
                /* NVML averaged over this length's prefix of every timed run */
                double su = 0, sm = 0, ss = 0, sd = 0;
                int ku = 0, kg = 0;
                double peak = 0;
                for (int k = 0; k < R; k++) {
                    lop_nvml_window w;
                    lop_nvml_mean(nvml, t0s[k], t0s[k] + lat[li * R + k], &w);
                    if (w.util_gpu >= 0) su += w.util_gpu, sm += w.util_mem, ku++;
                    if (w.sm_active >= 0) ss += w.sm_active, sd += w.dram_bw, kg++;
                    if ((double)w.mem_used_peak > peak) peak = (double)w.mem_used_peak;
                }
                if (ku) c.util_gpu = su / ku, c.util_mem = sm / ku;
                if (kg) c.sm_active = ss / kg, c.dram_bw = sd / kg;
                if (peak > 0) c.mem_used_mib = peak / 1048576.0;
            }
            c.mem_planned_mib = planned_mib;
            lop_cost g = lop_generation_cost(&m->cfg, B, o->prompt_len, L, &co);
            lop_cost d = lop_decode_cost(&m->cfg, B, o->prompt_len + L / 2, &co);
            c.bytes_per_step = d.bytes;
            c.flops_per_step = d.flops;
            c.mbu = o->peak_bw > 0 ? g.bytes / latency / o->peak_bw : -1;
            c.mfu = o->peak_flops > 0 ? g.flops / latency / o->peak_flops : -1;
            c.roofline_ms = o->peak_bw > 0 && o->peak_flops > 0 ? 1e3 * lop_roofline_s(g, o->peak_bw, o->peak_flops) : -1;
            lop_results_add(out, &c);
        }
    }
    free(prompts);
    free(plens);
    free(clk.t);
    free(t0s);
    free(lat);
    free(pre);
    free(steps);
    lop_engine_free(e);
    return st;
}

lop_status lop_sweep(lop_model *m, const char *label, const char *card, const lop_sweep_opts *o, lop_nvml *nvml,
                     lop_results *out) {
    if (o->n_batches < 1 || o->n_lens < 1 || o->runs < 1 || o->prompt_len < 1)
        return lop_fail(LOP_ERR_ARG, "sweep needs batches, lengths, a prompt and at least one timed run");
    for (int i = 1; i < o->n_lens; i++)
        if (o->lens[i] <= o->lens[i - 1]) return lop_fail(LOP_ERR_ARG, "--len must be increasing");
    for (int bi = 0; bi < o->n_batches; bi++) {
        int B = o->batches[bi];
        /* the longest length that the planner says fits; longer ones are OOM-predicted */
        int n_len = o->n_lens;
        double planned_mib = -1;
        for (; n_len > 0; n_len--) {
            lop_engine_opts eo = {.device = o->device, .max_batch = B, .max_seq_len = o->prompt_len + o->lens[n_len - 1],
                                  .n_threads = o->n_threads, .weight_dtype = o->dtype};
            lop_mem_plan pl;
            LOP_TRY(lop_engine_plan(m, &eo, &pl));
            if (n_len == o->n_lens || pl.fits != 0) planned_mib = pl.total_bytes / 1048576.0;
            if (pl.fits != 0 || o->force) break;
        }
        if (n_len < o->n_lens) mark_all(out, label, card, B, o, n_len, LOP_CELL_OOM_PREDICTED, -1);
        if (n_len == 0) {
            lop_progress_add(o->progress, o->warmup + o->runs);
            continue;
        }
        LOP_TRY(run_batch(m, label, card, o, B, n_len, nvml, planned_mib, out));
    }
    return LOP_OK;
}
