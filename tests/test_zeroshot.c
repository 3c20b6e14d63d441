/* Zero-shot tasks: each parser on small fixture files in the task's original format
 * (tests/fixtures/eval, items written for the tests), lm-eval's templates and preprocessing
 * (expected strings as lm-eval's Python gives them), clear errors naming file and line for
 * malformed files, missing tasks, lm-eval's pair encoding, acc vs acc_norm on a constructed case
 * with closed-form log-likelihoods, and prefix-shared scoring equal to whole-sequence scoring. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "eval/logprob.h"
#include "eval/prefix_score.h"
#include "eval/zeroshot.h"
#include "tiny_model.h"
#include "tokenizer/tokenizer.h"

#define FX "tests/fixtures/eval"

static lop_task load(const char *name, const char *dir) {
    lop_task t;
    char *missing = NULL;
    lop_status st = lop_task_load(name, dir, 0, &t, &missing);
    if (st != LOP_OK) fail_msg("%s: %s", name, lop_last_error());
    if (missing) fail_msg("%s: missing %s", name, missing);
    return t;
}

/* item i: context, continuations (NULL-terminated), gold, acc_norm lengths */
static void expect_item(const lop_task *t, int i, const char *ctx, const char *const *conts, int gold, const int *norm) {
    assert_true(i < t->n_items);
    const lop_mc_item *it = &t->items[i];
    assert_int_equal(it->shared_ctx, 1);
    assert_string_equal(it->ctx[0], ctx);
    int n = 0;
    for (; conts[n]; n++) {
        assert_string_equal(it->cont[n], conts[n]);
        assert_int_equal(it->norm_len[n], norm[n]);
    }
    assert_int_equal(it->n_choices, n);
    assert_int_equal(it->gold, gold);
}

