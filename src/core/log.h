/* Diagnostics to stderr with a global verbosity (library code logs, never prints results). */
#ifndef LOP_CORE_LOG_H
#define LOP_CORE_LOG_H
extern int lop_log_level; /* 0 quiet, 1 info (default), 2 debug */
void lop_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define LOP_INFO(...) lop_log(1, __VA_ARGS__)
#define LOP_DEBUG(...) lop_log(2, __VA_ARGS__)
#endif
