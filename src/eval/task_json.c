/* Parsers for the tasks whose originals are JSON lines: PIQA (+ its labels file), ARC-Easy /
 * ARC-Challenge and OpenBookQA (AI2's shared format), BoolQ (Google's release) and WinoGrande 1.1.
 * Templates and gold indices as lm-eval's task YAMLs; see task.h. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "eval/task_internal.h"

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

typedef struct {
    lop_lines LL; /* the labels file, one label per item */
    const char *labels;
} piqa_labels;

static lop_status piqa_item(lop_lines *L, const cJSON *o, lop_task *t, void *arg) {
    piqa_labels *pl = arg;
    const char *goal, *sol1, *sol2;
    int label, found;
    lop_status st;
    if ((st = lop_json_str(L, o, "goal", &goal)) || (st = lop_json_str(L, o, "sol1", &sol1)) ||
        (st = lop_json_str(L, o, "sol2", &sol2)) || (st = next_label(&pl->LL, &label, &found)))
        return st;
    if (!found)
        return lop_fail(LOP_ERR_FORMAT, "%s: ends at line %d, but %s has an item at line %d with no label", pl->labels,
                        pl->LL.line, L->path, L->line);
    lop_mc_item *it = lop_task_add(t, L->line);
    if (!it) return LOP_ERR_OOM;
    if (!(st = lop_item_context(it, lop_strf("Question: %s\nAnswer:", goal), L->path)) &&
        !(st = lop_item_choice(it, 0, NULL, sol1, L->path)) && !(st = lop_item_choice(it, 1, NULL, sol2, L->path)))
        it->gold = label;
    return st;
}

lop_status lop_task_parse_piqa(const char *jsonl, const char *labels, int limit, lop_task *t) {
    piqa_labels pl = {.labels = labels};
    LOP_TRY(lop_lines_open(&pl.LL, labels));
    lop_status st = lop_parse_jsonl(jsonl, limit, t, piqa_item, &pl);
    if (st == LOP_OK && limit <= 0) { /* every label used */
        int label, found;
        if ((st = next_label(&pl.LL, &label, &found)) == LOP_OK && found)
            st = lop_fail(LOP_ERR_FORMAT, "%s:%d: more labels than items in %s (%d)", labels, pl.LL.line, jsonl, t->n_items);
    }
    lop_lines_close(&pl.LL);
    return st;
}

/* ---- ARC and OpenBookQA: {question: {stem, choices: [{text, label}]}, answerKey} --------------- */
static lop_status arc_item(lop_lines *L, const cJSON *o, lop_task *t, void *arg) {
    const int openbookqa = *(const int *)arg;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "question"), *choices;
    const char *stem, *key;
    int nc;
    lop_status st;
    if (!cJSON_IsObject(q))
        return lop_fail(LOP_ERR_FORMAT, "%s:%d: field 'question' %s", L->path, L->line, q ? "is not an object" : "is missing");
    if ((st = lop_json_str(L, q, "stem", &stem)) || (st = lop_json_array(L, q, "choices", &choices, &nc)) ||
        (st = lop_json_str(L, o, "answerKey", &key)))
        return st;
    if (nc < 1 || nc > LOP_MC_MAX_CHOICES)
        return lop_fail(LOP_ERR_FORMAT, "%s:%d: %d choices (expected 1 to %d)", L->path, L->line, nc, LOP_MC_MAX_CHOICES);
    if (openbookqa) key += lop_py_lstrip_len(key, strlen(key)); /* lm-eval: answerKey.lstrip() */
    lop_mc_item *it = lop_task_add(t, L->line);
    if (!it) return LOP_ERR_OOM;
    it->gold = -1;
    st = lop_item_context(it, openbookqa ? strdup(stem) : lop_strf("Question: %s\nAnswer:", stem), L->path);
    for (int j = 0; j < nc && st == LOP_OK; j++) {
        const cJSON *c = cJSON_GetArrayItem(choices, j);
        const char *text, *label;
        if (!cJSON_IsObject(c)) return lop_fail(LOP_ERR_FORMAT, "%s:%d: choice %d is not an object", L->path, L->line, j + 1);
        if ((st = lop_json_str(L, c, "text", &text)) || (st = lop_json_str(L, c, "label", &label)) ||
            (st = lop_item_choice(it, j, NULL, text, L->path)))
            return st;
        if (it->gold < 0 && !strcmp(label, key)) it->gold = j; /* list.index: the first match */
    }
    if (st == LOP_OK && it->gold < 0)
        st = lop_fail(LOP_ERR_FORMAT, "%s:%d: answerKey '%s' is not one of the choice labels", L->path, L->line, key);
    return st;
}

