/* safetensors reader and writer; see safetensors.h. The reader trusts nothing in the file: every
 * number from the header is range-checked with overflow-safe arithmetic before it becomes a pointer. */
#include "io/safetensors.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/file.h"

/* ---- dtypes ------------------------------------------------------------------------------- */
static const struct {
    const char *name;
    int bits;
} DT[LOP_ST_N_DTYPES] = {
    [LOP_ST_F32] = {"F32", 32},         [LOP_ST_F16] = {"F16", 16},         [LOP_ST_BF16] = {"BF16", 16},
    [LOP_ST_F64] = {"F64", 64},         [LOP_ST_I64] = {"I64", 64},         [LOP_ST_U64] = {"U64", 64},
    [LOP_ST_I32] = {"I32", 32},         [LOP_ST_U32] = {"U32", 32},         [LOP_ST_I16] = {"I16", 16},
    [LOP_ST_U16] = {"U16", 16},         [LOP_ST_I8] = {"I8", 8},            [LOP_ST_U8] = {"U8", 8},
    [LOP_ST_BOOL] = {"BOOL", 8},        [LOP_ST_F8_E4M3] = {"F8_E4M3", 8}, [LOP_ST_F8_E5M2] = {"F8_E5M2", 8},
    [LOP_ST_F8_E8M0] = {"F8_E8M0", 8}, [LOP_ST_F6_E2M3] = {"F6_E2M3", 6}, [LOP_ST_F6_E3M2] = {"F6_E3M2", 6},
    [LOP_ST_F4] = {"F4", 4},            [LOP_ST_C64] = {"C64", 64},
};

const char *lop_st_dtype_name(lop_st_dtype t) {
    return (unsigned)t < LOP_ST_N_DTYPES ? DT[t].name : "?";
}

int lop_st_dtype_bits(lop_st_dtype t) { return (unsigned)t < LOP_ST_N_DTYPES ? DT[t].bits : 0; }

int lop_st_dtype_parse(const char *s, lop_st_dtype *out) {
    for (int i = 0; i < LOP_ST_N_DTYPES; i++)
        if (strcmp(s, DT[i].name) == 0) {
            *out = (lop_st_dtype)i;
            return 1;
        }
    return 0;
}

int lop_st_to_lop_dtype(lop_st_dtype t, lop_dtype *out) {
    switch (t) {
    case LOP_ST_F32: *out = LOP_F32; return 1;
    case LOP_ST_F16: *out = LOP_F16; return 1;
    case LOP_ST_BF16: *out = LOP_BF16; return 1;
    default: return 0;
    }
}

lop_st_dtype lop_st_from_lop_dtype(lop_dtype t) {
    switch (t) {
    case LOP_F32: return LOP_ST_F32;
    case LOP_F16: return LOP_ST_F16;
    case LOP_BF16: return LOP_ST_BF16;
    }
    return LOP_ST_F32;
}

/* numel x bits / 8 with overflow and whole-byte checks; returns 0 on failure. */
static int data_bytes(const int64_t *shape, int ndim, int bits, uint64_t *numel, uint64_t *bytes) {
    uint64_t n = 1;
    for (int d = 0; d < ndim; d++)
        if (__builtin_mul_overflow(n, (uint64_t)shape[d], &n)) return 0;
    uint64_t b;
    if (__builtin_mul_overflow(n, (uint64_t)bits, &b) || b % 8 != 0) return 0;
    *numel = n;
    *bytes = b / 8;
    return 1;
}

/* ---- reader ------------------------------------------------------------------------------- */
/* A JSON number that is an integer in [0, 2^53]. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0)) return 0; /* also rejects NaN */
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return 0;
    *out = u;
    return 1;
}

static int is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const lop_st_tensor *)a)->name, ((const lop_st_tensor *)b)->name);
}

