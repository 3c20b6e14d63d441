/* Tokenizer speed: encodes a text file (default: WikiText-2 test, 1.3 MB) with a tokenizer.json,
 * best of 5, then decodes it back and checks the round trip. Timing is reported, never asserted.
 * Build and run from the repository root:
 *   make build/liblop.a && cc -O2 -Iinclude -Isrc $(pkg-config --cflags libcjson) bench/tools/tok_speed.c \
 *      build/liblop.a $(pkg-config --libs libcjson libpcre2-8) -lm -o build/tok_speed
 *   build/tok_speed tests/fixtures/tok/smollm2/tokenizer.json ../shared/data/wikitext2/wiki.test.raw */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/file.h"
#include "tokenizer/tokenizer.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *tok_path = argc > 1 ? argv[1] : "tests/fixtures/tok/smollm2/tokenizer.json";
    const char *text_path = argc > 2 ? argv[2] : "../shared/data/wikitext2/wiki.test.raw";
    lop_tokenizer *t;
    double t0 = now();
    if (lop_tokenizer_from_hf_json(tok_path, &t) != LOP_OK) {
        fprintf(stderr, "%s\n", lop_last_error());
        return 1;
    }
    double load = now() - t0;
    char *text;
    size_t len;
    if (lop_read_file(text_path, &text, &len) != LOP_OK) {
        fprintf(stderr, "%s\n", lop_last_error());
        return 1;
    }
    int32_t *ids = NULL;
    int n = 0;
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        free(ids);
        double a = now();
        if (lop_tokenizer_encode(t, text, len, 0, &ids, &n) != LOP_OK) {
            fprintf(stderr, "%s\n", lop_last_error());
            return 1;
        }
        double b = now() - a;
        if (b < best) best = b;
    }
    char *back;
    double a = now();
    if (lop_tokenizer_decode(t, ids, n, &back) != LOP_OK) {
        fprintf(stderr, "%s\n", lop_last_error());
        return 1;
    }
    double dec = now() - a;
    printf("tokenizer %s (load %.3f s)\ntext %s: %zu bytes -> %d tokens\nencode %.3f s (best of 5, %.1f MB/s), "
           "decode %.3f s, round trip %s\n",
           tok_path, load, text_path, len, n, best, (double)len / best / 1e6, dec,
           strcmp(back, text) == 0 ? "exact" : "DIFFERS");
    free(back);
    free(ids);
    free(text);
    lop_tokenizer_free(t);
    return 0;
}
