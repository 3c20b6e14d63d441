/* Byte-level BPE (GPT-2 family: SmolLM2, Llama-3): the pre-tokenizer steps (regex splits with
 * PCRE2, digit splitting, the GPT-2 byte<->unicode map) and the merge loop by rank.
 * Why PCRE2: HF's pre-tokenizer patterns use Unicode classes (\p{L}, \p{N}), case-insensitive groups
 * and lookahead (\s+(?!\S)); PCRE2 with UTF + UCP runs them as written, JIT-compiled.
 * The merge loop works on token ids with a heap keyed by (rank, position), so a long piece (a CJK
 * sentence, a run of spaces) costs O(n log n), not O(n^2). The rank merge is also what HF's BPE
 * model does for SentencePiece-style tokenizer.json files (spm.c calls tok_merge_ranked). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "tokenizer/tok_internal.h"

static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---- GPT-2 byte <-> unicode map ---------------------------------------------------------------
 * Printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the others are shifted to
 * U+0100.. in byte order (space -> 'Ġ' U+0120, newline -> 'Ċ' U+010A). */
uint32_t tok_byte_to_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (uint32_t)b;
    if (b <= 32) return 256u + (uint32_t)b;
    if (b >= 127 && b <= 160) return 256u + 33u + (uint32_t)(b - 127);
    return 256u + 33u + 34u; /* 173 */
}

int tok_cp_to_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
    if (cp >= 256 && cp <= 288) return (int)cp - 256;
    if (cp >= 289 && cp <= 322) return (int)cp - 289 + 127;
    if (cp == 323) return 173;
    return -1;
}

/* ---- compiling the steps ------------------------------------------------------------------- */

void *tok_match_data_new(void) { return pcre2_match_data_create(16, NULL); }
void tok_match_data_free(void *md) {
    if (md) pcre2_match_data_free(md);
}

static lop_status compile_re(const lop_tokenizer *t, const char *pat, int literal, void **out) {
    int err;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return lop_fail(LOP_ERR_FORMAT, "%s: pre-tokenizer pattern '%.80s': %s at offset %zu", t->origin, pat,
                        (const char *)msg, (size_t)off);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter when unavailable */
    *out = re;
    return LOP_OK;
}

lop_status tok_steps_compile(lop_tokenizer *t, const lop_vocab_src *src) {
    lop_pretok_step def[2];
    const lop_pretok_step *steps = src->pretok_steps;
    int n = src->n_pretok_steps;
    if (n < 0 || (n > 0 && !steps)) return lop_fail(LOP_ERR_FORMAT, "%s: bad pre-tokenizer steps", t->origin);
    if (n == 0) {
        memset(def, 0, sizeof def);
        steps = def;
        switch (src->pretok) {
        case LOP_PRETOK_SMOLLM:
            def[0].type = LOP_STEP_DIGITS, def[0].individual_digits = 1;
            def[1].type = LOP_STEP_BYTELEVEL, def[1].use_regex = 1;
            n = 2;
            break;
        case LOP_PRETOK_LLAMA3:
            def[0].type = LOP_STEP_SPLIT, def[0].pattern = LLAMA3_RE, def[0].behavior = LOP_SPLIT_ISOLATED;
            def[1].type = LOP_STEP_BYTELEVEL, def[1].use_regex = 0;
            n = 2;
            break;
        case LOP_PRETOK_GPT2:
            def[0].type = LOP_STEP_BYTELEVEL, def[0].use_regex = 1;
            n = 1;
            break;
        default: return lop_fail(LOP_ERR_FORMAT, "%s: unknown pre-tokenizer %d", t->origin, (int)src->pretok);
        }
    }
    t->steps = calloc((size_t)n, sizeof *t->steps);
    if (!t->steps) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
    t->n_steps = n;
    for (int i = 0; i < n; i++) {
        const lop_pretok_step *s = &steps[i];
        tok_step *d = &t->steps[i];
        d->type = s->type;
        d->behavior = LOP_SPLIT_ISOLATED;
        switch (s->type) {
        case LOP_STEP_SPLIT:
            if (!s->pattern) return lop_fail(LOP_ERR_FORMAT, "%s: pre-tokenizer split without a pattern", t->origin);
            if (s->behavior < LOP_SPLIT_ISOLATED || s->behavior > LOP_SPLIT_CONTIGUOUS)
                return lop_fail(LOP_ERR_FORMAT, "%s: bad split behaviour %d", t->origin, (int)s->behavior);
            d->behavior = s->behavior;
            d->invert = s->invert;
            LOP_TRY(compile_re(t, s->pattern, s->literal, &d->re));
            break;
        case LOP_STEP_DIGITS:
            /* HF Digits: individual -> each \p{N} isolated; else runs of them (Contiguous) */
            d->individual_digits = s->individual_digits;
            LOP_TRY(compile_re(t, s->individual_digits ? "\\p{N}" : "\\p{N}+", 0, &d->re));
            break;
        case LOP_STEP_BYTELEVEL:
            d->add_prefix_space = s->add_prefix_space;
            if (s->use_regex) LOP_TRY(compile_re(t, GPT2_RE, 0, &d->re));
            break;
        default: return lop_fail(LOP_ERR_FORMAT, "%s: unknown pre-tokenizer step %d", t->origin, (int)s->type);
        }
    }
    return LOP_OK;
}

