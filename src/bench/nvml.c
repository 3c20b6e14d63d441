/* NVML via dlopen; see nvml.h. The prototypes, constants and struct layouts below are NVML's
 * public C ABI, declared in nvml_abi.h; tests/gpu/nvml_abi.c checks them against the real nvml.h
 * on a GPU machine (there is no nvml.h here). */
#include "bench/nvml.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "core/timer.h"

#include "bench/nvml_abi.h"

typedef struct api {
    void *lib;
    nvml_ret (*init)(void);
    nvml_ret (*shutdown)(void);
    const char *(*error_string)(nvml_ret);
    nvml_ret (*handle_by_index)(unsigned int, nvml_device *);
    nvml_ret (*handle_by_pci)(const char *, nvml_device *);
    nvml_ret (*name)(nvml_device, char *, unsigned int);
    nvml_ret (*driver_version)(char *, unsigned int);
    nvml_ret (*cuda_driver_version)(int *);
    nvml_ret (*utilization)(nvml_device, nvml_utilization *);
    nvml_ret (*memory)(nvml_device, nvml_memory *);
    nvml_ret (*gpm_support)(nvml_device, nvml_gpm_support *);
    nvml_ret (*gpm_alloc)(nvml_gpm_sample *);
    nvml_ret (*gpm_free)(nvml_gpm_sample);
    nvml_ret (*gpm_get)(nvml_device, nvml_gpm_sample);
    nvml_ret (*gpm_metrics)(nvml_gpm_metrics_get *);
} api;

typedef struct sample {
    double t, util, umem, sm, dram; /* sm/dram -1 when GPM gave nothing */
    unsigned long long mem;
} sample;

struct lop_nvml {
    api a;
    nvml_device dev;
    int gpm;
    nvml_gpm_sample gs[2];
    /* sampler */
    pthread_t thread;
    atomic_int running;
    int period_ms;
    double sum_util, sum_umem, sum_sm, sum_dram;
    int n, n_gpm;
    unsigned long long mem_peak;
    sample *samples; /* this session's, time-stamped */
    int n_samples, cap_samples;
};

static const char *err_str(const lop_nvml *n, nvml_ret r) {
    return n->a.error_string ? n->a.error_string(r) : "NVML error";
}

#define SYM(field, name)                                                                           \
    do {                                                                                           \
        *(void **)&a->field = dlsym(a->lib, name);                                                 \
        if (!a->field && required) return lop_fail(LOP_ERR_UNSUPPORTED, "NVML: symbol %s missing", name); \
    } while (0)

static lop_status load_api(api *a) {
    a->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!a->lib) return lop_fail(LOP_ERR_UNSUPPORTED, "NVML not available (%s)", dlerror());
    int required = 1;
    SYM(init, "nvmlInit_v2");
    SYM(shutdown, "nvmlShutdown");
    SYM(error_string, "nvmlErrorString");
    SYM(handle_by_index, "nvmlDeviceGetHandleByIndex_v2");
    SYM(handle_by_pci, "nvmlDeviceGetHandleByPciBusId_v2");
    SYM(name, "nvmlDeviceGetName");
    SYM(driver_version, "nvmlSystemGetDriverVersion");
    SYM(utilization, "nvmlDeviceGetUtilizationRates");
    SYM(memory, "nvmlDeviceGetMemoryInfo");
    required = 0; /* newer or optional */
    SYM(cuda_driver_version, "nvmlSystemGetCudaDriverVersion_v2");
    SYM(gpm_support, "nvmlGpmQueryDeviceSupport");
    SYM(gpm_alloc, "nvmlGpmSampleAlloc");
    SYM(gpm_free, "nvmlGpmSampleFree");
    SYM(gpm_get, "nvmlGpmSampleGet");
    SYM(gpm_metrics, "nvmlGpmMetricsGet");
    return LOP_OK;
}

void lop_nvml_close(lop_nvml *n) {
    if (!n) return;
    if (atomic_load(&n->running)) {
        lop_nvml_window w;
        lop_nvml_stop(n, &w);
    }
    if (n->gpm)
        for (int i = 0; i < 2; i++)
            if (n->gs[i]) n->a.gpm_free(n->gs[i]);
    if (n->a.shutdown && n->dev) n->a.shutdown();
    if (n->a.lib) dlclose(n->a.lib);
    free(n->samples);
    free(n);
}

