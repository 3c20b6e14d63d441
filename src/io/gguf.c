/* GGUF reader: parses the header, metadata and tensor directory of a mapped file, and dequantises
 * tensor data to f32 with llama.cpp's exact block semantics.
 * Why this shape: a corrupt or hostile file must end in an error message, never a crash or a huge
 * allocation, so every read goes through one bounds-checked cursor and every count is checked
 * against the bytes that remain before anything is allocated for it. */
#include "io/gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "core/status.h"
#include "io/file.h"

#define MAX_NEST 8             /* arrays of arrays: deepest nesting accepted */
#define MAX_KEY_LEN 65535      /* GGUF keys are short; longer means corruption */
#define MAX_COUNT (1ull << 28) /* hard cap on any count (kv, tensors, array elements) */

/* ---- bounds-checked cursor ---------------------------------------------------------------- */
typedef struct cursor {
    const unsigned char *p;
    size_t size, pos; /* invariant: pos <= size */
    const char *path;
    char what[192]; /* "metadata key 'x'" / "tensor 'y'": named in every error */
} cursor;

static size_t remaining(const cursor *c) { return c->size - c->pos; }

static lop_status truncated(const cursor *c, const char *part) {
    return lop_fail(LOP_ERR_FORMAT, "%s: %s: %s truncated (at byte %zu of %zu)", c->path, c->what, part, c->pos,
                    c->size);
}

static lop_status take(cursor *c, size_t n, const unsigned char **out, const char *part) {
    if (n > remaining(c)) return truncated(c, part);
    *out = c->p + c->pos;
    c->pos += n;
    return LOP_OK;
}

static lop_status rd_u32(cursor *c, uint32_t *v, const char *part) {
    const unsigned char *b = NULL;
    LOP_TRY(take(c, 4, &b, part));
    memcpy(v, b, 4);
    return LOP_OK;
}

static lop_status rd_u64(cursor *c, uint64_t *v, const char *part) {
    const unsigned char *b = NULL;
    LOP_TRY(take(c, 8, &b, part));
    memcpy(v, b, 8);
    return LOP_OK;
}

/* A GGUF string: u64 length + bytes. */
static lop_status rd_str(cursor *c, lop_gguf_str *s, const char *part) {
    uint64_t len;
    LOP_TRY(rd_u64(c, &len, part));
    if (len > remaining(c))
        return lop_fail(LOP_ERR_FORMAT, "%s: %s: %s length %llu goes past the end of the file (%zu bytes left)",
                        c->path, c->what, part, (unsigned long long)len, remaining(c));
    s->ptr = (const char *)c->p + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return LOP_OK;
}

/* ---- type tables -------------------------------------------------------------------------- */
static size_t scalar_size(uint32_t t) {
    switch (t) {
    case LOP_GGUF_U8: case LOP_GGUF_I8: case LOP_GGUF_BOOL: return 1;
    case LOP_GGUF_U16: case LOP_GGUF_I16: return 2;
    case LOP_GGUF_U32: case LOP_GGUF_I32: case LOP_GGUF_F32: return 4;
    case LOP_GGUF_U64: case LOP_GGUF_I64: case LOP_GGUF_F64: return 8;
    }
    return 0;
}

