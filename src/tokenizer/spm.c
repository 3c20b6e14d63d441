/* SentencePiece-style BPE (LLaMA-1/2): spaces become "▁", a "▁" is prefixed to the text, then
 * characters are merged. Two merge rules, one per source:
 *  - by score (GGUF, llama.cpp's llm_tokenizer_spm = sentencepiece's BPE): repeatedly merge the
 *    adjacent pair whose concatenation is the vocabulary token with the highest score (leftmost on
 *    ties); leftover characters that are not tokens become <0xNN> byte tokens (or UNK);
 *  - by merge rank (HF tokenizer.json, BPE model with byte_fallback): characters not in the
 *    vocabulary become byte tokens first, then the merges apply in rank order (bpe.c).
 * Why both: each source's reference (sentencepiece for GGUF, HF for tokenizer.json) must be matched
 * exactly, and they are different algorithms that agree on nearly all text. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "tokenizer/tok_internal.h"

static const char SPACE_MARK[] = "\xE2\x96\x81"; /* U+2581 "▁" */

static int starts_with_space(const char *s, size_t n) {
    return (n >= 1 && s[0] == ' ') || (n >= 3 && memcmp(s, SPACE_MARK, 3) == 0);
}

static lop_status push_unknown(const lop_tokenizer *t, const unsigned char *s, int n, int use_bytes, int *prev_unk,
                               tok_ids *out) {
    if (use_bytes) {
        int ok = 1;
        for (int j = 0; j < n; j++) ok &= t->byte_id[s[j]] >= 0;
        if (ok) {
            for (int j = 0; j < n; j++) LOP_TRY(tok_ids_push(out, t->byte_id[s[j]]));
            *prev_unk = 0;
            return LOP_OK;
        }
    }
    if (!t->unk_fallback) return LOP_OK; /* dropped, as HF does without an unk token */
    if (t->fuse_unk && *prev_unk) return LOP_OK;
    *prev_unk = 1;
    return tok_ids_push(out, t->unk);
}

/* ---- by score (llama.cpp / sentencepiece) --------------------------------------------------- */

static void try_pair(const lop_tokenizer *t, tok_ctx *c, int *nh, int l, int r, const char *s) {
    if (l < 0 || r < 0) return;
    int id = tok_vocab_find(t, s + c->start[l], (size_t)(c->len[l] + c->len[r]));
    if (id < 0 || t->type[id] == LOP_TT_UNUSED) return;
    tok_heap_push(c->heap, nh, (tok_heap_ent){-(double)t->score[id], l, c->len[l] + c->len[r]});
}

static lop_status merge_by_score(const lop_tokenizer *t, tok_ctx *c, const char *s, size_t n, tok_ids *out) {
    LOP_TRY(tok_ctx_reserve(c, (int)n));
    int m = 0;
    for (size_t i = 0; i < n;) {
        int l = tok_utf8_len((const unsigned char *)s + i, n - i);
        c->start[m] = (int32_t)i;
        c->len[m] = l;
        c->prev[m] = m - 1;
        c->next[m] = -1;
        if (m > 0) c->next[m - 1] = m;
        m++;
        i += (size_t)l;
    }
    int nh = 0;
    for (int i = 0; i + 1 < m; i++) try_pair(t, c, &nh, i, i + 1, s);
    while (nh > 0) {
        tok_heap_ent e = tok_heap_pop(c->heap, &nh);
        int l = e.left, r = c->next[l];
        if (c->len[l] == 0 || r < 0 || c->len[l] + c->len[r] != e.size) continue; /* stale */
        c->len[l] += c->len[r];
        c->len[r] = 0;
        c->next[l] = c->next[r];
        if (c->next[r] >= 0) c->prev[c->next[r]] = l;
        try_pair(t, c, &nh, c->prev[l], l, s);
        try_pair(t, c, &nh, l, c->next[l], s);
    }
    int prev_unk = 0;
    for (int i = 0; i >= 0 && m > 0; i = c->next[i]) {
        const char *p = s + c->start[i];
        int id = tok_vocab_find(t, p, (size_t)c->len[i]);
        if (id >= 0) {
            LOP_TRY(tok_ids_push(out, id));
            prev_unk = 0;
        } else {
            LOP_TRY(push_unknown(t, (const unsigned char *)p, c->len[i], t->byte_fallback, &prev_unk, out));
        }
    }
    return LOP_OK;
}

