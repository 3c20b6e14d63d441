/* Tokenizers: byte-level BPE with merges (GPT-2 style: SmolLM2, Llama-3) and SentencePiece-style
 * BPE with scores and byte fallback (LLaMA-1/2).
 * Why one neutral description (lop_vocab_src): GGUF metadata and HF tokenizer.json describe the same
 * two algorithms; each source only has to fill this struct, the algorithms are written once.
 * Fill it zero-initialised (`lop_vocab_src src = {0};`): every field added after the first
 * version means "as before / derive it" when zero. */
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
    LOP_PRETOK_LLAMA3 = 2  /* Llama-3 regex (and whole words found in the vocab skip the merges) */
} lop_pretok;

/* add_space_prefix values (SPM). GGUF's tokenizer.ggml.add_space_prefix true = 1. */
enum {
    LOP_PREFIX_NONE = 0,
    LOP_PREFIX_EVERY = 1,       /* "▁" before every stretch of text between special tokens
                                   (sentencepiece add_dummy_prefix, llama.cpp, HF Prepend normalizer) */
    LOP_PREFIX_FIRST = 2,       /* only before text that starts the input, and only if it does not start
                                   with a space already (HF Metaspace prepend_scheme "first") */
    LOP_PREFIX_EVERY_NOSP = 3   /* every stretch that does not start with a space (Metaspace "always") */
};

/* One pre-tokenizer step (HF pre_tokenizer vocabulary); steps run in order, each splits the pieces
 * the previous one produced. Sources that only know lop_pretok leave the steps out. */
typedef enum lop_pretok_step_type {
    LOP_STEP_SPLIT = 0,     /* regex (or literal) split, HF "Split" */
    LOP_STEP_DIGITS = 1,    /* HF "Digits": numbers (\p{N}) apart from the rest */
    LOP_STEP_BYTELEVEL = 2  /* HF "ByteLevel": optional GPT-2 regex split and prefix space */
} lop_pretok_step_type;

typedef enum lop_split_behavior {
    LOP_SPLIT_ISOLATED = 0, LOP_SPLIT_REMOVED = 1, LOP_SPLIT_MERGED_PREV = 2, LOP_SPLIT_MERGED_NEXT = 3,
    LOP_SPLIT_CONTIGUOUS = 4
} lop_split_behavior;

typedef struct lop_pretok_step {
    lop_pretok_step_type type;
    const char *pattern;          /* SPLIT: the pattern (UTF-8, PCRE/Oniguruma syntax) */
    int literal;                  /* SPLIT: pattern is a plain string, not a regex */
    lop_split_behavior behavior;  /* SPLIT */
    int invert;                   /* SPLIT: the pattern matches the pieces, not the delimiters */
    int individual_digits;        /* DIGITS */
    int use_regex;                /* BYTELEVEL: split with the GPT-2 regex first */
    int add_prefix_space;         /* BYTELEVEL: prepend " " to a piece that does not start with one */
} lop_pretok_step;

/* Tokens matched literally in the input before any splitting (HF added_tokens). */
typedef struct lop_added_token {
    int id;
    int special;       /* decode could skip it (HF skip_special_tokens) */
    int lstrip, rstrip; /* the match also eats the whitespace on that side */
} lop_added_token;

typedef struct lop_vocab_src {
    lop_tok_kind kind;
    int n_vocab;
    const char *const *tokens;   /* [n_vocab] token strings (UTF-8, as stored: "▁" / "Ġ" forms) */
    const size_t *token_lens;    /* [n_vocab] byte lengths, or NULL for NUL-terminated */
    const float *scores;         /* [n_vocab] (SPM) or NULL */
    const int32_t *token_types;  /* [n_vocab] LOP_TT_* or NULL (all normal) */
    int n_merges;                /* BPE: merges as "left right" strings, rank = index */
    const char *const *merges;   /* SPM with merges: merge by rank (HF), without: by score (llama.cpp) */
    const size_t *merge_lens;    /* or NULL */
    int bos_id, eos_id, unk_id, pad_id; /* -1 when absent */
    int add_bos;                 /* default for encode */
    int add_space_prefix;        /* SPM: LOP_PREFIX_* (LLaMA-1/2: LOP_PREFIX_EVERY) */
    int byte_fallback;           /* SPM: unknown chars → <0xNN> tokens. SPM without merges (llama.cpp
                                    semantics) always falls back to <0xNN> tokens when they exist */
    lop_pretok pretok;
    const char *origin;          /* file name for error messages */

    /* ---- optional, zero = derive (GGUF leaves these zero) ---------------------------------- */
    int add_eos;                 /* default: append EOS when encoding with specials */
    int n_pretok_steps;          /* BPE: explicit steps replace `pretok` (tokenizer.json) */
    const lop_pretok_step *pretok_steps;
    int n_added;                 /* > 0: exactly these are matched literally (tokenizer.json);
                                    0: every CONTROL, USER and UNKNOWN token (llama.cpp) */
    const lop_added_token *added;
    int ignore_merges;           /* 1: a piece that is a token as a whole is not merged (HF BPE
                                    ignore_merges); also implied by LOP_PRETOK_LLAMA3 */
    int unk_fallback;            /* merge by rank (BPE, SPM with merges): 1 = text with no token (and no
                                    byte token) becomes unk_id, as HF with model.unk_token; 0 = it is
                                    dropped, as llama.cpp and HF without unk_token. Score mode: always 1 */
    int fuse_unk;                /* 1: consecutive unknowns become one UNK (HF fuse_unk) */
    int spm_split;               /* SPM: split before each "▁" (HF Metaspace split=true) */
    const size_t *merge_split;   /* [n_merges] offset of the space between the two tokens of each
                                    merge, or NULL (then the first space where both sides are tokens) */
    int decode_strip;            /* SPM decode: strip one leading space. 0 = derive from add_space_prefix
                                    (strip when prefixing), 1 = strip, -1 = keep */
} lop_vocab_src;

