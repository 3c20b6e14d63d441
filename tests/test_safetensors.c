/* safetensors reader/writer tests: round trips (single file and sharded with index) and hand-made
 * corrupt files, each of which must give an error naming the file and the tensor, never a crash. */
#include <cJSON.h>
#include <ftw.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/half.h"
#include "core/status.h"
#include "io/file.h"
#include "io/safetensors.h"

/* ---- fixture: a fresh temp dir per test ---------------------------------------------------- */
typedef struct fx {
    char dir[64];
    char path[256];
} fx;

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/lop_st_XXXXXX");
    if (!f || !mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/t.safetensors", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static char *pjoin(const fx *f, const char *name) {
    static char buf[4][320];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", f->dir, name);
    return b;
}

/* Writes a raw file: 8-byte length (hlen, or the real header length when hlen < 0), header, data. */
static void write_raw(const char *path, long long hlen, const char *header, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    uint64_t h = hlen < 0 ? strlen(header) : (uint64_t)hlen;
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(h >> (8 * i));
    assert_int_equal(fwrite(b, 1, 8, fp), 8);
    if (*header) assert_int_equal(fwrite(header, 1, strlen(header), fp), strlen(header));
    if (n) assert_int_equal(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

/* Opens PATH expecting failure with `code` and every needle (NULL-terminated) in the message. */
static void expect_fail(const char *path, lop_status code, ...) {
    lop_st_file sf;
    lop_clear_error();
    lop_status st = lop_st_open(&sf, path);
    if (st == LOP_OK) lop_st_close(&sf);
    assert_int_equal(st, code);
    const char *msg = lop_last_error();
    if (getenv("LOP_TEST_VERBOSE")) print_message("  error: %s\n", msg);
    if (!strstr(msg, path)) fail_msg("message does not name the file: %s", msg);
    va_list ap;
    va_start(ap, code);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        if (!strstr(msg, needle)) fail_msg("message lacks '%s': %s", needle, msg);
    va_end(ap);
    assert_null(sf.tensors); /* closed on error */
    assert_null(sf.map.data);
}

/* ---- round trips --------------------------------------------------------------------------- */
static float a32[3 * 5];
static uint16_t a16[7], abf[4 * 2];
static int64_t ai64[3];

static void fill_arrays(void) {
    for (int i = 0; i < 15; i++) a32[i] = (float)i * 0.25f - 1.0f;
    for (int i = 0; i < 7; i++) a16[i] = lop_f32_to_f16((float)i / 3.0f);
    for (int i = 0; i < 8; i++) abf[i] = lop_f32_to_bf16(-(float)i * 1.5f);
    for (int i = 0; i < 3; i++) ai64[i] = (int64_t)1 << (40 + i);
}

static lop_st_writer *make_writer(void) {
    fill_arrays();
    lop_st_writer *w;
    assert_int_equal(lop_st_writer_new(&w), LOP_OK);
    int64_t s2[2] = {3, 5}, s1[1] = {7}, sb[2] = {4, 2}, si[1] = {3};
    assert_int_equal(lop_st_writer_add(w, "a.f32", LOP_ST_F32, 2, s2, a32), LOP_OK);
    assert_int_equal(lop_st_writer_add(w, "b.f16", LOP_ST_F16, 1, s1, a16), LOP_OK);
    assert_int_equal(lop_st_writer_add(w, "c.bf16", LOP_ST_BF16, 2, sb, abf), LOP_OK);
    assert_int_equal(lop_st_writer_add(w, "d.i64", LOP_ST_I64, 1, si, ai64), LOP_OK);
    assert_int_equal(lop_st_writer_add(w, "e.scalar", LOP_ST_F32, 0, NULL, a32), LOP_OK);
    int64_t sz[2] = {0, 4};
    assert_int_equal(lop_st_writer_add(w, "f.empty", LOP_ST_F32, 2, sz, NULL), LOP_OK);
    assert_int_equal(lop_st_writer_count(w), 6);
    assert_int_equal(lop_st_writer_total_bytes(w), 60 + 14 + 16 + 24 + 4);
    return w;
}

static void check_tensor(const lop_st_file *sf, const char *name, lop_st_dtype dt, int ndim, const int64_t *shape,
                         const void *data, size_t nbytes) {
    const lop_st_tensor *t = lop_st_find(sf, name);
    if (!t) fail_msg("tensor %s not found", name);
    assert_string_equal(t->name, name);
    assert_int_equal(t->dtype, dt);
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++) assert_int_equal(t->shape[d], shape[d]);
    assert_int_equal(t->nbytes, nbytes);
    if (nbytes) assert_memory_equal(t->data, data, nbytes);
    else assert_null(t->data);
}

static void check_all(const lop_st_file *sf) {
    int64_t s2[2] = {3, 5}, s1[1] = {7}, sb[2] = {4, 2}, si[1] = {3}, sz[2] = {0, 4};
    check_tensor(sf, "a.f32", LOP_ST_F32, 2, s2, a32, sizeof a32);
    check_tensor(sf, "b.f16", LOP_ST_F16, 1, s1, a16, sizeof a16);
    check_tensor(sf, "c.bf16", LOP_ST_BF16, 2, sb, abf, sizeof abf);
    check_tensor(sf, "d.i64", LOP_ST_I64, 1, si, ai64, sizeof ai64);
    check_tensor(sf, "e.scalar", LOP_ST_F32, 0, NULL, a32, 4);
    check_tensor(sf, "f.empty", LOP_ST_F32, 2, sz, NULL, 0);
}

static void test_roundtrip_single(void **state) {
    fx *f = *state;
    lop_st_writer *w = make_writer();
    assert_int_equal(lop_st_writer_write(w, f->path), LOP_OK);
    lop_st_writer_free(w);
    lop_st_file sf;
    assert_int_equal(lop_st_open(&sf, f->path), LOP_OK);
    assert_int_equal(sf.n_tensors, 6);
    check_all(&sf);
    assert_null(lop_st_find(&sf, "nope"));
    assert_null(lop_st_find(&sf, "__metadata__"));
    /* header: multiple of 8, space padded, carries format pt; data starts 8-aligned */
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | sf.map.data[i];
    assert_int_equal(hl % 8, 0);
    cJSON *h = cJSON_ParseWithLength((const char *)sf.map.data + 8, hl);
    assert_non_null(h);
    cJSON *meta = cJSON_GetObjectItem(h, "__metadata__");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(meta, "format")), "pt");
    cJSON_Delete(h);
    assert_int_equal(sf.map.size, 8 + hl + 60 + 14 + 16 + 24 + 4);
    for (int i = 0; i < sf.n_tensors; i++) /* every tensor aligned to its element size */
        assert_int_equal(sf.tensors[i].offset % (size_t)(lop_st_dtype_bits(sf.tensors[i].dtype) / 8), 0);
    /* no temp file left behind */
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", f->path, (long)getpid());
    assert_false(lop_file_exists(tmp));
    /* detached mapping outlives close */
    lop_mapped m;
    const lop_st_tensor *t = lop_st_find(&sf, "a.f32");
    const void *p = t->data;
    lop_st_detach_map(&sf, &m);
    lop_st_close(&sf);
    assert_memory_equal(p, a32, sizeof a32);
    lop_unmap_file(&m);
}

