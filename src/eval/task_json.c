/* Parsers for the tasks whose originals are JSON lines: PIQA (+ its labels file), ARC-Easy /
 * ARC-Challenge and OpenBookQA (AI2's shared format), BoolQ (Google's release) and WinoGrande 1.1.
 * Templates and gold indices as lm-eval's task YAMLs; see task.h. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "eval/task_internal.h"

static lop_status start(lop_task *t, const char *path) {
    if (!(t->path = strdup(path))) return lop_fail(LOP_ERR_OOM, "out of memory");
    return LOP_OK;
}

/* ---- PIQA: valid.jsonl {goal, sol1, sol2} + valid-labels.lst (0 = sol1, 1 = sol2) ------------ */
static lop_status next_label(lop_lines *L, int *label, int *found) {
    char *s;
    size_t n;
    *found = 0;
    while (lop_lines_next(L, &s, &n)) {
        size_t a = lop_py_lstrip_len(s, n), b = lop_py_rstrip_len(s, n);
        if (a >= b) continue;
        if (b - a != 1 || (s[a] != '0' && s[a] != '1'))
            return lop_fail(LOP_ERR_FORMAT, "%s:%d: expected a label 0 or 1, found '%.*s'", L->path, L->line,
                            (int)(b - a > 20 ? 20 : b - a), s + a);
        *label = s[a] - '0';
        *found = 1;
        break;
    }
    return LOP_OK;
}

lop_status lop_task_parse_piqa(const char *jsonl, const char *labels, int limit, lop_task *t) {
    lop_lines L, LL;
    LOP_TRY(start(t, jsonl));
    LOP_TRY(lop_lines_open(&L, jsonl));
    lop_status st = lop_lines_open(&LL, labels);
    if (st != LOP_OK) {
        lop_lines_close(&L);
        return st;
    }
    cJSON *o = NULL;
    while (st == LOP_OK && (limit <= 0 || t->n_items < limit)) {
        if ((st = lop_lines_json(&L, &o)) != LOP_OK || !o) break;
        const char *goal, *sol1, *sol2;
        int label, found;
        lop_mc_item *it;
        if ((st = lop_json_str(&L, o, "goal", &goal)) || (st = lop_json_str(&L, o, "sol1", &sol1)) ||
            (st = lop_json_str(&L, o, "sol2", &sol2)) || (st = next_label(&LL, &label, &found)))
            break;
        if (!found) {
            st = lop_fail(LOP_ERR_FORMAT, "%s: ends at line %d, but %s has an item at line %d with no label", labels,
                          LL.line, jsonl, L.line);
            break;
        }
        if (!(it = lop_task_add(t, L.line))) st = LOP_ERR_OOM;
        else if (!(st = lop_item_context(it, lop_strf("Question: %s\nAnswer:", goal), jsonl)) &&
                 !(st = lop_item_choice(it, 0, NULL, sol1, jsonl)) && !(st = lop_item_choice(it, 1, NULL, sol2, jsonl)))
            it->gold = label;
        cJSON_Delete(o);
        o = NULL;
    }
    cJSON_Delete(o);
    if (st == LOP_OK && limit <= 0) { /* every label used */
        int label, found;
        if ((st = next_label(&LL, &label, &found)) == LOP_OK && found)
            st = lop_fail(LOP_ERR_FORMAT, "%s:%d: more labels than items in %s (%d)", labels, LL.line, jsonl, t->n_items);
    }
    lop_lines_close(&L);
    lop_lines_close(&LL);
    return st;
}

/* ---- ARC and OpenBookQA: {question: {stem, choices: [{text, label}]}, answerKey} --------------- */
lop_status lop_task_parse_arc(const char *jsonl, int openbookqa, int limit, lop_task *t) {
    lop_lines L;
    LOP_TRY(start(t, jsonl));
    LOP_TRY(lop_lines_open(&L, jsonl));
    lop_status st = LOP_OK;
    cJSON *o = NULL;
    while (st == LOP_OK && (limit <= 0 || t->n_items < limit)) {
        if ((st = lop_lines_json(&L, &o)) != LOP_OK || !o) break;
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "question"), *choices;
        const char *stem, *key;
        int nc;
        if (!cJSON_IsObject(q)) {
            st = lop_fail(LOP_ERR_FORMAT, "%s:%d: field 'question' %s", jsonl, L.line, q ? "is not an object" : "is missing");
            break;
        }
        if ((st = lop_json_str(&L, q, "stem", &stem)) || (st = lop_json_array(&L, q, "choices", &choices, &nc)) ||
            (st = lop_json_str(&L, o, "answerKey", &key)))
            break;
        if (nc < 1 || nc > LOP_MC_MAX_CHOICES) {
            st = lop_fail(LOP_ERR_FORMAT, "%s:%d: %d choices (expected 1 to %d)", jsonl, L.line, nc, LOP_MC_MAX_CHOICES);
            break;
        }
        if (openbookqa) key += lop_py_lstrip_len(key, strlen(key)); /* lm-eval: answerKey.lstrip() */
        lop_mc_item *it = lop_task_add(t, L.line);
        if (!it) {
            st = LOP_ERR_OOM;
            break;
        }
        it->gold = -1;
        st = lop_item_context(it, openbookqa ? strdup(stem) : lop_strf("Question: %s\nAnswer:", stem), jsonl);
        for (int j = 0; j < nc && st == LOP_OK; j++) {
            const cJSON *c = cJSON_GetArrayItem(choices, j);
            const char *text, *label;
            if (!cJSON_IsObject(c)) {
                st = lop_fail(LOP_ERR_FORMAT, "%s:%d: choice %d is not an object", jsonl, L.line, j + 1);
                break;
            }
            if ((st = lop_json_str(&L, c, "text", &text)) || (st = lop_json_str(&L, c, "label", &label))) break;
            if ((st = lop_item_choice(it, j, NULL, text, jsonl))) break;
            if (it->gold < 0 && !strcmp(label, key)) it->gold = j; /* list.index: the first match */
        }
        if (st == LOP_OK && it->gold < 0)
            st = lop_fail(LOP_ERR_FORMAT, "%s:%d: answerKey '%s' is not one of the choice labels", jsonl, L.line, key);
        cJSON_Delete(o);
        o = NULL;
    }
    cJSON_Delete(o);
    lop_lines_close(&L);
    return st;
}

