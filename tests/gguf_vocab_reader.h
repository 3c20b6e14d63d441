/* Test support: a minimal GGUF metadata reader that fills a lop_vocab_src from the
 * tokenizer.ggml.* keys of a (tokenizer-only) GGUF file.
 * Why in tests/: the real GGUF loader is written in parallel (src/io/gguf); the tokenizer tests
 * need only the key/value section, strings and arrays, and must not wait for it. Once the real
 * loader lands, the tests should switch to it and this file can go. */
#ifndef LOP_TESTS_GGUF_VOCAB_READER_H
#define LOP_TESTS_GGUF_VOCAB_READER_H
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef struct gguf_vocab {
    lop_vocab_src src; /* points into the fields below */
    char *data;        /* the whole file */
    size_t size;
    const char **tokens;
    size_t *token_lens;
    float *scores;
    int32_t *types;
    const char **merges;
    size_t *merge_lens;
    char model[32], pre[64];
} gguf_vocab;

/* 0 on success; on failure -1 with a message in err. Mapping as the GGUF loader should do it:
 * tokenizer.ggml.model "llama" -> LOP_TOK_SPM (byte_fallback 1, add_space_prefix default 1),
 * "gpt2" -> LOP_TOK_BPE; tokenizer.ggml.pre "smollm" -> LOP_PRETOK_SMOLLM, "llama-bpe" ->
 * LOP_PRETOK_LLAMA3, anything else -> LOP_PRETOK_GPT2. */
int gguf_vocab_read(const char *path, gguf_vocab *v, char *err, size_t err_len);
void gguf_vocab_free(gguf_vocab *v);

#endif