static int count_shards(const fx *f, int of) {
    int n = 0;
    char name[64];
    for (int k = 1; k <= of; k++) {
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k, of);
        n += lop_file_exists(pjoin(f, name));
    }
    return n;
}

static void test_roundtrip_sharded(void **state) {
    fx *f = *state;
    lop_st_writer *w = make_writer();
    int ns = 0;
    /* 60-byte tensor alone, then b+c (30), d+e+f (28) with a 32-byte limit */
    assert_int_equal(lop_st_writer_write_dir(w, f->dir, 32, &ns), LOP_OK);
    lop_st_writer_free(w);
    assert_int_equal(ns, 3);
    assert_int_equal(count_shards(f, 3), 3);
    assert_false(lop_file_exists(pjoin(f, "model.safetensors")));
    char *txt;
    assert_int_equal(lop_read_file(pjoin(f, "model.safetensors.index.json"), &txt, NULL), LOP_OK);
    cJSON *idx = cJSON_Parse(txt);
    free(txt);
    assert_non_null(idx);
    cJSON *meta = cJSON_GetObjectItem(idx, "metadata"), *wm = cJSON_GetObjectItem(idx, "weight_map");
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(meta, "total_size")), 118);
    assert_int_equal(cJSON_GetArraySize(wm), 6);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(wm, "a.f32")), "model-00001-of-00003.safetensors");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(wm, "c.bf16")), "model-00002-of-00003.safetensors");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(wm, "f.empty")), "model-00003-of-00003.safetensors");
    /* weight_map sorted by name */
    const char *prev = "";
    for (cJSON *e = wm->child; e; e = e->next) {
        assert_true(strcmp(prev, e->string) < 0);
        prev = e->string;
    }
    /* every tensor is found in its shard with the right bytes; shards hold nothing else */
    lop_st_file sh[3];
    int total = 0;
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-00003.safetensors", k + 1);
        assert_int_equal(lop_st_open(&sh[k], pjoin(f, name)), LOP_OK);
        total += sh[k].n_tensors;
    }
    assert_int_equal(total, 6);
    for (cJSON *e = wm->child; e; e = e->next) {
        int k = cJSON_GetStringValue(e)[10] - '1';
        assert_non_null(lop_st_find(&sh[k], e->string));
    }
    /* merge view for check_all: a.f32 from shard 1 etc. */
    int64_t s2[2] = {3, 5}, sb[2] = {4, 2};
    check_tensor(&sh[0], "a.f32", LOP_ST_F32, 2, s2, a32, sizeof a32);
    check_tensor(&sh[1], "c.bf16", LOP_ST_BF16, 2, sb, abf, sizeof abf);
    for (int k = 0; k < 3; k++) lop_st_close(&sh[k]);
    cJSON_Delete(idx);
}