/* ---- BoolQ: {question, title, answer: bool, passage} ----------------------------------------- */
lop_status lop_task_parse_boolq(const char *jsonl, int limit, lop_task *t) {
    lop_lines L;
    LOP_TRY(start(t, jsonl));
    LOP_TRY(lop_lines_open(&L, jsonl));
    lop_status st = LOP_OK;
    cJSON *o = NULL;
    while (st == LOP_OK && (limit <= 0 || t->n_items < limit)) {
        if ((st = lop_lines_json(&L, &o)) != LOP_OK || !o) break;
        const char *passage, *question;
        int answer;
        if ((st = lop_json_str(&L, o, "passage", &passage)) || (st = lop_json_str(&L, o, "question", &question)) ||
            (st = lop_json_bool(&L, o, "answer", &answer)))
            break;
        lop_mc_item *it = lop_task_add(t, L.line);
        if (!it) st = LOP_ERR_OOM;
        else if (!(st = lop_item_context(it, lop_strf("%s\nQuestion: %s?\nAnswer:", passage, question), jsonl)) &&
                 !(st = lop_item_choice(it, 0, NULL, "no", jsonl)) && !(st = lop_item_choice(it, 1, NULL, "yes", jsonl)))
            it->gold = answer; /* SuperGLUE label: 0 = False ("no"), 1 = True ("yes") */
        cJSON_Delete(o);
        o = NULL;
    }
    cJSON_Delete(o);
    lop_lines_close(&L);
    return st;
}

/* ---- WinoGrande: {qID, sentence with one "_", option1, option2, answer "1"|"2"} --------------- */
lop_status lop_task_parse_winogrande(const char *jsonl, int limit, lop_task *t) {
    lop_lines L;
    LOP_TRY(start(t, jsonl));
    LOP_TRY(lop_lines_open(&L, jsonl));
    lop_status st = LOP_OK;
    cJSON *o = NULL;
    char *ctx = NULL;
    while (st == LOP_OK && (limit <= 0 || t->n_items < limit)) {
        if ((st = lop_lines_json(&L, &o)) != LOP_OK || !o) break;
        const char *sentence, *opt[2], *answer;
        if ((st = lop_json_str(&L, o, "sentence", &sentence)) || (st = lop_json_str(&L, o, "option1", &opt[0])) ||
            (st = lop_json_str(&L, o, "option2", &opt[1])) || (st = lop_json_str(&L, o, "answer", &answer)))
            break;
        const char *blank = strchr(sentence, '_');
        if (!blank) {
            st = lop_fail(LOP_ERR_FORMAT, "%s:%d: the sentence has no '_' blank", jsonl, L.line);
            break;
        }
        if (strcmp(answer, "1") && strcmp(answer, "2")) {
            st = lop_fail(LOP_ERR_FORMAT, "%s:%d: answer '%s' (expected \"1\" or \"2\")", jsonl, L.line, answer);
            break;
        }
        /* partial evaluation: the option replaces the blank in the context; the rest is scored */
        const char *rest = blank + 1;
        size_t rn = strlen(rest), a = lop_py_lstrip_len(rest, rn), b = lop_py_rstrip_len(rest, rn);
        char *target = lop_strf("%.*s", (int)(b > a ? b - a : 0), rest + a);
        lop_mc_item *it = target ? lop_task_add(t, L.line) : NULL;
        if (!it) st = target ? LOP_ERR_OOM : lop_fail(LOP_ERR_OOM, "out of memory");
        for (int j = 0; j < 2 && st == LOP_OK; j++) {
            if (!(ctx = lop_strf("%.*s%s", (int)(blank - sentence), sentence, opt[j]))) {
                st = lop_fail(LOP_ERR_OOM, "out of memory");
                break;
            }
            st = lop_item_choice(it, j, ctx, target, jsonl);
            /* lm-eval's choices here are the partial contexts: their length is the acc_norm divisor */
            it->norm_len[j] = lop_utf8_chars(ctx, strlen(ctx));
            free(ctx);
            ctx = NULL;
        }
        if (st == LOP_OK) it->gold = answer[0] - '1';
        free(target);
        cJSON_Delete(o);
        o = NULL;
    }
    cJSON_Delete(o);
    lop_lines_close(&L);
    return st;
}
