/* GPU telemetry through NVML, loaded with dlopen("libnvidia-ml.so.1") and our own prototypes, so
 * lop builds and runs where no driver (or no nvml.h) exists and simply reports "no NVML".
 * A background sampler polls utilization.gpu (the paper's metric) and memory every period_ms and,
 * on Hopper when the driver offers GPM, SM activity and DRAM bandwidth utilisation. */
#ifndef LOP_BENCH_NVML_H
#define LOP_BENCH_NVML_H
#include "lop.h"

typedef struct lop_nvml lop_nvml;

typedef struct lop_gpu_info {
    char name[96];
    char driver[32];
    int cuda_driver_version; /* e.g. 13000 */
    unsigned long long mem_total;
    int gpm_supported;
} lop_gpu_info;

/* Opens NVML on the GPU with this PCI bus id ("0000:19:00.0", as CUDA reports it for the device lop
 * runs on), or on NVML's GPU 0 when pci_bus_id is NULL or empty. Why by bus id: NVML numbers every GPU
 * of the machine and ignores CUDA_VISIBLE_DEVICES, so "GPU 0" of a process pinned to another card
 * would read the wrong card's utilisation. LOP_ERR_UNSUPPORTED (with a message) when the library or
 * GPU is absent. */
lop_status lop_nvml_open(const char *pci_bus_id, lop_nvml **out, lop_gpu_info *info);
void lop_nvml_close(lop_nvml *n);

/* Current memory used on the device, bytes. */
lop_status lop_nvml_mem_used(lop_nvml *n, unsigned long long *used);

/* Sampling window: start launches a thread polling every period_ms; stop joins it and returns the
 * means over the window (util in %, gpm values in %, or -1 when unavailable) and the peak memory. */
typedef struct lop_nvml_window {
    double util_gpu, util_mem;  /* utilization.gpu / .memory (%) */
    double sm_active, dram_bw;  /* GPM SM utilisation, DRAM bandwidth utilisation (%); -1 if n/a */
    unsigned long long mem_used_peak;
    int n_samples;
} lop_nvml_window;

lop_status lop_nvml_start(lop_nvml *n, int period_ms);
lop_status lop_nvml_stop(lop_nvml *n, lop_nvml_window *w);
/* Means over the samples of the last start..stop session taken in [t0, t1] (lop_now() seconds);
 * with no sample inside, the first sample after t0 (NVML's utilisation is itself an average over
 * its own sampling period, so a window shorter than the poll period still gets a reading). */
void lop_nvml_mean(const lop_nvml *n, double t0, double t1, lop_nvml_window *w);

#endif