const char *lop_gguf_type_name(lop_gguf_type t) {
    static const char *names[LOP_GGUF_N_TYPES] = {"u8",  "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                  "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < LOP_GGUF_N_TYPES ? names[t] : "?";
}

const char *lop_ggml_type_name(int t) {
    static const char *names[] = {"F32",  "F16",    "Q4_0",  "Q4_1",    "Q4_2", "Q4_3",  "Q5_0",  "Q5_1",
                                  "Q8_0", "Q8_1",   "Q2_K",  "Q3_K",    "Q4_K", "Q5_K",  "Q6_K",  "Q8_K",
                                  "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
                                  "I8",   "I16",    "I32",   "I64",     "F64",  "IQ1_M", "BF16",  "Q4_0_4_4",
                                  "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8",
                                  "IQ4_NL_8_8", "MXFP4", "NVFP4", "Q1_0"};
    return t >= 0 && t < (int)(sizeof names / sizeof names[0]) ? names[t] : "?";
}

static int ggml_supported(uint32_t t) {
    return t == LOP_GGML_F32 || t == LOP_GGML_F16 || t == LOP_GGML_BF16 || t == LOP_GGML_Q4_0 ||
           t == LOP_GGML_Q4_1 || t == LOP_GGML_Q8_0;
}

int lop_ggml_block_size(lop_ggml_type t) {
    return (t == LOP_GGML_Q4_0 || t == LOP_GGML_Q4_1 || t == LOP_GGML_Q8_0) ? 32 : 1;
}

size_t lop_ggml_block_bytes(lop_ggml_type t) {
    switch (t) {
    case LOP_GGML_F32: return 4;
    case LOP_GGML_F16: case LOP_GGML_BF16: return 2;
    case LOP_GGML_Q4_0: return 18;
    case LOP_GGML_Q4_1: return 20;
    case LOP_GGML_Q8_0: return 34;
    }
    return 0;
}

int lop_ggml_is_quantized(lop_ggml_type t) {
    return t == LOP_GGML_Q4_0 || t == LOP_GGML_Q4_1 || t == LOP_GGML_Q8_0;
}

/* ---- metadata values ---------------------------------------------------------------------- */
/* Skips (and validates) one value of type t. For a top-level array of strings, records the
 * offset of every element in kv->str_offs. */
static lop_status skip_value(cursor *c, uint32_t t, int depth, lop_gguf_kv *kv) {
    const unsigned char *b = NULL;
    size_t ss = scalar_size(t);
    if (ss) return take(c, ss, &b, "value");
    if (t == LOP_GGUF_STRING) {
        lop_gguf_str s;
        return rd_str(c, &s, "string");
    }
    if (t != LOP_GGUF_ARRAY)
        return lop_fail(LOP_ERR_FORMAT, "%s: %s: unknown value type %u", c->path, c->what, t);
    if (depth >= MAX_NEST)
        return lop_fail(LOP_ERR_FORMAT, "%s: %s: arrays nested deeper than %d", c->path, c->what, MAX_NEST);
    uint32_t et;
    uint64_t n;
    LOP_TRY(rd_u32(c, &et, "array element type"));
    LOP_TRY(rd_u64(c, &n, "array count"));
    if (et >= LOP_GGUF_N_TYPES)
        return lop_fail(LOP_ERR_FORMAT, "%s: %s: array of unknown element type %u", c->path, c->what, et);
    /* smallest possible element: scalar size, 8 (string length), 12 (nested array header) */
    size_t min_el = scalar_size(et) ? scalar_size(et) : (et == LOP_GGUF_STRING ? 8 : 12);
    if (n > MAX_COUNT || n > remaining(c) / min_el)
        return lop_fail(LOP_ERR_FORMAT, "%s: %s: array count %llu does not fit in the file (%zu bytes left)",
                        c->path, c->what, (unsigned long long)n, remaining(c));
    if (kv) {
        kv->arr_type = (lop_gguf_type)et;
        kv->count = n;
        kv->value = c->p + c->pos;
    }
    if (scalar_size(et)) return take(c, (size_t)n * min_el, &b, "array data");
    if (et == LOP_GGUF_STRING && kv && n) {
        kv->str_offs = malloc((size_t)n * sizeof *kv->str_offs);
        if (!kv->str_offs)
            return lop_fail(LOP_ERR_OOM, "%s: %s: out of memory for %llu strings", c->path, c->what,
                            (unsigned long long)n);
    }
    for (uint64_t i = 0; i < n; i++) {
        if (kv && kv->str_offs) kv->str_offs[i] = (uint64_t)(c->p + c->pos - kv->value);
        LOP_TRY(skip_value(c, et, depth + 1, NULL));
    }
    return LOP_OK;
}

static int key_cmp(const char *a, size_t al, const char *b, size_t bl) {
    int r = memcmp(a, b, al < bl ? al : bl);
    if (r) return r;
    return al < bl ? -1 : al > bl;
}

static int kv_sort_cmp(const void *a, const void *b) {
    const lop_gguf_kv *x = *(const lop_gguf_kv *const *)a, *y = *(const lop_gguf_kv *const *)b;
    return key_cmp(x->key.ptr, (size_t)x->key.len, y->key.ptr, (size_t)y->key.len);
}

static int tensor_sort_cmp(const void *a, const void *b) {
    const lop_gguf_tensor *x = *(const lop_gguf_tensor *const *)a, *y = *(const lop_gguf_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static lop_status parse_kv(lop_gguf *g, cursor *c) {
    for (int64_t i = 0; i < g->n_kv; i++) {
        lop_gguf_kv *kv = &g->kv[i];
        snprintf(c->what, sizeof c->what, "metadata entry #%lld", (long long)i);
        LOP_TRY(rd_str(c, &kv->key, "key"));
        if (kv->key.len > MAX_KEY_LEN)
            return lop_fail(LOP_ERR_FORMAT, "%s: %s: key of %llu bytes is implausibly long", c->path, c->what,
                            (unsigned long long)kv->key.len);
        snprintf(c->what, sizeof c->what, "metadata key '%.*s'", (int)(kv->key.len > 120 ? 120 : kv->key.len),
                 kv->key.ptr);
        uint32_t t;
        LOP_TRY(rd_u32(c, &t, "value type"));
        if (t >= LOP_GGUF_N_TYPES)
            return lop_fail(LOP_ERR_FORMAT, "%s: %s: unknown value type %u", c->path, c->what, t);
        kv->type = (lop_gguf_type)t;
        kv->count = 1;
        kv->value = c->p + c->pos;
        LOP_TRY(skip_value(c, t, 0, kv));
        if (t == LOP_GGUF_STRING) kv->value += 8; /* value points at the bytes (length just before) */
    }
    /* index by key; duplicate keys are an error (as in llama.cpp) */
    if (g->n_kv) {
        g->kv_sorted_ = malloc((size_t)g->n_kv * sizeof *g->kv_sorted_);
        if (!g->kv_sorted_) return lop_fail(LOP_ERR_OOM, "%s: out of memory (metadata index)", c->path);
        for (int64_t i = 0; i < g->n_kv; i++) g->kv_sorted_[i] = &g->kv[i];
        qsort(g->kv_sorted_, (size_t)g->n_kv, sizeof *g->kv_sorted_, kv_sort_cmp);
        for (int64_t i = 1; i < g->n_kv; i++)
            if (kv_sort_cmp(&g->kv_sorted_[i - 1], &g->kv_sorted_[i]) == 0)
                return lop_fail(LOP_ERR_FORMAT, "%s: duplicate metadata key '%.*s'", c->path,
                                (int)(g->kv_sorted_[i]->key.len > 120 ? 120 : g->kv_sorted_[i]->key.len),
                                g->kv_sorted_[i]->key.ptr);
    }
    return LOP_OK;
}

/* ---- tensor directory --------------------------------------------------------------------- */
static lop_status parse_tensor_infos(lop_gguf *g, cursor *c) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        lop_gguf_tensor *t = &g->tensors[i];
        snprintf(c->what, sizeof c->what, "tensor info #%lld", (long long)i);
        lop_gguf_str name;
        LOP_TRY(rd_str(c, &name, "name"));
        if (name.len >= LOP_GGUF_MAX_NAME)
            return lop_fail(LOP_ERR_FORMAT, "%s: %s: name '%.*s...' is %llu bytes (max %d)", c->path, c->what, 40,
                            name.ptr, (unsigned long long)name.len, LOP_GGUF_MAX_NAME - 1);
        if (memchr(name.ptr, 0, (size_t)name.len))
            return lop_fail(LOP_ERR_FORMAT, "%s: %s: name contains a NUL byte", c->path, c->what);
        memcpy(t->name, name.ptr, (size_t)name.len);
        t->name[name.len] = 0;
        snprintf(c->what, sizeof c->what, "tensor '%s'", t->name);
        uint32_t nd;
        LOP_TRY(rd_u32(c, &nd, "n_dims"));
        if (nd < 1 || nd > LOP_GGUF_MAX_DIMS)
            return lop_fail(LOP_ERR_FORMAT, "%s: %s: %u dimensions (expected 1..%d)", c->path, c->what, nd,
                            LOP_GGUF_MAX_DIMS);
        t->n_dims = (int)nd;
        int64_t numel = 1;
        for (int d = 0; d < LOP_GGUF_MAX_DIMS; d++) {
            uint64_t ne = 1;
            if (d < (int)nd) LOP_TRY(rd_u64(c, &ne, "dimension"));
            if (ne > (uint64_t)INT64_MAX || (ne && (uint64_t)numel > (uint64_t)INT64_MAX / ne))
                return lop_fail(LOP_ERR_FORMAT, "%s: %s: dimension %d (%llu) overflows the element count", c->path,
                                c->what, d, (unsigned long long)ne);
            t->ne[d] = (int64_t)ne;
            numel *= (int64_t)ne;
        }
        t->numel = numel;
        uint32_t type;
        LOP_TRY(rd_u32(c, &type, "type"));
        if (!ggml_supported(type))
            return lop_fail(LOP_ERR_UNSUPPORTED,
                            "%s: %s has ggml type %u (%s); lop reads F32, F16, BF16, Q4_0, Q4_1 and Q8_0", c->path,
                            c->what, type, lop_ggml_type_name((int)type));
        t->type = (lop_ggml_type)type;
        int bs = lop_ggml_block_size(t->type);
        if (t->ne[0] % bs != 0)
            return lop_fail(LOP_ERR_FORMAT, "%s: %s: row length %lld is not a multiple of the %s block size %d",
                            c->path, c->what, (long long)t->ne[0], lop_ggml_type_name((int)type), bs);
        uint64_t nb = (uint64_t)(numel / bs); /* blocks */
        if (nb > (uint64_t)SIZE_MAX / lop_ggml_block_bytes(t->type))
            return lop_fail(LOP_ERR_FORMAT, "%s: %s: byte size overflows", c->path, c->what);
        t->nbytes = (size_t)nb * lop_ggml_block_bytes(t->type);
        LOP_TRY(rd_u64(c, &t->offset, "offset"));
    }
    if (g->n_tensors) {
        g->tensors_sorted_ = malloc((size_t)g->n_tensors * sizeof *g->tensors_sorted_);
        if (!g->tensors_sorted_) return lop_fail(LOP_ERR_OOM, "%s: out of memory (tensor index)", c->path);
        for (int64_t i = 0; i < g->n_tensors; i++) g->tensors_sorted_[i] = &g->tensors[i];
        qsort(g->tensors_sorted_, (size_t)g->n_tensors, sizeof *g->tensors_sorted_, tensor_sort_cmp);
        for (int64_t i = 1; i < g->n_tensors; i++)
            if (strcmp(g->tensors_sorted_[i - 1]->name, g->tensors_sorted_[i]->name) == 0)
                return lop_fail(LOP_ERR_FORMAT, "%s: duplicate tensor '%s'", c->path, g->tensors_sorted_[i]->name);
    }
    return LOP_OK;
}

static lop_status place_tensors(lop_gguf *g) {
    uint64_t a = g->alignment;
    size_t pad = (size_t)((a - g->data_offset % a) % a);
    if (pad > g->size - g->data_offset) {
        if (g->n_tensors)
            return lop_fail(LOP_ERR_FORMAT, "%s: tensor data section starts past the end of the file", g->path);
        g->data_offset = g->size;
        return LOP_OK;
    }
    g->data_offset += pad;
    size_t avail = g->size - g->data_offset;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        lop_gguf_tensor *t = &g->tensors[i];
        if (t->offset % a != 0)
            return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s': data offset %llu is not a multiple of the alignment %llu",
                            g->path, t->name, (unsigned long long)t->offset, (unsigned long long)a);
        if (t->offset > avail || t->nbytes > avail - (size_t)t->offset)
            return lop_fail(LOP_ERR_FORMAT,
                            "%s: tensor '%s': data (offset %llu, %zu bytes) goes past the end of the file "
                            "(%zu bytes of tensor data)",
                            g->path, t->name, (unsigned long long)t->offset, t->nbytes, avail);
        t->data = g->base + g->data_offset + t->offset;
    }
    return LOP_OK;
}

