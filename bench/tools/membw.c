/* Streaming-read memory bandwidth of this machine (the decode roofline on CPU): each thread sums
 * its slice of a 1 GiB buffer with 4 independent accumulators; best of several passes.
 * Built and run by bench/cpu_decode.sh; prints "read_GBps <value> threads <n>". */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef struct job {
    const float *p;
    size_t n;
    double sum;
} job;

static void *reader(void *arg) {
    job *j = arg;
    float a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= j->n; i += 4) {
        a += j->p[i];
        b += j->p[i + 1];
        c += j->p[i + 2];
        d += j->p[i + 3];
    }
    j->sum = a + b + c + d;
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    size_t bytes = (size_t)1 << 30, n = bytes / sizeof(float);
    float *buf = malloc(bytes);
    if (!buf || nt < 1 || nt > 256) return 1;
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 1023);
    pthread_t t[256];
    job jobs[256];
    double best = 0, chk = 0;
    for (int pass = 0; pass < 8; pass++) {
        double t0 = now();
        for (int i = 0; i < nt; i++) {
            jobs[i] = (job){buf + n / nt * i, n / nt, 0};
            pthread_create(&t[i], NULL, reader, &jobs[i]);
        }
        for (int i = 0; i < nt; i++) {
            pthread_join(t[i], NULL);
            chk += jobs[i].sum;
        }
        double gbs = bytes / (now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    printf("read_GBps %.2f threads %d checksum %g\n", best, nt, chk);
    free(buf);
    return 0;
}
