/* Tokenizers: byte-level BPE with merges (GPT-2 style: SmolLM2, Llama-3) and SentencePiece-style
 * BPE with scores and byte fallback (LLaMA-1/2).
 * Why one neutral description (lop_vocab_src): GGUF metadata and HF tokenizer.json describe the same
 * two algorithms; each source only has to fill this struct, the algorithms are written once. */
#ifndef LOP_TOKENIZER_TOKENIZER_H
#define LOP_TOKENIZER_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

#include "lop.h"

typedef enum lop_tok_kind {
    LOP_TOK_SPM = 0,  /* SentencePiece-style BPE: scores, "▁" for space, <0xNN> byte fallback */
    LOP_TOK_BPE = 1   /* byte-level BPE with ranked merges (GPT-2 byte↔unicode map) */
} lop_tok_kind;

/* Token types, as GGUF's tokenizer.ggml.token_type. */
enum { LOP_TT_NORMAL = 1, LOP_TT_UNKNOWN = 2, LOP_TT_CONTROL = 3, LOP_TT_USER = 4, LOP_TT_UNUSED = 5,
       LOP_TT_BYTE = 6 };

/* Pre-tokenizer (splitting before BPE) for byte-level BPE. */
typedef enum lop_pretok {
    LOP_PRETOK_GPT2 = 0,   /* GPT-2 regex */
    LOP_PRETOK_SMOLLM = 1, /* individual digits, then GPT-2 regex (SmolLM / StarCoder family) */
    LOP_PRETOK_LLAMA3 = 2  /* Llama-3 regex */
} lop_pretok;

typedef struct lop_vocab_src {
    lop_tok_kind kind;
    int n_vocab;
    const char *const *tokens;   /* [n_vocab] token strings (UTF-8, as stored: "▁" / "Ġ" forms) */
    const size_t *token_lens;    /* [n_vocab] byte lengths, or NULL for NUL-terminated */
    const float *scores;         /* [n_vocab] (SPM) or NULL */
    const int32_t *token_types;  /* [n_vocab] LOP_TT_* or NULL (all normal) */
    int n_merges;                /* BPE: merges as "left right" strings, rank = index */
    const char *const *merges;
    const size_t *merge_lens;    /* or NULL */
    int bos_id, eos_id, unk_id, pad_id; /* -1 when absent */
    int add_bos;                 /* default for encode */
    int add_space_prefix;        /* SPM: prepend "▁" to the text (LLaMA-1/2 default 1) */
    int byte_fallback;           /* SPM: unknown chars → <0xNN> tokens */
    lop_pretok pretok;
    const char *origin;          /* file name for error messages */
} lop_vocab_src;

typedef struct lop_tokenizer lop_tokenizer;

/* Copies everything it needs from src. */
lop_status lop_tokenizer_create(const lop_vocab_src *src, lop_tokenizer **out);
/* Reads an HF tokenizer.json (model.type "BPE", with byte_fallback for SPM-style). */
lop_status lop_tokenizer_from_hf_json(const char *path, lop_tokenizer **out);
void lop_tokenizer_free(lop_tokenizer *t);

/* Encodes text; special/added tokens written literally in the text (e.g. "<|im_start|>") are
 * matched as single tokens, as HF does. add_bos: -1 = tokenizer default, 0 / 1 = force. */
lop_status lop_tokenizer_encode(const lop_tokenizer *t, const char *text, size_t len, int add_bos,
                                int32_t **ids, int *n_ids);
/* Decodes like HF decode(ids, skip_special_tokens=False); malloc'd NUL-terminated result. */
lop_status lop_tokenizer_decode(const lop_tokenizer *t, const int32_t *ids, int n_ids, char **text);
/* Bytes of one token as it appears in decoded text (for streaming output). `prev` is the previous
 * id or -1 (SPM drops the leading space of the first token after BOS). Returns bytes written. */
int lop_tokenizer_token_bytes(const lop_tokenizer *t, int prev, int id, char *buf, int cap);

int lop_tokenizer_n_vocab(const lop_tokenizer *t);
int lop_tokenizer_bos(const lop_tokenizer *t);
int lop_tokenizer_eos(const lop_tokenizer *t);
lop_tok_kind lop_tokenizer_kind(const lop_tokenizer *t);

#endif