/* ---- open / close ------------------------------------------------------------------------- */
static lop_status parse(lop_gguf *g) {
    cursor c = {.p = g->base, .size = g->size, .pos = 0, .path = g->path};
    snprintf(c.what, sizeof c.what, "header");
    const unsigned char *magic;
    if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0)
        return lop_fail(LOP_ERR_FORMAT, "%s: not a GGUF file (bad magic)", g->path);
    LOP_TRY(take(&c, 4, &magic, "magic"));
    LOP_TRY(rd_u32(&c, &g->version, "version"));
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0 && g->version)
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: GGUF version %u looks byte-swapped (big-endian file?); "
                            "lop reads little-endian GGUF versions 2 and 3", g->path, g->version);
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (lop reads versions 2 and 3)",
                        g->path, g->version);
    }
    uint64_t nt, nkv;
    LOP_TRY(rd_u64(&c, &nt, "tensor count"));
    LOP_TRY(rd_u64(&c, &nkv, "metadata count"));
    /* a tensor info takes at least 32 bytes, a kv at least 13 */
    if (nt > MAX_COUNT || nt > remaining(&c) / 32)
        return lop_fail(LOP_ERR_FORMAT, "%s: header: tensor count %llu does not fit in the file", g->path,
                        (unsigned long long)nt);
    if (nkv > MAX_COUNT || nkv > remaining(&c) / 13)
        return lop_fail(LOP_ERR_FORMAT, "%s: header: metadata count %llu does not fit in the file", g->path,
                        (unsigned long long)nkv);
    g->n_tensors = (int64_t)nt;
    g->n_kv = (int64_t)nkv;
    g->kv = calloc(nkv ? (size_t)nkv : 1, sizeof *g->kv);
    g->tensors = calloc(nt ? (size_t)nt : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return lop_fail(LOP_ERR_OOM, "%s: out of memory (file directory)", g->path);
    LOP_TRY(parse_kv(g, &c));
    g->alignment = 32;
    if (lop_gguf_find_kv(g, "general.alignment")) {
        int64_t a;
        LOP_TRY(lop_gguf_get_int(g, "general.alignment", &a));
        if (a <= 0 || (a & (a - 1)) || a > (1 << 30))
            return lop_fail(LOP_ERR_FORMAT, "%s: metadata key 'general.alignment' = %lld is not a power of two",
                            g->path, (long long)a);
        g->alignment = (uint64_t)a;
    }
    LOP_TRY(parse_tensor_infos(g, &c));
    g->data_offset = c.pos;
    return place_tensors(g);
}