lop_status lop_task_parse_arc(const char *jsonl, int openbookqa, int limit, lop_task *t) {
    return lop_parse_jsonl(jsonl, limit, t, arc_item, &openbookqa);
}

/* ---- BoolQ: {question, title, answer: bool, passage} ----------------------------------------- */
static lop_status boolq_item(lop_lines *L, const cJSON *o, lop_task *t, void *arg) {
    (void)arg;
    const char *passage, *question;
    int answer;
    lop_status st;
    if ((st = lop_json_str(L, o, "passage", &passage)) || (st = lop_json_str(L, o, "question", &question)) ||
        (st = lop_json_bool(L, o, "answer", &answer)))
        return st;
    lop_mc_item *it = lop_task_add(t, L->line);
    if (!it) return LOP_ERR_OOM;
    if (!(st = lop_item_context(it, lop_strf("%s\nQuestion: %s?\nAnswer:", passage, question), L->path)) &&
        !(st = lop_item_choice(it, 0, NULL, "no", L->path)) && !(st = lop_item_choice(it, 1, NULL, "yes", L->path)))
        it->gold = answer; /* SuperGLUE label: 0 = False ("no"), 1 = True ("yes") */
    return st;
}

lop_status lop_task_parse_boolq(const char *jsonl, int limit, lop_task *t) {
    return lop_parse_jsonl(jsonl, limit, t, boolq_item, NULL);
}

/* ---- WinoGrande: {qID, sentence with one "_", option1, option2, answer "1"|"2"} --------------- */
static lop_status winogrande_item(lop_lines *L, const cJSON *o, lop_task *t, void *arg) {
    (void)arg;
    const char *sentence, *opt[2], *answer;
    lop_status st;
    if ((st = lop_json_str(L, o, "sentence", &sentence)) || (st = lop_json_str(L, o, "option1", &opt[0])) ||
        (st = lop_json_str(L, o, "option2", &opt[1])) || (st = lop_json_str(L, o, "answer", &answer)))
        return st;
    const char *blank = strchr(sentence, '_');
    if (!blank) return lop_fail(LOP_ERR_FORMAT, "%s:%d: the sentence has no '_' blank", L->path, L->line);
    if (strcmp(answer, "1") && strcmp(answer, "2"))
        return lop_fail(LOP_ERR_FORMAT, "%s:%d: answer '%s' (expected \"1\" or \"2\")", L->path, L->line, answer);
    /* partial evaluation: the option replaces the blank in the context; the rest is scored */
    const char *rest = blank + 1;
    size_t rn = strlen(rest), a = lop_py_lstrip_len(rest, rn), b = lop_py_rstrip_len(rest, rn);
    char *target = lop_strf("%.*s", (int)(b > a ? b - a : 0), rest + a);
    lop_mc_item *it = target ? lop_task_add(t, L->line) : NULL;
    if (!it) st = target ? LOP_ERR_OOM : lop_fail(LOP_ERR_OOM, "out of memory");
    for (int j = 0; j < 2 && st == LOP_OK; j++) {
        char *ctx = lop_strf("%.*s%s", (int)(blank - sentence), sentence, opt[j]);
        if (!ctx) {
            st = lop_fail(LOP_ERR_OOM, "out of memory");
            break;
        }
        st = lop_item_choice(it, j, ctx, target, L->path);
        /* lm-eval's choices here are the partial contexts: their length is the acc_norm divisor */
        it->norm_len[j] = lop_utf8_chars(ctx, strlen(ctx));
        free(ctx);
    }
    if (st == LOP_OK) it->gold = answer[0] - '1';
    free(target);
    return st;
}

lop_status lop_task_parse_winogrande(const char *jsonl, int limit, lop_task *t) {
    return lop_parse_jsonl(jsonl, limit, t, winogrande_item, NULL);
}
