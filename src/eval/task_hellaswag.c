/* HellaSwag, from the original jsonl (rowanz/hellaswag hellaswag_val.jsonl: activity_label, ctx_a,
 * ctx_b, endings[4], label) with lm-eval's exact preprocessing, or from llama.cpp's derived text
 * (6 lines per item: "label: ctx" already joined, gold index, 4 endings), which is all that may be
 * at hand; see task.h for how the derived text differs. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "eval/task_internal.h"

/* Python str.capitalize() for ASCII and Latin-1 letters: first character upper, the rest lower.
 * (Other scripts are left as they are.) Works in place on UTF-8. */
static void capitalize(char *s) {
    unsigned char *u = (unsigned char *)s;
    int first = 1;
    for (size_t i = 0; u[i];) {
        if (u[i] < 0x80) {
            if (first && u[i] >= 'a' && u[i] <= 'z') u[i] -= 32;
            else if (!first && u[i] >= 'A' && u[i] <= 'Z') u[i] += 32;
            i++;
        } else if (u[i] == 0xc3 && u[i + 1]) { /* U+00C0..U+00FF */
            unsigned c = 0xc0 | (u[i + 1] & 0x3f);
            if (first && c >= 0xe0 && c <= 0xfe && c != 0xf7) u[i + 1] -= 0x20;
            else if (!first && c >= 0xc0 && c <= 0xde && c != 0xd7) u[i + 1] += 0x20;
            i += 2;
        } else {
            i++;
            while ((u[i] & 0xc0) == 0x80) i++;
        }
        first = 0;
    }
}

static lop_status add_endings(lop_mc_item *it, char *ctx_raw, const char *const *endings, const char *path) {
    lop_status st = lop_item_context(it, ctx_raw ? lop_hellaswag_preprocess(ctx_raw) : NULL, path);
    for (int j = 0; j < 4 && st == LOP_OK; j++) {
        char *e = lop_hellaswag_preprocess(endings[j]);
        st = e ? lop_item_choice(it, j, NULL, e, path) : lop_fail(LOP_ERR_OOM, "out of memory");
        free(e);
    }
    return st;
}

/* one line of the original jsonl: "activity_label: ctx_a Ctx_b" and four endings */
static lop_status hellaswag_item(lop_lines *L, const cJSON *o, lop_task *t, void *arg) {
    (void)arg;
    const char *act, *ca, *cb, *endings[4];
    const cJSON *arr, *lab = cJSON_GetObjectItemCaseSensitive(o, "label");
    int ne;
    LOP_TRY(lop_json_str(L, o, "activity_label", &act));
    LOP_TRY(lop_json_str(L, o, "ctx_a", &ca));
    LOP_TRY(lop_json_str(L, o, "ctx_b", &cb));
    LOP_TRY(lop_json_array(L, o, "endings", &arr, &ne));
    if (ne != 4) return lop_fail(LOP_ERR_FORMAT, "%s:%d: %d endings (expected 4)", L->path, L->line, ne);
    for (int j = 0; j < 4; j++) {
        const cJSON *e = cJSON_GetArrayItem(arr, j);
        if (!cJSON_IsString(e))
            return lop_fail(LOP_ERR_FORMAT, "%s:%d: ending %d is not a string", L->path, L->line, j + 1);
        endings[j] = e->valuestring;
    }
    /* label: an integer (original release) or a digit string (HF copy) */
    int gold = cJSON_IsNumber(lab) ? lab->valueint
               : cJSON_IsString(lab) && lab->valuestring[0] && !lab->valuestring[1] ? lab->valuestring[0] - '0'
                                                                                    : -1;
    if (gold < 0 || gold > 3)
        return lop_fail(LOP_ERR_FORMAT, "%s:%d: field 'label' %s", L->path, L->line, lab ? "is not 0..3" : "is missing");
    char *b = strdup(cb), *ctx = NULL;
    if (b) capitalize(b);
    if (b) ctx = lop_strf("%s: %s %s", act, ca, b);
    lop_status st;
    lop_mc_item *it = lop_task_add(t, L->line);
    if (!it) st = LOP_ERR_OOM;
    else if ((st = add_endings(it, ctx, endings, L->path)) == LOP_OK) it->gold = gold;
    free(b);
    free(ctx);
    return st;
}

lop_status lop_task_parse_hellaswag_jsonl(const char *jsonl, int limit, lop_task *t) {
    return lop_parse_jsonl(jsonl, limit, t, hellaswag_item, NULL);
}

lop_status lop_task_parse_hellaswag_text(const char *txt, int limit, lop_task *t) {
    lop_lines L;
    if (!(t->path = strdup(txt))) return lop_fail(LOP_ERR_OOM, "out of memory");
    t->derived = 1;
    LOP_TRY(lop_lines_open(&L, txt));
    lop_status st = LOP_OK;
    char *lines[6];
    size_t lens[6];
    while (st == LOP_OK && (limit <= 0 || t->n_items < limit)) {
        int got = 0, first = 0;
        while (got < 6 && lop_lines_next(&L, &lines[got], &lens[got])) {
            if (got == 0) {
                if (lens[0] == 0 && L.off >= L.size) break; /* tolerate one empty last line */
                first = L.line;
            }
            got++;
        }
        if (got == 0) break;
        if (got < 6) {
            st = lop_fail(LOP_ERR_FORMAT, "%s:%d: the item starting at line %d has %d of its 6 lines", txt, L.line,
                          first, got);
            break;
        }
        const char *g = lines[1];
        if (lens[1] != 1 || g[0] < '0' || g[0] > '3') {
            st = lop_fail(LOP_ERR_FORMAT, "%s:%d: expected the gold ending index 0..3, found '%.20s'", txt, first + 1, g);
            break;
        }
        lop_mc_item *it = lop_task_add(t, first);
        const char *endings[4] = {lines[2], lines[3], lines[4], lines[5]};
        if (!it) st = LOP_ERR_OOM;
        else if ((st = add_endings(it, lines[0], endings, txt)) == LOP_OK) it->gold = g[0] - '0';
    }
    lop_lines_close(&L);
    return st;
}