static lop_status open_common(const char *path, const void *data, size_t size, int owns, lop_gguf **out) {
    *out = NULL;
    lop_gguf *g = calloc(1, sizeof *g);
    if (!g) return lop_fail(LOP_ERR_OOM, "%s: out of memory", path);
    g->path = strdup(path);
    if (!g->path) {
        free(g);
        return lop_fail(LOP_ERR_OOM, "%s: out of memory", path);
    }
    g->base = data;
    g->size = data ? size : 0;
    g->owns_map = owns;
    lop_status st = parse(g);
    if (st != LOP_OK) {
        lop_gguf_close(g);
        return st;
    }
    *out = g;
    return LOP_OK;
}

lop_status lop_gguf_parse(const char *path, const void *data, size_t size, lop_gguf **out) {
    return open_common(path, data, size, 0, out);
}

lop_status lop_gguf_open(const char *path, lop_gguf **out) {
    *out = NULL;
    lop_mapped mp;
    LOP_TRY(lop_map_file(path, &mp));
    lop_status st = open_common(path, mp.data, mp.size, 1, out);
    if (st != LOP_OK) lop_unmap_file(&mp);
    return st;
}

void lop_gguf_close(lop_gguf *g) {
    if (!g) return;
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].str_offs);
    free(g->kv);
    free(g->tensors);
    free(g->kv_sorted_);
    free(g->tensors_sorted_);
    if (g->owns_map && g->base) {
        lop_mapped mp = {g->base, g->size};
        lop_unmap_file(&mp);
    }
    free(g->path);
    free(g);
}

