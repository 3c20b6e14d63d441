/* Thread pool behind lop_parallel_for; see threads.h. Work is handed out in chunks through an
 * atomic counter (dynamic balance); the caller thread works too and waits for the rest. */
#include "core/threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    int n_threads;  /* including the caller */
    int n_workers;  /* started */
    pthread_t *tid;
    /* current job */
    uint64_t gen;
    lop_par_fn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_llong next;
    atomic_int active; /* workers still on the job */
    atomic_ullong pub_gen; /* gen, readable without the lock (for spinning workers) */
} pool;

static pool g_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL, 0,
                      NULL, NULL, 0, 0, 0, 0, 0};
static int g_want;

int lop_n_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void lop_threads_set(int n) { g_want = n > 0 ? n : lop_n_cpus(); }

int lop_threads(void) { return g_want > 0 ? g_want : (g_want = lop_n_cpus()); }

static void run_chunks(pool *p, int thread) {
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, p->chunk);
        if (b >= p->n) break;
        int64_t e = b + p->chunk < p->n ? b + p->chunk : p->n;
        p->fn(p->ctx, b, e, thread);
    }
}

/* Spins this many rounds for the next job before sleeping: decode issues a few hundred short jobs
 * per token, and a futex wake-up costs tens of microseconds in a VM (measured: 0.24 ms for a
 * 576x576 product that streams in 0.05 ms). A short spin (~50 us) keeps back-to-back jobs cheap
 * and still leaves the cores to OpenBLAS and to other processes: 20000 rounds was as fast on an
 * idle machine but 2.7x slower with one other busy process (SmolLM2 decode, batch 1). */
#define SPIN_ROUNDS 2000

static void *worker(void *arg) {
    int index = (int)(intptr_t)arg;
    pool *p = &g_pool;
    uint64_t seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&p->pub_gen, memory_order_acquire) == seen; i++)
            __builtin_ia32_pause();
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen) pthread_cond_wait(&p->go, &p->mu);
        seen = p->gen;
        if (index >= p->n_threads) { /* pool shrank: sit this job out */
            pthread_mutex_unlock(&p->mu);
            continue;
        }
        pthread_mutex_unlock(&p->mu);
        run_chunks(p, index);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

void lop_parallel_for(int64_t n, int64_t grain, lop_par_fn fn, void *ctx) {
    if (n <= 0) return;
    int nt = lop_threads();
    if (grain < 1) grain = 1;
    if (nt == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    pool *p = &g_pool;
    pthread_mutex_lock(&p->mu);
    if (p->n_workers < nt - 1) {
        pthread_t *t = realloc(p->tid, (size_t)(nt - 1) * sizeof *t);
        if (t) {
            p->tid = t;
            while (p->n_workers < nt - 1) {
                if (pthread_create(&p->tid[p->n_workers], NULL, worker, (void *)(intptr_t)(p->n_workers + 1)) != 0) break;
                pthread_detach(p->tid[p->n_workers]);
                p->n_workers++;
            }
        }
    }
    int workers = p->n_workers < nt - 1 ? p->n_workers : nt - 1;
    p->n_threads = workers + 1;
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    int64_t chunk = n / ((int64_t)p->n_threads * 4);
    p->chunk = chunk < grain ? grain : chunk;
    atomic_store(&p->next, 0);
    p->active = workers;
    p->gen++;
    atomic_store_explicit(&p->pub_gen, p->gen, memory_order_release);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, 0);
    for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&p->active, memory_order_acquire) > 0; i++)
        __builtin_ia32_pause();
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
