/* lop info MODEL: per-layer shape table, parameters, bytes by dtype, KV bytes per token. Reads
 * shapes only, so it answers instantly even for synth:llama-13b. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* ---- info --------------------------------------------------------------------------------- */
static void human_bytes(double b, char *buf, size_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) b /= 1024, i++;
    snprintf(buf, n, i ? "%.2f %s" : "%.0f %s", b, u[i]);
}

static void add_bytes(int64_t *by, const lop_tensor *t) {
    if (t->present) by[t->dtype] += lop_tensor_numel(t) * (int64_t)lop_dtype_size(t->dtype);
}

static void print_commas(int64_t v) {
    char s[32], o[48];
    int n = snprintf(s, sizeof s, "%lld", (long long)v), j = 0;
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) o[j++] = ',';
        o[j++] = s[i];
    }
    o[j] = 0;
    fputs(o, stdout);
}

int cmd_info(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            printf("Usage: lop info MODEL\n\nPrints the per-layer shape table, parameter count, bytes by dtype and\n"
                   "KV-cache bytes per token. Reads shapes only: no weights are loaded.\n\n%s", CLI_MODEL_HELP);
            return 0;
        }
        return cli_usage_error("info", "unknown option");
    }
    if (optind + 1 != argc) return cli_usage_error("info", "expected exactly one MODEL");
    lop_model *m;
    lop_load_opts lo = {.shapes_only = 1};
    lop_status st = lop_model_load(argv[optind], &lo, &m);
    if (st) return cli_fail(st);
    const lop_config *cf = &m->cfg;
    printf("model     %s (%s)\n", m->source, m->format);
    printf("dims      hidden %d, vocab %d, layers %d, context %d, %s embeddings\n", cf->dim, cf->vocab_size,
           cf->n_layers, cf->max_seq_len, cf->tie_embeddings ? "tied" : "untied");
    printf("rope      theta %g%s, rms eps %g\n", cf->rope_theta,
           cf->rope_scaling.type == LOP_ROPE_LLAMA3 ? ", llama3 scaling" : "", cf->norm_eps);
    printf("\n layer  heads  kv  head_dim    ffn       params  bias\n");
    for (int i = 0; i < cf->n_layers; i++) {
        const lop_layer_shape *s = &cf->layers[i];
        const lop_layer_weights *L = &m->w.layers[i];
        char heads[16], kv[16], ffn[16], bias[32] = "";
        snprintf(heads, sizeof heads, s->n_heads ? "%d" : "-", s->n_heads);
        snprintf(kv, sizeof kv, s->n_heads ? "%d" : "-", s->n_kv_heads);
        snprintf(ffn, sizeof ffn, s->ffn_dim ? "%d" : "-", s->ffn_dim);
        if (L->bq.present) strcat(bias, "qkv ");
        if (L->bo.present) strcat(bias, "o ");
        if (L->b_gate.present) strcat(bias, "gate/up ");
        if (L->b_down.present) strcat(bias, "down");
        printf("%6d  %5s  %3s  %8d  %6s  %11lld  %s\n", i, heads, kv, s->head_dim, ffn, (long long)lop_layer_n_params(m, i),
               bias);
    }
    int64_t by[3] = {0, 0, 0};
    add_bytes(by, &m->w.tok_emb);
    add_bytes(by, &m->w.out_norm);
    if (!cf->tie_embeddings) add_bytes(by, &m->w.lm_head);
    for (int i = 0; i < cf->n_layers; i++) {
        const lop_layer_weights *L = &m->w.layers[i];
#define X(f, name) add_bytes(by, &L->f);
        LOP_LAYER_TENSORS(X)
#undef X
    }
    lop_model_info info;
    lop_model_get_info(m, &info);
    printf("\nparameters  ");
    print_commas(info.n_params);
    printf(" (%.3f B)\n", info.n_params / 1e9);
    for (int d = 0; d < 3; d++) {
        if (!by[d]) continue;
        char h[32];
        human_bytes((double)by[d], h, sizeof h);
        printf("bytes %-5s %s (", lop_dtype_name((lop_dtype)d), h);
        print_commas(by[d]);
        printf(")\n");
    }
    if (m->file_dtypes[0]) printf("file types  %s (tensors by type in the file)\n", m->file_dtypes);
    char h16[32], h32[32];
    human_bytes((double)info.kv_bytes_per_token_f16, h16, sizeof h16);
    human_bytes((double)info.kv_bytes_per_token_f16 * 2, h32, sizeof h32);
    printf("KV cache    %s per token in fp16 (%s in fp32)\n", h16, h32);
    if (m->tok)
        printf("tokenizer   %s, %d tokens, bos %d, eos %d\n",
               lop_tokenizer_kind(m->tok) == LOP_TOK_SPM ? "sentencepiece-style BPE" : "byte-level BPE",
               lop_tokenizer_n_vocab(m->tok), lop_tokenizer_bos(m->tok), lop_tokenizer_eos(m->tok));
    lop_model_free(m);
    return 0;
}