/* ---- metadata lookup ---------------------------------------------------------------------- */
const lop_gguf_kv *lop_gguf_find_kv(const lop_gguf *g, const char *key) {
    size_t kl = strlen(key);
    int64_t lo = 0, hi = g->kv_sorted_ ? g->n_kv : 0;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const lop_gguf_kv *kv = g->kv_sorted_[mid];
        int r = key_cmp(kv->key.ptr, (size_t)kv->key.len, key, kl);
        if (r == 0) return kv;
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static lop_status find_typed(const lop_gguf *g, const char *key, const lop_gguf_kv **kv) {
    *kv = lop_gguf_find_kv(g, key);
    if (!*kv) return lop_fail(LOP_ERR_FORMAT, "%s: missing metadata key '%s'", g->path, key);
    return LOP_OK;
}

static lop_status wrong_type(const lop_gguf *g, const char *key, const lop_gguf_kv *kv, const char *expected) {
    if (kv->type == LOP_GGUF_ARRAY)
        return lop_fail(LOP_ERR_FORMAT, "%s: metadata key '%s' is an array of %s, expected %s", g->path, key,
                        lop_gguf_type_name(kv->arr_type), expected);
    return lop_fail(LOP_ERR_FORMAT, "%s: metadata key '%s' has type %s, expected %s", g->path, key,
                    lop_gguf_type_name(kv->type), expected);
}

/* Reads one integer of type t at p; 0 if t is not integral. */
static int read_int(uint32_t t, const unsigned char *p, int64_t *out, int *overflow) {
    *overflow = 0;
    switch (t) {
    case LOP_GGUF_U8: case LOP_GGUF_BOOL: *out = p[0]; return 1;
    case LOP_GGUF_I8: { int8_t v; memcpy(&v, p, 1); *out = v; return 1; }
    case LOP_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 1; }
    case LOP_GGUF_I16: { int16_t v; memcpy(&v, p, 2); *out = v; return 1; }
    case LOP_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 1; }
    case LOP_GGUF_I32: { int32_t v; memcpy(&v, p, 4); *out = v; return 1; }
    case LOP_GGUF_I64: { int64_t v; memcpy(&v, p, 8); *out = v; return 1; }
    case LOP_GGUF_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) *overflow = 1;
        *out = (int64_t)(v & (uint64_t)INT64_MAX);
        return 1;
    }
    }
    return 0;
}

