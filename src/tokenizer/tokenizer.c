/* Tokenizer core: builds the tables from a lop_vocab_src (vocab hash, merge hash, byte tokens,
 * the literal-match list of special/added tokens), runs encode (split at special tokens, then the
 * byte-level or SentencePiece pipeline per stretch of text) and decode.
 * Why here and not per algorithm: both algorithms share the vocabulary, the special-token rules
 * (HF matches added tokens in the raw text before anything else) and the error handling. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "tokenizer/tok_internal.h"

/* ================================================================================================
 * small helpers
 * ============================================================================================== */

uint32_t tok_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h ^ (h >> 15);
}

static uint32_t hash_u64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

static uint32_t table_size(size_t n) {
    uint32_t s = 16;
    while (s < n * 2 + 1) s <<= 1;
    return s;
}

int tok_vocab_find(const lop_tokenizer *t, const char *s, size_t n) {
    uint32_t i = tok_hash(s, n) & t->vh_mask;
    for (;;) {
        int32_t id = t->vh[i];
        if (id < 0) return -1;
        if (t->tok_len[id] == n && memcmp(t->tok[id], s, n) == 0) return id;
        i = (i + 1) & t->vh_mask;
    }
}

const tok_merge *tok_merge_find(const lop_tokenizer *t, int32_t a, int32_t b) {
    if (!t->mh) return NULL;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = hash_u64(key) & t->mh_mask;
    for (;;) {
        const tok_merge *m = &t->mh[i];
        if (m->key == 0) return NULL;
        if (m->key == key) return m;
        i = (i + 1) & t->mh_mask;
    }
}

/* Unicode White_Space (Rust char::is_whitespace), for lstrip / rstrip of added tokens. */
static int is_ws_cp(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* ================================================================================================
 * create / free
 * ============================================================================================== */

void lop_tokenizer_free(lop_tokenizer *t) {
    if (!t) return;
    if (t->tok)
        for (int i = 0; i < t->n_vocab; i++) free(t->tok[i]);
    if (t->dec)
        for (int i = 0; i < t->n_vocab; i++) free(t->dec[i]);
    free(t->tok);
    free(t->tok_len);
    free(t->dec);
    free(t->dec_len);
    free(t->byte_val);
    free(t->score);
    free(t->type);
    free(t->vh);
    free(t->mh);
    free(t->added);
    tok_steps_free(t);
    free(t->origin);
    free(t);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xNN>" -> NN, else -1 (HF ByteFallback decoder recognises tokens by this pattern) */
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int h = hexval(s[3]), l = hexval(s[4]);
    return (h < 0 || l < 0) ? -1 : h * 16 + l;
}

/* Decoded bytes of one token. BPE: HF ByteLevel decoder (each char back to its byte; a token with
 * any char outside the map is kept as it is). SPM: "▁" -> " ". */
static lop_status make_dec(lop_tokenizer *t, int id) {
    const unsigned char *s = (const unsigned char *)t->tok[id];
    size_t n = t->tok_len[id];
    char *d = malloc(n + 1);
    if (!d) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
    size_t o = 0;
    if (t->kind == LOP_TOK_BPE) {
        size_t i = 0;
        int ok = 1;
        while (i < n) {
            uint32_t cp;
            int l = tok_utf8_decode(s + i, n - i, &cp);
            int b = tok_cp_to_byte(cp);
            if (b < 0 || l < 1) {
                ok = 0;
                break;
            }
            d[o++] = (char)b;
            i += (size_t)l;
        }
        if (!ok) {
            memcpy(d, s, n);
            o = n;
        }
    } else {
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
                d[o++] = ' ';
                i += 3;
            } else {
                d[o++] = (char)s[i++];
            }
        }
    }
    d[o] = 0;
    t->dec[id] = d;
    t->dec_len[id] = (uint32_t)o;
    return LOP_OK;
}

