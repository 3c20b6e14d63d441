/* safetensors: zero-copy reader (mmap + validated JSON header) and an atomic writer for single files
 * and HF-style sharded checkpoints (model-0000K-of-0000N.safetensors + model.safetensors.index.json).
 * Why here: the HF loader reads with it and the pruning commands write stock HF checkpoints with it;
 * every offset in an input file is checked before a pointer is formed, so a corrupt file is an
 * error message (naming the file and tensor), never an out-of-bounds read. */
#ifndef LOP_IO_SAFETENSORS_H
#define LOP_IO_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#include "io/file.h"
#include "lop.h"
#include "model/model.h" /* lop_dtype, lop_tensor (conversion helpers only) */

/* Every dtype the safetensors format defines. Only F32/F16/BF16 map to lop_dtype; the others are
 * recognised so that the loader can say "unsupported dtype" instead of "corrupt file". */
typedef enum lop_st_dtype {
    LOP_ST_F32 = 0, LOP_ST_F16, LOP_ST_BF16,
    LOP_ST_F64, LOP_ST_I64, LOP_ST_U64, LOP_ST_I32, LOP_ST_U32, LOP_ST_I16, LOP_ST_U16, LOP_ST_I8, LOP_ST_U8,
    LOP_ST_BOOL, LOP_ST_F8_E4M3, LOP_ST_F8_E5M2, LOP_ST_F8_E8M0, LOP_ST_F6_E2M3, LOP_ST_F6_E3M2, LOP_ST_F4,
    LOP_ST_C64,
    LOP_ST_N_DTYPES
} lop_st_dtype;

#define LOP_ST_MAX_DIMS 4

const char *lop_st_dtype_name(lop_st_dtype t);
/* Size of one element in bits (4 and 6 for the sub-byte float formats). */
int lop_st_dtype_bits(lop_st_dtype t);
/* Parses a dtype string ("F32", "BF16", ...); returns 0 when unknown. */
int lop_st_dtype_parse(const char *s, lop_st_dtype *out);
/* F32/F16/BF16 -> lop_dtype; returns 0 for every other dtype (unsupported for weights). */
int lop_st_to_lop_dtype(lop_st_dtype t, lop_dtype *out);
lop_st_dtype lop_st_from_lop_dtype(lop_dtype t);

/* ---- reader ------------------------------------------------------------------------------- */
typedef struct lop_st_tensor {
    const char *name;      /* points into the reader's storage; valid until lop_st_close */
    lop_st_dtype dtype;
    int ndim;              /* 0..LOP_ST_MAX_DIMS */
    int64_t shape[LOP_ST_MAX_DIMS];
    int64_t numel;
    size_t offset;         /* absolute byte offset of the data in the file */
    size_t nbytes;
    const void *data;      /* into the mapping (map.data + offset); NULL when nbytes == 0 */
} lop_st_tensor;

typedef struct lop_st_file {
    char *path;
    lop_mapped map;
    lop_st_tensor *tensors; /* sorted by name */
    int n_tensors;
    char *names;            /* storage for the tensor names */
} lop_st_file;

/* Maps PATH and validates its header: length, JSON, every entry's dtype / shape / data_offsets, sizes
 * agree with dtype x shape (overflow-checked), offsets inside the data section, no two tensors overlap,
 * no duplicate names. On error *f is left closed and the message names the file (and tensor). */
lop_status lop_st_open(lop_st_file *f, const char *path);
void lop_st_close(lop_st_file *f);
/* Lookup by exact name (binary search); NULL when absent. */
const lop_st_tensor *lop_st_find(const lop_st_file *f, const char *name);
/* Hands the mapping to the caller (who must lop_unmap_file it, or give it to lop_model_own with
 * is_map = 1): lop_st_close then leaves it mapped. Tensor data pointers stay valid. */
void lop_st_detach_map(lop_st_file *f, lop_mapped *out);

/* ---- writer ------------------------------------------------------------------------------- */
/* Collects tensors (name, dtype, shape, data pointer) and writes them. Data is borrowed, not copied:
 * it must stay valid until the write call returns. Shards take tensors in the order they were added;
 * inside a file, data is laid out widest dtype first so every tensor is aligned to its element size;
 * headers are padded with spaces to a multiple of 8 bytes and carry __metadata__ {"format":"pt"},
 * as PyTorch's save_file does, so the result loads in stock HF transformers. */
typedef struct lop_st_writer lop_st_writer;

lop_status lop_st_writer_new(lop_st_writer **out);
void lop_st_writer_free(lop_st_writer *w);
/* Adds one tensor (ndim 0..4, the name is copied). Duplicate names and negative dims are LOP_ERR_ARG. */
lop_status lop_st_writer_add(lop_st_writer *w, const char *name, lop_st_dtype dtype, int ndim,
                             const int64_t *shape, const void *data);
/* Convenience for model tensors: writes t->dtype with t->ndim dims (1-D tensors as [shape[0]]).
 * The tensor must be present with data != NULL. */
lop_status lop_st_writer_add_tensor(lop_st_writer *w, const char *name, const lop_tensor *t);
/* Number of tensors added and their total data bytes. */
int lop_st_writer_count(const lop_st_writer *w);
uint64_t lop_st_writer_total_bytes(const lop_st_writer *w);

/* Writes every tensor into one file, atomically (temp file + rename). */
lop_status lop_st_writer_write(const lop_st_writer *w, const char *path);

/* Writes DIR/model-0000K-of-0000N.safetensors (DIR must exist), each holding at most
 * max_shard_bytes of tensor data (0 = no limit; a single larger tensor gets a shard of its own;
 * tensors keep the order they were added), then DIR/model.safetensors.index.json with
 * metadata.total_size and weight_map (sorted by name). Each file is written atomically and the index
 * last, so a failure never leaves an index pointing at missing shards. *n_shards may be NULL. */
lop_status lop_st_writer_write_sharded(const lop_st_writer *w, const char *dir, uint64_t max_shard_bytes,
                                       int *n_shards);
/* What save_pretrained does: DIR/model.safetensors when all data fits in max_shard_bytes (0 = no
 * limit), else lop_st_writer_write_sharded. *n_shards (may be NULL) receives the number of files. */
lop_status lop_st_writer_write_dir(const lop_st_writer *w, const char *dir, uint64_t max_shard_bytes,
                                   int *n_shards);

#endif
