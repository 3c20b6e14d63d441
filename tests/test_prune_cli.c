/* lop prune as a user meets it: a run on an HF fixture writes a loadable checkpoint and a
 * complete pruning.json; bad arguments are usage errors (exit 2) with a clear line; impossible
 * targets and writing into the input are errors (exit 1) naming the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "cli_util.h"
#include "json_util.h"
#include "model/model.h"

static char g_tmp[256];


static int setup(void **st) {
    (void)st;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/lop-prune-cli-XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown(void **st) {
    (void)st;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    return system(cmd);
}

static void test_prune_writes_checkpoint(void **st) {
    (void)st;
    char args[1024], path[512];
    /* the fixtures have no tokenizer: calibration falls back to seeded random ids, and says so */
    snprintf(args, sizeof args, "prune tests/fixtures/hf/hetero --depth 2 --no-plus --criterion taylor --samples 3 "
                                "--seq-len 16 -o %s/out",
             g_tmp);
    assert_int_equal(lop(args), 0);
    expect_in("criterion taylor, unit block, one-shot");
    expect_in("removed 2 block units");
    expect_in("random token ids");
    snprintf(path, sizeof path, "%s/out/pruning.json", g_tmp);
    cJSON *j = json_load(path);
    assert_string_equal(json_at(j, "criterion")->valuestring, "taylor");
    assert_int_equal(cJSON_GetArraySize(json_at(j, "removed")), 2);
    assert_int_equal(cJSON_GetArraySize(json_at(j, "scores")), 5);
    assert_int_equal(cJSON_GetArraySize(json_at(j, "kept_layers")), 3);
    assert_int_equal((int)json_num(j, "calibration.n_samples"), 3);
    assert_int_equal(cJSON_GetArraySize(json_at(j, "calibration.samples")), 3);
    assert_true(json_num(j, "params.after") < json_num(j, "params.before"));
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/out", g_tmp);
    lop_model *m;
    assert_int_equal(lop_model_load(path, NULL, &m), LOP_OK);
    assert_int_equal(m->cfg.n_layers, 3);
    lop_model_free(m);
    /* the same again into the now non-empty directory is refused */
    assert_int_equal(lop(args), 1);
    expect_in("not an empty directory");
    /* module removal: per-layer config */
    snprintf(args, sizeof args, "prune tests/fixtures/hf/mha --depth 1 --no-plus --unit ffn --criterion magnitude -o %s/ffn",
             g_tmp);
    assert_int_equal(lop(args), 0);
    expect_in("per-layer config (lop_layers)");
}

static void test_prune_errors(void **st) {
    (void)st;
    char args[1024];
    assert_int_equal(lop("prune tests/fixtures/hf/mha --depth 1 --criterion frobnicate -o /tmp/x"), 2);
    expect_in("unknown criterion 'frobnicate' (expected magnitude, taylor, ppl or bi)");
    assert_int_equal(lop("prune tests/fixtures/hf/mha --depth 1 --unit head -o /tmp/x"), 2);
    expect_in("unknown unit 'head'");
    assert_int_equal(lop("prune tests/fixtures/hf/mha -o /tmp/x"), 2);
    expect_in("--depth TARGET is required");
    assert_int_equal(lop("prune tests/fixtures/hf/mha --depth 1"), 2);
    expect_in("-o OUTDIR is required");
    assert_int_equal(lop("prune tests/fixtures/hf/mha --depth lots -o /tmp/x"), 2);
    expect_in("bad pruning target 'lots'");
    assert_int_equal(lop("prune tests/fixtures/hf/mha --depth 1 --samples x -o /tmp/x"), 2);
    assert_int_equal(lop("prune tests/fixtures/hf/mha --depth 1 --device tpu -o /tmp/x"), 2);
    expect_in("--device must be cpu or cuda");
    /* more blocks than the model has, or than the + rule allows */
    assert_int_equal(lop("prune tests/fixtures/hf/mha --depth 9 --no-plus --criterion magnitude --dry-run"), 1);
    expect_in("cannot remove 9 block units: the model has 2 that may be removed");
    assert_int_equal(lop("prune tests/fixtures/hf/mha --depth 1 --criterion magnitude --dry-run"), 1);
    expect_in("\"+\" rule keeps blocks 0-3");
    /* into the input directory */
    assert_int_equal(lop("prune tests/fixtures/hf/mha --depth 1 --no-plus --criterion magnitude -o tests/fixtures/hf/mha"), 1);
    expect_in("refusing to write into the input directory");
    /* calibration text that is not there */
    snprintf(args, sizeof args, "prune tests/fixtures/hf/mha --depth 1 --no-plus --calib %s/none.txt --dry-run", g_tmp);
    assert_int_equal(lop(args), 1);
    expect_in("none.txt: calibration text not found");
    /* magnitude on a synthetic model reads weights made on demand (it crashed before they were) */
    assert_int_equal(lop("prune synth:smollm2-135m:layers=7 --depth 1 --criterion magnitude --dry-run"), 0);
    expect_in("removed 1 block unit");
    assert_int_equal(lop("prune --help"), 0);
    expect_in("--iterative");
}

