/* Minimal GGUF (v2/v3, little-endian) key/value reader for the tokenizer tests; see the header for
 * why it exists. Bounds-checked everywhere: a truncated file is an error, never a crash. */
#include "gguf_vocab_reader.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 };

typedef struct rd {
    const unsigned char *p;
    size_t n, off;
    int bad;
} rd;

static uint64_t get(rd *r, int bytes) {
    if (r->bad || r->n - r->off < (size_t)bytes) {
        r->bad = 1;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)r->p[r->off + i] << (8 * i);
    r->off += (size_t)bytes;
    return v;
}

static const char *get_str(rd *r, size_t *len) {
    uint64_t l = get(r, 8);
    if (r->bad || l > r->n - r->off) {
        r->bad = 1;
        return NULL;
    }
    const char *s = (const char *)r->p + r->off;
    r->off += (size_t)l;
    *len = (size_t)l;
    return s;
}

static int scalar_size(uint32_t t) {
    switch (t) {
    case T_U8: case T_I8: case T_BOOL: return 1;
    case T_U16: case T_I16: return 2;
    case T_U32: case T_I32: case T_F32: return 4;
    case T_U64: case T_I64: case T_F64: return 8;
    default: return 0;
    }
}

static int fail(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

static int read_file(const char *path, char **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 20, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *nb = realloc(b, cap *= 2);
        if (!nb) {
            free(b);
            b = NULL;
        } else {
            b = nb;
        }
    }
    fclose(f);
    if (!b) return -1;
    *data = b;
    *size = n;
    return 0;
}

