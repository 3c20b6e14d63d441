/* Thread-local error message store behind lop_fail / lop_last_error. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[1024];

const char *lop_status_name(lop_status s) {
    switch (s) {
    case LOP_OK: return "ok";
    case LOP_ERR_ARG: return "invalid argument";
    case LOP_ERR_IO: return "i/o error";
    case LOP_ERR_FORMAT: return "format error";
    case LOP_ERR_OOM: return "out of memory";
    case LOP_ERR_UNSUPPORTED: return "unsupported";
    case LOP_ERR_DEVICE: return "device error";
    }
    return "unknown error";
}

const char *lop_last_error(void) { return g_msg; }

void lop_clear_error(void) { g_msg[0] = 0; }

lop_status lop_fail(lop_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return code;
}

void lop_error_prefix(const char *fmt, ...) {
    char pre[512], old[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    size_t n = strlen(pre);
    if (n > sizeof g_msg - 3) n = sizeof g_msg - 3;
    memcpy(g_msg, pre, n);
    g_msg[n] = ':';
    g_msg[n + 1] = ' ';
    size_t rest = sizeof g_msg - n - 3, ol = strlen(old);
    if (ol > rest) ol = rest;
    memcpy(g_msg + n + 2, old, ol);
    g_msg[n + 2 + ol] = 0;
}