/* Finds the two tokens of merge "a b" (tries each space: tokens themselves may hold spaces). */
static lop_status parse_merge(lop_tokenizer *t, const char *m, size_t n, long split, int rank, const char *origin,
                              int32_t *a, int32_t *b, int32_t *r) {
    for (size_t i = split >= 0 ? (size_t)split : 1; i < n; i++) {
        if (m[i] != ' ') {
            if (split >= 0) break;
            continue;
        }
        int ia = tok_vocab_find(t, m, i), ib = tok_vocab_find(t, m + i + 1, n - i - 1);
        if (ia < 0 || ib < 0) continue;
        size_t la = t->tok_len[ia], lb = t->tok_len[ib];
        char stackbuf[256], *cat = la + lb <= sizeof stackbuf ? stackbuf : malloc(la + lb);
        if (!cat) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
        memcpy(cat, t->tok[ia], la);
        memcpy(cat + la, t->tok[ib], lb);
        int ir = tok_vocab_find(t, cat, la + lb);
        if (cat != stackbuf) free(cat);
        if (ir < 0)
            return lop_fail(LOP_ERR_FORMAT, "%s: merge %d ('%.*s'): the merged token is not in the vocabulary",
                            origin, rank, (int)(n > 60 ? 60 : n), m);
        *a = ia, *b = ib, *r = ir;
        return LOP_OK;
    }
    if (split >= 0)
        return lop_fail(LOP_ERR_FORMAT, "%s: merge %d ('%.*s'): token not in the vocabulary", origin, rank,
                        (int)(n > 60 ? 60 : n), m);
    return lop_fail(LOP_ERR_FORMAT, "%s: merge %d ('%.*s'): not two tokens of the vocabulary separated by a space",
                    origin, rank, (int)(n > 60 ? 60 : n), m);
}

static int added_cmp(const void *pa, const void *pb) {
    const tok_added *a = pa, *b = pb;
    unsigned ca = (unsigned char)a->s[0], cb = (unsigned char)b->s[0];
    if (ca != cb) return ca < cb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id - b->id;
}

static lop_status build_added(lop_tokenizer *t, const lop_vocab_src *src, const char *origin) {
    int n = 0;
    if (src->n_added > 0) {
        t->added = calloc((size_t)src->n_added, sizeof *t->added);
        if (!t->added) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
        for (int i = 0; i < src->n_added; i++) {
            const lop_added_token *a = &src->added[i];
            if (a->id < 0 || a->id >= t->n_vocab)
                return lop_fail(LOP_ERR_FORMAT, "%s: added token %d: id %d out of range (vocabulary of %d)", origin,
                                i, a->id, t->n_vocab);
            if (t->tok_len[a->id] == 0) continue;
            t->added[n++] = (tok_added){a->id, a->special, a->lstrip, a->rstrip, t->tok[a->id], t->tok_len[a->id]};
        }
    } else {
        int cnt = 0;
        for (int i = 0; i < t->n_vocab; i++) {
            int ty = t->type[i];
            if ((ty == LOP_TT_CONTROL || ty == LOP_TT_USER || ty == LOP_TT_UNKNOWN) && t->tok_len[i]) cnt++;
        }
        t->added = calloc((size_t)cnt + 1, sizeof *t->added);
        if (!t->added) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
        for (int i = 0; i < t->n_vocab; i++) {
            int ty = t->type[i];
            if ((ty == LOP_TT_CONTROL || ty == LOP_TT_USER || ty == LOP_TT_UNKNOWN) && t->tok_len[i])
                t->added[n++] = (tok_added){i, ty != LOP_TT_USER, 0, 0, t->tok[i], t->tok_len[i]};
        }
    }
    t->n_added = n;
    qsort(t->added, (size_t)n, sizeof *t->added, added_cmp);
    for (int c = 0; c <= 256; c++) t->added_first[c] = n;
    for (int i = n - 1; i >= 0; i--) t->added_first[(unsigned char)t->added[i].s[0]] = i;
    /* added_first[c]..added_first[next present byte]: fill the gaps from the right */
    for (int c = 255; c >= 0; c--)
        if (t->added_first[c] == n) t->added_first[c] = t->added_first[c + 1];
    return LOP_OK;
}

static lop_status check_id(int id, int n_vocab, const char *what, const char *origin) {
    if (id < -1 || id >= n_vocab)
        return lop_fail(LOP_ERR_FORMAT, "%s: %s %d out of range (vocabulary of %d)", origin, what, id, n_vocab);
    return LOP_OK;
}