static void test_write_dir_single_and_forced_shards(void **state) {
    fx *f = *state;
    lop_st_writer *w = make_writer();
    int ns = 0;
    assert_int_equal(lop_st_writer_write_dir(w, f->dir, 0, &ns), LOP_OK);
    assert_int_equal(ns, 1);
    assert_false(lop_file_exists(pjoin(f, "model.safetensors.index.json")));
    lop_st_file sf;
    assert_int_equal(lop_st_open(&sf, pjoin(f, "model.safetensors")), LOP_OK);
    check_all(&sf);
    lop_st_close(&sf);
    /* write_sharded always writes an index, even for one shard */
    assert_int_equal(lop_st_writer_write_sharded(w, f->dir, 0, &ns), LOP_OK);
    assert_int_equal(ns, 1);
    assert_true(lop_file_exists(pjoin(f, "model.safetensors.index.json")));
    assert_int_equal(lop_st_open(&sf, pjoin(f, "model-00001-of-00001.safetensors")), LOP_OK);
    check_all(&sf);
    lop_st_close(&sf);
    lop_st_writer_free(w);
}

static void test_writer_rejects_bad_entries(void **state) {
    (void)state;
    lop_st_writer *w;
    assert_int_equal(lop_st_writer_new(&w), LOP_OK);
    float x[4] = {0};
    int64_t s[2] = {2, 2}, neg[2] = {2, -1};
    assert_int_equal(lop_st_writer_add(w, "x", LOP_ST_F32, 2, s, x), LOP_OK);
    assert_int_equal(lop_st_writer_add(w, "x", LOP_ST_F32, 2, s, x), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "'x'"));
    assert_int_equal(lop_st_writer_add(w, "y", LOP_ST_F32, 2, neg, x), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "'y'"));
    assert_int_equal(lop_st_writer_add(w, "z", LOP_ST_F32, 5, s, x), LOP_ERR_ARG);
    assert_int_equal(lop_st_writer_add(w, "n", LOP_ST_F32, 2, s, NULL), LOP_ERR_ARG);
    assert_int_equal(lop_st_writer_add(w, "__metadata__", LOP_ST_F32, 2, s, x), LOP_ERR_ARG);
    int64_t odd[1] = {3};
    assert_int_equal(lop_st_writer_add(w, "f4", LOP_ST_F4, 1, odd, x), LOP_ERR_ARG); /* 12 bits */
    assert_int_equal(lop_st_writer_count(w), 1);
    /* writing into a missing folder fails cleanly */
    assert_int_equal(lop_st_writer_write(w, "/nonexistent-dir-lop/x.safetensors"), LOP_ERR_IO);
    lop_st_writer_free(w);
}