static int cmp_offset_idx(const void *a, const void *b, void *ctx) {
    const lop_st_tensor *t = ctx;
    const lop_st_tensor *x = &t[*(const int *)a], *y = &t[*(const int *)b];
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Parses one header entry into *t (name already set). dsize = size of the data section. */
static lop_status parse_entry(const char *path, const cJSON *e, size_t data_start, size_t dsize, lop_st_tensor *t) {
    const char *name = t->name;
    if (!cJSON_IsObject(e)) return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s': header entry is not a JSON object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s': 'dtype' missing or not a string", path, name);
    if (!lop_st_dtype_parse(dt->valuestring, &t->dtype))
        return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name, dt->valuestring);
    if (!cJSON_IsArray(sh)) return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s': 'shape' missing or not an array", path, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > LOP_ST_MAX_DIMS)
        return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s': shape has %d dims (at most %d supported)", path, name, nd,
                        LOP_ST_MAX_DIMS);
    t->ndim = nd;
    int d = 0;
    for (const cJSON *v = sh->child; v; v = v->next, d++) {
        uint64_t u;
        if (!json_uint(v, &u) || u > (uint64_t)INT64_MAX)
            return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, d);
        t->shape[d] = (int64_t)u;
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s': 'data_offsets' missing or not [begin, end]", path, name);
    uint64_t begin, end;
    if (!json_uint(off->child, &begin) || !json_uint(off->child->next, &end))
        return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s': data_offsets are not non-negative integers", path, name);
    if (begin > end || end > dsize)
        return lop_fail(LOP_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] out of range (data section is %zu bytes)", path,
                        name, (unsigned long long)begin, (unsigned long long)end, dsize);
    uint64_t numel = 0, bytes = 0;
    if (!data_bytes(t->shape, nd, DT[t->dtype].bits, &numel, &bytes))
        return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s': dtype/shape size mismatch (%s x shape overflows or is not "
                        "whole bytes)", path, name, DT[t->dtype].name);
    if (bytes != end - begin)
        return lop_fail(LOP_ERR_FORMAT,
                        "%s: tensor '%s': dtype/shape size mismatch (%s with %llu elements vs data_offsets "
                        "[%llu, %llu] = %llu bytes)",
                        path, name, DT[t->dtype].name, (unsigned long long)numel, (unsigned long long)begin,
                        (unsigned long long)end, (unsigned long long)(end - begin));
    t->numel = (int64_t)numel;
    t->offset = data_start + (size_t)begin; /* begin <= dsize, so no overflow */
    t->nbytes = (size_t)bytes;
    return LOP_OK;
}

static lop_status parse_header(lop_st_file *f) {
    const char *path = f->path;
    size_t size = f->map.size;
    if (size < 8)
        return lop_fail(LOP_ERR_FORMAT, "%s: truncated file (%zu bytes; need at least the 8-byte header length)",
                        path, size);
    const unsigned char *p = f->map.data;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > size - 8)
        return lop_fail(LOP_ERR_FORMAT, "%s: header length %llu past end of file (file is %zu bytes)", path,
                        (unsigned long long)hlen, size);
    if (hlen > 100000000) /* the reference implementation's limit; bounds parser memory */
        return lop_fail(LOP_ERR_FORMAT, "%s: header length %llu too large (limit 100000000)", path,
                        (unsigned long long)hlen);
    const char *h = (const char *)p + 8, *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= h && end <= h + hlen ? (size_t)(end - h) : 0;
        return lop_fail(LOP_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu of the header)", path, at);
    }
    lop_status st = LOP_OK;
    for (const char *q = end; q < h + hlen; q++)
        if (!is_json_space(*q)) {
            st = lop_fail(LOP_ERR_FORMAT, "%s: header is not valid JSON (trailing data at byte %zu of the header)",
                          path, (size_t)(q - h));
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        st = lop_fail(LOP_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }
    size_t n = 0, name_bytes = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        n++;
        name_bytes += strlen(e->string) + 1;
    }
    if (n > (size_t)INT32_MAX) {
        st = lop_fail(LOP_ERR_FORMAT, "%s: too many tensors", path);
        goto done;
    }
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    f->names = malloc(name_bytes ? name_bytes : 1);
    int *order = malloc((n ? n : 1) * sizeof *order);
    if (!f->tensors || !f->names || !order) {
        free(order);
        st = lop_fail(LOP_ERR_OOM, "%s: out of memory reading the header", path);
        goto done;
    }
    size_t data_start = 8 + (size_t)hlen, dsize = size - data_start;
    char *np = f->names;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        lop_st_tensor *t = &f->tensors[f->n_tensors];
        size_t l = strlen(e->string) + 1;
        memcpy(np, e->string, l);
        t->name = np;
        np += l;
        f->n_tensors++;
        st = parse_entry(path, e, data_start, dsize, t);
        if (st != LOP_OK) {
            free(order);
            goto done;
        }
    }
    /* overlaps: sort by begin; empty tensors overlap nothing */
    for (int i = 0; i < f->n_tensors; i++) order[i] = i;
    qsort_r(order, (size_t)f->n_tensors, sizeof *order, cmp_offset_idx, f->tensors);
    const lop_st_tensor *prev = NULL;
    for (int i = 0; i < f->n_tensors; i++) {
        const lop_st_tensor *t = &f->tensors[order[i]];
        if (t->nbytes == 0) continue;
        if (prev && prev->offset + prev->nbytes > t->offset) {
            st = lop_fail(LOP_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap (data_offsets)", path, prev->name, t->name);
            free(order);
            goto done;
        }
        prev = t;
    }
    free(order);
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_name);
    for (int i = 1; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
            st = lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", path, f->tensors[i].name);
            goto done;
        }
    for (int i = 0; i < f->n_tensors; i++) {
        lop_st_tensor *t = &f->tensors[i];
        t->data = t->nbytes ? (const void *)(p + t->offset) : NULL;
    }