lop_status lop_nvml_open(const char *pci_bus_id, lop_nvml **out, lop_gpu_info *info) {
    *out = NULL;
    lop_nvml *n = calloc(1, sizeof *n);
    if (!n) return lop_fail(LOP_ERR_OOM, "out of memory");
    lop_status st = load_api(&n->a);
    nvml_ret r;
    if (st == LOP_OK && (r = n->a.init()) != NVML_OK)
        st = lop_fail(LOP_ERR_UNSUPPORTED, "NVML init failed: %s", err_str(n, r));
    int by_pci = pci_bus_id && pci_bus_id[0];
    if (st == LOP_OK && (r = by_pci ? n->a.handle_by_pci(pci_bus_id, &n->dev) : n->a.handle_by_index(0, &n->dev)) != NVML_OK) {
        n->a.shutdown();
        st = lop_fail(LOP_ERR_UNSUPPORTED, "NVML: no GPU %s: %s", by_pci ? pci_bus_id : "0", err_str(n, r));
    }
    if (st != LOP_OK) {
        n->dev = NULL;
        lop_nvml_close(n);
        return st;
    }
    memset(info, 0, sizeof *info);
    n->a.name(n->dev, info->name, sizeof info->name);
    n->a.driver_version(info->driver, sizeof info->driver);
    if (n->a.cuda_driver_version) n->a.cuda_driver_version(&info->cuda_driver_version);
    nvml_memory mem;
    if (n->a.memory(n->dev, &mem) == NVML_OK) info->mem_total = mem.total;
    if (n->a.gpm_support && n->a.gpm_alloc && n->a.gpm_get && n->a.gpm_metrics && n->a.gpm_free) {
        nvml_gpm_support sup = {GPM_SUPPORT_VERSION, 0};
        if (n->a.gpm_support(n->dev, &sup) == NVML_OK && sup.is_supported_device &&
            n->a.gpm_alloc(&n->gs[0]) == NVML_OK && n->a.gpm_alloc(&n->gs[1]) == NVML_OK)
            n->gpm = 1;
    }
    info->gpm_supported = n->gpm;
    *out = n;
    return LOP_OK;
}

