/* OpenBLAS sgemm FLOP rate on this machine: the yardstick for the CPU evaluation speed goal
 * (perplexity scoring should run at >= 50 % of what sgemm alone reaches).
 * Measures cblas_sgemm in the layout lop's CPU backend calls it (row-major X[M,K] times W[N,K]^T),
 * for a large square product and for SmolLM2-135M's own projection shapes at M tokens; best of
 * several repetitions each. Prints one line per shape: "sgemm M N K GFLOPs <value>".
 * Build: cc -O2 bench/tools/sgemm_rate.c $(pkg-config --cflags --libs openblas) -o build/sgemm_rate
 * Usage: sgemm_rate [M (default 1024)] [threads (default all)] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double rate(int M, int N, int K) {
    float *X = malloc((size_t)M * K * sizeof *X), *W = malloc((size_t)N * K * sizeof *W);
    float *Y = malloc((size_t)M * N * sizeof *Y);
    if (!X || !W || !Y) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)M * K; i++) X[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    double flop = 2.0 * M * N * K, best = 0;
    /* repeat for at least ~0.3 s per measurement, best of 5 */
    for (int rep = 0; rep < 5; rep++) {
        int iters = 0;
        double t0 = now(), t;
        do {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, X, K, W, K, 0.0f, Y, N);
            iters++;
        } while ((t = now() - t0) < 0.3);
        double g = flop * iters / t / 1e9;
        if (g > best) best = g;
    }
    free(X);
    free(W);
    free(Y);
    return best;
}

int main(int argc, char **argv) {
    int M = argc > 1 ? atoi(argv[1]) : 1024;
    if (argc > 2) openblas_set_num_threads(atoi(argv[2]));
    printf("# OpenBLAS %s, %d threads\n", openblas_get_config(), openblas_get_num_threads());
    static const struct { const char *what; int N, K; } shapes[] = {
        {"square", 0, 0},    {"q/o 576x576", 576, 576},   {"k/v 192x576", 192, 576},
        {"gate/up 1536x576", 1536, 576}, {"down 576x1536", 576, 1536}, {"head 49152x576", 49152, 576},
    };
    double flop_w = 0, time_w = 0; /* SmolLM2 layer mix weighted by FLOPs: the model's own sgemm rate */
    static const int per_model[] = {0, 2 * 30, 2 * 30, 2 * 30, 30, 1};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int n = shapes[i].N ? shapes[i].N : 2048, k = shapes[i].K ? shapes[i].K : 2048, m = shapes[i].N ? M : 2048;
        double g = rate(m, n, k);
        printf("sgemm %-18s M %5d N %5d K %5d GFLOPs %.1f\n", shapes[i].what, m, n, k, g);
        double f = 2.0 * M * n * k * per_model[i];
        flop_w += f;
        time_w += per_model[i] ? f / g : 0;
    }
    printf("sgemm smollm2-mix        M %5d GFLOPs %.1f\n", M, flop_w / time_w);
    return 0;
}