static lop_status create(const lop_vocab_src *src, lop_tokenizer *t) {
    const char *origin = src->origin ? src->origin : "tokenizer";
    if (src->kind != LOP_TOK_SPM && src->kind != LOP_TOK_BPE)
        return lop_fail(LOP_ERR_ARG, "%s: unknown tokenizer kind %d", origin, (int)src->kind);
    if (src->n_vocab <= 0 || !src->tokens)
        return lop_fail(LOP_ERR_FORMAT, "%s: empty vocabulary", origin);
    if (src->n_merges < 0 || (src->n_merges > 0 && !src->merges))
        return lop_fail(LOP_ERR_FORMAT, "%s: bad merge list", origin);
    if (src->kind == LOP_TOK_BPE && src->n_merges == 0 && src->n_vocab > 256)
        return lop_fail(LOP_ERR_FORMAT, "%s: byte-level BPE vocabulary without merges", origin);
    LOP_TRY(check_id(src->bos_id, src->n_vocab, "BOS id", origin));
    LOP_TRY(check_id(src->eos_id, src->n_vocab, "EOS id", origin));
    LOP_TRY(check_id(src->unk_id, src->n_vocab, "UNK id", origin));
    LOP_TRY(check_id(src->pad_id, src->n_vocab, "PAD id", origin));

    int n = src->n_vocab;
    t->kind = src->kind;
    t->n_vocab = n;
    t->origin = strdup(origin);
    t->tok = calloc((size_t)n, sizeof *t->tok);
    t->dec = calloc((size_t)n, sizeof *t->dec);
    t->tok_len = calloc((size_t)n, sizeof *t->tok_len);
    t->dec_len = calloc((size_t)n, sizeof *t->dec_len);
    t->byte_val = malloc((size_t)n * sizeof *t->byte_val);
    t->score = calloc((size_t)n, sizeof *t->score);
    t->type = malloc((size_t)n * sizeof *t->type);
    t->vh_mask = table_size((size_t)n) - 1;
    t->vh = malloc(((size_t)t->vh_mask + 1) * sizeof *t->vh);
    if (!t->origin || !t->tok || !t->dec || !t->tok_len || !t->dec_len || !t->byte_val || !t->score || !t->type ||
        !t->vh)
        return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
    memset(t->vh, 0xff, ((size_t)t->vh_mask + 1) * sizeof *t->vh);

    for (int i = 0; i < n; i++) {
        const char *s = src->tokens[i];
        if (!s) return lop_fail(LOP_ERR_FORMAT, "%s: token %d has no text", origin, i);
        size_t l = src->token_lens ? src->token_lens[i] : strlen(s);
        if (l > UINT32_MAX / 2) return lop_fail(LOP_ERR_FORMAT, "%s: token %d too long", origin, i);
        t->tok[i] = malloc(l + 1);
        if (!t->tok[i]) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
        memcpy(t->tok[i], s, l);
        t->tok[i][l] = 0;
        t->tok_len[i] = (uint32_t)l;
        t->score[i] = src->scores ? src->scores[i] : 0.0f;
        t->type[i] = src->token_types ? src->token_types[i] : LOP_TT_NORMAL;
        t->byte_val[i] = (int16_t)(t->kind == LOP_TOK_SPM ? byte_token_value(s, l) : -1);
        LOP_TRY(make_dec(t, i));
        if (l == 0) continue; /* holes in the id space */
        /* first id wins for duplicate strings */
        uint32_t h = tok_hash(s, l) & t->vh_mask;
        int dup = 0;
        while (t->vh[h] >= 0) {
            int32_t o = t->vh[h];
            if (t->tok_len[o] == l && memcmp(t->tok[o], s, l) == 0) {
                dup = 1;
                break;
            }
            h = (h + 1) & t->vh_mask;
        }
        if (!dup) t->vh[h] = i;
    }

    /* byte tokens */
    t->has_all_bytes = 1;
    for (int b = 0; b < 256; b++) {
        char s[8];
        int l;
        if (t->kind == LOP_TOK_BPE) {
            uint32_t cp = tok_byte_to_cp(b);
            l = cp < 0x80 ? (s[0] = (char)cp, 1) : (s[0] = (char)(0xC0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3F)), 2);
        } else {
            l = snprintf(s, sizeof s, "<0x%02X>", b);
        }
        t->byte_id[b] = tok_vocab_find(t, s, (size_t)l);
        if (t->byte_id[b] < 0) t->has_all_bytes = 0;
    }

    /* merges */
    t->n_merges = src->n_merges;
    if (src->n_merges > 0) {
        t->mh_mask = table_size((size_t)src->n_merges) - 1;
        t->mh = calloc((size_t)t->mh_mask + 1, sizeof *t->mh);
        if (!t->mh) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
        for (int r = 0; r < src->n_merges; r++) {
            const char *m = src->merges[r];
            if (!m) return lop_fail(LOP_ERR_FORMAT, "%s: merge %d is missing", origin, r);
            size_t ml = src->merge_lens ? src->merge_lens[r] : strlen(m);
            int32_t a, b, id;
            long split = src->merge_split ? (long)src->merge_split[r] : -1;
            if (split >= (long)ml) return lop_fail(LOP_ERR_FORMAT, "%s: merge %d: bad split", origin, r);
            LOP_TRY(parse_merge(t, m, ml, split, r, origin, &a, &b, &id));
            uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
            uint32_t i = hash_u64(key) & t->mh_mask;
            while (t->mh[i].key && t->mh[i].key != key) i = (i + 1) & t->mh_mask;
            if (!t->mh[i].key) t->mh[i] = (tok_merge){key, r, id}; /* first (best) rank wins */
        }
    }

    LOP_TRY(build_added(t, src, origin));

    t->bos = src->bos_id, t->eos = src->eos_id, t->unk = src->unk_id, t->pad = src->pad_id;
    t->add_bos = src->add_bos ? 1 : 0;
    t->add_eos = src->add_eos ? 1 : 0;
    if (t->add_bos && t->bos < 0) return lop_fail(LOP_ERR_FORMAT, "%s: adds BOS but has no BOS token", origin);
    if (t->add_eos && t->eos < 0) return lop_fail(LOP_ERR_FORMAT, "%s: adds EOS but has no EOS token", origin);
    t->fuse_unk = src->fuse_unk ? 1 : 0;
    t->unk_fallback = src->unk_fallback && t->unk >= 0;
    t->ignore_merges = src->ignore_merges || (src->kind == LOP_TOK_BPE && !src->n_pretok_steps &&
                                              src->pretok == LOP_PRETOK_LLAMA3);
    if (t->kind == LOP_TOK_SPM) {
        if (src->add_space_prefix < LOP_PREFIX_NONE || src->add_space_prefix > LOP_PREFIX_EVERY_NOSP)
            return lop_fail(LOP_ERR_FORMAT, "%s: bad add_space_prefix %d", origin, src->add_space_prefix);
        t->space_prefix = src->add_space_prefix;
        t->spm_split = src->spm_split ? 1 : 0;
        t->score_mode = src->n_merges == 0;
        t->byte_fallback = t->score_mode ? t->has_all_bytes : (src->byte_fallback ? 1 : 0);
        if (t->score_mode) t->unk_fallback = t->unk >= 0;
        t->decode_strip = src->decode_strip ? src->decode_strip > 0 : t->space_prefix != LOP_PREFIX_NONE;
        t->ws_split = !t->ignore_merges && tok_vocab_find(t, "\xE2\x96\x81", 3) >= 0;
        for (int i = 0; i < n && t->ws_split; i++) { /* every token must be "▁"* then no "▁" */
            const char *s = t->tok[i];
            size_t l = t->tok_len[i], k = 0;
            while (k + 3 <= l && memcmp(s + k, "\xE2\x96\x81", 3) == 0) k += 3;
            if (k < l && memmem(s + k, l - k, "\xE2\x96\x81", 3)) t->ws_split = 0;
        }
    } else {
        LOP_TRY(tok_steps_compile(t, src));
    }
    return LOP_OK;
}