lop_status lop_nvml_mem_used(lop_nvml *n, unsigned long long *used) {
    nvml_memory mem;
    nvml_ret r = n->a.memory(n->dev, &mem);
    if (r != NVML_OK) return lop_fail(LOP_ERR_DEVICE, "NVML memory info: %s", err_str(n, r));
    *used = mem.used;
    return LOP_OK;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* GPM metrics between two samples taken period_ms apart; 0 when read */
static int gpm_step(lop_nvml *n, int cur, double *sm, double *dram) {
    if (n->a.gpm_get(n->dev, n->gs[cur]) != NVML_OK) return -1;
    static _Thread_local nvml_gpm_metrics_get g;
    memset(&g, 0, sizeof g);
    g.version = GPM_METRICS_GET_VERSION;
    g.num_metrics = 2;
    g.sample1 = n->gs[cur ^ 1];
    g.sample2 = n->gs[cur];
    g.metrics[0].metric_id = GPM_SM_UTIL;
    g.metrics[1].metric_id = GPM_DRAM_BW_UTIL;
    if (n->a.gpm_metrics(&g) != NVML_OK || g.metrics[0].ret != NVML_OK || g.metrics[1].ret != NVML_OK) return -1;
    *sm = g.metrics[0].value;
    *dram = g.metrics[1].value;
    return 0;
}

static void *sampler(void *arg) {
    lop_nvml *n = arg;
    int cur = 0, have_prev = 0;
    double last_gpm = lop_now();
    if (n->gpm && n->a.gpm_get(n->dev, n->gs[1]) == NVML_OK) have_prev = 1;
    while (atomic_load(&n->running)) {
        sleep_ms(n->period_ms);
        nvml_utilization u;
        nvml_memory mem;
        sample sm = {lop_now(), -1, -1, -1, -1, 0};
        if (n->a.utilization(n->dev, &u) == NVML_OK) {
            n->sum_util += u.gpu;
            n->sum_umem += u.memory;
            n->n++;
            sm.util = u.gpu;
            sm.umem = u.memory;
        }
        if (n->a.memory(n->dev, &mem) == NVML_OK) {
            sm.mem = mem.used;
            if (mem.used > n->mem_peak) n->mem_peak = mem.used;
        }
        /* GPM rates need a long enough interval between its two samples: read them every >= 100 ms */
        if (n->gpm && have_prev && sm.t - last_gpm >= 0.1) {
            last_gpm = sm.t;
            if (gpm_step(n, cur, &sm.sm, &sm.dram) == 0) {
                n->sum_sm += sm.sm;
                n->sum_dram += sm.dram;
                n->n_gpm++;
            }
            cur ^= 1;
        }
        if (sm.util >= 0 && n->n_samples < n->cap_samples) n->samples[n->n_samples++] = sm;
    }
    return NULL;
}

lop_status lop_nvml_start(lop_nvml *n, int period_ms) {
    if (atomic_load(&n->running)) return lop_fail(LOP_ERR_ARG, "NVML sampler already running");
    n->period_ms = period_ms > 0 ? period_ms : 100;
    n->sum_util = n->sum_umem = n->sum_sm = n->sum_dram = 0;
    n->n = n->n_gpm = 0;
    n->mem_peak = 0;
    n->n_samples = 0;
    if (!n->samples) {
        n->cap_samples = 1 << 16; /* 27 minutes at 25 ms */
        n->samples = malloc((size_t)n->cap_samples * sizeof *n->samples);
        if (!n->samples) return lop_fail(LOP_ERR_OOM, "out of memory (NVML samples)");
    }
    atomic_store(&n->running, 1);
    if (pthread_create(&n->thread, NULL, sampler, n) != 0) {
        atomic_store(&n->running, 0);
        return lop_fail(LOP_ERR_DEVICE, "cannot start the NVML sampler thread");
    }
    return LOP_OK;
}

lop_status lop_nvml_stop(lop_nvml *n, lop_nvml_window *w) {
    memset(w, 0, sizeof *w);
    if (!atomic_load(&n->running)) return lop_fail(LOP_ERR_ARG, "NVML sampler not running");
    atomic_store(&n->running, 0);
    pthread_join(n->thread, NULL);
    w->n_samples = n->n;
    w->util_gpu = n->n ? n->sum_util / n->n : -1;
    w->util_mem = n->n ? n->sum_umem / n->n : -1;
    w->sm_active = n->n_gpm ? n->sum_sm / n->n_gpm : -1;
    w->dram_bw = n->n_gpm ? n->sum_dram / n->n_gpm : -1;
    w->mem_used_peak = n->mem_peak;
    return LOP_OK;
}

void lop_nvml_mean(const lop_nvml *n, double t0, double t1, lop_nvml_window *w) {
    memset(w, 0, sizeof *w);
    double su = 0, sme = 0, ss = 0, sd = 0;
    int k = 0, kg = 0;
    for (int i = 0; i < n->n_samples; i++) {
        const sample *s = &n->samples[i];
        if (s->t < t0 || s->t > t1) continue;
        su += s->util, sme += s->umem, k++;
        if (s->sm >= 0) ss += s->sm, sd += s->dram, kg++;
        if (s->mem > w->mem_used_peak) w->mem_used_peak = s->mem;
    }
    if (k == 0) /* window shorter than the poll period: the next reading covers it */
        for (int i = 0; i < n->n_samples; i++)
            if (n->samples[i].t >= t0) {
                const sample *s = &n->samples[i];
                su = s->util, sme = s->umem, k = 1;
                if (s->sm >= 0) ss = s->sm, sd = s->dram, kg = 1;
                w->mem_used_peak = s->mem;
                break;
            }
    w->n_samples = k;
    w->util_gpu = k ? su / k : -1;
    w->util_mem = k ? sme / k : -1;
    w->sm_active = kg ? ss / kg : -1;
    w->dram_bw = kg ? sd / kg : -1;
}
