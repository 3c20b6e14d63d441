/* HF parity: every fixture model under tests/fixtures/hf (tiny random LlamaForCausalLM checkpoints
 * written by HF transformers, see tests/fixtures/README.md) loads with the per-layer shapes and
 * parameter count HF ran, gives HF's logits at every position within the fixture's stated tolerance
 * (normalised max error, 1e-4 for fp32), and the same 16-token greedy continuation. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "io/file.h"
#include "json_util.h"
#include "runtime/engine.h"

static const char *fixture_root(void) {
    const char *r = getenv("LOP_FIXTURES");
    return r ? r : "tests/fixtures";
}

/* Checks MODEL (the HF dir itself, or a GGUF converted from it) against the HF reference in DIR. */
static void check_one(const char *dir, const char *model) {
    char path[1024];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    cJSON *ref = json_load(path);
    lop_model *m;
    if (lop_model_load(model, NULL, &m) != LOP_OK) fail_msg("%s: %s", model, lop_last_error());

    /* shapes as HF ran them */
    assert_int_equal(lop_model_n_params(m), (int64_t)json_num(ref, "n_params"));
    cJSON *layers = json_at(ref, "layers"), *L;
    assert_int_equal(cJSON_GetArraySize(layers), m->cfg.n_layers);
    int i = 0;
    cJSON_ArrayForEach(L, layers) {
        const lop_layer_shape *s = &m->cfg.layers[i++];
        int has_attn = cJSON_IsTrue(json_at(L, "has_attn")), has_mlp = cJSON_IsTrue(json_at(L, "has_mlp"));
        assert_int_equal(s->n_heads, has_attn ? (int)json_num(L, "n_heads") : 0);
        if (has_attn) {
            assert_int_equal(s->n_kv_heads, (int)json_num(L, "n_kv_heads"));
            assert_int_equal(s->head_dim, (int)json_num(L, "head_dim"));
        }
        assert_int_equal(s->ffn_dim, has_mlp ? (int)json_num(L, "ffn") : 0);
    }

    /* logits at every position */
    snprintf(path, sizeof path, "%s/logits.bin", dir);
    lop_mapped lb;
    assert_int_equal(lop_map_file(path, &lb), LOP_OK);
    double tol = json_num(ref, "tolerance.cpu_fp32");
    int V = m->cfg.vocab_size, max_t = 0;
    cJSON *seqs = json_at(ref, "sequences"), *S;
    cJSON_ArrayForEach(S, seqs) if ((int)json_num(S, "n_tokens") > max_t) max_t = (int)json_num(S, "n_tokens");
    lop_engine_opts eo = {.device = LOP_DEVICE_CPU, .max_batch = 1, .max_seq_len = max_t + 32};
    lop_engine *e;
    assert_int_equal(lop_engine_create(m, &eo, &e), LOP_OK);
    float *logits = malloc((size_t)max_t * V * sizeof(float));
    int32_t *seq = calloc((size_t)max_t, sizeof(int32_t)), *pos = malloc((size_t)max_t * sizeof(int32_t));
    for (int t = 0; t < max_t; t++) pos[t] = t;
    cJSON_ArrayForEach(S, seqs) {
        int n;
        int32_t *ids = json_ids(json_at(S, "ids"), &n);
        size_t off = (size_t)json_num(S, "byte_offset");
        assert_true(off + (size_t)n * V * 4 <= lb.size);
        const float *want = (const float *)(lb.data + off);
        lop_batch b = {n, ids, seq, pos, n, pos};
        assert_int_equal(lop_engine_forward(e, &b, logits), LOP_OK);
        double mx = 0, scale = json_num(S, "max_abs_logit");
        for (int64_t k = 0; k < (int64_t)n * V; k++) mx = fmax(mx, fabs((double)logits[k] - want[k]));
        double err = mx / scale;
        printf("  %-28s T=%-3d normalised max error %.2e (tolerance %.0e)\n", strrchr(model, '/') + 1, n, err, tol);
        if (!(err <= tol)) fail_msg("%s: logits differ from HF: normalised max error %.3e > %.0e", dir, err, tol);
        free(ids);
    }

    /* greedy continuation */
    int np, ng;
    int32_t *prompt = json_ids(json_at(ref, "greedy.prompt_ids"), &np);
    int32_t *want = json_ids(json_at(ref, "greedy.generated_ids"), &ng);
    const int32_t *pp = prompt;
    lop_gen_params gp = {.max_new_tokens = ng, .ignore_eos = 1, .sampling = {0, 0, 1, 0}};
    lop_gen_result r;
    assert_int_equal(lop_generate(e, &pp, &np, 1, &gp, &r), LOP_OK);
    assert_int_equal(r.n_tokens[0], ng);
    for (int k = 0; k < ng; k++)
        if (r.tokens[0][k] != want[k]) fail_msg("%s: greedy token %d is %d, HF says %d", dir, k, r.tokens[0][k], want[k]);
    lop_gen_result_free(&r);
    free(prompt);
    free(want);
    free(logits);
    free(seq);
    free(pos);
    lop_unmap_file(&lb);
    lop_engine_free(e);
    lop_model_free(m);
    cJSON_Delete(ref);
}