int gguf_vocab_read(const char *path, gguf_vocab *v, char *err, size_t el) {
    memset(v, 0, sizeof *v);
    if (read_file(path, &v->data, &v->size)) return fail(err, el, "%s: cannot read", path);
    rd r = {(const unsigned char *)v->data, v->size, 0, 0};
    if (get(&r, 4) != 0x46554747u) return fail(err, el, "%s: not a GGUF file", path);
    uint32_t ver = (uint32_t)get(&r, 4);
    if (ver < 2 || ver > 3) return fail(err, el, "%s: GGUF version %u", path, ver);
    get(&r, 8); /* tensors */
    uint64_t nkv = get(&r, 8);
    lop_vocab_src *s = &v->src;
    s->bos_id = s->eos_id = s->unk_id = s->pad_id = -1;
    s->origin = path;
    int have_prefix = 0, prefix = 1;
    uint64_t n_scores = 0, n_types = 0;
    for (uint64_t k = 0; k < nkv && !r.bad; k++) {
        size_t kl;
        const char *key = get_str(&r, &kl);
        uint32_t t = (uint32_t)get(&r, 4);
        if (r.bad) break;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(kl < 127 ? kl : 127), key);
        if (t == T_STR) {
            size_t l;
            const char *str = get_str(&r, &l);
            if (r.bad) break;
            if (!strcmp(name, "tokenizer.ggml.model")) snprintf(v->model, sizeof v->model, "%.*s", (int)l, str);
            if (!strcmp(name, "tokenizer.ggml.pre")) snprintf(v->pre, sizeof v->pre, "%.*s", (int)l, str);
        } else if (t == T_ARR) {
            uint32_t et = (uint32_t)get(&r, 4);
            uint64_t n = get(&r, 8);
            if (r.bad || n > r.n) {
                r.bad = 1;
                break;
            }
            int is_tokens = !strcmp(name, "tokenizer.ggml.tokens"), is_merges = !strcmp(name, "tokenizer.ggml.merges");
            int is_scores = !strcmp(name, "tokenizer.ggml.scores"), is_types = !strcmp(name, "tokenizer.ggml.token_type");
            if (et == T_STR) {
                const char **arr = NULL;
                size_t *lens = NULL;
                if (is_tokens || is_merges) {
                    arr = calloc((size_t)n + 1, sizeof *arr);
                    lens = calloc((size_t)n + 1, sizeof *lens);
                    if (!arr || !lens) return fail(err, el, "out of memory");
                    if (is_tokens) v->tokens = arr, v->token_lens = lens, s->n_vocab = (int)n;
                    else v->merges = arr, v->merge_lens = lens, s->n_merges = (int)n;
                }
                for (uint64_t i = 0; i < n && !r.bad; i++) {
                    size_t l;
                    const char *str = get_str(&r, &l);
                    if (arr) arr[i] = str, lens[i] = l;
                }
            } else {
                int sz = scalar_size(et);
                if (!sz || n > (r.n - r.off) / (uint64_t)sz) {
                    r.bad = 1;
                    break;
                }
                if (is_scores && et == T_F32) {
                    v->scores = malloc((size_t)n * sizeof(float) + 1);
                    if (!v->scores) return fail(err, el, "out of memory");
                    memcpy(v->scores, r.p + r.off, (size_t)n * 4);
                    n_scores = n;
                } else if (is_types && et == T_I32) {
                    v->types = malloc((size_t)n * sizeof(int32_t) + 1);
                    if (!v->types) return fail(err, el, "out of memory");
                    memcpy(v->types, r.p + r.off, (size_t)n * 4);
                    n_types = n;
                }
                r.off += (size_t)n * (size_t)sz;
            }
        } else {
            int sz = scalar_size(t);
            if (!sz) return fail(err, el, "%s: key %s: unknown type %u", path, name, t);
            uint64_t val = get(&r, sz);
            if (!strcmp(name, "tokenizer.ggml.bos_token_id")) s->bos_id = (int)val;
            else if (!strcmp(name, "tokenizer.ggml.eos_token_id")) s->eos_id = (int)val;
            else if (!strcmp(name, "tokenizer.ggml.unknown_token_id")) s->unk_id = (int)val;
            else if (!strcmp(name, "tokenizer.ggml.padding_token_id")) s->pad_id = (int)val;
            else if (!strcmp(name, "tokenizer.ggml.add_bos_token")) s->add_bos = (int)val;
            else if (!strcmp(name, "tokenizer.ggml.add_eos_token")) s->add_eos = (int)val;
            else if (!strcmp(name, "tokenizer.ggml.add_space_prefix")) have_prefix = 1, prefix = (int)val;
        }
    }
    if (r.bad) return fail(err, el, "%s: truncated or corrupt key/value section", path);
    if (!v->tokens) return fail(err, el, "%s: no tokenizer.ggml.tokens", path);
    if ((v->scores && n_scores != (uint64_t)s->n_vocab) || (v->types && n_types != (uint64_t)s->n_vocab))
        return fail(err, el, "%s: scores/token_type arrays do not match the %d tokens", path, s->n_vocab);
    if (!strcmp(v->model, "llama")) {
        s->kind = LOP_TOK_SPM;
        s->byte_fallback = 1;
        s->add_space_prefix = have_prefix ? (prefix ? LOP_PREFIX_EVERY : LOP_PREFIX_NONE) : LOP_PREFIX_EVERY;
    } else if (!strcmp(v->model, "gpt2")) {
        s->kind = LOP_TOK_BPE;
        s->pretok = !strcmp(v->pre, "smollm") ? LOP_PRETOK_SMOLLM : !strcmp(v->pre, "llama-bpe") ? LOP_PRETOK_LLAMA3
                                                                                                : LOP_PRETOK_GPT2;
    } else {
        return fail(err, el, "%s: tokenizer.ggml.model '%s' not supported", path, v->model);
    }
    s->tokens = v->tokens;
    s->token_lens = v->token_lens;
    s->scores = v->scores;
    s->token_types = v->types;
    s->merges = v->merges;
    s->merge_lens = v->merge_lens;
    return 0;
}

void gguf_vocab_free(gguf_vocab *v) {
    free(v->data);
    free(v->tokens);
    free(v->token_lens);
    free(v->scores);
    free(v->types);
    free(v->merges);
    free(v->merge_lens);
    memset(v, 0, sizeof *v);
}
