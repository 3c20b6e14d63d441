/* GGUF (v2/v3) reader: header, metadata, tensor directory, dequantisation to f32.
 * Why: llama.cpp's GGUF is how most small LLaMA-family checkpoints are shipped (SmolLM2 among them).
 * The reader validates every count, length and offset against the file size before it is used and
 * never copies the file: strings, arrays and tensor data are pointers into the read-only mapping
 * (which may be unaligned for metadata — read array elements with the lop_gguf_arr_* helpers). */
#ifndef LOP_IO_GGUF_H
#define LOP_IO_GGUF_H
#include <stddef.h>
#include <stdint.h>

#include "lop.h"

/* Metadata value types, numbered as in the file. */
typedef enum lop_gguf_type {
    LOP_GGUF_U8 = 0, LOP_GGUF_I8 = 1, LOP_GGUF_U16 = 2, LOP_GGUF_I16 = 3, LOP_GGUF_U32 = 4,
    LOP_GGUF_I32 = 5, LOP_GGUF_F32 = 6, LOP_GGUF_BOOL = 7, LOP_GGUF_STRING = 8, LOP_GGUF_ARRAY = 9,
    LOP_GGUF_U64 = 10, LOP_GGUF_I64 = 11, LOP_GGUF_F64 = 12
} lop_gguf_type;
#define LOP_GGUF_N_TYPES 13

/* Tensor (ggml) types lop reads. Any other id is rejected when the file is opened. */
typedef enum lop_ggml_type {
    LOP_GGML_F32 = 0, LOP_GGML_F16 = 1, LOP_GGML_Q4_0 = 2, LOP_GGML_Q4_1 = 3, LOP_GGML_Q8_0 = 8,
    LOP_GGML_BF16 = 30
} lop_ggml_type;

#define LOP_GGUF_MAX_DIMS 4
#define LOP_GGUF_MAX_NAME 64 /* GGML_MAX_NAME: tensor names are shorter than this */

/* A length-delimited string inside the mapping (not NUL-terminated). */
typedef struct lop_gguf_str {
    const char *ptr;
    uint64_t len;
} lop_gguf_str;

typedef struct lop_gguf_kv {
    lop_gguf_str key;
    lop_gguf_type type;
    lop_gguf_type arr_type;       /* arrays: element type */
    uint64_t count;               /* arrays: element count; scalars: 1 */
    const unsigned char *value;   /* scalars: the value; strings: the bytes; arrays: first element */
    uint64_t *str_offs;           /* arrays of strings: offset (from value) of each element's u64 length */
} lop_gguf_kv;

typedef struct lop_gguf_tensor {
    char name[LOP_GGUF_MAX_NAME];
    int n_dims;
    int64_t ne[LOP_GGUF_MAX_DIMS]; /* ne[0] is the fastest-varying (row length); unused dims are 1 */
    lop_ggml_type type;
    uint64_t offset;               /* from the start of the data section */
    const unsigned char *data;     /* into the mapping; inside the file (checked) */
    size_t nbytes;
    int64_t numel;
} lop_gguf_tensor;

typedef struct lop_gguf {
    char *path;                    /* for messages */
    const unsigned char *base;     /* the whole file */
    size_t size;
    int owns_map;                  /* lop_gguf_close unmaps base */
    uint32_t version;
    uint64_t alignment;
    size_t data_offset;            /* start of the tensor data section */
    int64_t n_kv;
    lop_gguf_kv *kv;
    int64_t n_tensors;
    lop_gguf_tensor *tensors;
    /* private: lookup indexes sorted by key / name */
    const lop_gguf_kv **kv_sorted_;
    const lop_gguf_tensor **tensors_sorted_;
} lop_gguf;

/* Maps and parses a file; lop_gguf_close unmaps it. */
lop_status lop_gguf_open(const char *path, lop_gguf **out);
/* Parses a file already in memory (not copied, not owned: it must outlive the lop_gguf). */
lop_status lop_gguf_parse(const char *path, const void *data, size_t size, lop_gguf **out);
void lop_gguf_close(lop_gguf *g);

/* ---- metadata ----------------------------------------------------------------------------- */
const char *lop_gguf_type_name(lop_gguf_type t);
/* NULL when the key is absent. */
const lop_gguf_kv *lop_gguf_find_kv(const lop_gguf *g, const char *key);

/* Typed getters. A missing key is LOP_ERR_FORMAT "<file>: missing metadata key '<key>'"; a value of
 * the wrong type is LOP_ERR_FORMAT naming the key, its type and the expected type.
 * get_int accepts any integer type (u8..i64; u64 above INT64_MAX is an error); get_float accepts
 * f32 or f64; get_bool accepts bool. */
lop_status lop_gguf_get_int(const lop_gguf *g, const char *key, int64_t *out);
lop_status lop_gguf_get_float(const lop_gguf *g, const char *key, double *out);
lop_status lop_gguf_get_bool(const lop_gguf *g, const char *key, int *out);
/* The string's bytes (in the mapping, not NUL-terminated) and length. */
lop_status lop_gguf_get_str(const lop_gguf *g, const char *key, const char **s, size_t *len);
/* Arrays: the kv must be an array whose elements are of elem_type (LOP_GGUF_ARRAY for nested
 * arrays; pass -1 to accept any element type). */
lop_status lop_gguf_get_arr(const lop_gguf *g, const char *key, int elem_type, const lop_gguf_kv **kv);
/* Numeric array: pointer into the mapping (possibly unaligned) and element count. */
lop_status lop_gguf_get_arr_data(const lop_gguf *g, const char *key, lop_gguf_type elem_type, const void **data,
                                 uint64_t *n);

/* Element access for an array kv (i < kv->count, checked by the caller). */
int lop_gguf_arr_str(const lop_gguf_kv *kv, uint64_t i, const char **s, size_t *len); /* 0 if not a string array */
/* Integer element of any integer (or bool) type; 0 if the element type is not integral. */
int lop_gguf_arr_int(const lop_gguf_kv *kv, uint64_t i, int64_t *out);
/* Float element (f32/f64); 0 otherwise. */
int lop_gguf_arr_float(const lop_gguf_kv *kv, uint64_t i, double *out);

/* ---- tensors ------------------------------------------------------------------------------ */
const char *lop_ggml_type_name(int type); /* "Q4_K" etc. for every ggml id it knows; "?" otherwise */
int lop_ggml_block_size(lop_ggml_type t);    /* elements per block: 1 or 32 */
size_t lop_ggml_block_bytes(lop_ggml_type t); /* bytes per block */
int lop_ggml_is_quantized(lop_ggml_type t);   /* Q4_0 / Q4_1 / Q8_0 */

const lop_gguf_tensor *lop_gguf_find_tensor(const lop_gguf *g, const char *name);

/* Dequantises n elements (a multiple of the type's block size) starting at src into dst. */
void lop_ggml_dequantize(lop_ggml_type t, const void *src, float *dst, int64_t n);
/* Whole tensor into dst[numel]. */
lop_status lop_gguf_dequantize(const lop_gguf *g, const lop_gguf_tensor *t, float *dst);

#endif
