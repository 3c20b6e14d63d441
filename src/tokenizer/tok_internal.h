/* Internals shared by the tokenizer files (tokenizer.c: tables, specials, encode driver, decode;
 * bpe.c: pre-tokenizer and rank merges; spm.c: SentencePiece normalisation and score merges;
 * hf_json.c: tokenizer.json). Why a private header: the struct layout and the hash tables are
 * details the rest of lop must not depend on. tok_util.c: buffers, UTF-8, scratch, heap. */
#ifndef LOP_TOKENIZER_TOK_INTERNAL_H
#define LOP_TOKENIZER_TOK_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* Growable id vector (the encode output). */
typedef struct tok_ids {
    int32_t *v;
    int n, cap;
} tok_ids;
lop_status tok_ids_push(tok_ids *a, int32_t id); /* tok_util.c */

/* One compiled pre-tokenizer step (pcre2_code kept opaque here). */
typedef struct tok_step {
    lop_pretok_step_type type;
    void *re;  /* pcre2_code * for SPLIT and BYTELEVEL with use_regex */
    lop_split_behavior behavior;
    int invert, individual_digits, add_prefix_space;
} tok_step;

typedef struct tok_added {
    int id;
    int special, lstrip, rstrip;
    const char *s; /* = tok[id] */
    uint32_t len;
} tok_added;

/* merge pair (a, b) -> rank and merged id; open addressing */
typedef struct tok_merge {
    uint64_t key; /* (a << 32 | b) + 1; 0 = empty slot */
    int32_t rank, id;
} tok_merge;

struct lop_tokenizer {
    lop_tok_kind kind;
    int n_vocab;
    char **tok;        /* stored strings, NUL-terminated */
    uint32_t *tok_len;
    float *score;
    int32_t *type;
    /* decode: bytes each token adds to the text (byte-level map / "▁" -> " "); byte tokens of SPM
     * have byte_val >= 0 and are grouped as HF's ByteFallback decoder does */
    char **dec;
    uint32_t *dec_len;
    int16_t *byte_val;

    /* vocab hash: string -> id */
    int32_t *vh;
    uint32_t vh_mask;
    /* merges */
    tok_merge *mh;
    uint32_t mh_mask;
    int n_merges;

    int byte_id[256]; /* BPE: id of each byte's mapped char; SPM: id of <0xNN> (-1 = none) */
    int has_all_bytes;

    tok_added *added; /* literal matches, sorted by first byte then length (longest first) */
    int n_added;
    int added_first[257]; /* added[] index range per first byte */

    int bos, eos, unk, pad;
    int add_bos, add_eos;
    int space_prefix, spm_split, decode_strip;
    int byte_fallback, fuse_unk, ignore_merges;
    int unk_fallback; /* text with no token becomes unk (else dropped) */
    int score_mode; /* SPM: merges chosen by score (no merge list) */
    int ws_split;   /* SPM: no token holds "▁" after another character, so the text can be cut before
                       each such "▁" without changing the result (speed only) */

    tok_step *steps;
    int n_steps;
    char *origin;
};

/* ---- hashing (tokenizer.c) ---- */
uint32_t tok_hash(const char *s, size_t n);
int tok_vocab_find(const lop_tokenizer *t, const char *s, size_t n);
/* returns the merge for (a, b) or NULL */
const tok_merge *tok_merge_find(const lop_tokenizer *t, int32_t a, int32_t b);

/* ---- UTF-8 (tok_util.c) ---- */
/* Length of the UTF-8 sequence starting at s (1 for an invalid lead byte); n = bytes available. */
int tok_utf8_len(const unsigned char *s, size_t n);
/* Decodes one code point; returns its length (valid input assumed). */
int tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* First invalid byte offset, or -1 when s is valid UTF-8. */
long tok_utf8_check(const unsigned char *s, size_t n);
/* Appends bytes with invalid sequences replaced by U+FFFD (maximal subparts, as Rust and Python). */
lop_status tok_append_lossy(char **buf, size_t *len, size_t *cap, const unsigned char *s, size_t n);
lop_status tok_append(char **buf, size_t *len, size_t *cap, const void *s, size_t n);

/* Merge candidate: smallest key first (rank, or -score), then leftmost. */
typedef struct tok_heap_ent {
    double key;
    int32_t left, size;
} tok_heap_ent;

/* Per-call scratch (the tokenizer itself stays read-only during encode, so calls may run in
 * parallel threads). */
typedef struct tok_ctx {
    void *md;         /* pcre2_match_data * */
    int32_t *sym;     /* symbol ids */
    int32_t *start, *len, *prev, *next;
    tok_heap_ent *heap;
    int cap, heap_cap;
    char *buf;        /* normalised text / mapped piece */
    size_t buf_cap;
} tok_ctx;
lop_status tok_ctx_init(tok_ctx *c, const lop_tokenizer *t);
void tok_ctx_free(tok_ctx *c);
lop_status tok_ctx_reserve(tok_ctx *c, int n);
lop_status tok_ctx_buf(tok_ctx *c, size_t n);
void tok_heap_push(tok_heap_ent *h, int *n, tok_heap_ent e);
tok_heap_ent tok_heap_pop(tok_heap_ent *h, int *n);

/* ---- byte-level BPE (bpe.c) ---- */
/* GPT-2 byte -> unicode code point map and its inverse (-1 for code points that are no byte). */
uint32_t tok_byte_to_cp(int b);
int tok_cp_to_byte(uint32_t cp);
lop_status tok_steps_compile(lop_tokenizer *t, const lop_vocab_src *src);
void tok_steps_free(lop_tokenizer *t);
void *tok_match_data_new(void);
void tok_match_data_free(void *md);
/* Encodes one stretch of plain text (no specials) with the byte-level pipeline. */
lop_status tok_bpe_encode(const lop_tokenizer *t, tok_ctx *c, const char *s, size_t n, tok_ids *out);
/* Merges c->sym[0..n) by rank (HF BPE model) and appends the result to out. */
lop_status tok_merge_ranked(const lop_tokenizer *t, tok_ctx *c, int n, tok_ids *out);

/* ---- SentencePiece-style (spm.c) ---- */
/* Encodes one stretch of plain text; first = it starts the input. */
lop_status tok_spm_encode(const lop_tokenizer *t, tok_ctx *c, const char *s, size_t n, int first,
                          tok_ids *out);

#endif
