/* mmap / read / atomic-write helpers; see file.h. */
#include "io/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"

lop_status lop_map_file(const char *path, lop_mapped *out) {
    out->data = NULL;
    out->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return lop_fail(LOP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return lop_fail(LOP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lop_fail(LOP_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return lop_fail(LOP_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        }
        out->data = p;
        out->size = (size_t)st.st_size;
    }
    close(fd);
    return LOP_OK;
}

void lop_unmap_file(lop_mapped *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

lop_status lop_read_file(const char *path, char **data, size_t *size) {
    *data = NULL;
    if (size) *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return lop_fail(LOP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return lop_fail(LOP_ERR_OOM, "%s: out of memory reading file", path);
    }
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return lop_fail(LOP_ERR_OOM, "%s: out of memory reading file", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return lop_fail(LOP_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    *data = buf;
    if (size) *size = n;
    return LOP_OK;
}

char *lop_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int lop_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int lop_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

lop_status lop_atomic_open(lop_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->path = strdup(path);
    af->tmp = malloc(n);
    if (!af->path || !af->tmp) {
        free(af->path);
        free(af->tmp);
        return lop_fail(LOP_ERR_OOM, "%s: out of memory", path);
    }
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp, "wb");
    if (!af->fp) {
        lop_status st = lop_fail(LOP_ERR_IO, "%s: cannot create: %s", af->tmp, strerror(errno));
        free(af->path);
        free(af->tmp);
        memset(af, 0, sizeof *af);
        return st;
    }
    return LOP_OK;
}

void lop_atomic_abort(lop_atomic_file *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp) unlink(af->tmp);
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
}

lop_status lop_atomic_commit(lop_atomic_file *af) {
    int bad = fflush(af->fp) != 0 || ferror(af->fp) || fsync(fileno(af->fp)) != 0;
    int e = errno;
    if (fclose(af->fp) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    af->fp = NULL;
    if (bad) {
        lop_status st = lop_fail(LOP_ERR_IO, "%s: write failed: %s", af->path, strerror(e));
        lop_atomic_abort(af);
        return st;
    }
    if (rename(af->tmp, af->path) != 0) {
        lop_status st = lop_fail(LOP_ERR_IO, "%s: cannot rename into place: %s", af->path, strerror(errno));
        lop_atomic_abort(af);
        return st;
    }
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
    return LOP_OK;
}

lop_status lop_write_file_atomic(const char *path, const void *buf, size_t size) {
    lop_atomic_file af;
    LOP_TRY(lop_atomic_open(&af, path));
    if (size && fwrite(buf, 1, size, af.fp) != size) {
        lop_status st = lop_fail(LOP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        lop_atomic_abort(&af);
        return st;
    }
    return lop_atomic_commit(&af);
}