static void test_parsers(void **st) {
    (void)st;
    lop_task t = load("piqa", FX);
    assert_int_equal(t.n_items, 3);
    expect_item(&t, 0, "Question: To keep a door from slamming shut,\nAnswer:",
                (const char *[]){" wedge a folded towel under it.", " paint the hinges bright red.", NULL}, 0, (int[]){30, 28});
    /* acc_norm counts characters (the em dash is 3 bytes, 1 character), as Python's len() */
    expect_item(&t, 2, "Question: Make a paper boat waterproof\nAnswer:",
                (const char *[]){" Soak it in water first.", " Rub crayon wax over the outside \xe2\x80\x94 all of it.", NULL}, 1,
                (int[]){23, 44});
    assert_int_equal(t.items[2].line, 3);
    assert_non_null(strstr(t.path, "piqa/valid.jsonl"));
    lop_task_free(&t);

    t = load("arc_easy", FX);
    assert_int_equal(t.n_items, 4);
    expect_item(&t, 0, "Question: Which object is attracted by a magnet?\nAnswer:",
                (const char *[]){" a wooden spoon", " an iron nail", " a glass cup", " a rubber band", NULL}, 1,
                (int[]){14, 12, 11, 13});
    expect_item(&t, 1, "Question: What do plants need to make food?\nAnswer:",
                (const char *[]){" sunlight", " sand", " noise", " smoke", NULL}, 0, (int[]){8, 4, 5, 5}); /* labels 1..4 */
    expect_item(&t, 2, "Question: Water freezes at which temperature (Celsius)?\nAnswer:",
                (const char *[]){" 0 degrees", " 50 degrees", " 100 degrees", NULL}, 0, (int[]){9, 10, 11});
    expect_item(&t, 3, "Question: Which is a mammal?\nAnswer:",
                (const char *[]){" shark", " trout", " frog", " eagle", " whale", NULL}, 4, (int[]){5, 5, 4, 5, 5});
    lop_task_free(&t);

    t = load("arc_challenge", FX);
    assert_int_equal(t.n_items, 2);
    expect_item(&t, 1, "Question: Which change is chemical?\nAnswer:",
                (const char *[]){" melting ice", " burning wood", " tearing paper", " boiling water", NULL}, 1,
                (int[]){11, 12, 13, 13});
    assert_int_equal(t.info->metric, LOP_METRIC_ACC_NORM);
    lop_task_free(&t);

    t = load("boolq", FX);
    assert_int_equal(t.n_items, 2);
    expect_item(&t, 0,
                "The Moon is Earth's only natural satellite. Its diameter is about one quarter of Earth's.\n"
                "Question: is the moon larger than the earth?\nAnswer:",
                (const char *[]){" no", " yes", NULL}, 0, (int[]){2, 3});
    assert_int_equal(t.items[1].gold, 1);
    assert_int_equal(t.info->metric, LOP_METRIC_ACC);
    lop_task_free(&t);

    t = load("openbookqa", FX);
    expect_item(&t, 0, "When a seed sprouts, roots grow",
                (const char *[]){" downward", " sideways only", " into the air", " not at all", NULL}, 0, (int[]){8, 13, 12, 10});
    assert_int_equal(t.items[1].gold, 1); /* answerKey " B": lm-eval strips it */
    lop_task_free(&t);

    /* WinoGrande: partial evaluation, one context per option, the shared rest stripped */
    t = load("winogrande", FX);
    assert_int_equal(t.n_items, 2);
    const lop_mc_item *w = &t.items[1];
    assert_int_equal(w->shared_ctx, 0);
    assert_string_equal(w->ctx[0], "Anna gave Maria her umbrella because Anna");
    assert_string_equal(w->ctx[1], "Anna gave Maria her umbrella because Maria");
    assert_string_equal(w->cont[0], " had two of them.");
    assert_string_equal(w->cont[1], " had two of them.");
    assert_int_equal(w->gold, 0);
    assert_int_equal(w->norm_len[1], 42);
    assert_int_equal(t.items[0].gold, 0);
    lop_task_free(&t);

    /* HellaSwag from the derived text: lm-eval's preprocess on top, flagged derived */
    t = load("hellaswag", FX);
    assert_int_equal(t.derived, 1);
    assert_int_equal(t.n_items, 2);
    expect_item(&t, 0, "Roof shingle removal: A man is sitting on a roof. he",
                (const char *[]){" is using wrap to wrap a pair of skis.", " is ripping level tiles off.",
                                 " is holding a rubik's cube.", " starts pulling up roofing on a roof.", NULL},
                3, (int[]){37, 27, 26, 36});
    expect_item(&t, 1, "Home and Garden: How to water a fern. Check the soil with a finger.",
                (const char *[]){" Water when the top inch feels dry Use room temperature water.", " Paint the leaves  green.",
                                 " Put the fern in the freezer. Leave it there.", " Shout at the fern.", NULL},
                0, (int[]){61, 24, 44, 18});
    assert_int_equal(t.items[1].line, 7);
    lop_task_free(&t);

    /* HellaSwag from the original jsonl: ctx_b capitalised (Python capitalize lowers the rest) */
    t = load("hellaswag", FX "/hellaswag-original");
    assert_int_equal(t.derived, 0);
    expect_item(&t, 0, "Roof shingle removal: A man is sitting on a roof. He",
                (const char *[]){" is using wrap to wrap a pair of skis.", " is ripping level tiles off.",
                                 " is holding a rubik's cube.", " starts pulling up roofing on a roof.", NULL},
                3, (int[]){37, 27, 26, 36});
    expect_item(&t, 1, "Home and Garden: How to water a fern.. Check the soil. Then use the nasa method",
                (const char *[]){" Water when dry Use temperature water.", " Paint it.", " Freeze it.", " Shout.", NULL}, 0,
                (int[]){37, 9, 10, 6});
    lop_task_free(&t);

    /* --limit */
    char *missing;
    assert_int_equal(lop_task_load("arc_easy", FX, 2, &t, &missing), LOP_OK);
    assert_int_equal(t.n_items, 2);
    lop_task_free(&t);
    assert_int_equal(lop_task_load("hellaswag", FX, 1, &t, &missing), LOP_OK);
    assert_int_equal(t.n_items, 1);
    lop_task_free(&t);
}