done:
    cJSON_Delete(root);
    return st;
}

lop_status lop_st_open(lop_st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return lop_fail(LOP_ERR_OOM, "%s: out of memory", path);
    lop_status st = lop_map_file(path, &f->map);
    if (st == LOP_OK) st = parse_header(f);
    if (st != LOP_OK) lop_st_close(f);
    return st;
}

void lop_st_close(lop_st_file *f) {
    lop_unmap_file(&f->map);
    free(f->tensors);
    free(f->names);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const lop_st_tensor *lop_st_find(const lop_st_file *f, const char *name) {
    if (!f->n_tensors) return NULL;
    lop_st_tensor key = {.name = name};
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_name);
}

void lop_st_detach_map(lop_st_file *f, lop_mapped *out) {
    *out = f->map;
    f->map.data = NULL;
    f->map.size = 0;
}

/* ---- writer ------------------------------------------------------------------------------- */
typedef struct wentry {
    char *name;
    lop_st_dtype dtype;
    int ndim;
    int64_t shape[LOP_ST_MAX_DIMS];
    const void *data;
    uint64_t numel, nbytes;
} wentry;

struct lop_st_writer {
    wentry *e;
    int n, cap;
    uint64_t total, total_numel;
};

lop_status lop_st_writer_new(lop_st_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? LOP_OK : lop_fail(LOP_ERR_OOM, "out of memory (safetensors writer)");
}

void lop_st_writer_free(lop_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    free(w);
}

int lop_st_writer_count(const lop_st_writer *w) { return w->n; }
uint64_t lop_st_writer_total_bytes(const lop_st_writer *w) { return w->total; }

lop_status lop_st_writer_add(lop_st_writer *w, const char *name, lop_st_dtype dtype, int ndim,
                             const int64_t *shape, const void *data) {
    if (!name || !*name || strcmp(name, "__metadata__") == 0)
        return lop_fail(LOP_ERR_ARG, "safetensors writer: bad tensor name '%s'", name ? name : "(null)");
    if ((unsigned)dtype >= LOP_ST_N_DTYPES)
        return lop_fail(LOP_ERR_ARG, "safetensors writer: tensor '%s': bad dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > LOP_ST_MAX_DIMS)
        return lop_fail(LOP_ERR_ARG, "safetensors writer: tensor '%s': %d dims (0..%d allowed)", name, ndim,
                        LOP_ST_MAX_DIMS);
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0) return lop_fail(LOP_ERR_ARG, "safetensors writer: tensor '%s': negative shape[%d]", name, d);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return lop_fail(LOP_ERR_ARG, "safetensors writer: tensor '%s' added twice", name);
    wentry e = {.dtype = dtype, .ndim = ndim, .data = data};
    for (int d = 0; d < ndim; d++) e.shape[d] = shape[d];
    if (!data_bytes(e.shape, ndim, DT[dtype].bits, &e.numel, &e.nbytes) ||
        __builtin_add_overflow(w->total, e.nbytes, &w->total))
        return lop_fail(LOP_ERR_ARG, "safetensors writer: tensor '%s': size overflows or is not whole bytes", name);
    if (e.nbytes && !data)
        return lop_fail(LOP_ERR_ARG, "safetensors writer: tensor '%s' has no data", name);
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 64;
        wentry *ne = realloc(w->e, (size_t)cap * sizeof *ne);
        if (!ne) return lop_fail(LOP_ERR_OOM, "out of memory (safetensors writer)");
        w->e = ne;
        w->cap = cap;
    }
    e.name = strdup(name);
    if (!e.name) return lop_fail(LOP_ERR_OOM, "out of memory (safetensors writer)");
    w->total_numel += e.numel;
    w->e[w->n++] = e;
    return LOP_OK;
}

