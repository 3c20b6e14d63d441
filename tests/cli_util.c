/* Runs the lop binary for CLI tests; see cli_util.h. */
#include "cli_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

char cli_out[1 << 16];

int lop(const char *args) {
    const char *build = getenv("LOP_BUILD") ? getenv("LOP_BUILD") : "build";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/lop %s 2>&1", build, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(cli_out, 1, sizeof cli_out - 1, p);
    cli_out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void expect_in(const char *needle) {
    if (!strstr(cli_out, needle)) fail_msg("output lacks '%s':\n%s", needle, cli_out);
}
