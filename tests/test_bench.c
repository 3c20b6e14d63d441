/* Benchmark support: the roofline cost model against hand counts, and NVML loading (a clear
 * "unsupported" without a driver, real readings with one). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "bench/nvml.h"
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
    lop_status s = lop_nvml_open(0, &n, &info);
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

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_roofline_hand_counts), cmocka_unit_test(test_nvml_open)};
    return cmocka_run_group_tests_name("bench", tests, NULL, NULL);
}