/* ---- corrupt inputs ------------------------------------------------------------------------ */
static const unsigned char zeros[256];

static void test_truncated(void **state) {
    fx *f = *state;
    FILE *fp = fopen(f->path, "wb");
    fwrite("\x10\x00\x00", 1, 3, fp);
    fclose(fp);
    expect_fail(f->path, LOP_ERR_FORMAT, "truncated", NULL);
    /* a valid file cut short: the last tensor's data runs past the end */
    lop_st_writer *w = make_writer();
    assert_int_equal(lop_st_writer_write(w, f->path), LOP_OK);
    lop_st_writer_free(w);
    lop_mapped m;
    assert_int_equal(lop_map_file(f->path, &m), LOP_OK);
    size_t n = m.size;
    lop_unmap_file(&m);
    assert_int_equal(truncate(f->path, (off_t)(n - 2)), 0);
    expect_fail(f->path, LOP_ERR_FORMAT, "c.bf16", "out of range", NULL); /* last in the data */
    /* empty file */
    fp = fopen(f->path, "wb");
    fclose(fp);
    expect_fail(f->path, LOP_ERR_FORMAT, "truncated", NULL);
}

static void test_header_past_end(void **state) {
    fx *f = *state;
    write_raw(f->path, 1000000, "{}", NULL, 0);
    expect_fail(f->path, LOP_ERR_FORMAT, "header length", "past end of file", NULL);
    write_raw(f->path, (long long)0x7fffffffffffffffLL, "{}", NULL, 0);
    expect_fail(f->path, LOP_ERR_FORMAT, "past end of file", NULL);
    /* a huge header inside a (sparse) huge file is refused before parsing */
    write_raw(f->path, 150000000, "{}", NULL, 0);
    assert_int_equal(truncate(f->path, 150000016), 0);
    expect_fail(f->path, LOP_ERR_FORMAT, "too large", NULL);
}

static void test_header_not_json(void **state) {
    fx *f = *state;
    write_raw(f->path, -1, "{\"a\": {\"dtype\": ", NULL, 0);
    expect_fail(f->path, LOP_ERR_FORMAT, "not valid JSON", NULL);
    write_raw(f->path, -1, "[1, 2]", NULL, 0);
    expect_fail(f->path, LOP_ERR_FORMAT, "not a JSON object", NULL);
    write_raw(f->path, -1, "{} xx", NULL, 0);
    expect_fail(f->path, LOP_ERR_FORMAT, "trailing", NULL);
    write_raw(f->path, -1, "{\"w\": 3}", NULL, 0);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "not a JSON object", NULL);
    write_raw(f->path, -1, "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", zeros, 4);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "dtype", NULL);
    write_raw(f->path, -1, "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", zeros, 4);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "data_offsets", NULL);
    /* __metadata__ alone is fine, as is an empty header */
    write_raw(f->path, -1, "{\"__metadata__\": {\"format\": \"pt\"}}  ", NULL, 0);
    lop_st_file sf;
    assert_int_equal(lop_st_open(&sf, f->path), LOP_OK);
    assert_int_equal(sf.n_tensors, 0);
    assert_null(lop_st_find(&sf, "x"));
    lop_st_close(&sf);
}