static void test_missing_and_unknown(void **st) {
    (void)st;
    lop_task t;
    char *missing = NULL;
    assert_int_equal(lop_task_load("piqa", FX "/hellaswag-original", 0, &t, &missing), LOP_OK);
    assert_non_null(missing);
    assert_non_null(strstr(missing, "piqa/valid.jsonl"));
    assert_int_equal(t.n_items, 0);
    assert_non_null(t.info);
    free(missing);
    assert_int_equal(lop_task_load("mmlu", FX, 0, &t, &missing), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "mmlu"));
    assert_int_equal(lop_task_count(), 7);
    assert_string_equal(lop_task_at(0)->name, "boolq");
}

static void test_text_helpers(void **st) {
    (void)st;
    const char *cases[][2] = {
        {"  a [title] b  ", "a. b"},              /* strip, then " [title]" -> ". " and "  " -> " " */
        {"x [header] y", "x y"},                  /* any tag */
        {"[a]b[c]", "b"},
        {"keep [open bracket", "keep [open bracket"}, /* no closing bracket: kept */
        {"a [x\ny] b", "a [x\ny] b"},            /* '.' does not cross a newline */
        {"a   b", "a  b"},                        /* one pass of "  " -> " " */
        {"a    b", "a  b"},
        {"\xc2\xa0 x \xe3\x80\x80", "x"},         /* NBSP and ideographic space are Python whitespace */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = lop_hellaswag_preprocess(cases[i][0]);
        assert_non_null(p);
        if (strcmp(p, cases[i][1])) fail_msg("preprocess('%s') = '%s', want '%s'", cases[i][0], p, cases[i][1]);
        free(p);
    }
    const char *s = "ab \t\xc2\xa0";
    assert_int_equal(lop_py_rstrip_len(s, strlen(s)), 2);
    assert_int_equal(lop_py_lstrip_len(" \x1c" "a", 3), 2);
    assert_int_equal(lop_py_rstrip_len("a\xe2\x80\x94", 4), 4); /* em dash is not whitespace */
    assert_int_equal(lop_utf8_chars("a\xe2\x80\x94z", 5), 3);
    assert_true(lop_utf8_valid("a\xe2\x80\x94", 4));
    assert_false(lop_utf8_valid("a\xe2\x80", 3));
    assert_false(lop_utf8_valid("\xc0\xaf", 2)); /* overlong */
}

/* ---- malformed files ---------------------------------------------------------------------------- */
static char g_dir[64];

static void put(const char *rel, const char *content) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, rel);
    char *slash = strrchr(path, '/');
    *slash = 0;
    mkdir(path, 0755);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void expect_error(const char *task, const char *needle1, const char *needle2) {
    lop_task t;
    char *missing = NULL;
    lop_status st = lop_task_load(task, g_dir, 0, &t, &missing);
    if (st != LOP_ERR_FORMAT) fail_msg("%s: status %d (%s), expected a format error", task, st, lop_last_error());
    if (!strstr(lop_last_error(), needle1) || (needle2 && !strstr(lop_last_error(), needle2)))
        fail_msg("%s: message '%s' lacks '%s' / '%s'", task, lop_last_error(), needle1, needle2 ? needle2 : "");
    assert_null(missing);
}

