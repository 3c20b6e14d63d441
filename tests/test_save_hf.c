/* The HF checkpoint writer and the depth-pruned output: a pruned model written and loaded back
 * gives exactly the in-memory pruned model's logits (block removal: stock config; module removal:
 * lop_layers); biases stock HF expects are written as zeros; shards like the input; tokenizer
 * files copied (HF) or generated (GGUF byte-level BPE: same ids as the GGUF tokenizer); the input
 * directory is refused, a non-empty output refused, and a failed write leaves nothing behind. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "io/file.h"
#include "io/hf_config.h"
#include "json_util.h"
#include "model/save_hf.h"
#include "prune/depth.h"
#include "runtime/engine.h"
#include "tiny_model.h"
#include "tokenizer/tokenizer.h"
#include "train/train.h"

static const char *fixture_root(void) {
    const char *r = getenv("LOP_FIXTURES");
    return r ? r : "tests/fixtures";
}

static char g_tmp[256];

static int setup(void **st) {
    (void)st;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/lop-save-XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static void rm_rf(const char *p) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", p);
}

static int teardown(void **st) {
    (void)st;
    rm_rf(g_tmp);
    return 0;
}

static char *tmp_path(const char *name) {
    static char b[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(b[k], sizeof b[k], "%s/%s", g_tmp, name);
    return b[k];
}

/* logits of every position of a fixed sequence */
static float *logits_of(lop_model *m, int n) {
    lop_engine_opts eo = {.device = LOP_DEVICE_CPU, .max_batch = 1, .max_seq_len = n, .n_threads = 1};
    lop_engine *e;
    if (lop_engine_create(m, &eo, &e) != LOP_OK) fail_msg("engine: %s", lop_last_error());
    int32_t tok[32], seq[32] = {0}, pos[32];
    for (int i = 0; i < n; i++) tok[i] = (i * 7 + 3) % m->cfg.vocab_size, pos[i] = i;
    float *lg = malloc((size_t)n * m->cfg.vocab_size * sizeof(float));
    lop_batch b = {n, tok, seq, pos, n, pos};
    assert_int_equal(lop_engine_forward(e, &b, lg), LOP_OK);
    lop_engine_free(e);
    return lg;
}

static void expect_same_logits(lop_model *a, lop_model *b) {
    int n = 9, V = a->cfg.vocab_size;
    assert_int_equal(V, b->cfg.vocab_size);
    float *x = logits_of(a, n), *y = logits_of(b, n);
    for (int i = 0; i < n * V; i++)
        if (x[i] != y[i]) fail_msg("logit %d: %.9g in memory, %.9g after the round trip", i, x[i], y[i]);
    free(x);
    free(y);
}

static const tiny_layer UNI[6] = {{4, 2, 4, 24, 0, 0, 1}, {4, 2, 4, 24, 0, 0, 0}, {4, 2, 4, 24, 1, 1, 0},
                                  {4, 2, 4, 24, 0, 0, 0}, {4, 2, 4, 24, 0, 0, 0}, {4, 2, 4, 24, 0, 0, 0}};

/* ---- round trips ------------------------------------------------------------------------ */
static void test_block_removal_round_trip(void **st) {
    (void)st;
    lop_model *m = tiny_model(53, 16, 6, UNI, 0, 17);
    uint8_t skip[6] = {0, 3, 0, 0, 3, 0};
    lop_model *v;
    assert_int_equal(lop_model_remove_modules(m, skip, &v), LOP_OK);
    assert_true(lop_model_is_stock_hf(v));
    cJSON *rep = cJSON_CreateObject();
    cJSON_AddStringToObject(rep, "hello", "world");
    lop_save_opts o = {.out_dir = tmp_path("blocks"), .input = "synth:none", .report_name = "pruning.json", .report = rep};
    assert_int_equal(lop_model_save_hf(v, &o), LOP_OK);
    cJSON_Delete(rep);
    lop_model *back;
    if (lop_model_load(o.out_dir, NULL, &back) != LOP_OK) fail_msg("%s", lop_last_error());
    assert_int_equal(back->cfg.n_layers, 4);
    /* stock HF wants every bias of a kind once any layer has one: kept layers 0, 2, 3, 5 get zero
     * q/k/v/o (o: 16, q: 16, k/v: 8 each) and gate/up/down (24, 24, 16) biases where they lack them */
    assert_int_equal(lop_model_n_params(back) - lop_model_n_params(v), 16 + 32 + 48 + 48 + 48 + 3 * 64);
    expect_same_logits(v, back);
    /* config: stock, no lop_layers, the new depth */
    cJSON *cfg = json_load(tmp_path("blocks/config.json"));
    assert_int_equal((int)json_num(cfg, "num_hidden_layers"), 4);
    assert_null(cJSON_GetObjectItemCaseSensitive(cfg, "lop_layers"));
    assert_true(cJSON_IsTrue(json_at(cfg, "attention_bias")));
    cJSON_Delete(cfg);
    cJSON *pj = json_load(tmp_path("blocks/pruning.json"));
    assert_string_equal(json_at(pj, "hello")->valuestring, "world");
    assert_true(cJSON_IsTrue(json_at(pj, "output.loads_in_stock_transformers")));
    assert_int_equal((int)json_num(pj, "output.safetensors_files"), 1);
    cJSON_Delete(pj);
    lop_model_free(back);
    lop_model_free(v);
    lop_model_free(m);
}