void tok_steps_free(lop_tokenizer *t) {
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].re) pcre2_code_free(t->steps[i].re);
    free(t->steps);
    t->steps = NULL;
    t->n_steps = 0;
}

/* ---- merging -------------------------------------------------------------------------------- */

lop_status tok_merge_ranked(const lop_tokenizer *t, tok_ctx *c, int n, tok_ids *out) {
    int32_t *sym = c->sym, *prev = c->prev, *next = c->next;
    if (n <= 1) return n == 1 ? tok_ids_push(out, sym[0]) : LOP_OK;
    int nh = 0;
    for (int i = 0; i < n; i++) {
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
        if (i + 1 < n) {
            const tok_merge *m = tok_merge_find(t, sym[i], sym[i + 1]);
            if (m) tok_heap_push(c->heap, &nh, (tok_heap_ent){m->rank, i, 0});
        }
    }
    while (nh > 0) {
        tok_heap_ent e = tok_heap_pop(c->heap, &nh);
        int l = e.left, r;
        if (sym[l] < 0 || (r = next[l]) < 0) continue;
        const tok_merge *m = tok_merge_find(t, sym[l], sym[r]);
        if (!m || (double)m->rank != e.key) continue; /* stale entry */
        sym[l] = m->id;
        sym[r] = -1;
        next[l] = next[r];
        if (next[r] >= 0) prev[next[r]] = l;
        if (prev[l] >= 0) {
            const tok_merge *p = tok_merge_find(t, sym[prev[l]], sym[l]);
            if (p) tok_heap_push(c->heap, &nh, (tok_heap_ent){p->rank, prev[l], 0});
        }
        if (next[l] >= 0) {
            const tok_merge *q = tok_merge_find(t, sym[l], sym[next[l]]);
            if (q) tok_heap_push(c->heap, &nh, (tok_heap_ent){q->rank, l, 0});
        }
    }
    for (int i = 0; i >= 0; i = next[i]) LOP_TRY(tok_ids_push(out, sym[i]));
    return LOP_OK;
}

/* One pre-tokenized piece (raw bytes) through the byte-level BPE model. */
static lop_status bpe_piece(const lop_tokenizer *t, tok_ctx *c, const unsigned char *s, size_t n, tok_ids *out) {
    if (t->ignore_merges) { /* the whole piece is a token: take it (HF ignore_merges) */
        LOP_TRY(tok_ctx_buf(c, 2 * n + 1));
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t cp = tok_byte_to_cp(s[i]);
            if (cp < 0x80) {
                c->buf[o++] = (char)cp;
            } else {
                c->buf[o++] = (char)(0xC0 | (cp >> 6));
                c->buf[o++] = (char)(0x80 | (cp & 0x3F));
            }
        }
        int id = tok_vocab_find(t, c->buf, o);
        if (id >= 0) return tok_ids_push(out, id);
    }
    if (n > (size_t)INT32_MAX / 4) return lop_fail(LOP_ERR_ARG, "%s: piece too long", t->origin);
    LOP_TRY(tok_ctx_reserve(c, (int)n));
    int m = 0, prev_unk = 0;
    for (size_t i = 0; i < n; i++) {
        int id = t->byte_id[s[i]];
        if (id < 0) { /* a byte whose char is not in the vocabulary: UNK, or dropped (HF, llama.cpp) */
            if (!t->unk_fallback || (t->fuse_unk && prev_unk)) continue;
            id = t->unk;
            prev_unk = 1;
        } else {
            prev_unk = 0;
        }
        c->sym[m++] = id;
    }
    return tok_merge_ranked(t, c, m, out);
}

