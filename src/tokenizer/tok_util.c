/* Small shared pieces of the tokenizer: growable buffers, UTF-8 checking and lossy repair (HF
 * decodes invalid UTF-8 to U+FFFD), the per-call scratch and the merge heap.
 * Why apart: tokenizer.c, bpe.c and spm.c all use them; none of them is about one algorithm. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "tokenizer/tok_internal.h"

lop_status tok_ids_push(tok_ids *a, int32_t id) {
    if (a->n == a->cap) {
        int nc = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, (size_t)nc * sizeof *v);
        if (!v) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
        a->v = v;
        a->cap = nc;
    }
    a->v[a->n++] = id;
    return LOP_OK;
}

lop_status tok_append(char **buf, size_t *len, size_t *cap, const void *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 64;
        while (nc < *len + n + 1) nc *= 2;
        char *b = realloc(*buf, nc);
        if (!b) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
        *buf = b;
        *cap = nc;
    }
    if (n) memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
    return LOP_OK;
}

/* ---- UTF-8 ---- */

int tok_utf8_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned c = s[0];
    int l = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return (size_t)l > n ? (int)n : l;
}

int tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    int l = tok_utf8_len(s, n);
    uint32_t c = s[0];
    if (l == 2) c &= 0x1F;
    else if (l == 3) c &= 0x0F;
    else if (l == 4) c &= 0x07;
    for (int i = 1; i < l; i++) c = (c << 6) | (s[i] & 0x3F);
    *cp = c;
    return l;
}

/* Length of the valid sequence at s, or 0 if invalid; *maximal = length of the maximal subpart of
 * an ill-formed sequence (what one U+FFFD replaces). */
static int utf8_valid_at(const unsigned char *s, size_t n, int *maximal) {
    unsigned c = s[0];
    *maximal = 1;
    if (c < 0x80) return 1;
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) need = 2, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) need = 3, hi = 0x8F;
    else return 0;
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return 0;
        unsigned d = s[i];
        if (d < lo || d > hi) return 0;
        lo = 0x80, hi = 0xBF;
        *maximal = i + 1;
    }
    return need + 1;
}

long tok_utf8_check(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int m, l = utf8_valid_at(s + i, n - i, &m);
        if (!l) return (long)i;
        i += (size_t)l;
    }
    return -1;
}

lop_status tok_append_lossy(char **buf, size_t *len, size_t *cap, const unsigned char *s, size_t n) {
    size_t i = 0, run = 0;
    while (i < n) {
        int m, l = s[i] < 0x80 ? 1 : utf8_valid_at(s + i, n - i, &m);
        if (l) {
            i += (size_t)l;
            continue;
        }
        LOP_TRY(tok_append(buf, len, cap, s + run, i - run));
        LOP_TRY(tok_append(buf, len, cap, "\xEF\xBF\xBD", 3));
        i += (size_t)m;
        run = i;
    }
    return tok_append(buf, len, cap, s + run, i - run);
}

/* ---- per-call scratch ---- */

lop_status tok_ctx_init(tok_ctx *c, const lop_tokenizer *t) {
    memset(c, 0, sizeof *c);
    if (t->n_steps) {
        c->md = tok_match_data_new();
        if (!c->md) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
    }
    return LOP_OK;
}

void tok_ctx_free(tok_ctx *c) {
    tok_match_data_free(c->md);
    free(c->sym);
    free(c->start);
    free(c->len);
    free(c->prev);
    free(c->next);
    free(c->heap);
    free(c->buf);
    memset(c, 0, sizeof *c);
}

lop_status tok_ctx_reserve(tok_ctx *c, int n) {
    if (n <= c->cap) return LOP_OK;
    int nc = c->cap ? c->cap : 64;
    while (nc < n) nc *= 2;
    int32_t **arrs[] = {&c->sym, &c->start, &c->len, &c->prev, &c->next};
    for (size_t k = 0; k < sizeof arrs / sizeof arrs[0]; k++) {
        int32_t *p = realloc(*arrs[k], (size_t)nc * sizeof(int32_t));
        if (!p) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
        *arrs[k] = p;
    }
    tok_heap_ent *h = realloc(c->heap, ((size_t)nc * 3 + 4) * sizeof *h);
    if (!h) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
    c->heap = h;
    c->heap_cap = nc * 3 + 4;
    c->cap = nc;
    return LOP_OK;
}

lop_status tok_ctx_buf(tok_ctx *c, size_t n) {
    if (n <= c->buf_cap) return LOP_OK;
    size_t nc = c->buf_cap ? c->buf_cap : 256;
    while (nc < n) nc *= 2;
    char *b = realloc(c->buf, nc);
    if (!b) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
    c->buf = b;
    c->buf_cap = nc;
    return LOP_OK;
}

static int heap_less(const tok_heap_ent *a, const tok_heap_ent *b) {
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

void tok_heap_push(tok_heap_ent *h, int *n, tok_heap_ent e) {
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

tok_heap_ent tok_heap_pop(tok_heap_ent *h, int *n) {
    tok_heap_ent top = h[0], last = h[--*n];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1;
        if (l >= *n) break;
        if (l + 1 < *n && heap_less(&h[l + 1], &h[l])) l++;
        if (!heap_less(&h[l], &last)) break;
        h[i] = h[l];
        i = l;
    }
    if (*n > 0) h[i] = last;
    return top;
}
