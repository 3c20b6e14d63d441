/* lop logits MODEL --ids LIST: dumps logits of a prompt's last position and of teacher-forced
 * decode steps, the raw rows the HF parity scripts (scripts/gpu_hf_parity.py) compare. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/status.h"
#include "model/model.h"
#include "runtime/engine.h"

/* ---- logits ------------------------------------------------------------------------------- */
/* Logits of a prompt's last position, then of teacher-forced decode steps (one token each through
 * the decode path), as raw float32 rows [1 + n_then][vocab]: the dump HF parity scripts compare. */
int cmd_logits(int argc, char **argv) {
    static const struct option opts[] = {{"ids", required_argument, 0, 'I'},    {"then", required_argument, 0, 'T'},
                                         {"out", required_argument, 0, 'o'},    {"device", required_argument, 0, 'd'},
                                         {"dtype", required_argument, 0, 'D'},  {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *ids_arg = NULL, *then_arg = NULL, *out = NULL;
    lop_device dev = LOP_DEVICE_CPU;
    lop_weight_dtype wdt = LOP_WEIGHTS_DEFAULT;
    int c;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'I': ids_arg = optarg; break;
        case 'T': then_arg = optarg; break;
        case 'o': out = optarg; break;
        case 'd':
            if (!strcmp(optarg, "cpu")) dev = LOP_DEVICE_CPU;
            else if (!strcmp(optarg, "cuda")) dev = LOP_DEVICE_CUDA;
            else return cli_usage_error("logits", "--device must be cpu or cuda");
            break;
        case 'D':
            if (!strcmp(optarg, "f16")) wdt = LOP_WEIGHTS_F16;
            else if (!strcmp(optarg, "bf16")) wdt = LOP_WEIGHTS_BF16;
            else return cli_usage_error("logits", "--dtype must be f16 or bf16");
            break;
        case 'h':
            printf("Usage: lop logits MODEL --ids LIST [--then LIST] -o FILE [--device cpu|cuda] [--dtype f16|bf16]\n\n"
                   "Writes float32 logits [1 + len(then)][vocab] to FILE: the prompt's last position, then one\n"
                   "decode step per token of --then (teacher forcing, one token per forward pass).\n\n%s",
                   CLI_MODEL_HELP);
            return 0;
        default: return cli_usage_error("logits", "unknown option");
        }
    }
    if (optind + 1 != argc || !ids_arg || !out) return cli_usage_error("logits", "expected MODEL, --ids and -o");
    int32_t *ids = NULL, *then = NULL;
    int n_ids = 0, n_then = 0;
    if (cli_parse_ids(ids_arg, &ids, &n_ids) || (then_arg && cli_parse_ids(then_arg, &then, &n_then))) {
        free(ids);
        free(then);
        return cli_usage_error("logits", "--ids / --then expect comma-separated token ids");
    }
    lop_model *m;
    lop_status st = lop_model_load(argv[optind], NULL, &m);
    if (st) {
        free(ids);
        free(then);
        return cli_fail(st);
    }
    lop_engine_opts eo = {.device = dev, .max_batch = 1, .max_seq_len = n_ids + n_then + 1, .weight_dtype = wdt};
    lop_engine *e = NULL;
    int V = m->cfg.vocab_size, rows = 1 + n_then;
    float *lg = malloc((size_t)rows * V * sizeof(float));
    int32_t *pos = malloc((size_t)(n_ids + 1) * sizeof(int32_t)), *seq = calloc((size_t)n_ids + 1, sizeof(int32_t));
    st = lg && pos && seq ? lop_engine_create(m, &eo, &e) : LOP_ERR_OOM;
    if (st == LOP_OK) {
        for (int i = 0; i < n_ids; i++) pos[i] = i;
        int32_t last = n_ids - 1;
        lop_batch b = {n_ids, ids, seq, pos, 1, &last};
        st = lop_engine_forward(e, &b, lg);
        for (int k = 0; st == LOP_OK && k < n_then; k++) {
            int32_t p = n_ids + k, z = 0;
            lop_batch d = {1, then + k, seq, &p, 1, &z};
            st = lop_engine_forward(e, &d, lg + (size_t)(k + 1) * V);
        }
    }
    if (st == LOP_OK) {
        FILE *f = fopen(out, "wb");
        if (!f || fwrite(lg, sizeof(float), (size_t)rows * V, f) != (size_t)rows * V || fclose(f) != 0)
            st = lop_fail(LOP_ERR_IO, "%s: cannot write", out);
        else
            fprintf(stderr, "logits: %d rows x %d written to %s\n", rows, V, out);
    }
    lop_engine_free(e);
    lop_model_free(m);
    free(lg);
    free(pos);
    free(seq);
    free(ids);
    free(then);
    return st ? cli_fail(st) : 0;
}