/* ---- pre-tokenizer steps -------------------------------------------------------------------- */

static lop_status run_steps(const lop_tokenizer *t, tok_ctx *c, int k, const char *s, size_t n, tok_ids *out);

typedef struct split_state {
    const lop_tokenizer *t;
    tok_ctx *c;
    int k;
    const char *s;
    tok_ids *out;
    lop_split_behavior behavior;
    int invert, last_delim;
    size_t pend;
} split_state;

static lop_status emit(split_state *st, size_t a, size_t b) {
    if (b <= a) return LOP_OK;
    return run_steps(st->t, st->c, st->k + 1, st->s + a, b - a, st->out);
}

/* One span of the piece: a match of the pattern or the text between two matches. */
static lop_status span(split_state *st, size_t a, size_t b, int is_match) {
    if (b <= a) return LOP_OK;
    int delim = st->invert ? !is_match : is_match;
    switch (st->behavior) {
    case LOP_SPLIT_ISOLATED: return emit(st, a, b);
    case LOP_SPLIT_REMOVED:
        if (!delim) return emit(st, a, b);
        st->pend = b;
        return LOP_OK;
    case LOP_SPLIT_MERGED_PREV:
        if (delim) {
            LOP_TRY(emit(st, st->pend, b));
            st->pend = b;
        }
        return LOP_OK;
    case LOP_SPLIT_MERGED_NEXT:
        if (delim) {
            LOP_TRY(emit(st, st->pend, a));
            st->pend = a;
        }
        return LOP_OK;
    case LOP_SPLIT_CONTIGUOUS:
        if (delim != st->last_delim) {
            LOP_TRY(emit(st, st->pend, a));
            st->pend = a;
        }
        st->last_delim = delim;
        return LOP_OK;
    }
    return LOP_OK;
}

static lop_status split_re(const lop_tokenizer *t, tok_ctx *c, int k, const tok_step *step, const char *s, size_t n,
                           tok_ids *out) {
    split_state st = {t, c, k, s, out, step->behavior, step->invert, 0, 0};
    const pcre2_code *re = step->re;
    pcre2_match_data *md = c->md;
    size_t pos = 0, from = 0;
    while (from < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return lop_fail(LOP_ERR_ARG, "%s: pre-tokenizer regex failed: %s", t->origin, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* empty match: no piece, move on by one character */
            from = ms + (size_t)(ms < n ? tok_utf8_len((const unsigned char *)s + ms, n - ms) : 1);
            continue;
        }
        LOP_TRY(span(&st, pos, ms, 0));
        LOP_TRY(span(&st, ms, me, 1));
        pos = from = me;
    }
    LOP_TRY(span(&st, pos, n, 0));
    if (st.behavior != LOP_SPLIT_ISOLATED && st.behavior != LOP_SPLIT_REMOVED) LOP_TRY(emit(&st, st.pend, n));
    return LOP_OK;
}

static lop_status run_steps(const lop_tokenizer *t, tok_ctx *c, int k, const char *s, size_t n, tok_ids *out) {
    if (n == 0) return LOP_OK;
    if (k == t->n_steps) return bpe_piece(t, c, (const unsigned char *)s, n, out);
    const tok_step *step = &t->steps[k];
    if (step->type != LOP_STEP_BYTELEVEL) return split_re(t, c, k, step, s, n, out);
    if (step->add_prefix_space && s[0] != ' ') {
        char *p = malloc(n + 1);
        if (!p) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
        p[0] = ' ';
        memcpy(p + 1, s, n);
        tok_step plain = *step;
        plain.add_prefix_space = 0;
        lop_status st = step->re ? split_re(t, c, k, &plain, p, n + 1, out) : run_steps(t, c, k + 1, p, n + 1, out);
        free(p);
        return st;
    }
    return step->re ? split_re(t, c, k, step, s, n, out) : run_steps(t, c, k + 1, s, n, out);
}

lop_status tok_bpe_encode(const lop_tokenizer *t, tok_ctx *c, const char *s, size_t n, tok_ids *out) {
    return run_steps(t, c, 0, s, n, out);
}
