/* stderr logger; the CLI sets lop_log_level from -q / -v. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

int lop_log_level = 1;

void lop_log(int level, const char *fmt, ...) {
    if (level > lop_log_level) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
