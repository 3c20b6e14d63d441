/* Shared pieces of the lop CLI: error/usage helpers and the MODEL help text. Each subcommand
 * lives in its own tools/cmd_*.c file and is listed once in tools/lop.c. */
#ifndef LOP_TOOLS_CLI_H
#define LOP_TOOLS_CLI_H
#include <stdint.h>

#include "lop.h"

#define EXIT_USAGE 2

/* Prints "lop: error: <last error>" and returns 1. */
int cli_fail(lop_status st);
/* Prints "lop CMD: MSG" + a hint and returns 2. */
int cli_usage_error(const char *cmd, const char *msg);
extern const char *const CLI_MODEL_HELP;

int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_prune(int argc, char **argv);

/* "1,2,3" -> malloc'd ids; 0 on success, -1 on a malformed list. */
int cli_parse_ids(const char *s, int32_t **ids, int *n);
int cmd_eval(int argc, char **argv);
#endif