/* ---- by rank (HF BPE model) ----------------------------------------------------------------- */

static lop_status merge_by_rank(const lop_tokenizer *t, tok_ctx *c, const char *s, size_t n, tok_ids *out) {
    if (t->ignore_merges) {
        int id = tok_vocab_find(t, s, n);
        if (id >= 0) return tok_ids_push(out, id);
    }
    LOP_TRY(tok_ctx_reserve(c, (int)n));
    /* symbols go straight into c->sym; unknown characters expand to byte tokens or UNK */
    tok_ids tmp = {c->sym, 0, c->cap};
    int prev_unk = 0;
    for (size_t i = 0; i < n;) {
        int l = tok_utf8_len((const unsigned char *)s + i, n - i);
        int id = tok_vocab_find(t, s + i, (size_t)l);
        if (id >= 0) {
            tmp.v[tmp.n++] = id;
            prev_unk = 0;
        } else {
            LOP_TRY(push_unknown(t, (const unsigned char *)s + i, l, t->byte_fallback, &prev_unk, &tmp));
        }
        i += (size_t)l;
    }
    return tok_merge_ranked(t, c, tmp.n, out);
}

/* ---- normalisation ------------------------------------------------------------------------- */

lop_status tok_spm_encode(const lop_tokenizer *t, tok_ctx *c, const char *s, size_t n, int first, tok_ids *out) {
    int prefix = 0;
    switch (t->space_prefix) {
    case LOP_PREFIX_EVERY: prefix = 1; break;
    case LOP_PREFIX_FIRST: prefix = first && !starts_with_space(s, n); break;
    case LOP_PREFIX_EVERY_NOSP: prefix = !starts_with_space(s, n); break;
    default: prefix = 0;
    }
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    size_t nn = n + 2 * spaces + (prefix ? 3 : 0);
    LOP_TRY(tok_ctx_buf(c, nn + 1));
    char *d = c->buf;
    size_t o = 0;
    if (prefix) memcpy(d, SPACE_MARK, 3), o = 3;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(d + o, SPACE_MARK, 3);
            o += 3;
        } else {
            d[o++] = s[i];
        }
    }
    /* The normalised text is copied out of c->buf, which the merge steps below do not touch, but
     * keep the pieces independent of later growth anyway. */
    char *norm = malloc(o ? o : 1);
    if (!norm) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
    memcpy(norm, d, o);
    lop_status st = LOP_OK;
    size_t a = 0;
    while (st == LOP_OK && a < o) {
        size_t b = o;
        if (t->spm_split) { /* Metaspace split: pieces start at each "▁" */
            for (b = a + 1; b < o; b++)
                if (b + 3 <= o && memcmp(norm + b, SPACE_MARK, 3) == 0) break;
        } else if (t->ws_split) { /* cut before a "▁" that follows another character: no token
                                     spans that point, so no merge does (same result, faster) */
            size_t k = a;
            while (k + 3 <= o && memcmp(norm + k, SPACE_MARK, 3) == 0) k += 3;
            for (b = k; b < o; b++)
                if (b > k && b + 3 <= o && memcmp(norm + b, SPACE_MARK, 3) == 0) break;
        }
        st = t->score_mode ? merge_by_score(t, c, norm + a, b - a, out) : merge_by_rank(t, c, norm + a, b - a, out);
        a = b;
    }
    free(norm);
    return st;
}
