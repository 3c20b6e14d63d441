/* Benchmark support: the roofline cost model against hand counts, and NVML loading (a clear
 * "unsupported" without a driver, real readings with one). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "bench/nvml.h"
#include "bench/plot.h"
#include "bench/sweep.h"
#include "tiny_model.h"
#include "io/file.h"
#include "bench/roofline.h"

static void test_roofline_hand_counts(void **st) {
    (void)st;
    /* dim 8, vocab 10, untied; layer 0: 2 heads x hd 4, 1 kv head, ffn 16; layer 1: no attention, ffn 4 */
    lop_layer_shape L[2] = {{2, 1, 4, 16}, {0, 0, 4, 4}};
    lop_config c = {0};
    c.dim = 8;
    c.vocab_size = 10;
    c.n_layers = 2;
    c.layers = L;
    /* linear: head 80; layer 0: q 8x8, k 8x4, v 8x4, o 8x8 = 192, ffn 3x8x16 = 384; layer 1 ffn 3x8x4 = 96 */
    assert_int_equal(lop_linear_params(&c), 80 + 192 + 384 + 96);
    lop_cost_opts o = {2, 2};
    lop_cost d = lop_decode_cost(&c, 3, 5, &o);
    /* bytes: linear 752*2 + 3 gathered rows 3*8*2 + norms 5*8*2 + KV: 3 seqs x (2*1*4 elems) x 2 B x 6 positions */
    assert_true(fabs(d.bytes - (752 * 2 + 48 + 80 + 3 * 8 * 2 * 6)) < 1e-9);
    /* flops: 2*752*3 + attention 3 x (4*2*4 = 32 per pair) x 6 */
    assert_true(fabs(d.flops - (2.0 * 752 * 3 + 3 * 32 * 6)) < 1e-9);
    lop_cost p = lop_prefill_cost(&c, 1, 4, &o);
    assert_true(fabs(p.flops - ((2.0 * 752 - 160) * 4 + 160 + 32 * 10)) < 1e-9);
    lop_cost g = lop_generation_cost(&c, 1, 4, 3, &o);
    lop_cost d4 = lop_decode_cost(&c, 1, 4, &o), d5 = lop_decode_cost(&c, 1, 5, &o);
    assert_true(fabs(g.flops - (p.flops + d4.flops + d5.flops)) < 1e-9);
    assert_true(fabs(lop_roofline_s(d, 1e3, 1e9) - d.bytes / 1e3) < 1e-12);
    assert_true(fabs(lop_roofline_s(d, 1e12, 1.0) - d.flops) < 1e-9);
}

static void test_nvml_open(void **st) {
    (void)st;
    lop_nvml *n = NULL;
    lop_gpu_info info;
    lop_status s = lop_nvml_open(NULL, &n, &info);
    if (s == LOP_OK) { /* a GPU machine: real readings */
        assert_true(strlen(info.name) > 0);
        assert_true(info.mem_total > 0);
        lop_nvml_window w;
        assert_int_equal(lop_nvml_start(n, 20), LOP_OK);
        assert_int_equal(lop_nvml_start(n, 20), LOP_ERR_ARG);
        struct timespec ts = {0, 120000000};
        nanosleep(&ts, NULL);
        assert_int_equal(lop_nvml_stop(n, &w), LOP_OK);
        assert_true(w.n_samples >= 2 && w.util_gpu >= 0 && w.util_gpu <= 100);
        printf("  NVML: %s, driver %s, GPM %s\n", info.name, info.driver, info.gpm_supported ? "yes" : "no");
        lop_nvml_close(n);
    } else {
        assert_int_equal(s, LOP_ERR_UNSUPPORTED);
        assert_null(n);
        assert_non_null(strstr(lop_last_error(), "NVML"));
        printf("  no NVML here (%s)\n", lop_last_error());
    }
}

static void write_text(const char *path, const char *text) {
    assert_int_equal(lop_write_file_atomic(path, text, strlen(text)), LOP_OK);
}