static int read_float(uint32_t t, const unsigned char *p, double *out) {
    if (t == LOP_GGUF_F32) {
        float v;
        memcpy(&v, p, 4);
        *out = v;
        return 1;
    }
    if (t == LOP_GGUF_F64) {
        memcpy(out, p, 8);
        return 1;
    }
    return 0;
}

lop_status lop_gguf_get_int(const lop_gguf *g, const char *key, int64_t *out) {
    const lop_gguf_kv *kv;
    LOP_TRY(find_typed(g, key, &kv));
    int ovf;
    if (kv->type == LOP_GGUF_BOOL || !read_int(kv->type, kv->value, out, &ovf))
        return wrong_type(g, key, kv, "an integer");
    if (ovf) return lop_fail(LOP_ERR_FORMAT, "%s: metadata key '%s': value does not fit in int64", g->path, key);
    return LOP_OK;
}

lop_status lop_gguf_get_float(const lop_gguf *g, const char *key, double *out) {
    const lop_gguf_kv *kv;
    LOP_TRY(find_typed(g, key, &kv));
    if (!read_float(kv->type, kv->value, out)) return wrong_type(g, key, kv, "f32 or f64");
    return LOP_OK;
}

lop_status lop_gguf_get_bool(const lop_gguf *g, const char *key, int *out) {
    const lop_gguf_kv *kv;
    LOP_TRY(find_typed(g, key, &kv));
    if (kv->type != LOP_GGUF_BOOL) return wrong_type(g, key, kv, "bool");
    *out = kv->value[0] != 0;
    return LOP_OK;
}

lop_status lop_gguf_get_str(const lop_gguf *g, const char *key, const char **s, size_t *len) {
    const lop_gguf_kv *kv;
    LOP_TRY(find_typed(g, key, &kv));
    if (kv->type != LOP_GGUF_STRING) return wrong_type(g, key, kv, "string");
    uint64_t l;
    memcpy(&l, kv->value - 8, 8);
    *s = (const char *)kv->value;
    *len = (size_t)l;
    return LOP_OK;
}

lop_status lop_gguf_get_arr(const lop_gguf *g, const char *key, int elem_type, const lop_gguf_kv **out) {
    const lop_gguf_kv *kv;
    LOP_TRY(find_typed(g, key, &kv));
    char want[48];
    if (elem_type < 0) snprintf(want, sizeof want, "an array");
    else snprintf(want, sizeof want, "an array of %s", lop_gguf_type_name((lop_gguf_type)elem_type));
    if (kv->type != LOP_GGUF_ARRAY || (elem_type >= 0 && kv->arr_type != (lop_gguf_type)elem_type))
        return wrong_type(g, key, kv, want);
    *out = kv;
    return LOP_OK;
}

lop_status lop_gguf_get_arr_data(const lop_gguf *g, const char *key, lop_gguf_type elem_type, const void **data,
                                 uint64_t *n) {
    const lop_gguf_kv *kv;
    if (!scalar_size(elem_type))
        return lop_fail(LOP_ERR_ARG, "%s: metadata key '%s': %s arrays have no flat data", g->path, key,
                        lop_gguf_type_name(elem_type));
    LOP_TRY(lop_gguf_get_arr(g, key, elem_type, &kv));
    *data = kv->value;
    *n = kv->count;
    return LOP_OK;
}

