/* NVML's C ABI as lop uses it (types, constants, struct layouts of nvml.h), for dlopen use without
 * the header. Checked against the real nvml.h by tests/gpu/nvml_abi.c on a GPU machine. */
#ifndef LOP_BENCH_NVML_ABI_H
#define LOP_BENCH_NVML_ABI_H
typedef int nvml_ret;
typedef struct nvml_device_st *nvml_device;
typedef struct nvml_gpm_sample_st *nvml_gpm_sample;
typedef struct { unsigned int gpu, memory; } nvml_utilization;
typedef struct { unsigned long long total, free, used; } nvml_memory;
typedef struct {
    unsigned int metric_id;
    nvml_ret ret;
    double value;
    struct { char *short_name, *long_name, *unit; } info;
} nvml_gpm_metric;
#define NVML_GPM_METRIC_SLOTS 210 /* ≥ NVML_GPM_METRIC_MAX of any header; only num_metrics are used */
typedef struct {
    unsigned int version, num_metrics;
    nvml_gpm_sample sample1, sample2;
    nvml_gpm_metric metrics[NVML_GPM_METRIC_SLOTS];
} nvml_gpm_metrics_get;
typedef struct { unsigned int version, is_supported_device; } nvml_gpm_support;
enum { NVML_OK = 0, GPM_METRICS_GET_VERSION = 1, GPM_SUPPORT_VERSION = 1, GPM_SM_UTIL = 2, GPM_DRAM_BW_UTIL = 10 };

#endif
