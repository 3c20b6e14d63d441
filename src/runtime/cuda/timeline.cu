/* Host side of the device timeline (timeline.cuh; diagnostic build `make TIMELINE=1` only).
 * Why a file of its own: the log is a process-wide diagnostic, armed for one decode step and written
 * once; the backend calls three functions and needs nothing else from it. With LOP_TIMELINE=file in
 * the environment the decode step LOP_TIMELINE_STEP (default 64, or the last one) of the first
 * generation is logged and written to file as CSV: kid,smid,block,warp,t0,t1 (ns from the first
 * stamp). Kernel ids are timeline.cuh's TL_*. */
#ifdef LOP_TIMELINE
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "core/log.h"
#include "core/status.h"
#include "io/file.h"
}
#include "runtime/cuda/common.cuh"
#include "runtime/cuda/timeline_host.h"

cudaError_t lop_tl_set_gemv(const lop_tl *t);
cudaError_t lop_tl_set_attention(const lop_tl *t);
cudaError_t lop_tl_set_elementwise(const lop_tl *t);
cudaError_t lop_tl_set_sample(const lop_tl *t);

#define TL_PER_SM 32768u

static struct {
    int ready, step, done;
    const char *path;
    lop_tl d; /* device pointers */
} tl;

int lop_tl_init(void) {
    if (tl.ready) return tl.ready > 0;
    tl.ready = -1;
    tl.path = getenv("LOP_TIMELINE");
    if (!tl.path || !*tl.path) return 0;
    const char *st = getenv("LOP_TIMELINE_STEP");
    tl.step = st && *st ? atoi(st) : 64;
    int dev = 0, n_sm = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev))
        return 0;
    tl.d.per_sm = TL_PER_SM, tl.d.n_sm = (unsigned)n_sm;
    if (cudaMalloc((void **)&tl.d.rec, sizeof(lop_tl_rec) * TL_PER_SM * n_sm) != cudaSuccess ||
        cudaMalloc((void **)&tl.d.counts, sizeof(unsigned) * 32 * n_sm) != cudaSuccess ||
        cudaMalloc((void **)&tl.d.on, sizeof(int)) != cudaSuccess || cudaMemset(tl.d.on, 0, sizeof(int)) != cudaSuccess) {
        fprintf(stderr, "timeline: no device memory for the log\n");
        return 0;
    }
    if (lop_tl_set_gemv(&tl.d) || lop_tl_set_attention(&tl.d) || lop_tl_set_elementwise(&tl.d) ||
        lop_tl_set_sample(&tl.d)) {
        fprintf(stderr, "timeline: cannot set the kernels' log address\n");
        return 0;
    }
    tl.ready = 1;
    LOP_INFO("timeline: logging decode step %d to %s", tl.step, tl.path);
    return 1;
}

/* called before and after each decode step k of N is enqueued */
void lop_tl_arm(cudaStream_t s, int k, int N, int on) {
    if (tl.ready <= 0 || tl.done) return;
    const int want = tl.step < N ? tl.step : N - 1;
    if (k != want) return;
    if (on) cudaMemsetAsync(tl.d.counts, 0, sizeof(unsigned) * 32 * tl.d.n_sm, s);
    cudaMemsetAsync(tl.d.on, on ? 1 : 0, sizeof(int), s);
    if (!on) tl.done = 1;
}

/* after the generation: the logged step to the file (once) */
void lop_tl_write(cudaStream_t s) {
    if (tl.ready <= 0 || !tl.done || tl.done > 1) return;
    tl.done = 2;
    const unsigned n_sm = tl.d.n_sm, per = tl.d.per_sm;
    unsigned *counts = (unsigned *)malloc(sizeof(unsigned) * 32 * n_sm);
    lop_tl_rec *rec = (lop_tl_rec *)malloc(sizeof(lop_tl_rec) * per * n_sm);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!counts || !rec || !f || cudaStreamSynchronize(s) ||
        cudaMemcpy(counts, tl.d.counts, sizeof(unsigned) * 32 * n_sm, cudaMemcpyDeviceToHost) ||
        cudaMemcpy(rec, tl.d.rec, sizeof(lop_tl_rec) * per * n_sm, cudaMemcpyDeviceToHost)) {
        fprintf(stderr, "timeline: cannot read the log back\n");
    } else {
        unsigned long long t_min = ~0ull;
        for (unsigned sm = 0; sm < n_sm; sm++)
            for (unsigned i = 0; i < counts[32 * sm] && i < per; i++)
                if (rec[(size_t)sm * per + i].t0 < t_min) t_min = rec[(size_t)sm * per + i].t0;
        fprintf(f, "kid,smid,block,warp,t0,t1\n");
        size_t n = 0, lost = 0;
        for (unsigned sm = 0; sm < n_sm; sm++) {
            if (counts[32 * sm] > per) lost += counts[32 * sm] - per;
            for (unsigned i = 0; i < counts[32 * sm] && i < per; i++, n++) {
                const lop_tl_rec *r = &rec[(size_t)sm * per + i];
                fprintf(f, "%u,%u,%u,%u,%llu,%llu\n", r->kid, r->smid, r->block, r->warp, r->t0 - t_min, r->t1 - t_min);
            }
        }
        fclose(f);
        f = NULL;
        if (lop_write_file_atomic(tl.path, buf, len) == LOP_OK)
            LOP_INFO("timeline: %zu warps logged to %s%s", n, tl.path, lost ? " (some SM regions full)" : "");
        else
            fprintf(stderr, "timeline: %s\n", lop_last_error());
    }
    if (f) fclose(f);
    free(buf);
    free(counts);
    free(rec);
}
#endif