int lop_gguf_arr_str(const lop_gguf_kv *kv, uint64_t i, const char **s, size_t *len) {
    if (kv->type != LOP_GGUF_ARRAY || kv->arr_type != LOP_GGUF_STRING || i >= kv->count || !kv->str_offs) return 0;
    const unsigned char *p = kv->value + kv->str_offs[i];
    uint64_t l;
    memcpy(&l, p, 8);
    *s = (const char *)p + 8;
    *len = (size_t)l;
    return 1;
}

int lop_gguf_arr_int(const lop_gguf_kv *kv, uint64_t i, int64_t *out) {
    if (kv->type != LOP_GGUF_ARRAY || i >= kv->count) return 0;
    size_t ss = scalar_size(kv->arr_type);
    int ovf;
    if (!ss || !read_int(kv->arr_type, kv->value + i * ss, out, &ovf)) return 0;
    return !ovf;
}

int lop_gguf_arr_float(const lop_gguf_kv *kv, uint64_t i, double *out) {
    if (kv->type != LOP_GGUF_ARRAY || i >= kv->count) return 0;
    size_t ss = scalar_size(kv->arr_type);
    return ss && read_float(kv->arr_type, kv->value + i * ss, out);
}

/* ---- tensors ------------------------------------------------------------------------------ */
const lop_gguf_tensor *lop_gguf_find_tensor(const lop_gguf *g, const char *name) {
    int64_t lo = 0, hi = g->tensors_sorted_ ? g->n_tensors : 0;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = strcmp(g->tensors_sorted_[mid]->name, name);
        if (r == 0) return g->tensors_sorted_[mid];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static inline float rd_f16(const unsigned char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return lop_f16_to_f32(h);
}

/* Block layouts as in ggml-common.h (QK = 32):
 *   Q4_0 {f16 d; u8 qs[16]}        x[j] = ((qs[j] & 15) - 8) * d,  x[j+16] = ((qs[j] >> 4) - 8) * d
 *   Q4_1 {f16 d; f16 m; u8 qs[16]} x[j] = (qs[j] & 15) * d + m,    x[j+16] = (qs[j] >> 4) * d + m
 *   Q8_0 {f16 d; i8 qs[32]}        x[j] = qs[j] * d */
void lop_ggml_dequantize(lop_ggml_type t, const void *src, float *dst, int64_t n) {
    const unsigned char *s = src;
    switch (t) {
    case LOP_GGML_F32:
        memcpy(dst, s, (size_t)n * 4);
        break;
    case LOP_GGML_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = rd_f16(s + 2 * i);
        break;
    case LOP_GGML_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t b;
            memcpy(&b, s + 2 * i, 2);
            dst[i] = lop_bf16_to_f32(b);
        }
        break;
    case LOP_GGML_Q4_0:
        for (int64_t b = 0; b < n / 32; b++, s += 18, dst += 32) {
            float d = rd_f16(s);
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)((int)(s[2 + j] & 15) - 8) * d;
                dst[j + 16] = (float)((int)(s[2 + j] >> 4) - 8) * d;
            }
        }
        break;
    case LOP_GGML_Q4_1:
        for (int64_t b = 0; b < n / 32; b++, s += 20, dst += 32) {
            float d = rd_f16(s), m = rd_f16(s + 2);
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)(s[4 + j] & 15) * d + m;
                dst[j + 16] = (float)(s[4 + j] >> 4) * d + m;
            }
        }
        break;
    case LOP_GGML_Q8_0:
        for (int64_t b = 0; b < n / 32; b++, s += 34, dst += 32) {
            float d = rd_f16(s);
            for (int j = 0; j < 32; j++) dst[j] = (float)(int8_t)s[2 + j] * d;
        }
        break;
    }
}

lop_status lop_gguf_dequantize(const lop_gguf *g, const lop_gguf_tensor *t, float *dst) {
    if (!t->data && t->numel) return lop_fail(LOP_ERR_ARG, "%s: tensor '%s' has no data", g->path, t->name);
    lop_ggml_dequantize(t->type, t->data, dst, t->numel); /* blocks never straddle rows (ne[0] % block == 0) */
    return LOP_OK;
}