static void test_fixture(void **st) { check_one((const char *)*st, (const char *)*st); }

/* llama.cpp-style GGUF conversions (q/k rows permuted for interleaved RoPE) of some fixtures, made
 * by tests/fixtures/gguf/make_gguf_fixtures.py: lop must undo the permutation and give HF's logits. */
static void test_gguf_fixture(void **st) {
    const char *gguf = *st;
    char dir[1024];
    const char *base = strrchr(gguf, '/') + 1;
    snprintf(dir, sizeof dir, "%s/hf/%.*s", fixture_root(), (int)(strlen(base) - 5), base);
    check_one(dir, gguf);
}

int main(void) {
    /* one test per fixture directory */
    char root[512];
    snprintf(root, sizeof root, "%s/hf", fixture_root());
    DIR *d = opendir(root);
    if (!d) {
        fprintf(stderr, "cannot open %s (run from the repository root or set LOP_FIXTURES)\n", root);
        return 1;
    }
    struct CMUnitTest tests[64];
    static char dirs[64][1024];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 64) {
        char ref[1100];
        if (de->d_name[0] == '.') continue;
        snprintf(dirs[n], sizeof dirs[n], "%s/%s", root, de->d_name);
        snprintf(ref, sizeof ref, "%s/reference.json", dirs[n]);
        if (!lop_file_exists(ref)) continue;
        tests[n] = (struct CMUnitTest){strrchr(dirs[n], '/') + 1, test_fixture, NULL, NULL, dirs[n]};
        n++;
    }
    closedir(d);
    int n_hf = n;
    snprintf(root, sizeof root, "%s/gguf/from-hf", fixture_root());
    if ((d = opendir(root))) {
        while ((de = readdir(d)) && n < 64) {
            size_t l = strlen(de->d_name);
            if (l < 6 || strcmp(de->d_name + l - 5, ".gguf")) continue;
            snprintf(dirs[n], sizeof dirs[n], "%s/%s", root, de->d_name);
            tests[n] = (struct CMUnitTest){strrchr(dirs[n], '/') + 1, test_gguf_fixture, NULL, NULL, dirs[n]};
            n++;
        }
        closedir(d);
    }
    if (n - n_hf < 4) {
        fprintf(stderr, "expected the GGUF conversions under %s\n", root);
        return 1;
    }
    if (n_hf < 8) {
        fprintf(stderr, "only %d HF fixtures under %s; expected every family\n", n, root);
        return 1;
    }
    return _cmocka_run_group_tests("hf_parity", tests, (size_t)n, NULL, NULL);
}
