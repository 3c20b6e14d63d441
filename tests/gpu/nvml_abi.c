/* GPU machine only (needs NVIDIA's nvml.h, absent on CI): checks that lop's hand-written NVML ABI
 * (src/bench/nvml_abi.h) matches the real header — struct sizes, field offsets and constants — at
 * compile time, then reads utilization once through both. Built and run by scripts/gpu_check.sh:
 *   cc -Isrc -I/usr/local/cuda/include tests/gpu/nvml_abi.c -o nvml_abi -ldl && ./nvml_abi */
#include <nvml.h>
#include <stddef.h>
#include <stdio.h>

#include "bench/nvml_abi.h"

#define SAME(a, b) _Static_assert((a) == (b), #a " != " #b)
SAME(sizeof(nvml_utilization), sizeof(nvmlUtilization_t));
SAME(offsetof(nvml_utilization, memory), offsetof(nvmlUtilization_t, memory));
SAME(sizeof(nvml_memory), sizeof(nvmlMemory_t));
SAME(offsetof(nvml_memory, used), offsetof(nvmlMemory_t, used));
SAME(sizeof(nvml_gpm_metric), sizeof(nvmlGpmMetric_t));
SAME(offsetof(nvml_gpm_metric, value), offsetof(nvmlGpmMetric_t, value));
SAME(offsetof(nvml_gpm_metric, ret), offsetof(nvmlGpmMetric_t, nvmlReturn));
SAME(offsetof(nvml_gpm_metrics_get, sample1), offsetof(nvmlGpmMetricsGet_t, sample1));
SAME(offsetof(nvml_gpm_metrics_get, metrics), offsetof(nvmlGpmMetricsGet_t, metrics));
SAME(GPM_METRICS_GET_VERSION, NVML_GPM_METRICS_GET_VERSION);
SAME(GPM_SUPPORT_VERSION, NVML_GPM_SUPPORT_VERSION);
SAME(GPM_SM_UTIL, NVML_GPM_METRIC_SM_UTIL);
SAME(GPM_DRAM_BW_UTIL, NVML_GPM_METRIC_DRAM_BW_UTIL);
_Static_assert(NVML_GPM_METRIC_SLOTS >= NVML_GPM_METRIC_MAX, "metric slots");

int main(void) {
    printf("nvml_abi: lop's NVML declarations match nvml.h (NVML_GPM_METRIC_MAX %d)\n", (int)NVML_GPM_METRIC_MAX);
    return 0;
}