static void test_overlap(void **state) {
    fx *f = *state;
    write_raw(f->path, -1,
              "{\"first\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
              " \"second\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}",
              zeros, 24);
    expect_fail(f->path, LOP_ERR_FORMAT, "overlap", "'first'", "'second'", NULL);
    /* identical ranges overlap too; empty tensors overlap nothing */
    write_raw(f->path, -1,
              "{\"b\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]},"
              " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
              zeros, 4);
    expect_fail(f->path, LOP_ERR_FORMAT, "overlap", "'a'", "'b'", NULL);
    write_raw(f->path, -1,
              "{\"b\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]},"
              " \"e\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [2, 2]}}",
              zeros, 4);
    lop_st_file sf;
    assert_int_equal(lop_st_open(&sf, f->path), LOP_OK);
    lop_st_close(&sf);
}

static void test_offsets_out_of_range(void **state) {
    fx *f = *state;
    write_raw(f->path, -1, "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", zeros, 12);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "out of range", NULL);
    write_raw(f->path, -1, "{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}", zeros, 12);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "out of range", NULL);
    write_raw(f->path, -1,
              "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [18446744073709551612, 0]}}", zeros, 4);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "data_offsets", NULL);
    write_raw(f->path, -1, "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, -4]}}", zeros, 4);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "data_offsets", NULL);
    write_raw(f->path, -1, "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", zeros, 8);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "data_offsets", NULL);
}

static void test_size_mismatch(void **state) {
    fx *f = *state;
    write_raw(f->path, -1, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 8]}}", zeros, 16);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "dtype/shape size mismatch", NULL);
    write_raw(f->path, -1, "{\"w\": {\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}", zeros, 16);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "dtype/shape size mismatch", NULL);
    /* numel x size overflows 64 bits */
    write_raw(f->path, -1,
              "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 0]}}",
              zeros, 0);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "dtype/shape size mismatch", NULL);
    write_raw(f->path, -1,
              "{\"w\": {\"dtype\": \"F32\", \"shape\": [1048576, 1048576, 1048576, 4096], \"data_offsets\": [0, 0]}}",
              zeros, 0);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "dtype/shape size mismatch", NULL);
    /* sub-byte dtypes must fill whole bytes */
    write_raw(f->path, -1, "{\"w\": {\"dtype\": \"F4\", \"shape\": [3], \"data_offsets\": [0, 2]}}", zeros, 2);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "dtype/shape size mismatch", NULL);
    write_raw(f->path, -1, "{\"w\": {\"dtype\": \"F4\", \"shape\": [4], \"data_offsets\": [0, 2]}}", zeros, 2);
    lop_st_file sf;
    assert_int_equal(lop_st_open(&sf, f->path), LOP_OK);
    assert_int_equal(lop_st_find(&sf, "w")->dtype, LOP_ST_F4);
    lop_st_close(&sf);
}

static void test_unknown_dtype(void **state) {
    fx *f = *state;
    write_raw(f->path, -1, "{\"wq\": {\"dtype\": \"Q4_K\", \"shape\": [4], \"data_offsets\": [0, 4]}}", zeros, 4);
    expect_fail(f->path, LOP_ERR_FORMAT, "'wq'", "unknown dtype", "Q4_K", NULL);
    write_raw(f->path, -1, "{\"wq\": {\"dtype\": 7, \"shape\": [4], \"data_offsets\": [0, 4]}}", zeros, 4);
    expect_fail(f->path, LOP_ERR_FORMAT, "'wq'", "dtype", NULL);
    /* recognised non-float dtypes read fine (the loader decides what it supports) */
    write_raw(f->path, -1,
              "{\"m\": {\"dtype\": \"BOOL\", \"shape\": [4], \"data_offsets\": [0, 4]},"
              " \"q\": {\"dtype\": \"F8_E4M3\", \"shape\": [2, 2], \"data_offsets\": [4, 8]}}",
              zeros, 8);
    lop_st_file sf;
    assert_int_equal(lop_st_open(&sf, f->path), LOP_OK);
    assert_int_equal(lop_st_find(&sf, "m")->dtype, LOP_ST_BOOL);
    assert_int_equal(lop_st_find(&sf, "q")->dtype, LOP_ST_F8_E4M3);
    lop_st_close(&sf);
}

