/* Calibration sampling; see calib.h. */
#include "prune/calib.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/file.h"
#include "model/synth.h"

void lop_calib_free(lop_calib *c) {
    if (!c) return;
    free(c->tokens);
    free(c->samples);
    for (int i = 0; i < c->n_files; i++) free(c->files[i]);
    free(c->files);
    free(c->file_tokens);
    memset(c, 0, sizeof *c);
}

static lop_status check_sizes(int n_samples, int seq_len) {
    if (n_samples < 1 || n_samples > 1000000)
        return lop_fail(LOP_ERR_ARG, "calibration: number of samples %d out of range (1..1000000)", n_samples);
    if (seq_len < 2 || seq_len > 1 << 20)
        return lop_fail(LOP_ERR_ARG, "calibration: sample length %d out of range (2..1048576 tokens)", seq_len);
    return LOP_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* the *.txt files of a directory (sorted), or the path itself */
static lop_status list_files(const char *path, lop_calib *c) {
    if (!lop_is_dir(path)) {
        if (!lop_file_exists(path)) return lop_fail(LOP_ERR_IO, "%s: calibration text not found", path);
        c->files = malloc(sizeof *c->files);
        if (!c->files || !(c->files[0] = strdup(path))) return lop_fail(LOP_ERR_OOM, "out of memory");
        c->n_files = 1;
        return LOP_OK;
    }
    DIR *d = opendir(path);
    if (!d) return lop_fail(LOP_ERR_IO, "%s: cannot open directory", path);
    int cap = 0;
    struct dirent *de;
    lop_status st = LOP_OK;
    while (st == LOP_OK && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".txt") != 0 || de->d_name[0] == '.') continue;
        if (c->n_files == cap) {
            cap = cap ? cap * 2 : 8;
            char **f = realloc(c->files, (size_t)cap * sizeof *f);
            if (!f) st = lop_fail(LOP_ERR_OOM, "out of memory");
            else c->files = f;
        }
        if (st == LOP_OK && !(c->files[c->n_files++] = lop_path_join(path, de->d_name)))
            st = lop_fail(LOP_ERR_OOM, "out of memory");
    }
    closedir(d);
    if (st != LOP_OK) return st;
    if (!c->n_files) return lop_fail(LOP_ERR_ARG, "%s: no *.txt files to calibrate on", path);
    qsort(c->files, (size_t)c->n_files, sizeof *c->files, cmp_str);
    return LOP_OK;
}

lop_status lop_calib_from_text(const lop_model *m, const char *path, int n_samples, int seq_len, uint64_t seed,
                               lop_calib *out) {
    memset(out, 0, sizeof *out);
    LOP_TRY(check_sizes(n_samples, seq_len));
    lop_calib *c = out;
    c->n_samples = n_samples;
    c->seq_len = seq_len;
    c->seed = seed;
    lop_status st = list_files(path, c);
    if (st == LOP_OK && !m->tok)
        st = lop_fail(LOP_ERR_UNSUPPORTED, "%s: model has no tokenizer, so it cannot read calibration text %s",
                      m->source, path);
    int32_t **ids = NULL;
    if (st == LOP_OK) {
        ids = calloc((size_t)c->n_files, sizeof *ids);
        c->file_tokens = calloc((size_t)c->n_files, sizeof *c->file_tokens);
        if (!ids || !c->file_tokens) st = lop_fail(LOP_ERR_OOM, "out of memory");
    }
    int64_t starts = 0;
    for (int f = 0; st == LOP_OK && f < c->n_files; f++) {
        char *text;
        size_t len;
        st = lop_read_file(c->files[f], &text, &len);
        if (st != LOP_OK) break;
        int n;
        st = lop_model_encode(m, text, len, 0, &ids[f], &n);
        free(text);
        if (st != LOP_OK) {
            lop_error_prefix("%s", c->files[f]);
            break;
        }
        c->file_tokens[f] = n;
        if (n >= seq_len) starts += n - seq_len + 1;
    }
    if (st == LOP_OK && starts == 0)
        st = lop_fail(LOP_ERR_ARG, "%s: no file has %d tokens for a calibration sample", path, seq_len);
    if (st == LOP_OK) {
        c->tokens = malloc((size_t)n_samples * seq_len * sizeof(int32_t));
        c->samples = malloc((size_t)n_samples * sizeof *c->samples);
        if (!c->tokens || !c->samples) st = lop_fail(LOP_ERR_OOM, "out of memory");
    }
    for (int k = 0; st == LOP_OK && k < n_samples; k++) {
        int64_t r = (int64_t)(lop_splitmix64(seed * 0x100000001b3ull + (uint64_t)k) % (uint64_t)starts);
        int f = 0;
        for (;; f++) { /* the file holding start r */
            int64_t nf = c->file_tokens[f] >= seq_len ? c->file_tokens[f] - seq_len + 1 : 0;
            if (r < nf) break;
            r -= nf;
        }
        c->samples[k] = (lop_calib_sample){f, r};
        memcpy(c->tokens + (size_t)k * seq_len, ids[f] + r, (size_t)seq_len * sizeof(int32_t));
    }
    for (int f = 0; ids && f < c->n_files; f++) free(ids[f]);
    free(ids);
    if (st != LOP_OK) lop_calib_free(c);
    return st;
}

lop_status lop_calib_random(const lop_model *m, int n_samples, int seq_len, uint64_t seed, lop_calib *out) {
    memset(out, 0, sizeof *out);
    LOP_TRY(check_sizes(n_samples, seq_len));
    out->n_samples = n_samples;
    out->seq_len = seq_len;
    out->seed = seed;
    out->random_ids = 1;
    out->tokens = malloc((size_t)n_samples * seq_len * sizeof(int32_t));
    out->samples = malloc((size_t)n_samples * sizeof *out->samples);
    if (!out->tokens || !out->samples) {
        lop_calib_free(out);
        return lop_fail(LOP_ERR_OOM, "out of memory");
    }
    for (int64_t i = 0; i < (int64_t)n_samples * seq_len; i++)
        out->tokens[i] = (int32_t)(lop_splitmix64(seed ^ 0x5eed00000000ull ^ (uint64_t)i) % (uint64_t)m->cfg.vocab_size);
    for (int k = 0; k < n_samples; k++) out->samples[k] = (lop_calib_sample){-1, (int64_t)k * seq_len};
    return LOP_OK;
}
