/* Test support for tests that run the CLI: lop(ARGS) runs "$LOP_BUILD/lop ARGS" (default build/)
 * with stdout and stderr captured in cli_out, and returns its exit status. */
#ifndef LOP_TESTS_CLI_UTIL_H
#define LOP_TESTS_CLI_UTIL_H
extern char cli_out[1 << 16];
int lop(const char *args);
/* Fails the test when the last output lacks needle. */
void expect_in(const char *needle);
#endif