lop_status lop_tokenizer_create(const lop_vocab_src *src, lop_tokenizer **out) {
    if (!out) return lop_fail(LOP_ERR_ARG, "tokenizer: no output");
    *out = NULL;
    if (!src) return lop_fail(LOP_ERR_ARG, "tokenizer: no vocabulary source");
    lop_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
    lop_status st = create(src, t);
    if (st != LOP_OK) {
        lop_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LOP_OK;
}

lop_status lop_tokenizer_set_bos_eos(lop_tokenizer *t, int bos_id, int eos_id) {
    if (!t) return lop_fail(LOP_ERR_ARG, "tokenizer: none given");
    if (bos_id >= t->n_vocab || eos_id >= t->n_vocab)
        return lop_fail(LOP_ERR_ARG, "%s: BOS/EOS id %d/%d out of range (vocabulary of %d)", t->origin, bos_id,
                        eos_id, t->n_vocab);
    if (bos_id >= 0) t->bos = bos_id;
    if (eos_id >= 0) t->eos = eos_id;
    return LOP_OK;
}

/* ================================================================================================
 * encode
 * ============================================================================================== */

/* Longest added token starting at s (leftmost-longest, as HF's AddedVocabulary), or -1. */
static int match_added(const lop_tokenizer *t, const char *s, size_t n) {
    unsigned c = (unsigned char)s[0];
    for (int i = t->added_first[c]; i < t->added_first[c + 1]; i++) {
        const tok_added *a = &t->added[i];
        if (a->len <= n && memcmp(a->s, s, a->len) == 0) return i;
    }
    return -1;
}

static lop_status encode_text(const lop_tokenizer *t, tok_ctx *c, const char *s, size_t n, int first,
                              tok_ids *out) {
    if (n == 0) return LOP_OK;
    if (t->kind == LOP_TOK_BPE) return tok_bpe_encode(t, c, s, n, out);
    return tok_spm_encode(t, c, s, n, first, out);
}

static size_t ws_before(const char *s, size_t lo, size_t hi) {
    /* start of the whitespace run that ends at hi (not before lo) */
    while (hi > lo) {
        size_t k = hi - 1;
        while (k > lo && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        uint32_t cp;
        tok_utf8_decode((const unsigned char *)s + k, hi - k, &cp);
        if (!is_ws_cp(cp)) break;
        hi = k;
    }
    return hi;
}

static size_t ws_after(const char *s, size_t i, size_t n) {
    while (i < n) {
        uint32_t cp;
        int l = tok_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (!is_ws_cp(cp)) break;
        i += (size_t)l;
    }
    return i;
}

static lop_status encode_all(const lop_tokenizer *t, tok_ctx *c, const char *text, size_t len, int add_bos,
                             tok_ids *out) {
    int specials = add_bos < 0 ? -1 : add_bos;
    if ((specials == -1 && t->add_bos) || specials == 1) {
        if (t->bos < 0) return lop_fail(LOP_ERR_ARG, "%s: BOS requested but the tokenizer has none", t->origin);
        LOP_TRY(tok_ids_push(out, t->bos));
    }
    size_t seg = 0, i = 0;
    while (i < len) {
        int k = t->n_added ? match_added(t, text + i, len - i) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        const tok_added *a = &t->added[k];
        size_t end = i + a->len, seg_end = i;
        if (a->lstrip) seg_end = ws_before(text, seg, i);
        if (a->rstrip) end = ws_after(text, end, len);
        LOP_TRY(encode_text(t, c, text + seg, seg_end - seg, seg == 0, out));
        LOP_TRY(tok_ids_push(out, a->id));
        seg = i = end;
    }
    LOP_TRY(encode_text(t, c, text + seg, len - seg, seg == 0, out));
    if (specials == -1 && t->add_eos) LOP_TRY(tok_ids_push(out, t->eos));
    return LOP_OK;
}

lop_status lop_tokenizer_encode(const lop_tokenizer *t, const char *text, size_t len, int add_bos,
                                int32_t **ids, int *n_ids) {
    if (!ids || !n_ids) return lop_fail(LOP_ERR_ARG, "tokenizer: no output");
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len)) return lop_fail(LOP_ERR_ARG, "tokenizer: no tokenizer or text");
    if (len > (size_t)INT_MAX / 4) return lop_fail(LOP_ERR_ARG, "%s: text too long (%zu bytes)", t->origin, len);
    long bad = tok_utf8_check((const unsigned char *)text, len);
    if (bad >= 0) return lop_fail(LOP_ERR_ARG, "%s: text is not valid UTF-8 (byte %ld)", t->origin, bad);
    tok_ctx c;
    tok_ids out = {0};
    lop_status st = tok_ctx_init(&c, t);
    if (st == LOP_OK) st = encode_all(t, &c, text ? text : "", len, add_bos, &out);
    tok_ctx_free(&c);
    if (st != LOP_OK) {
        free(out.v);
        return st;
    }
    if (!out.v) { /* empty result: still return a freeable pointer */
        out.v = malloc(sizeof(int32_t));
        if (!out.v) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
    }
    *ids = out.v;
    *n_ids = out.n;
    return LOP_OK;
}

