/* lop — command-line interface: lop info | generate | logits | eval | prune | bench | plot.
 * Why thin: every subcommand (tools/cmd_*.c) parses options with getopt_long, calls the library,
 * and turns a lop_status into one clear line on stderr and an exit code (0 ok, 1 error, 2 usage). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/log.h"

int cli_fail(lop_status st) {
    fprintf(stderr, "lop: error: %s\n", *lop_last_error() ? lop_last_error() : lop_status_name(st));
    return 1;
}

int cli_usage_error(const char *cmd, const char *msg) {
    fprintf(stderr, "lop %s: %s\nTry 'lop %s --help'.\n", cmd, msg, cmd);
    return EXIT_USAGE;
}

const char *const CLI_MODEL_HELP =
    "MODEL is an HF directory (config.json + *.safetensors), a GGUF file, or synth:PRESET[:options]\n"
    "  presets: llama-7b llama-13b llama2-7b llama3-8b vicuna-13b smollm2-135m\n"
    "  options: layers=N drop=LIST heads=H[@LIST] kv=K[@LIST] ffn=F[@LIST] noattn=LIST noffn=LIST\n"
    "           seed=N dtype=f16|bf16|f32   (LIST = A-B,C,...; see docs/models.md)\n"
    "  e.g. synth:llama-7b:layers=23   synth:llama-7b:heads=21@4-29:ffn=7155@4-29\n";

/* ---- main --------------------------------------------------------------------------------- */
/* The subcommands: one line each (a new command adds its tools/cmd_*.c and a row here). */
static const struct command {
    const char *name, *synopsis, *summary;
    int (*run)(int argc, char **argv);
} COMMANDS[] = {
    {"info", "info MODEL", "per-layer shapes, parameters, bytes by dtype, KV bytes per token", cmd_info},
    {"generate", "generate MODEL -p TEXT", "generate text; prints tok/s and ms/token", cmd_generate},
    {"logits", "logits MODEL --ids L", "dump logits (prompt's last position + teacher-forced decode steps)", cmd_logits},
    {"bench", "bench MODEL... --out P", "efficiency sweep over batch x length (latency, utilisation, memory, OOM)", cmd_bench},
    {"prune", "prune MODEL --depth T -o D", "depth pruning: score blocks (taylor, ppl, magnitude, bi), write HF", cmd_prune},
    {"plot", "plot RESULTS -o FIG", "the efficiency figure (heatmaps, latency curves) via gnuplot", cmd_plot},
    {"eval", "eval MODEL --ppl F --tasks L", "perplexity and zero-shot accuracy (paper protocol)", cmd_eval},
};
#define N_COMMANDS ((int)(sizeof COMMANDS / sizeof COMMANDS[0]))

static void usage(FILE *f) {
    fprintf(f, "Usage: lop [-q|-v] COMMAND [options]\n\nCommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-24s %s\n", COMMANDS[i].synopsis, COMMANDS[i].summary);
    fprintf(f, "\nOptions:  -q quiet   -v verbose   -h, --help   --version\n"
               "Run 'lop COMMAND --help' for a command's options.\n\n"
               "Exit status: 0 success, 1 error (message on stderr), 2 usage error.\n");
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-q")) lop_log_level = 0;
        else if (!strcmp(argv[i], "-v")) lop_log_level = 2;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("lop 0.1\n");
            return 0;
        } else {
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    optind = 1;
    for (int c = 0; c < N_COMMANDS; c++)
        if (!strcmp(argv[i], COMMANDS[c].name)) return COMMANDS[c].run(argc - i, argv + i);
    fprintf(stderr, "lop: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return EXIT_USAGE;
}
