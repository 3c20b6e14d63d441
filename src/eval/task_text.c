/* Text helpers with Python's semantics (strip, len, lm-eval's HellaSwag preprocess) and the
 * plumbing every task parser shares (line reader, JSON fields, items). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "eval/task_internal.h"
#include "io/file.h"

/* ---- UTF-8 and Python's whitespace ---------------------------------------------------------- */
/* str.isspace(): Unicode White_Space with bidi class WS/B/S or category Zs */
static int py_space(unsigned cp) {
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

/* decodes the character at s[i] (valid UTF-8 assumed; a stray byte counts as itself) */
static unsigned decode(const unsigned char *s, size_t n, size_t i, size_t *len) {
    unsigned c = s[i];
    int k = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
    if (i + (size_t)k >= n) k = 0; /* truncated: the byte stands for itself */
    unsigned cp = k ? c & (0x3f >> k) : c;
    for (int j = 1; j <= k; j++) cp = cp << 6 | (s[i + j] & 0x3f);
    *len = (size_t)k + 1;
    return cp;
}

size_t lop_py_lstrip_len(const char *s, size_t n) {
    size_t i = 0, l;
    while (i < n && py_space(decode((const unsigned char *)s, n, i, &l))) i += l;
    return i;
}

size_t lop_py_rstrip_len(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    while (n > 0) {
        size_t st = n - 1, l;
        while (st > 0 && (u[st] & 0xc0) == 0x80 && n - st < 4) st--;
        if (!py_space(decode(u, n, st, &l)) || st + l != n) break;
        n = st;
    }
    return n;
}

int lop_utf8_chars(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

int lop_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        int k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
        if (k < 0 || i + (size_t)k >= n) return 0;
        unsigned cp = k ? c & (0x3f >> k) : c;
        for (int j = 1; j <= k; j++) {
            if ((u[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (u[i + j] & 0x3f);
        }
        static const unsigned minv[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < minv[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += (size_t)k + 1;
    }
    return 1;
}

/* ---- lm-eval's HellaSwag preprocess ---------------------------------------------------------- */
char *lop_hellaswag_preprocess(const char *text) {
    size_t n = strlen(text), a = lop_py_lstrip_len(text, n);
    size_t b = lop_py_rstrip_len(text, n);
    if (b < a) b = a;
    /* strip, then " [title]" -> ". " (never longer than the input) */
    char *t = malloc(b - a + 1), *u = malloc(b - a + 1);
    if (!t || !u) {
        free(t);
        free(u);
        return NULL;
    }
    size_t m = 0;
    for (size_t i = a; i < b;) {
        if (b - i >= 8 && !memcmp(text + i, " [title]", 8)) {
            t[m++] = '.';
            t[m++] = ' ';
            i += 8;
        } else {
            t[m++] = text[i++];
        }
    }
    /* re.sub(r"\[.*?\]", ""): from each '[', the shortest run to a ']' with no newline inside */
    size_t k = 0;
    for (size_t i = 0; i < m;) {
        if (t[i] == '[') {
            size_t j = i + 1;
            while (j < m && t[j] != ']' && t[j] != '\n') j++;
            if (j < m && t[j] == ']') {
                i = j + 1;
                continue;
            }
        }
        u[k++] = t[i++];
    }
    /* str.replace("  ", " "): non-overlapping pairs, left to right, one pass */
    m = 0;
    for (size_t i = 0; i < k;) {
        if (i + 1 < k && u[i] == ' ' && u[i + 1] == ' ') {
            t[m++] = ' ';
            i += 2;
        } else {
            t[m++] = u[i++];
        }
    }
    t[m] = 0;
    free(u);
    return t;
}

/* ---- line reader ------------------------------------------------------------------------------ */
lop_status lop_lines_open(lop_lines *L, const char *path) {
    memset(L, 0, sizeof *L);
    L->path = path;
    return lop_read_file(path, &L->buf, &L->size);
}

int lop_lines_next(lop_lines *L, char **s, size_t *n) {
    if (L->off >= L->size) return 0;
    char *p = L->buf + L->off, *e = memchr(p, '\n', L->size - L->off);
    size_t len = e ? (size_t)(e - p) : L->size - L->off;
    L->off += len + (e != NULL);
    L->line++;
    p[len] = 0;
    *s = p;
    *n = len;
    return 1;
}

lop_status lop_lines_json(lop_lines *L, cJSON **obj) {
    char *s;
    size_t n;
    *obj = NULL;
    while (lop_lines_next(L, &s, &n)) {
        if (lop_py_lstrip_len(s, n) == n) continue; /* blank line */
        cJSON *o = cJSON_ParseWithLength(s, n);
        if (!o || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            return lop_fail(LOP_ERR_FORMAT, "%s:%d: not a JSON object", L->path, L->line);
        }
        *obj = o;
        return LOP_OK;
    }
    return LOP_OK;
}

void lop_lines_close(lop_lines *L) {
    free(L->buf);
    L->buf = NULL;
}

lop_status lop_parse_jsonl(const char *jsonl, int limit, lop_task *t, lop_jsonl_item_fn fn, void *arg) {
    lop_lines L;
    if (!(t->path = strdup(jsonl))) return lop_fail(LOP_ERR_OOM, "out of memory");
    LOP_TRY(lop_lines_open(&L, jsonl));
    lop_status st = LOP_OK;
    cJSON *o = NULL;
    while (st == LOP_OK && (limit <= 0 || t->n_items < limit)) {
        if ((st = lop_lines_json(&L, &o)) != LOP_OK || !o) break;
        st = fn(&L, o, t, arg);
        cJSON_Delete(o);
        o = NULL;
    }
    cJSON_Delete(o);
    lop_lines_close(&L);
    return st;
}

lop_status lop_json_str(lop_lines *L, const cJSON *o, const char *key, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || !v->valuestring)
        return lop_fail(LOP_ERR_FORMAT, "%s:%d: field '%s' %s", L->path, L->line, key, v ? "is not a string" : "is missing");
    *out = v->valuestring;
    return LOP_OK;
}

lop_status lop_json_bool(lop_lines *L, const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsBool(v))
        return lop_fail(LOP_ERR_FORMAT, "%s:%d: field '%s' %s", L->path, L->line, key, v ? "is not true/false" : "is missing");
    *out = cJSON_IsTrue(v);
    return LOP_OK;
}

lop_status lop_json_array(lop_lines *L, const cJSON *o, const char *key, const cJSON **out, int *n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(v))
        return lop_fail(LOP_ERR_FORMAT, "%s:%d: field '%s' %s", L->path, L->line, key, v ? "is not an array" : "is missing");
    *out = v;
    *n = cJSON_GetArraySize(v);
    return LOP_OK;
}

/* ---- items ------------------------------------------------------------------------------------ */
lop_mc_item *lop_task_add(lop_task *t, int line) {
    if (t->n_items == t->cap) {
        int c = t->cap ? t->cap * 2 : 64;
        lop_mc_item *it = realloc(t->items, (size_t)c * sizeof *it);
        if (!it) {
            lop_fail(LOP_ERR_OOM, "out of memory (task items)");
            return NULL;
        }
        t->items = it;
        t->cap = c;
    }
    lop_mc_item *it = &t->items[t->n_items++];
    memset(it, 0, sizeof *it);
    it->line = line;
    return it;
}

char *lop_strf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

static lop_status check_utf8(const char *s, const char *path, int line) {
    if (!lop_utf8_valid(s, strlen(s))) return lop_fail(LOP_ERR_FORMAT, "%s:%d: text is not valid UTF-8", path, line);
    return LOP_OK;
}

lop_status lop_item_context(lop_mc_item *it, char *ctx_owned, const char *path) {
    if (!ctx_owned) return lop_fail(LOP_ERR_OOM, "out of memory (task text)");
    it->ctx[0] = ctx_owned;
    it->shared_ctx = 1;
    return check_utf8(ctx_owned, path, it->line);
}

lop_status lop_item_choice(lop_mc_item *it, int j, const char *ctx, const char *text, const char *path) {
    if (j >= LOP_MC_MAX_CHOICES)
        return lop_fail(LOP_ERR_FORMAT, "%s:%d: more than %d choices", path, it->line, LOP_MC_MAX_CHOICES);
    if (ctx) {
        it->shared_ctx = 0;
        if (!(it->ctx[j] = strdup(ctx))) return lop_fail(LOP_ERR_OOM, "out of memory (task text)");
        LOP_TRY(check_utf8(ctx, path, it->line));
    }
    if (!(it->cont[j] = lop_strf(" %s", text))) return lop_fail(LOP_ERR_OOM, "out of memory (task text)");
    LOP_TRY(check_utf8(text, path, it->line));
    it->norm_len[j] = lop_utf8_chars(text, strlen(text));
    if (j + 1 > it->n_choices) it->n_choices = j + 1;
    return LOP_OK;
}