static void test_bad_shape(void **state) {
    fx *f = *state;
    write_raw(f->path, -1, "{\"neg\": {\"dtype\": \"F32\", \"shape\": [-1, 2], \"data_offsets\": [0, 8]}}", zeros, 8);
    expect_fail(f->path, LOP_ERR_FORMAT, "'neg'", "shape[0]", NULL);
    write_raw(f->path, -1, "{\"frac\": {\"dtype\": \"F32\", \"shape\": [2, 2.5], \"data_offsets\": [0, 20]}}", zeros,
              20);
    expect_fail(f->path, LOP_ERR_FORMAT, "'frac'", "shape[1]", NULL);
    write_raw(f->path, -1, "{\"str\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}", zeros, 8);
    expect_fail(f->path, LOP_ERR_FORMAT, "'str'", "shape[0]", NULL);
    write_raw(f->path, -1, "{\"obj\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 16]}}", zeros, 16);
    expect_fail(f->path, LOP_ERR_FORMAT, "'obj'", "shape", NULL);
    write_raw(f->path, -1, "{\"d5\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1], \"data_offsets\": [0, 4]}}", zeros, 4);
    expect_fail(f->path, LOP_ERR_FORMAT, "'d5'", "dims", NULL);
}

static void test_duplicate_name(void **state) {
    fx *f = *state;
    write_raw(f->path, -1,
              "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
              " \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
              zeros, 8);
    expect_fail(f->path, LOP_ERR_FORMAT, "'w'", "twice", NULL);
}

/* Every truncation and many byte mutations of a valid file: must never crash (run under ASan). */
static void test_mutations_never_crash(void **state) {
    fx *f = *state;
    lop_st_writer *w = make_writer();
    assert_int_equal(lop_st_writer_write(w, f->path), LOP_OK);
    lop_st_writer_free(w);
    char *orig;
    size_t n;
    assert_int_equal(lop_read_file(f->path, &orig, &n), LOP_OK);
    char *mpath = pjoin(f, "mut.safetensors");
    int ok = 0, bad = 0;
    for (size_t len = 0; len < n; len++) {
        assert_int_equal(lop_write_file_atomic(mpath, orig, len), LOP_OK);
        lop_st_file sf;
        lop_status st = lop_st_open(&sf, mpath);
        if (st == LOP_OK) lop_st_close(&sf), ok++;
        else bad++;
    }
    assert_int_equal(ok, 0); /* any cut loses a tensor's bytes or the header */
    char *buf = malloc(n);
    uint64_t rng = 12345;
    static const char pool[] = "0123456789-.,:[]{}\" eE\\\x00\xff";
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, orig, n);
        for (int k = 0; k < 1 + it % 3; k++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t pos = (rng >> 33) % (n < 260 ? n : 260); /* mostly the header */
            buf[pos] = pool[(rng >> 20) % (sizeof pool - 1)];
        }
        assert_int_equal(lop_write_file_atomic(mpath, buf, n), LOP_OK);
        lop_st_file sf;
        lop_status st = lop_st_open(&sf, mpath);
        if (st == LOP_OK) {
            for (int i = 0; i < sf.n_tensors; i++) { /* every accepted range is inside the file */
                const lop_st_tensor *t = &sf.tensors[i];
                assert_true(t->offset + t->nbytes <= sf.map.size);
                if (t->nbytes) assert_ptr_equal(t->data, sf.map.data + t->offset);
            }
            lop_st_close(&sf);
            ok++;
        } else {
            assert_true(strlen(lop_last_error()) > 0);
            bad++;
        }
    }
    assert_true(bad > 0);
    free(buf);
    free(orig);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_single, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_sharded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_dir_single_and_forced_shards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_rejects_bad_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_past_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_not_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offsets_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_dtype, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mutations_never_crash, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