lop_status lop_st_writer_add_tensor(lop_st_writer *w, const char *name, const lop_tensor *t) {
    if (!t->present || !t->data)
        return lop_fail(LOP_ERR_ARG, "safetensors writer: tensor '%s' is absent or not loaded", name);
    if (t->ndim != 1 && t->ndim != 2)
        return lop_fail(LOP_ERR_ARG, "safetensors writer: tensor '%s' has %d dims", name, t->ndim);
    return lop_st_writer_add(w, name, lop_st_from_lop_dtype(t->dtype), t->ndim, t->shape, t->data);
}

/* Builds the padded header of entries ord[0..n): 8-byte length + JSON + spaces. */
static lop_status build_header(const lop_st_writer *w, const int *ord, int n, const char *path, char **out,
                               size_t *len) {
    *out = NULL;
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    int ok = root && meta && cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (int i = 0; ok && i < n; i++) {
        const wentry *e = &w->e[ord[i]];
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        cJSON *sh = t ? cJSON_AddArrayToObject(t, "shape") : NULL;
        ok = t && sh && cJSON_AddStringToObject(t, "dtype", DT[e->dtype].name);
        for (int d = 0; ok && d < e->ndim; d++) ok = cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)e->shape[d]));
        cJSON *o = ok ? cJSON_AddArrayToObject(t, "data_offsets") : NULL;
        ok = ok && o && cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off)) &&
             cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + e->nbytes)));
        off += e->nbytes;
    }
    char *js = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!js) return lop_fail(LOP_ERR_OOM, "%s: out of memory building the safetensors header", path);
    size_t jl = strlen(js), padded = (jl + 7) / 8 * 8;
    char *buf = malloc(8 + padded);
    if (!buf) {
        free(js);
        return lop_fail(LOP_ERR_OOM, "%s: out of memory building the safetensors header", path);
    }
    for (int i = 0; i < 8; i++) buf[i] = (char)(((uint64_t)padded >> (8 * i)) & 0xff);
    memcpy(buf + 8, js, jl);
    memset(buf + 8 + jl, ' ', padded - jl);
    free(js);
    *out = buf;
    *len = 8 + padded;
    return LOP_OK;
}

/* Data layout order: widest elements first (stable), so that every tensor starts at a multiple of
 * its element size (the data section starts 8-aligned) and readers can use it in place. */
static int cmp_layout(const void *a, const void *b, void *ctx) {
    const wentry *e = ctx;
    int x = *(const int *)a, y = *(const int *)b, bx = DT[e[x].dtype].bits, by = DT[e[y].dtype].bits;
    if (bx != by) return bx > by ? -1 : 1;
    return (x > y) - (x < y);
}

static lop_status write_range(const lop_st_writer *w, int i0, int i1, const char *path) {
    int n = i1 - i0;
    int *ord = malloc((size_t)(n ? n : 1) * sizeof *ord);
    if (!ord) return lop_fail(LOP_ERR_OOM, "%s: out of memory", path);
    for (int i = 0; i < n; i++) ord[i] = i0 + i;
    qsort_r(ord, (size_t)n, sizeof *ord, cmp_layout, w->e);
    char *hdr = NULL;
    size_t hl = 0;
    lop_status st = build_header(w, ord, n, path, &hdr, &hl);
    if (st != LOP_OK) {
        free(ord);
        return st;
    }
    lop_atomic_file af;
    st = lop_atomic_open(&af, path);
    if (st != LOP_OK) {
        free(hdr);
        free(ord);
        return st;
    }
    int bad = fwrite(hdr, 1, hl, af.fp) != hl;
    free(hdr);
    for (int i = 0; !bad && i < n; i++) {
        const wentry *e = &w->e[ord[i]];
        if (e->nbytes) bad = fwrite(e->data, 1, (size_t)e->nbytes, af.fp) != e->nbytes;
    }
    free(ord);
    if (bad) {
        lop_atomic_abort(&af);
        return lop_fail(LOP_ERR_IO, "%s: write failed", path);
    }
    return lop_atomic_commit(&af);
}