static void test_plot_files(void **st) {
    (void)st;
    char dir[] = "/tmp/lop-plot-XXXXXX", path[256], fig[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/r.json", dir);
    /* Original OOMs at batch 4; Depth runs there: its latency curve continues dotted (block 1) */
    write_text(path, "{\"meta\": {\"card\": \"H100\"}, \"cells\": ["
                     "{\"model\": \"Original\", \"batch\": 1, \"len\": 128, \"status\": \"ok\", \"latency_ms\": 500, \"util_gpu\": 20},"
                     "{\"model\": \"Original\", \"batch\": 2, \"len\": 128, \"status\": \"ok\", \"latency_ms\": 520, \"util_gpu\": 30},"
                     "{\"model\": \"Original\", \"batch\": 4, \"len\": 128, \"status\": \"oom\"},"
                     "{\"model\": \"Depth 4.9B\", \"batch\": 1, \"len\": 128, \"status\": \"ok\", \"latency_ms\": 350, \"util_gpu\": 21},"
                     "{\"model\": \"Depth 4.9B\", \"batch\": 2, \"len\": 128, \"status\": \"ok\", \"latency_ms\": 360, \"util_gpu\": 31},"
                     "{\"model\": \"Depth 4.9B\", \"batch\": 4, \"len\": 128, \"status\": \"ok\", \"latency_ms\": 380, \"util_gpu\": 45}]}");
    lop_results r = {0};
    assert_int_equal(lop_results_read(path, &r), LOP_OK);
    assert_int_equal(r.n, 6);
    assert_string_equal(r.cells[2].card, "H100");
    assert_int_equal(r.cells[2].status, LOP_CELL_OOM);
    snprintf(fig, sizeof fig, "%s/fig.png", dir);
    lop_plot_opts o = {fig, LOP_PLOT_PAPER, LOP_METRIC_UTIL, {128, 512}, 0};
    int rendered = 1;
    assert_int_equal(lop_plot(&r, &o, &rendered), LOP_OK);
    assert_int_equal(rendered, 0);
    char *text;
    snprintf(path, sizeof path, "%s/fig-heat-0.dat", dir);
    assert_int_equal(lop_read_file(path, &text, NULL), LOP_OK);
    assert_non_null(strstr(text, "2 0 NaN \"OOM\" 4 128 oom"));
    assert_non_null(strstr(text, "0 0 20 \"20\" 1 128 ok"));
    free(text);
    snprintf(path, sizeof path, "%s/fig-lat-128-1.dat", dir); /* Depth: batch 4 beyond the original's OOM */
    assert_int_equal(lop_read_file(path, &text, NULL), LOP_OK);
    const char *block1 = strstr(text, "\n\n\n");
    assert_non_null(block1);
    assert_non_null(strstr(block1, "2 0.36\n4 0.38"));
    free(text);
    snprintf(path, sizeof path, "%s/fig.gp", dir);
    assert_int_equal(lop_read_file(path, &text, NULL), LOP_OK);
    assert_non_null(strstr(text, "set output 'fig.png'"));
    assert_non_null(strstr(text, "multiplot layout 2,2")); /* no L=512 data: one latency panel */
    free(text);
    if (system("command -v gnuplot >/dev/null 2>&1") == 0) { /* render for real when gnuplot is here */
        o.run_gnuplot = 1;
        assert_int_equal(lop_plot(&r, &o, &rendered), LOP_OK);
        assert_int_equal(rendered, 1);
        assert_int_equal(lop_read_file(fig, &text, NULL), LOP_OK);
        assert_memory_equal(text, "\x89PNG", 4);
        free(text);
    }
    { /* without gnuplot: the script is still written, and the error says where to run it */
        char *old_path = getenv("PATH") ? strdup(getenv("PATH")) : NULL, want[300];
        setenv("PATH", dir, 1); /* a folder without gnuplot */
        o.run_gnuplot = 1;
        lop_status s = lop_plot(&r, &o, &rendered);
        if (old_path) setenv("PATH", old_path, 1);
        free(old_path);
        assert_int_equal(s, LOP_ERR_UNSUPPORTED);
        assert_int_equal(rendered, 0);
        snprintf(want, sizeof want, "cd %s && gnuplot fig.gp", dir);
        assert_non_null(strstr(lop_last_error(), want));
        o.run_gnuplot = 0;
    }
    /* bad figure type and malformed results */
    snprintf(fig, sizeof fig, "%s/fig.jpg", dir);
    o.output = fig;
    assert_int_equal(lop_plot(&r, &o, &rendered), LOP_ERR_ARG);
    lop_results_free(&r);
    snprintf(path, sizeof path, "%s/bad.json", dir);
    write_text(path, "{\"cells\": [{\"model\": \"x\", \"batch\": 0, \"len\": 5}]}");
    assert_int_equal(lop_results_read(path, &r), LOP_ERR_FORMAT);
    assert_non_null(strstr(lop_last_error(), "bad.json: cells[0]"));
    lop_results_free(&r);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_sweep_cpu(void **st) {
    (void)st;
    static const tiny_layer L[2] = {{4, 2, 8, 40, 0, 0, 0}, {2, 1, 8, 24, 0, 1, 0}};
    lop_model *m = tiny_model(97, 16, 2, L, 0, 3);
    assert_non_null(m);
    int batches[2] = {1, 3}, lens[3] = {2, 5, 9};
    int32_t prompt[4] = {5, 6, 7, 8};
    lop_sweep_opts o = {batches, 2, lens, 3, prompt, 4, 1, 2, 1, 7, 0, LOP_DEVICE_CPU, LOP_WEIGHTS_DEFAULT, 1,
                        1e10, 1e11, 25, NULL};
    lop_results r = {0};
    assert_int_equal(lop_sweep(m, "Original", "cpu", &o, NULL, &r), LOP_OK);
    assert_int_equal(r.n, 6);
    for (int i = 0; i < 6; i++) {
        const lop_cell *c = &r.cells[i];
        assert_int_equal(c->status, LOP_CELL_OK);
        assert_int_equal(c->batch, batches[i / 3]);
        assert_int_equal(c->len, lens[i % 3]);
        assert_true(c->latency_ms > 0 && c->prefill_ms > 0 && c->prefill_ms <= c->latency_ms);
        assert_true(fabs(c->throughput - c->batch * c->len / (c->latency_ms / 1e3)) < 1e-6 * c->throughput);
        if (i % 3) assert_true(c->latency_ms > r.cells[i - 1].latency_ms); /* a longer prefix takes longer */
        lop_cost_opts co = {4, 4};
        lop_cost d = lop_decode_cost(&m->cfg, c->batch, 4 + c->len / 2, &co);
        assert_true(fabs(c->bytes_per_step - d.bytes) < 1);
        assert_true(c->mbu > 0 && c->mfu > 0 && c->roofline_ms > 0);
        assert_true(c->util_gpu < 0); /* no NVML on the CPU */
    }
    /* lengths must increase */
    int bad[2] = {5, 5};
    o.lens = bad;
    o.n_lens = 2;
    assert_int_equal(lop_sweep(m, "x", "cpu", &o, NULL, &r), LOP_ERR_ARG);
    lop_results_free(&r);
    lop_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_roofline_hand_counts), cmocka_unit_test(test_nvml_open), cmocka_unit_test(test_plot_files), cmocka_unit_test(test_sweep_cpu)};
    return cmocka_run_group_tests_name("bench", tests, NULL, NULL);
}