/* ================================================================================================
 * decode
 * ============================================================================================== */

/* SPM: a run of byte tokens is kept when it is valid UTF-8, else each byte becomes U+FFFD (HF
 * ByteFallback decoder). */
static lop_status flush_bytes(char **buf, size_t *len, size_t *cap, const unsigned char *run, int n) {
    if (n <= 0) return LOP_OK;
    if (tok_utf8_check(run, (size_t)n) < 0) return tok_append(buf, len, cap, run, (size_t)n);
    for (int i = 0; i < n; i++) LOP_TRY(tok_append(buf, len, cap, "\xEF\xBF\xBD", 3));
    return LOP_OK;
}

static lop_status decode_into(const lop_tokenizer *t, const int32_t *ids, int n_ids, char **buf, size_t *len,
                              size_t *cap) {
    for (int i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return lop_fail(LOP_ERR_ARG, "%s: token id %d out of range (vocabulary of %d)", t->origin, (int)ids[i],
                            t->n_vocab);
    if (t->kind == LOP_TOK_BPE) {
        char *raw = NULL;
        size_t rl = 0, rc = 0;
        lop_status st = tok_append(&raw, &rl, &rc, "", 0);
        for (int i = 0; i < n_ids && st == LOP_OK; i++) st = tok_append(&raw, &rl, &rc, t->dec[ids[i]], t->dec_len[ids[i]]);
        if (st == LOP_OK) st = tok_append_lossy(buf, len, cap, (const unsigned char *)raw, rl);
        free(raw);
        return st;
    }
    /* consecutive byte tokens are collected whole: HF replaces every byte of an invalid run */
    char *run = NULL;
    size_t nrun = 0, run_cap = 0;
    lop_status st = tok_append(buf, len, cap, "", 0);
    for (int i = 0; i < n_ids && st == LOP_OK; i++) {
        int id = ids[i];
        if (t->byte_val[id] >= 0) {
            char b = (char)t->byte_val[id];
            st = tok_append(&run, &nrun, &run_cap, &b, 1);
            continue;
        }
        st = flush_bytes(buf, len, cap, (const unsigned char *)run, (int)nrun);
        nrun = 0;
        if (st == LOP_OK) st = tok_append(buf, len, cap, t->dec[id], t->dec_len[id]);
    }
    if (st == LOP_OK) st = flush_bytes(buf, len, cap, (const unsigned char *)run, (int)nrun);
    free(run);
    LOP_TRY(st);
    if (t->decode_strip && *len > 0 && (*buf)[0] == ' ') {
        memmove(*buf, *buf + 1, *len);
        (*len)--;
    }
    return LOP_OK;
}

lop_status lop_tokenizer_decode(const lop_tokenizer *t, const int32_t *ids, int n_ids, char **text) {
    if (!text) return lop_fail(LOP_ERR_ARG, "tokenizer: no output");
    *text = NULL;
    if (!t || n_ids < 0 || (!ids && n_ids)) return lop_fail(LOP_ERR_ARG, "tokenizer: bad decode arguments");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    lop_status st = decode_into(t, ids, n_ids, &buf, &len, &cap);
    if (st != LOP_OK) {
        free(buf);
        return st;
    }
    *text = buf;
    return LOP_OK;
}

int lop_tokenizer_token_bytes(const lop_tokenizer *t, int prev, int id, char *buf, int cap) {
    if (!t || id < 0 || id >= t->n_vocab || cap < 0 || (!buf && cap)) return -1;
    const char *s;
    int n;
    char b;
    if (t->kind == LOP_TOK_SPM && t->byte_val[id] >= 0) {
        b = (char)t->byte_val[id];
        s = &b;
        n = 1;
    } else {
        s = t->dec[id];
        n = (int)t->dec_len[id];
        if (t->kind == LOP_TOK_SPM && t->decode_strip && (prev < 0 || prev == t->bos) && n > 0 && s[0] == ' ') s++, n--;
    }
    memcpy(buf, s, (size_t)(n < cap ? n : cap));
    return n;
}

int lop_tokenizer_n_vocab(const lop_tokenizer *t) { return t ? t->n_vocab : 0; }
int lop_tokenizer_bos(const lop_tokenizer *t) { return t ? t->bos : -1; }
int lop_tokenizer_eos(const lop_tokenizer *t) { return t ? t->eos : -1; }
lop_tok_kind lop_tokenizer_kind(const lop_tokenizer *t) { return t ? t->kind : LOP_TOK_SPM; }

const char *lop_tokenizer_token_str(const lop_tokenizer *t, int id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = t->tok_len[id];
    return t->tok[id];
}

int lop_tokenizer_find(const lop_tokenizer *t, const char *str, size_t len) {
    if (!t || (!str && len) || len == 0) return -1;
    return tok_vocab_find(t, str, len);
}