lop_status lop_st_writer_write(const lop_st_writer *w, const char *path) { return write_range(w, 0, w->n, path); }

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp((*(const wentry *const *)a)->name, (*(const wentry *const *)b)->name);
}

/* Shard boundaries: shard k holds entries [start[k], start[k+1]). Returns the number of shards. */
static int plan_shards(const lop_st_writer *w, uint64_t max, int *start) {
    int k = 0;
    uint64_t cur = 0;
    start[0] = 0;
    for (int i = 0; i < w->n; i++) {
        if (i > start[k] && max && cur + w->e[i].nbytes > max) {
            start[++k] = i;
            cur = 0;
        }
        cur += w->e[i].nbytes;
    }
    start[k + 1] = w->n;
    return k + 1;
}

lop_status lop_st_writer_write_sharded(const lop_st_writer *w, const char *dir, uint64_t max_shard_bytes,
                                       int *n_shards) {
    if (n_shards) *n_shards = 0;
    if (w->n == 0) return lop_fail(LOP_ERR_ARG, "%s: no tensors to write", dir);
    int *start = malloc(((size_t)w->n + 1) * sizeof *start);
    int *shard_of = malloc((size_t)w->n * sizeof *shard_of);
    const wentry **sorted = malloc((size_t)w->n * sizeof *sorted);
    lop_status st = LOP_OK;
    char *path = NULL;
    cJSON *idx = NULL;
    if (!start || !shard_of || !sorted) {
        st = lop_fail(LOP_ERR_OOM, "%s: out of memory", dir);
        goto done;
    }
    int ns = plan_shards(w, max_shard_bytes, start);
    if (ns > 99999) {
        st = lop_fail(LOP_ERR_ARG, "%s: %d shards is too many (raise the shard size)", dir, ns);
        goto done;
    }
    char name[64];
    for (int k = 0; k < ns; k++) {
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k + 1, ns);
        free(path);
        path = lop_path_join(dir, name);
        if (!path) {
            st = lop_fail(LOP_ERR_OOM, "%s: out of memory", dir);
            goto done;
        }
        st = write_range(w, start[k], start[k + 1], path);
        if (st != LOP_OK) goto done;
        for (int i = start[k]; i < start[k + 1]; i++) shard_of[i] = k;
    }
    /* index, weight_map sorted by name as save_pretrained writes it */
    for (int i = 0; i < w->n; i++) sorted[i] = &w->e[i];
    qsort(sorted, (size_t)w->n, sizeof *sorted, cmp_str_ptr);
    idx = cJSON_CreateObject();
    cJSON *meta = idx ? cJSON_AddObjectToObject(idx, "metadata") : NULL;
    cJSON *wm = meta ? cJSON_AddObjectToObject(idx, "weight_map") : NULL;
    int ok = wm && cJSON_AddNumberToObject(meta, "total_parameters", (double)w->total_numel) &&
             cJSON_AddNumberToObject(meta, "total_size", (double)w->total);
    for (int i = 0; ok && i < w->n; i++) {
        int k = shard_of[sorted[i] - w->e];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k + 1, ns);
        ok = cJSON_AddStringToObject(wm, sorted[i]->name, name) != NULL;
    }
    char *js = ok ? cJSON_Print(idx) : NULL;
    free(path);
    path = lop_path_join(dir, "model.safetensors.index.json");
    if (!js || !path) {
        free(js);
        st = lop_fail(LOP_ERR_OOM, "%s: out of memory writing the index", dir);
        goto done;
    }
    st = lop_write_file_atomic(path, js, strlen(js));
    free(js);
    if (st == LOP_OK && n_shards) *n_shards = ns;
done:
    cJSON_Delete(idx);
    free(path);
    free(start);
    free(shard_of);
    free(sorted);
    return st;
}

lop_status lop_st_writer_write_dir(const lop_st_writer *w, const char *dir, uint64_t max_shard_bytes,
                                   int *n_shards) {
    if (n_shards) *n_shards = 0;
    if (max_shard_bytes && w->total > max_shard_bytes) return lop_st_writer_write_sharded(w, dir, max_shard_bytes, n_shards);
    char *path = lop_path_join(dir, "model.safetensors");
    if (!path) return lop_fail(LOP_ERR_OOM, "%s: out of memory", dir);
    lop_status st = lop_st_writer_write(w, path);
    free(path);
    if (st == LOP_OK && n_shards) *n_shards = 1;
    return st;
}
