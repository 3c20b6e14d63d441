/* The backward pass against HF transformers autograd (float64) on the HF fixture checkpoints:
 * tests/fixtures/grad/<name>.json (written by tests/fixtures/make_grad_fixtures.py) holds, for
 * fixed token ids, the summed next-token NLL and per parameter sum(W * dL/dW), ||dL/dW||, and
 * dL/dW at 16 indices. lop (fp32) must match: loss within 1e-5 relative; sum(W*g) within
 * tolerance x sum|W*g|; the norm within tolerance relative; every sample within tolerance x
 * max|dL/dW| of its tensor (tolerance 1e-4 from the file). Every lop tensor must be in the file
 * and vice versa. */
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

#include "json_util.h"
#include "train/train.h"

static const char *fixture_root(void) {
    const char *r = getenv("LOP_FIXTURES");
    return r ? r : "tests/fixtures";
}

static void check(void **state) {
    const char *path = *state;
    cJSON *ref = json_load(path);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", fixture_root(), json_at(ref, "model_dir")->valuestring);
    lop_model *m;
    if (lop_model_load(dir, NULL, &m) != LOP_OK) fail_msg("%s: %s", dir, lop_last_error());
    cJSON *ids = json_at(ref, "ids"), *seq;
    int n_seq = cJSON_GetArraySize(ids), T = cJSON_GetArraySize(cJSON_GetArrayItem(ids, 0)), k = 0;
    int32_t *tok = malloc((size_t)n_seq * T * sizeof(int32_t));
    cJSON_ArrayForEach(seq, ids) {
        int n;
        int32_t *s = json_ids(seq, &n);
        assert_int_equal(n, T);
        memcpy(tok + (size_t)k++ * T, s, (size_t)T * sizeof(int32_t));
        free(s);
    }
    int first = (int)json_num(ref, "first");
    double tol = json_num(ref, "tolerance");
    lop_trainer *t;
    lop_trainer_opts to = {.max_tokens = n_seq * T};
    assert_int_equal(lop_trainer_create(m, &to, &t), LOP_OK);
    lop_grad_store *gs;
    assert_int_equal(lop_grad_store_new(m, &gs), LOP_OK);
    lop_grad_sink sink = lop_grad_store_sink(gs);
    double nll;
    assert_int_equal(lop_trainer_backward(t, tok, n_seq, T, first, 1.0, &sink, &nll, NULL), LOP_OK);
    double want_loss = json_num(ref, "loss");
    if (!(fabs(nll - want_loss) <= 1e-5 * fabs(want_loss))) fail_msg("%s: loss %.9f, HF %.9f", path, nll, want_loss);

    const cJSON *tensors = json_at(ref, "tensors");
    double worst_wg = 0, worst_norm = 0, worst_el = 0;
    int n_checked = 0;
    for (int layer = -1; layer < m->cfg.n_layers; layer++) {
        int nf = layer < 0 ? LOP_GF_COUNT : LOP_LF_COUNT;
        for (int f = 0; f < nf; f++) {
            lop_param_id id = {layer, f};
            if (layer < 0 && f == LOP_GF_LM_HEAD && m->cfg.tie_embeddings) continue;
            const lop_tensor *tt = lop_param_tensor(m, id);
            if (!tt->present) continue;
            char name[128];
            lop_param_name(id, name, sizeof name);
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(tensors, name);
            if (!e) fail_msg("%s: lop tensor %s not in the HF reference", path, name);
            const float *g = lop_grad_store_get(gs, id);
            if (!g) fail_msg("%s: no gradient for %s", path, name);
            int64_t n = lop_tensor_numel(tt);
            assert_int_equal(n, (int64_t)json_num(e, "numel"));
            float *w = malloc((size_t)n * sizeof(float));
            lop_convert_to_f32(w, tt->data, tt->dtype, n);
            double wg = 0, ss = 0;
            for (int64_t i = 0; i < n; i++) {
                wg += (double)w[i] * g[i];
                ss += (double)g[i] * g[i];
            }
            free(w);
            double e_wg = fabs(wg - json_num(e, "sum_wg")) / json_num(e, "sum_abs_wg");
            double e_norm = fabs(sqrt(ss) - json_num(e, "norm")) / json_num(e, "norm");
            if (!(e_wg <= tol)) fail_msg("%s %s: sum W*g %.9g, HF %.9g", path, name, wg, json_num(e, "sum_wg"));
            if (!(e_norm <= tol)) fail_msg("%s %s: |g| %.9g, HF %.9g", path, name, sqrt(ss), json_num(e, "norm"));
            double mx = json_num(e, "max_abs");
            const cJSON *smp;
            cJSON_ArrayForEach(smp, cJSON_GetObjectItemCaseSensitive(e, "samples")) {
                int64_t i = (int64_t)cJSON_GetArrayItem(smp, 0)->valuedouble;
                double want = cJSON_GetArrayItem(smp, 1)->valuedouble, el = fabs(g[i] - want) / mx;
                if (!(el <= tol)) fail_msg("%s %s[%lld]: %.9g, HF %.9g", path, name, (long long)i, g[i], want);
                if (el > worst_el) worst_el = el;
            }
            worst_wg = fmax(worst_wg, e_wg);
            worst_norm = fmax(worst_norm, e_norm);
            n_checked++;
        }
    }
    assert_int_equal(n_checked, cJSON_GetArraySize(tensors));
    printf("  %-12s loss %.6f (HF %.6f); %2d tensors: sum W*g rel. %.1e, |g| rel. %.1e, elements (/max) %.1e\n",
           json_at(ref, "name")->valuestring, nll, want_loss, n_checked, worst_wg, worst_norm, worst_el);
    lop_grad_store_free(gs);
    lop_trainer_free(t);
    lop_model_free(m);
    free(tok);
    cJSON_Delete(ref);
}

int main(void) {
    char root[512];
    snprintf(root, sizeof root, "%s/grad", fixture_root());
    DIR *d = opendir(root);
    if (!d) {
        fprintf(stderr, "cannot open %s (run from the repository root or set LOP_FIXTURES)\n", root);
        return 1;
    }
    static char paths[32][1024];
    static char names[32][64];
    struct CMUnitTest tests[32];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 32) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json")) continue;
        snprintf(paths[n], sizeof paths[n], "%s/%s", root, de->d_name);
        snprintf(names[n], sizeof names[n], "%.*s", (int)(l - 5), de->d_name);
        tests[n] = (struct CMUnitTest){names[n], check, NULL, NULL, paths[n]};
        n++;
    }
    closedir(d);
    if (n < 8) {
        fprintf(stderr, "expected 8 gradient fixtures under %s, found %d\n", root, n);
        return 1;
    }
    return _cmocka_run_group_tests("grad_hf", tests, (size_t)n, NULL, NULL);
}