static void test_module_removal_round_trip(void **st) {
    (void)st;
    lop_model *m = tiny_model(53, 16, 6, UNI, 1, 18);
    uint8_t skip[6] = {0, LOP_SKIP_ATTN, 0, LOP_SKIP_FFN, LOP_SKIP_ATTN, 0};
    lop_model *v;
    assert_int_equal(lop_model_remove_modules(m, skip, &v), LOP_OK);
    assert_false(lop_model_is_stock_hf(v));
    lop_save_opts o = {.out_dir = tmp_path("modules"), .input = NULL};
    assert_int_equal(lop_model_save_hf(v, &o), LOP_OK);
    lop_model *back;
    if (lop_model_load(o.out_dir, NULL, &back) != LOP_OK) fail_msg("%s", lop_last_error());
    assert_int_equal(back->cfg.n_layers, 6);
    assert_int_equal(back->cfg.layers[1].n_heads, 0);
    assert_int_equal(back->cfg.layers[3].ffn_dim, 0);
    expect_same_logits(v, back);
    cJSON *cfg = json_load(tmp_path("modules/config.json"));
    assert_int_equal(cJSON_GetArraySize(json_at(cfg, "lop_layers")), 6);
    cJSON_Delete(cfg);
    lop_model_free(back);
    lop_model_free(v);
    lop_model_free(m);
}

/* copy of an HF fixture into the temp dir (so we can also try writing into it) */
static const char *copy_fixture(const char *name) {
    static char dst[512];
    char cmd[1200];
    snprintf(dst, sizeof dst, "%s/%s", g_tmp, name);
    snprintf(cmd, sizeof cmd, "cp -r '%s/hf/%s' '%s'", fixture_root(), name, dst);
    assert_int_equal(system(cmd), 0);
    return dst;
}

static void test_sharded_input(void **st) {
    (void)st;
    const char *in = copy_fixture("f16_sharded");
    lop_model *m;
    assert_int_equal(lop_model_load(in, NULL, &m), LOP_OK);
    uint8_t skip[3] = {0, 3, 0};
    lop_model *v;
    assert_int_equal(lop_model_remove_modules(m, skip, &v), LOP_OK);
    lop_save_opts o = {.out_dir = tmp_path("f16_pruned"), .input = in};
    assert_int_equal(lop_model_save_hf(v, &o), LOP_OK);
    /* the input's largest shard bounds the output's: still sharded, f16 kept, index present */
    assert_true(lop_file_exists(tmp_path("f16_pruned/model.safetensors.index.json")));
    assert_false(lop_file_exists(tmp_path("f16_pruned/model.safetensors")));
    assert_true(lop_file_exists(tmp_path("f16_pruned/generation_config.json")));
    lop_model *back;
    assert_int_equal(lop_model_load(o.out_dir, NULL, &back), LOP_OK);
    assert_int_equal(back->w.layers[0].wq.dtype, LOP_F16);
    assert_int_equal(back->cfg.n_layers, 2);
    expect_same_logits(v, back);
    lop_model_free(back);
    lop_model_free(v);
    lop_model_free(m);
}

/* ---- refusals and atomicity ------------------------------------------------------------- */
static int n_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) n += de->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

