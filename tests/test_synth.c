/* Synthetic presets: parameter counts of the paper's shapes, the pruned-shape option syntax, bad
 * options, and that values are a pure function of (seed, tensor, index). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lop.h"
#include "model/model.h"
#include "model/synth.h"

static int64_t params(const char *spec) {
    lop_model *m;
    lop_load_opts o = {.shapes_only = 1};
    assert_int_equal(lop_model_load(spec, &o, &m), LOP_OK);
    int64_t n = lop_model_n_params(m);
    lop_model_free(m);
    return n;
}

static void test_preset_params(void **st) {
    (void)st;
    assert_int_equal(params("synth:llama-7b"), 6738415616LL);
    assert_int_equal(params("synth:llama2-7b"), 6738415616LL);
    assert_int_equal(params("synth:llama-13b"), 13015864320LL);
    assert_int_equal(params("synth:vicuna-13b"), 13015864320LL);
    assert_int_equal(params("synth:llama3-8b"), 8030261248LL);
    assert_int_equal(params("synth:smollm2-135m"), 134515008LL);
}

static void test_paper_pruned_shapes(void **st) {
    (void)st;
    /* Shortened LLaMA: 7B -> 4.9B by depth (23 of 32 blocks) and by width (blocks 4..29: 21 heads, FFN 7155) */
    int64_t depth = params("synth:llama-7b:layers=23"), width = params("synth:llama-7b:heads=21@4-29:ffn=7155@4-29");
    assert_true(depth > 4.85e9 && depth < 4.95e9);
    assert_true(width > 4.85e9 && width < 4.95e9);
    assert_int_equal(depth, 262144000LL + 4096 + 23LL * 202383360LL);
    lop_model *m;
    lop_load_opts o = {.shapes_only = 1};
    assert_int_equal(lop_model_load("synth:llama-7b:heads=21@4-29:ffn=7155@4-29", &o, &m), LOP_OK);
    assert_int_equal(m->cfg.n_layers, 32);
    assert_int_equal(m->cfg.layers[3].n_heads, 32);
    assert_int_equal(m->cfg.layers[4].n_heads, 21);
    assert_int_equal(m->cfg.layers[4].n_kv_heads, 21);
    assert_int_equal(m->cfg.layers[29].ffn_dim, 7155);
    assert_int_equal(m->cfg.layers[30].ffn_dim, 11008);
    lop_model_free(m);
    /* 13B -> 9.5B: 11 of 40 blocks removed */
    int64_t d13 = params("synth:vicuna-13b:drop=20-30");
    assert_true(d13 > 9.45e9 && d13 < 9.6e9);
}

static void test_module_options(void **st) {
    (void)st;
    lop_model *m;
    lop_load_opts o = {.shapes_only = 1};
    assert_int_equal(lop_model_load("synth:smollm2-135m:noattn=2,5-6:noffn=7:kv=1@0:heads=3@0", &o, &m), LOP_OK);
    assert_int_equal(m->cfg.layers[2].n_heads, 0);
    assert_int_equal(m->cfg.layers[5].n_heads, 0);
    assert_int_equal(m->cfg.layers[6].n_heads, 0);
    assert_int_equal(m->cfg.layers[7].n_heads, 9);
    assert_int_equal(m->cfg.layers[7].ffn_dim, 0);
    assert_int_equal(m->cfg.layers[0].n_heads, 3);
    assert_int_equal(m->cfg.layers[0].n_kv_heads, 1);
    assert_int_equal(m->cfg.layers[1].n_kv_heads, 3); /* GQA preset: heads= leaves kv alone */
    assert_false(m->w.layers[2].wq.present);
    lop_model_free(m);
}

static void expect_error(const char *spec, const char *needle) {
    lop_model *m = NULL;
    lop_load_opts o = {.shapes_only = 1};
    assert_int_not_equal(lop_model_load(spec, &o, &m), LOP_OK);
    assert_null(m);
    if (!strstr(lop_last_error(), needle)) fail_msg("'%s' does not mention '%s'", lop_last_error(), needle);
}

static void test_bad_options(void **st) {
    (void)st;
    expect_error("synth:llama-9b", "unknown preset");
    expect_error("synth:llama-7b:heads=21@40", "outside 0-31");
    expect_error("synth:llama-7b:wings=3", "unknown option");
    expect_error("synth:llama-7b:layers=0", "layers=0");
    expect_error("synth:smollm2-135m:heads=4", "not a multiple");
    expect_error("synth:llama-7b:drop=0-31", "every block");
    expect_error("synth:llama-7b:ffn=x", "integer");
}

static void test_values_deterministic(void **st) {
    (void)st;
    float a = lop_synth_value(7, 3, 12345, 0.02f), b = lop_synth_value(7, 3, 12345, 0.02f);
    assert_true(a == b);
    assert_true(lop_synth_value(8, 3, 12345, 0.02f) != a);
    /* standard deviation close to the requested one */
    double s = 0, s2 = 0;
    int n = 100000;
    for (int i = 0; i < n; i++) {
        double v = lop_synth_value(1, 5, (uint64_t)i, 0.02f);
        s += v;
        s2 += v * v;
    }
    double mean = s / n, sd = s2 / n - mean * mean;
    assert_true(mean < 1e-3 && mean > -1e-3);
    assert_true(sd > 0.019 * 0.019 && sd < 0.021 * 0.021);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preset_params),  cmocka_unit_test(test_paper_pruned_shapes),
        cmocka_unit_test(test_module_options), cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_values_deterministic),
    };
    return cmocka_run_group_tests_name("synth", tests, NULL, NULL);
}
