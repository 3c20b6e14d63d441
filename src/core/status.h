/* Error reporting inside the library.
 * Why: library code never exits or prints; it returns a lop_status and leaves one clear message
 * (naming the file and tensor/field) in a thread-local buffer that the CLI prints. */
#ifndef LOP_CORE_STATUS_H
#define LOP_CORE_STATUS_H
#include "lop.h"

/* Sets the thread's error message (printf-style) and returns code, so callers can write
 * `return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s': ...", path, name);` */
lop_status lop_fail(lop_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to the current message (adds context while unwinding). */
void lop_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void lop_clear_error(void);

#define LOP_TRY(expr)                                                                              \
    do {                                                                                           \
        lop_status _st = (expr);                                                                   \
        if (_st != LOP_OK) return _st;                                                             \
    } while (0)

#endif