static void test_refusals(void **st) {
    (void)st;
    const char *in = copy_fixture("gqa_tied");
    lop_model *m;
    assert_int_equal(lop_model_load(in, NULL, &m), LOP_OK);
    lop_save_opts o = {.out_dir = in, .input = in};
    assert_int_equal(lop_model_save_hf(m, &o), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "refusing to write into the input directory"));
    o.out_dir = tmp_path("gqa_tied/sub");
    assert_int_equal(lop_model_save_hf(m, &o), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "refusing"));
    char rel[600];
    snprintf(rel, sizeof rel, "%s/gqa_tied/../gqa_tied/", g_tmp);
    o.out_dir = rel;
    assert_int_equal(lop_model_save_hf(m, &o), LOP_ERR_ARG);
    /* the input is untouched */
    assert_int_equal(n_entries(in), 5);
    /* an existing non-empty directory is refused, an empty one is fine */
    mkdir(tmp_path("full"), 0755);
    FILE *f = fopen(tmp_path("full/x"), "w");
    fclose(f);
    o.out_dir = tmp_path("full");
    assert_int_equal(lop_model_save_hf(m, &o), LOP_ERR_ARG);
    if (!strstr(lop_last_error(), "not an empty directory")) fail_msg("%s", lop_last_error());
    mkdir(tmp_path("empty"), 0755);
    o.out_dir = tmp_path("empty");
    assert_int_equal(lop_model_save_hf(m, &o), LOP_OK);
    assert_true(lop_file_exists(tmp_path("empty/config.json")));
    o.out_dir = tmp_path("no/such/parent");
    assert_int_equal(lop_model_save_hf(m, &o), LOP_ERR_IO);
    /* a GGUF's folder is its input directory */
    char gg[600];
    snprintf(gg, sizeof gg, "cp '%s/gguf/tiny.gguf' '%s/'", fixture_root(), g_tmp);
    assert_int_equal(system(gg), 0);
    o.input = tmp_path("tiny.gguf");
    o.out_dir = g_tmp;
    assert_int_equal(lop_model_save_hf(m, &o), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "refusing"));
    /* a failed write leaves neither the output nor its temporary directory */
    int before = n_entries(g_tmp);
    void *keep = m->w.out_norm.data;
    m->w.out_norm.data = NULL;
    o.input = in;
    o.out_dir = tmp_path("failed");
    assert_int_equal(lop_model_save_hf(m, &o), LOP_ERR_ARG);
    m->w.out_norm.data = keep;
    assert_int_equal(n_entries(g_tmp), before);
    lop_model_free(m);
}

/* ---- tokenizer from GGUF ---------------------------------------------------------------- */
static void test_tokenizer_from_gguf(void **st) {
    (void)st;
    char gguf[512], sample[512];
    snprintf(gguf, sizeof gguf, "%s/tok/smollm2/vocab.gguf", fixture_root());
    snprintf(sample, sizeof sample, "%s/tok/sample.txt", fixture_root());
    mkdir(tmp_path("tok"), 0755);
    int written;
    char desc[256];
    assert_int_equal(lop_tokenizer_write_hf_from_gguf(gguf, tmp_path("tok"), &written, desc, sizeof desc), LOP_OK);
    assert_int_equal(written, 1);
    lop_tokenizer *a, *b;
    assert_int_equal(lop_tokenizer_from_gguf(gguf, &a), LOP_OK);
    if (lop_tokenizer_from_hf_json(tmp_path("tok/tokenizer.json"), &b) != LOP_OK) fail_msg("%s", lop_last_error());
    char *text;
    size_t len;
    assert_int_equal(lop_read_file(sample, &text, &len), LOP_OK);
    const char *extra[] = {"a  1 2  3 ½ Ⅳ ٣٤", "<|im_start|>user\nHi 2024!<|im_end|>", "  leading\t\ttabs\r\n", ""};
    for (int k = 0; k < 5; k++) {
        const char *s = k < 4 ? extra[k] : text;
        size_t n = k < 4 ? strlen(s) : len;
        int32_t *x, *y;
        int nx, ny;
        assert_int_equal(lop_tokenizer_encode(a, s, n, -1, &x, &nx), LOP_OK);
        assert_int_equal(lop_tokenizer_encode(b, s, n, -1, &y, &ny), LOP_OK);
        assert_int_equal(nx, ny);
        assert_memory_equal(x, y, (size_t)nx * sizeof(int32_t));
        free(x);
        free(y);
    }
    assert_int_equal(lop_tokenizer_bos(a), lop_tokenizer_bos(b));
    assert_int_equal(lop_tokenizer_eos(a), lop_tokenizer_eos(b));
    printf("  %s: %zu bytes of sample text encode identically\n", desc, len);
    free(text);
    lop_tokenizer_free(a);
    lop_tokenizer_free(b);
    /* SentencePiece-style: nothing written, and it says so */
    snprintf(gguf, sizeof gguf, "%s/tok/spm/vocab.gguf", fixture_root());
    mkdir(tmp_path("tok_spm"), 0755);
    assert_int_equal(lop_tokenizer_write_hf_from_gguf(gguf, tmp_path("tok_spm"), &written, desc, sizeof desc), LOP_OK);
    assert_int_equal(written, 0);
    assert_non_null(strstr(desc, "SentencePiece"));
    assert_int_equal(n_entries(tmp_path("tok_spm")), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_removal_round_trip), cmocka_unit_test(test_module_removal_round_trip),
        cmocka_unit_test(test_sharded_input), cmocka_unit_test(test_refusals), cmocka_unit_test(test_tokenizer_from_gguf)};
    return cmocka_run_group_tests_name("save_hf", tests, setup, teardown);
}