static void test_malformed(void **st) {
    (void)st;
    snprintf(g_dir, sizeof g_dir, "/tmp/lop-zs-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    static const char good_piqa[] = "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n";
    put("piqa/valid.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n{\"goal\": \"g\", \"sol1\": \"a\"\n");
    put("piqa/valid-labels.lst", "0\n1\n");
    expect_error("piqa", "piqa/valid.jsonl:2:", "not a JSON object");
    put("piqa/valid.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n\n{\"goal\": \"g\", \"sol2\": \"b\"}\n");
    expect_error("piqa", "piqa/valid.jsonl:3:", "'sol1' is missing");
    put("piqa/valid.jsonl", "{\"goal\": \"g\", \"sol1\": 7, \"sol2\": \"b\"}\n");
    expect_error("piqa", "valid.jsonl:1:", "'sol1' is not a string");
    put("piqa/valid.jsonl", good_piqa);
    put("piqa/valid-labels.lst", "2\n");
    expect_error("piqa", "valid-labels.lst:1:", "label 0 or 1");
    put("piqa/valid-labels.lst", "");
    expect_error("piqa", "valid-labels.lst", "no label");
    put("piqa/valid-labels.lst", "0\n1\n");
    expect_error("piqa", "valid-labels.lst:2:", "more labels than items");
    put("piqa/valid.jsonl", "{\"goal\": \"bad \xff utf-8\", \"sol1\": \"a\", \"sol2\": \"b\"}\n");
    put("piqa/valid-labels.lst", "0\n");
    expect_error("piqa", "valid.jsonl:1:", "UTF-8");

    put("arc_easy/ARC-Easy-Test.jsonl",
        "{\"question\": {\"stem\": \"s\", \"choices\": [{\"text\": \"a\", \"label\": \"A\"}]}, \"answerKey\": \"A\"}\n"
        "{\"question\": {\"stem\": \"s\", \"choices\": [{\"text\": \"a\", \"label\": \"A\"}]}, \"answerKey\": \"B\"}\n");
    expect_error("arc_easy", "ARC-Easy-Test.jsonl:2:", "answerKey 'B'");
    put("arc_easy/ARC-Easy-Test.jsonl", "{\"question\": \"s\", \"answerKey\": \"B\"}\n");
    expect_error("arc_easy", "ARC-Easy-Test.jsonl:1:", "'question' is not an object");
    put("arc_easy/ARC-Easy-Test.jsonl", "{\"question\": {\"stem\": \"s\", \"choices\": []}, \"answerKey\": \"A\"}\n");
    expect_error("arc_easy", "ARC-Easy-Test.jsonl:1:", "0 choices");
    put("arc_easy/ARC-Easy-Test.jsonl", "[1, 2]\n");
    expect_error("arc_easy", "ARC-Easy-Test.jsonl:1:", "not a JSON object");
    put("arc_easy/ARC-Easy-Test.jsonl", "\n\n");
    expect_error("arc_easy", "ARC-Easy-Test.jsonl", "no items");

    put("boolq/dev.jsonl", "{\"question\": \"q\", \"passage\": \"p\", \"answer\": \"yes\"}\n");
    expect_error("boolq", "boolq/dev.jsonl:1:", "'answer' is not true/false");

    put("winogrande/dev.jsonl", "{\"sentence\": \"no blank\", \"option1\": \"a\", \"option2\": \"b\", \"answer\": \"1\"}\n");
    expect_error("winogrande", "winogrande/dev.jsonl:1:", "no '_' blank");
    put("winogrande/dev.jsonl", "{\"sentence\": \"a _ b\", \"option1\": \"a\", \"option2\": \"b\", \"answer\": \"3\"}\n");
    expect_error("winogrande", "winogrande/dev.jsonl:1:", "answer '3'");

    put("hellaswag/hellaswag_val_full.txt", "ctx\n1\na\nb\nc\nd\nctx2\n0\na\nb\n");
    expect_error("hellaswag", "hellaswag_val_full.txt:10:", "starting at line 7 has 4 of its 6 lines");
    put("hellaswag/hellaswag_val_full.txt", "ctx\n1\na\nb\nc\nd\nctx2\nx\na\nb\nc\nd\n");
    expect_error("hellaswag", "hellaswag_val_full.txt:8:", "gold ending index");
    put("hellaswag/hellaswag_val.jsonl",
        "{\"activity_label\": \"a\", \"ctx_a\": \"b\", \"ctx_b\": \"c\", \"endings\": [\"1\", \"2\", \"3\"], \"label\": 0}\n");
    expect_error("hellaswag", "hellaswag_val.jsonl:1:", "3 endings");
    put("hellaswag/hellaswag_val.jsonl",
        "{\"activity_label\": \"a\", \"ctx_a\": \"b\", \"ctx_b\": \"c\", \"endings\": [\"1\", \"2\", \"3\", \"4\"], \"label\": 4}\n");
    expect_error("hellaswag", "hellaswag_val.jsonl:1:", "'label' is not 0..3");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- a byte-level tokenizer (one token per byte, GPT-2 byte alphabet, no merges) ------------------ */
static lop_tokenizer *byte_tokenizer(void) {
    int cps[256], n = 0;
    int is_direct[256] = {0};
    for (int b = '!'; b <= '~'; b++) is_direct[b] = 1;
    for (int b = 0xa1; b <= 0xac; b++) is_direct[b] = 1;
    for (int b = 0xae; b <= 0xff; b++) is_direct[b] = 1;
    for (int b = 0; b < 256; b++) cps[b] = is_direct[b] ? b : 256 + n++;
    char *json = malloc(16384), *p = json;
    p += sprintf(p, "{\"model\": {\"type\": \"BPE\", \"merges\": [], \"vocab\": {");
    for (int b = 0; b < 256; b++) {
        int cp = cps[b];
        char u[4];
        int k = cp < 0x80 ? (u[0] = (char)cp, 1) : (u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), 2);
        if (cp == '"' || cp == '\\') p += sprintf(p, "%s\"\\%c\": %d", b ? ", " : "", cp, b);
        else p += sprintf(p, "%s\"%.*s\": %d", b ? ", " : "", k, u, b);
    }
    p += sprintf(p, "}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
                    " \"decoder\": {\"type\": \"ByteLevel\"}, \"added_tokens\": []}");
    lop_tokenizer *t = NULL;
    if (lop_tokenizer_from_hf_json_text(json, strlen(json), "byte-tokenizer", &t) != LOP_OK)
        fail_msg("byte tokenizer: %s", lop_last_error());
    free(json);
    return t;
}

static void test_encode_pair(void **st) {
    (void)st;
    static const tiny_layer L[1] = {{2, 1, 8, 16, 0, 0, 0}};
    lop_model *m = tiny_model(256, 16, 1, L, 1, 3);
    m->tok = byte_tokenizer();
    int32_t *c, *k;
    int nc, nk;
    /* the context's trailing space moves to the continuation: ctx "Q:" , cont " A" */
    assert_int_equal(lop_zs_encode_pair(m, "Q: ", "A", &c, &nc, &k, &nk), LOP_OK);
    assert_int_equal(nc, 2);
    assert_int_equal(nk, 2);
    assert_int_equal(c[0], 'Q');
    assert_int_equal(k[0], ' ');
    assert_int_equal(k[1], 'A');
    free(c);
    free(k);
    /* an empty context becomes the prefix token (no BOS here: EOS; none at all → error) */
    assert_int_equal(lop_zs_encode_pair(m, "", "ab", &c, &nc, &k, &nk), LOP_ERR_ARG);
    lop_model_free(m);
}

/* ---- acc vs acc_norm on a model with closed-form probabilities ----------------------------------
 * vocab 256 (bytes), dim 256, no attention or FFN: h = emb[t] = 2·e_t normalised = (2/sqrt(4/256+eps))·e_t,
 * lm_head[v][d] = A when v == next(d): logit s for next(t), 0 for the other 255 tokens, with
 * next('a') = 'a' (a likely run of a's) and next(t) = t + 1 otherwise. */
#define A 0.4

static int next_of(int t) { return t == 'a' ? 'a' : (t + 1) % 256; }

static double hand_ll(const char *prev_then_cont, float eps) {
    double s = A * 2.0 / sqrt(4.0 / 256 + (double)eps), ll = 0;
    for (const char *p = prev_then_cont; p[1]; p++)
        ll += ((unsigned char)p[1] == next_of((unsigned char)p[0]) ? s : 0) - log(exp(s) + 255);
    return ll;
}

static void test_acc_vs_acc_norm(void **st) {
    (void)st;
    static const tiny_layer none[1] = {{0, 0, 4, 0, 0, 0, 0}};
    lop_model *m = tiny_model(256, 256, 1, none, 0, 1);
    assert_non_null(m);
    float *emb = m->w.tok_emb.data, *head = m->w.lm_head.data, *norm = m->w.out_norm.data;
    for (int v = 0; v < 256; v++)
        for (int d = 0; d < 256; d++) {
            emb[v * 256 + d] = v == d ? 2.0f : 0.0f;
            head[v * 256 + d] = v == next_of(d) ? (float)A : 0.0f;
        }
    for (int d = 0; d < 256; d++) norm[d] = 1.0f;
    m->tok = byte_tokenizer();
    /* item 0: " b" (2 tokens, both unlikely) vs " aaaaaaaa" (9 tokens; 7 likely a→a steps):
     * the short choice has the higher sum (acc picks it), the long one the higher sum per
     * character (acc_norm picks it). gold = 1: acc wrong, acc_norm right.
     * item 1: " z" vs " aaaaaaaa" from "y": the same split (gold 0: acc right, acc_norm wrong). */
    /* item 2: " qa" vs " \u00fc\u20acaa" (2 vs 4 characters, 2 vs 7 bytes, 3 vs 8 tokens): divided by
     * characters (lm-eval) the first wins; by bytes or by tokens the second would. */
    lop_mc_item *items = calloc(3, sizeof *items); /* lop_task_free frees it */
    items[0] = (lop_mc_item){1, 1, 2, 1, {strdup("x")}, {strdup(" b"), strdup(" aaaaaaaa")}, {1, 8}};
    items[1] = (lop_mc_item){2, 0, 2, 1, {strdup("y")}, {strdup(" z"), strdup(" aaaaaaaa")}, {1, 8}};
    items[2] = (lop_mc_item){3, 0, 2, 1, {strdup("x")}, {strdup(" qa"), strdup(" \xc3\xbc\xe2\x82\xac" "aa")}, {2, 4}};
    lop_task t = {lop_task_find("arc_challenge"), strdup("constructed"), 0, 3, 3, items};
    lop_engine_opts eo = {.device = LOP_DEVICE_CPU, .max_batch = 4, .max_seq_len = 32, .n_threads = 1};
    lop_engine *e;
    assert_int_equal(lop_engine_create(m, &eo, &e), LOP_OK);
    lop_zs_opts o = {0, 0, 0, NULL};
    lop_zs_result r;
    assert_int_equal(lop_zeroshot_eval(e, &t, &o, &r), LOP_OK);
    float eps = m->cfg.norm_eps;
    double want[3][2] = {{hand_ll("x b", eps), hand_ll("x aaaaaaaa", eps)},
                         {hand_ll("y z", eps), hand_ll("y aaaaaaaa", eps)},
                         {hand_ll("x qa", eps), hand_ll("x \xc3\xbc\xe2\x82\xac" "aa", eps)}};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            if (fabs(r.items[i].ll[j] - want[i][j]) > 1e-4)
                fail_msg("item %d choice %d: ll %.6f, closed form %.6f", i, j, r.items[i].ll[j], want[i][j]);
    assert_true(want[0][0] > want[0][1]);         /* sum: the short choice wins */
    assert_true(want[0][0] / 1 < want[0][1] / 8); /* per character: the long one wins */
    assert_int_equal(r.items[0].pred, 0);
    assert_int_equal(r.items[0].pred_norm, 1);
    assert_int_equal(r.items[1].pred, 0);
    assert_int_equal(r.items[1].pred_norm, 1);
    assert_int_equal(r.items[0].n_cont[1], 9);
    assert_int_equal(r.items[2].n_cont[1], 8);
    assert_true(want[2][0] / 2 > want[2][1] / 4 && want[2][0] / 2 < want[2][1] / 7 && want[2][0] / 3 < want[2][1] / 8);
    assert_int_equal(r.items[2].pred_norm, 0);
    /* item 0 (gold 1): acc wrong, acc_norm right; item 1 (gold 0): the reverse; item 2: both right */
    assert_true(fabs(r.acc - 2.0 / 3) < 1e-12);
    assert_true(fabs(r.acc_norm - 2.0 / 3) < 1e-12);
    assert_int_equal(r.items[0].greedy[1], 0);
    lop_zs_result_free(&r);
    /* gold = the long choice in items 0 and 1: acc 1/3, acc_norm 1 */
    items[1].gold = 1;
    assert_int_equal(lop_zeroshot_eval(e, &t, &o, &r), LOP_OK);
    assert_true(fabs(r.acc - 1.0 / 3) < 1e-12 && r.acc_norm == 1.0);
    assert_true(fabs(lop_zs_score(&r, LOP_METRIC_ACC_NORM) - 1.0) < 1e-12);
    lop_zs_result_free(&r);
    lop_engine_free(e);
    lop_task_free(&t);
    lop_model_free(m);
}

/* ---- shared-prefix scoring == whole sequences, truncation as lm-eval ------------------------------ */
static void test_shared_prefix_scoring(void **st) {
    (void)st;
    static const tiny_layer L[2] = {{4, 2, 8, 40, 0, 0, 0}, {2, 1, 8, 24, 0, 1, 0}};
    lop_model *m = tiny_model(256, 32, 2, L, 1, 11);
    m->tok = byte_tokenizer();
    lop_task t = load("arc_easy", FX);
    lop_task w = load("winogrande", FX);
    lop_engine_opts eo = {.device = LOP_DEVICE_CPU, .max_batch = 3, .max_seq_len = 96, .n_threads = 1}; /* 3 slots: several chunks */
    lop_engine *e;
    assert_int_equal(lop_engine_create(m, &eo, &e), LOP_OK);
    const lop_task *tasks[2] = {&t, &w};
    for (int k = 0; k < 2; k++) {
        lop_zs_opts shared = {0, 40, 0, NULL}, whole = {0, 0, 1, NULL};
        lop_zs_result a, b;
        assert_int_equal(lop_zeroshot_eval(e, tasks[k], &shared, &a), LOP_OK);
        assert_int_equal(lop_zeroshot_eval(e, tasks[k], &whole, &b), LOP_OK);
        for (int i = 0; i < a.n_items; i++) {
            const lop_mc_item *it = &tasks[k]->items[i];
            for (int j = 0; j < a.items[i].n_choices; j++) {
                if (fabs(a.items[i].ll[j] - b.items[i].ll[j]) > 1e-4)
                    fail_msg("task %d item %d choice %d: shared %.6f, whole %.6f", k, i, j, a.items[i].ll[j], b.items[i].ll[j]);
                assert_int_equal(a.items[i].greedy[j], b.items[i].greedy[j]);
                /* and both equal lop_score_sequences on the concatenated ids */
                int32_t *c, *cn;
                int nc, nk;
                assert_int_equal(lop_zs_encode_pair(m, it->shared_ctx ? it->ctx[0] : it->ctx[j], it->cont[j], &c, &nc, &cn, &nk), LOP_OK);
                int32_t *seq = malloc((size_t)(nc + nk) * sizeof *seq);
                memcpy(seq, c, (size_t)nc * sizeof *seq);
                memcpy(seq + nc, cn, (size_t)nk * sizeof *seq);
                lop_score_req rq = {seq, nc + nk, nc};
                lop_score s;
                assert_int_equal(lop_score_sequences(e, &rq, 1, &s, NULL), LOP_OK);
                assert_true(fabs(s.logprob - a.items[i].ll[j]) < 1e-4);
                assert_int_equal(s.n_scored, nk);
                free(seq);
                free(c);
                free(cn);
            }
        }
        assert_true(a.n_tokens < b.n_tokens || k == 1); /* sharing runs fewer tokens (not for WinoGrande) */
        lop_zs_result_free(&a);
        lop_zs_result_free(&b);
    }
    /* lm-eval's truncation: max_len 20 keeps the last 21 tokens of context + continuation */
    lop_zs_opts cut = {20, 0, 0, NULL};
    lop_zs_result r;
    assert_int_equal(lop_zeroshot_eval(e, &t, &cut, &r), LOP_OK);
    assert_true(r.n_truncated > 0);
    const lop_mc_item *it = &t.items[0];
    int32_t *c, *cn;
    int nc, nk;
    assert_int_equal(lop_zs_encode_pair(m, it->ctx[0], it->cont[1], &c, &nc, &cn, &nk), LOP_OK);
    int32_t seq[128];
    memcpy(seq, c, (size_t)nc * sizeof *seq);
    memcpy(seq + nc, cn, (size_t)nk * sizeof *seq);
    int start = nc + nk - 21;
    assert_true(start > 0);
    lop_score_req rq = {seq + start, 21, 21 - nk};
    lop_score s;
    assert_int_equal(lop_score_sequences(e, &rq, 1, &s, NULL), LOP_OK);
    assert_true(fabs(s.logprob - r.items[0].ll[1]) < 1e-4);
    assert_int_equal(r.items[0].truncated, 1);
    free(c);
    free(cn);
    lop_zs_result_free(&r);
    /* max_len beyond the engine is refused */
    cut.max_len = 97;
    assert_int_equal(lop_zeroshot_eval(e, &t, &cut, &r), LOP_ERR_ARG);
    /* the longest input, to size an engine */
    int longest;
    assert_int_equal(lop_zeroshot_longest(m, &t, &longest), LOP_OK);
    assert_int_equal(longest, (int)strlen("Question: Water freezes at which temperature (Celsius)?\nAnswer: 100 degrees") - 1);
    lop_engine_free(e);
    lop_task_free(&t);
    lop_task_free(&w);
    lop_model_free(m);
}

/* prefix scoring directly: requests across chunk boundaries, continuations of unequal lengths */
static void test_prefix_score_direct(void **st) {
    (void)st;
    static const tiny_layer L[1] = {{4, 2, 8, 40, 0, 0, 0}};
    lop_model *m = tiny_model(61, 16, 1, L, 1, 5);
    lop_engine_opts eo = {.device = LOP_DEVICE_CPU, .max_batch = 2, .max_seq_len = 16, .n_threads = 1};
    lop_engine *e;
    assert_int_equal(lop_engine_create(m, &eo, &e), LOP_OK);
    int32_t p0[] = {1, 2, 3, 4}, p1[] = {9}, p2[] = {5, 6, 7};
    int32_t a[] = {10, 11, 12}, b[] = {13}, c[] = {14, 15, 16, 17, 18}, d[] = {20, 21};
    const int32_t *c0[] = {a, b, c}, *c1[] = {d}, *c2[] = {b, a};
    int l0[] = {3, 1, 5}, l1[] = {2}, l2[] = {1, 3};
    lop_prefix_req rq[3] = {{p0, 4, 3, c0, l0}, {p1, 1, 1, c1, l1}, {p2, 3, 2, c2, l2}};
    lop_score out[6];
    assert_int_equal(lop_score_prefixed(e, rq, 3, 6, out), LOP_OK);
    int k = 0;
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < rq[r].n_cont; j++, k++) {
            int32_t seq[16];
            memcpy(seq, rq[r].prefix, (size_t)rq[r].n_prefix * sizeof *seq);
            memcpy(seq + rq[r].n_prefix, rq[r].cont[j], (size_t)rq[r].cont_len[j] * sizeof *seq);
            lop_score_req q = {seq, rq[r].n_prefix + rq[r].cont_len[j], rq[r].n_prefix};
            lop_score s;
            assert_int_equal(lop_score_sequences(e, &q, 1, &s, NULL), LOP_OK);
            if (fabs(s.logprob - out[k].logprob) > 1e-4) fail_msg("req %d cont %d: %.6f vs %.6f", r, j, out[k].logprob, s.logprob);
            assert_int_equal(out[k].n_scored, rq[r].cont_len[j]);
            assert_int_equal(out[k].greedy, s.greedy);
        }
    /* too long for the engine, empty continuation */
    int l_bad[] = {14};
    lop_prefix_req bad = {p0, 4, 1, c0, l_bad};
    assert_int_equal(lop_score_prefixed(e, &bad, 1, 0, out), LOP_ERR_ARG);
    int l_zero[] = {0};
    bad.cont_len = l_zero;
    assert_int_equal(lop_score_prefixed(e, &bad, 1, 0, out), LOP_ERR_ARG);
    lop_engine_free(e);
    lop_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parsers),           cmocka_unit_test(test_missing_and_unknown),
        cmocka_unit_test(test_text_helpers),      cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_encode_pair),       cmocka_unit_test(test_acc_vs_acc_norm),
        cmocka_unit_test(test_shared_prefix_scoring), cmocka_unit_test(test_prefix_score_direct)};
    return cmocka_run_group_tests_name("zeroshot", tests, NULL, NULL);
}
