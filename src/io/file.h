/* Files: read-only mappings of model files, whole-file reads of small text files, and atomic
 * writes (temp file in the same folder + fsync + rename) so an output is never half-written and
 * an input is never overwritten. */
#ifndef LOP_IO_FILE_H
#define LOP_IO_FILE_H
#include <stddef.h>
#include <stdio.h>

#include "lop.h"

typedef struct lop_mapped {
    const unsigned char *data; /* NULL for an empty file */
    size_t size;
} lop_mapped;

lop_status lop_map_file(const char *path, lop_mapped *out);
void lop_unmap_file(lop_mapped *m);

/* Reads a whole (small) file into a malloc'd NUL-terminated buffer. */
lop_status lop_read_file(const char *path, char **data, size_t *size);

/* "dir/name" in a malloc'd string (NULL when out of memory). */
char *lop_path_join(const char *dir, const char *name);

int lop_is_dir(const char *path);
int lop_file_exists(const char *path);

/* Atomic write: open writes to "<path>.tmp.<pid>"; commit fsyncs and renames onto path;
 * abort removes the temp file. */
typedef struct lop_atomic_file {
    FILE *fp;
    char *path, *tmp;
} lop_atomic_file;

lop_status lop_atomic_open(lop_atomic_file *af, const char *path);
lop_status lop_atomic_commit(lop_atomic_file *af);
void lop_atomic_abort(lop_atomic_file *af);
/* Convenience: writes buf atomically. */
lop_status lop_write_file_atomic(const char *path, const void *buf, size_t size);

#endif