typedef struct lop_tokenizer lop_tokenizer;

/* Copies everything it needs from src. */
lop_status lop_tokenizer_create(const lop_vocab_src *src, lop_tokenizer **out);
/* Reads an HF tokenizer.json (model.type "BPE": byte-level, or SPM-style with Metaspace / Prepend
 * normalizer and byte_fallback). Also reads tokenizer_config.json from the same folder when present
 * (bos_token, eos_token, pad_token, add_bos_token, add_eos_token), as HF does. */
lop_status lop_tokenizer_from_hf_json(const char *path, lop_tokenizer **out);
/* Same from JSON text in memory (no tokenizer_config.json); origin names it in error messages. */
lop_status lop_tokenizer_from_hf_json_text(const char *json, size_t len, const char *origin,
                                           lop_tokenizer **out);
/* The tokenizer of a GGUF file, from its metadata alone (implemented beside the GGUF model loader).
 * lop_gguf_vocab_open exposes the description itself (valid until close), e.g. to adjust it. */
typedef struct lop_gguf_vocab lop_gguf_vocab;
lop_status lop_tokenizer_from_gguf(const char *path, lop_tokenizer **out);
lop_status lop_gguf_vocab_open(const char *path, lop_gguf_vocab **v, const lop_vocab_src **src);
void lop_gguf_vocab_close(lop_gguf_vocab *v);
void lop_tokenizer_free(lop_tokenizer *t);

/* Writes DIR/tokenizer.json and DIR/tokenizer_config.json from a GGUF file's tokenizer metadata
 * (byte-level BPE only: HF tokenizers then encodes as lop does) and describes what it did in
 * desc. *written = 0 with LOP_OK when there is nothing to write (no tokenizer, or a
 * SentencePiece-style vocabulary); desc says why. */
lop_status lop_tokenizer_write_hf_from_gguf(const char *gguf, const char *dir, int *written, char *desc, size_t cap);

/* Overrides special ids after creation (e.g. from config.json); a negative value leaves one as is. */
lop_status lop_tokenizer_set_bos_eos(lop_tokenizer *t, int bos_id, int eos_id);

/* Encodes text; special/added tokens written literally in the text (e.g. "<|im_start|>") are
 * matched as single tokens, as HF does. add_bos: -1 = tokenizer default, 0 / 1 = force.
 * text must be valid UTF-8 (LOP_ERR_ARG otherwise). */
lop_status lop_tokenizer_encode(const lop_tokenizer *t, const char *text, size_t len, int add_bos,
                                int32_t **ids, int *n_ids);
/* Decodes like HF decode(ids, skip_special_tokens=False); malloc'd NUL-terminated result. Invalid
 * UTF-8 from byte tokens becomes U+FFFD as HF does. */
lop_status lop_tokenizer_decode(const lop_tokenizer *t, const int32_t *ids, int n_ids, char **text);
/* Bytes of one token as it appears in decoded text (for streaming output; raw bytes, so a character
 * split over byte tokens arrives in pieces). `prev` is the previous id or -1 (SPM drops the leading
 * space of the first token after BOS). Writes at most cap bytes and returns the token's full byte
 * count (call again with a larger buffer when it exceeds cap), or -1 for a bad id. */
int lop_tokenizer_token_bytes(const lop_tokenizer *t, int prev, int id, char *buf, int cap);

int lop_tokenizer_n_vocab(const lop_tokenizer *t);
int lop_tokenizer_bos(const lop_tokenizer *t);
int lop_tokenizer_eos(const lop_tokenizer *t);
lop_tok_kind lop_tokenizer_kind(const lop_tokenizer *t);
/* Token string as stored ("Ġ" / "▁" forms), NULL for a bad id. */
const char *lop_tokenizer_token_str(const lop_tokenizer *t, int id, size_t *len);
/* Id of a stored token string, -1 if none. */
int lop_tokenizer_find(const lop_tokenizer *t, const char *str, size_t len);

#endif