/* width pruning: uniform (stock HF), per-layer (lop_layers) and padded (stock HF, same function) */
static void test_prune_width(void **st) {
    (void)st;
    char args[1024], path[512];
    snprintf(args, sizeof args, "prune tests/fixtures/hf/gqa_tied --width 30%% --method wanda-sp --samples 2 --seq-len 8 -o %s/w1",
             g_tmp);
    assert_int_equal(lop(args), 0);
    expect_in("stock HF checkpoint");
    snprintf(path, sizeof path, "%s/w1/pruning.json", g_tmp);
    cJSON *j = json_load(path);
    assert_string_equal(json_at(j, "criterion")->valuestring, "wanda-sp");
    assert_true(json_num(j, "params.after") < json_num(j, "params.before"));
    cJSON_Delete(j);
    snprintf(args, sizeof args, "prune tests/fixtures/hf/gqa_tied --width 30%% --method flap --samples 2 --seq-len 8 -o %s/w2",
             g_tmp);
    assert_int_equal(lop(args), 0);
    snprintf(args, sizeof args,
             "prune tests/fixtures/hf/gqa_tied --width 30%% --method flap --samples 2 --seq-len 8 --export-padded -o %s/w3", g_tmp);
    assert_int_equal(lop(args), 0);
    expect_in("stock HF checkpoint");
    for (int k = 2; k <= 3; k++) {
        snprintf(path, sizeof path, "%s/w%d", g_tmp, k);
        lop_model *m;
        assert_int_equal(lop_model_load(path, NULL, &m), LOP_OK);
        assert_non_null(m->w.layers[0].b_down.data); /* FLAP's compensation bias */
        lop_model_free(m);
    }
    /* bad arguments */
    assert_int_equal(lop("prune tests/fixtures/hf/gqa_tied --width 3 -o /tmp/x"), 2);
    expect_in("--width takes a percentage");
    assert_int_equal(lop("prune tests/fixtures/hf/gqa_tied --width 20% --round 3 -o /tmp/x"), 2);
    expect_in("--round expects 1, 8, 64 or 128");
    snprintf(args, sizeof args, "prune tests/fixtures/hf/gqa_tied --width 20%% --method llm-pruner --samples 2 --seq-len 8 -o %s/w4",
             g_tmp);
    assert_int_equal(lop(args), 0);
    assert_int_equal(lop("prune tests/fixtures/hf/gqa_tied --width 20% --method wanda -o /tmp/x"), 2);
    expect_in("unknown --method 'wanda'");
    assert_int_equal(lop("prune tests/fixtures/hf/gqa_tied --width 20% --gqa all -o /tmp/x"), 2);
    expect_in("unknown --gqa 'all'");
    assert_int_equal(lop("prune tests/fixtures/hf/gqa_tied --width 20% --depth 1 -o /tmp/x"), 2);
    expect_in("cannot be combined");
    assert_int_equal(lop("prune tests/fixtures/hf/gqa_tied --width 20% --layers 3 -o /tmp/x"), 2);
    expect_in("--layers expects A:B");
    assert_int_equal(lop("prune tests/fixtures/hf/gqa_tied --width 20% --method magnitude --layers 0:99 --dry-run"), 1);
    expect_in("--layers 0:99");
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_prune_writes_checkpoint), cmocka_unit_test(test_prune_errors),
                                       cmocka_unit_test(test_prune_width)};
    return cmocka_run_group_tests_name("prune_cli", tests, setup, teardown);
}
