/* Tokenizer tests against reference ids written by HF tokenizers / transformers and sentencepiece
 * (tests/fixtures/tok/make_tok_fixtures.py): every (tokenizer, source) pair encodes every fixture
 * text to exactly the reference ids, decodes the reference ids to the reference string, and round
 * trips where the reference does. Plus decode of broken UTF-8, streaming bytes, and bad input
 * (malformed tokenizer.json, bad vocabularies) giving clear errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <cJSON.h>

#include "core/status.h"
#include "io/file.h"
#include "tokenizer/tokenizer.h"

#define FIX "tests/fixtures/tok/"

static cJSON *g_cases;
static const cJSON *g_texts;

static int setup(void **st) {
    (void)st;
    char *text;
    size_t len;
    if (lop_read_file(FIX "cases.json", &text, &len) != LOP_OK) {
        fprintf(stderr, "cannot read " FIX "cases.json (run the tests from the repository root)\n");
        return -1;
    }
    g_cases = cJSON_ParseWithLength(text, len);
    free(text);
    if (!g_cases) return -1;
    g_texts = cJSON_GetObjectItem(g_cases, "texts");
    return cJSON_IsArray(g_texts) ? 0 : -1;
}

static int teardown(void **st) {
    (void)st;
    cJSON_Delete(g_cases);
    return 0;
}

static const cJSON *oracle(const char *name) {
    const cJSON *o = cJSON_GetObjectItem(cJSON_GetObjectItem(g_cases, "oracles"), name);
    assert_non_null(o);
    return o;
}

/* ---- loading the tokenizers ------------------------------------------------------------------ */

static lop_tokenizer *from_json_file(const char *path) {
    lop_tokenizer *t = NULL;
    lop_status st = lop_tokenizer_from_hf_json(path, &t);
    if (st != LOP_OK) fprintf(stderr, "%s\n", lop_last_error());
    assert_int_equal(st, LOP_OK);
    return t;
}

/* base tokenizer.json with the oracle's "patch" applied ("a.b" -> value), loaded from memory */
static lop_tokenizer *from_json_patched(const char *oracle_name) {
    const cJSON *o = oracle(oracle_name);
    char path[256];
    snprintf(path, sizeof path, FIX "%s", cJSON_GetObjectItem(o, "base")->valuestring);
    char *text;
    size_t len;
    assert_int_equal(lop_read_file(path, &text, &len), LOP_OK);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    assert_non_null(root);
    const cJSON *patch = cJSON_GetObjectItem(o, "patch"), *p;
    cJSON_ArrayForEach(p, patch) {
        char key[128];
        snprintf(key, sizeof key, "%s", p->string);
        cJSON *node = root;
        char *dot, *k = key;
        while ((dot = strchr(k, '.'))) {
            *dot = 0;
            node = cJSON_GetObjectItem(node, k);
            assert_non_null(node);
            k = dot + 1;
        }
        cJSON_DeleteItemFromObject(node, k);
        cJSON_AddItemToObject(node, k, cJSON_Duplicate(p, 1));
    }
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    lop_tokenizer *t = NULL;
    lop_status st = lop_tokenizer_from_hf_json_text(out, strlen(out), oracle_name, &t);
    if (st != LOP_OK) fprintf(stderr, "%s\n", lop_last_error());
    free(out);
    assert_int_equal(st, LOP_OK);
    return t;
}

/* Through lop's GGUF loader; force_pretok >= 0 replaces the file's pre-tokenizer (tests the
 * Llama-3 regex on the SmolLM2 vocabulary as a "llama-bpe" file would have it). */
static lop_tokenizer *from_gguf(const char *path, int force_pretok) {
    lop_gguf_vocab *v;
    const lop_vocab_src *vs;
    if (lop_gguf_vocab_open(path, &v, &vs) != LOP_OK) fail_msg("%s", lop_last_error());
    lop_vocab_src src = *vs;
    if (force_pretok >= 0) src.pretok = (lop_pretok)force_pretok;
    lop_tokenizer *t = NULL;
    lop_status st = lop_tokenizer_create(&src, &t);
    if (st != LOP_OK) fprintf(stderr, "%s\n", lop_last_error());
    lop_gguf_vocab_close(v); /* the tokenizer keeps its own copies */
    assert_int_equal(st, LOP_OK);
    return t;
}

/* ---- comparing with an oracle ------------------------------------------------------------------ */

static void show(const char *what, const char *s) {
    fprintf(stderr, "    %s: \"", what);
    for (const unsigned char *p = (const unsigned char *)s; *p && p - (const unsigned char *)s < 160; p++) {
        if (*p == '\n') fputs("\\n", stderr);
        else if (*p == '\r') fputs("\\r", stderr);
        else if (*p == '\t') fputs("\\t", stderr);
        else fputc(*p, stderr);
    }
    fputs("\"\n", stderr);
}

static void show_ids(const char *what, const int32_t *ids, int n, int at) {
    fprintf(stderr, "    %s (%d):", what, n);
    int from = at > 4 ? at - 4 : 0;
    for (int i = from; i < n && i < from + 14; i++) fprintf(stderr, "%s%d", i == at ? " >" : " ", ids[i]);
    fputc('\n', stderr);
}

/* Encodes every text, compares ids / decode / round trip; returns the number of failures. */
static int check_oracle(lop_tokenizer *t, const char *name, int add_bos) {
    const cJSON *o = oracle(name);
    const cJSON *ids = cJSON_GetObjectItem(o, "ids"), *dec = cJSON_GetObjectItem(o, "decoded");
    const cJSON *rt = cJSON_GetObjectItem(o, "roundtrip");
    int n = cJSON_GetArraySize(g_texts), fails = 0, checked = 0;
    assert_int_equal(cJSON_GetArraySize(ids), n);
    for (int i = 0; i < n; i++) {
        const char *text = cJSON_GetArrayItem(g_texts, i)->valuestring;
        const cJSON *want = cJSON_GetArrayItem(ids, i);
        int nw = cJSON_GetArraySize(want);
        int32_t *w = malloc(((size_t)nw + 1) * sizeof *w);
        for (int k = 0; k < nw; k++) w[k] = (int32_t)cJSON_GetArrayItem(want, k)->valuedouble;

        int32_t *got = NULL;
        int ng = 0;
        lop_status st = lop_tokenizer_encode(t, text, strlen(text), add_bos, &got, &ng);
        if (st != LOP_OK) {
            fprintf(stderr, "[%s] text %d: encode failed: %s\n", name, i, lop_last_error());
            fails++;
        } else {
            int at = 0;
            while (at < ng && at < nw && got[at] == w[at]) at++;
            if (at != ng || at != nw) {
                fprintf(stderr, "[%s] text %d: ids differ at %d\n", name, i, at);
                show("text", text);
                show_ids("want", w, nw, at);
                show_ids("got ", got, ng, at);
                fails++;
            }
        }
        free(got);

        char *d = NULL; /* decode of the reference ids */
        st = lop_tokenizer_decode(t, w, nw, &d);
        const char *wd = cJSON_GetArrayItem(dec, i)->valuestring;
        if (st != LOP_OK || strcmp(d, wd) != 0) {
            fprintf(stderr, "[%s] text %d: decode differs%s%s\n", name, i, st ? ": " : "", st ? lop_last_error() : "");
            show("want", wd);
            if (d) show("got ", d);
            fails++;
        }
        free(d);
        free(w);

        if (cJSON_IsTrue(cJSON_GetArrayItem(rt, i))) { /* decode(encode(x)) == x without specials */
            st = lop_tokenizer_encode(t, text, strlen(text), 0, &got, &ng);
            d = NULL;
            if (st == LOP_OK) st = lop_tokenizer_decode(t, got, ng, &d);
            if (st != LOP_OK || strcmp(d, text) != 0) {
                fprintf(stderr, "[%s] text %d: round trip differs\n", name, i);
                if (d) show("got ", d);
                fails++;
            }
            free(got);
            free(d);
            checked++;
        }
    }
    if (fails) fprintf(stderr, "[%s] %d failures over %d texts (%d round trips)\n", name, fails, n, checked);
    return fails;
}

/* ---- SmolLM2 (byte-level BPE) --------------------------------------------------------------------- */

static void test_smol_json_converted(void **st) {
    (void)st;
    lop_tokenizer *t = from_json_file(FIX "smollm2/tokenizer.json");
    assert_int_equal(lop_tokenizer_kind(t), LOP_TOK_BPE);
    assert_int_equal(lop_tokenizer_n_vocab(t), 49152);
    assert_int_equal(lop_tokenizer_bos(t), 1); /* from tokenizer_config.json: <|im_start|> */
    assert_int_equal(lop_tokenizer_eos(t), 2);
    assert_int_equal(check_oracle(t, "smol_conv_hf", -1), 0);
    lop_tokenizer_free(t);
}

static void test_smol_json_digits(void **st) {
    (void)st;
    lop_tokenizer *t = from_json_patched("smol_digits_hf");
    assert_int_equal(check_oracle(t, "smol_digits_hf", -1), 0);
    lop_tokenizer_free(t);
}

static void test_smol_gguf(void **st) {
    (void)st;
    lop_tokenizer *t = from_gguf(FIX "smollm2/vocab.gguf", -1);
    assert_int_equal(lop_tokenizer_n_vocab(t), 49152);
    assert_int_equal(lop_tokenizer_bos(t), 1);
    assert_int_equal(lop_tokenizer_eos(t), 2);
    /* GGUF pre "smollm" = digits split first, as the real SmolLM2 tokenizer.json and llama.cpp */
    assert_int_equal(check_oracle(t, "smol_digits_hf", -1), 0);
    lop_tokenizer_free(t);
}

static void test_smol_llama3_regex(void **st) {
    (void)st;
    lop_tokenizer *t = from_json_patched("smol_llama3_hf");
    assert_int_equal(check_oracle(t, "smol_llama3_hf", -1), 0);
    lop_tokenizer_free(t);
    t = from_gguf(FIX "smollm2/vocab.gguf", LOP_PRETOK_LLAMA3); /* GGUF pre "llama-bpe" */
    assert_int_equal(check_oracle(t, "smol_llama3_hf", -1), 0);
    lop_tokenizer_free(t);
}

static void test_smol_pretok_variants(void **st) {
    (void)st;
    static const char *names[] = {"smol_split_removed_hf", "smol_split_prev_hf",  "smol_split_next_hf",
                                  "smol_split_contig_hf",  "smol_split_invert_hf", "smol_digits_contig_hf",
                                  "smol_prefix_space_hf",  "smol_unk_hf",          "smol_unk_fuse_hf"};
    int fails = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        lop_tokenizer *t = from_json_patched(names[i]);
        fails += check_oracle(t, names[i], -1);
        lop_tokenizer_free(t);
    }
    assert_int_equal(fails, 0);
}

/* ---- SentencePiece-style (LLaMA-1/2) ------------------------------------------------------------- */

static void test_spm_json_metaspace(void **st) {
    (void)st;
    lop_tokenizer *t = from_json_file(FIX "spm/tokenizer.json");
    assert_int_equal(lop_tokenizer_kind(t), LOP_TOK_SPM);
    assert_int_equal(lop_tokenizer_bos(t), 1);
    assert_int_equal(lop_tokenizer_eos(t), 2);
    assert_int_equal(check_oracle(t, "spm_meta_hf", -1), 0);
    lop_tokenizer_free(t);
}

static void test_spm_json_legacy(void **st) {
    (void)st;
    lop_tokenizer *t = from_json_file(FIX "spm/tokenizer_legacy.json");
    assert_int_equal(check_oracle(t, "spm_legacy_hf", -1), 0);
    lop_tokenizer_free(t);
}

static void test_spm_json_metaspace_always_split(void **st) {
    (void)st;
    lop_tokenizer *t = from_json_patched("spm_meta_always_split_hf");
    assert_int_equal(check_oracle(t, "spm_meta_always_split_hf", -1), 0);
    lop_tokenizer_free(t);
}

static void test_spm_json_no_byte_fallback(void **st) {
    (void)st;
    lop_tokenizer *t = from_json_patched("spm_nofallback_hf");
    assert_int_equal(check_oracle(t, "spm_nofallback_hf", -1), 0);
    lop_tokenizer_free(t);
}

static void test_spm_gguf(void **st) {
    (void)st;
    lop_tokenizer *t = from_gguf(FIX "spm/vocab.gguf", -1);
    assert_int_equal(lop_tokenizer_kind(t), LOP_TOK_SPM);
    assert_int_equal(lop_tokenizer_n_vocab(t), 1500);
    /* sentencepiece ids carry no BOS: encode without it */
    assert_int_equal(check_oracle(t, "spm_sp", 0), 0);
    /* the file says add_bos_token: the default adds BOS */
    int32_t *ids;
    int n;
    assert_int_equal(lop_tokenizer_encode(t, "Hello", 5, -1, &ids, &n), LOP_OK);
    assert_true(n >= 2);
    assert_int_equal(ids[0], 1);
    free(ids);
    assert_int_equal(lop_tokenizer_encode(t, "", 0, -1, &ids, &n), LOP_OK);
    assert_int_equal(n, 1);
    free(ids);
    lop_tokenizer_free(t);
}

/* A token with "▁" after another character (never formed here: UNUSED / no merge makes it) turns
 * off the cut-at-spaces shortcut; the result must not change. */
static void test_spm_without_space_cuts(void **st) {
    (void)st;
    lop_gguf_vocab *gv;
    const lop_vocab_src *vs;
    if (lop_gguf_vocab_open(FIX "spm/vocab.gguf", &gv, &vs) != LOP_OK) fail_msg("%s", lop_last_error());
    struct { lop_vocab_src src; } v = {*vs};
    int n = v.src.n_vocab;
    const char **toks = malloc((size_t)(n + 1) * sizeof *toks);
    size_t *lens = malloc((size_t)(n + 1) * sizeof *lens);
    float *scores = malloc((size_t)(n + 1) * sizeof *scores);
    int32_t *types = malloc((size_t)(n + 1) * sizeof *types);
    memcpy(toks, v.src.tokens, (size_t)n * sizeof *toks);
    memcpy(lens, v.src.token_lens, (size_t)n * sizeof *lens);
    memcpy(scores, v.src.scores, (size_t)n * sizeof *scores);
    memcpy(types, v.src.token_types, (size_t)n * sizeof *types);
    toks[n] = "e\xE2\x96\x81";
    lens[n] = 4;
    scores[n] = 0;
    types[n] = LOP_TT_UNUSED;
    lop_vocab_src src = v.src;
    src.n_vocab = n + 1;
    src.tokens = toks;
    src.token_lens = lens;
    src.scores = scores;
    src.token_types = types;
    lop_tokenizer *t;
    assert_int_equal(lop_tokenizer_create(&src, &t), LOP_OK);
    assert_int_equal(check_oracle(t, "spm_sp", 0), 0);
    lop_tokenizer_free(t);
    free(toks);
    free(lens);
    free(scores);
    free(types);
    lop_gguf_vocab_close(gv);

    char *text;
    size_t len;
    assert_int_equal(lop_read_file(FIX "spm/tokenizer_legacy.json", &text, &len), LOP_OK);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    cJSON_AddNumberToObject(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "model"), "vocab"), "e\xE2\x96\x81", n);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    assert_int_equal(lop_tokenizer_from_hf_json_text(out, strlen(out), "legacy+e\xE2\x96\x81", &t), LOP_OK);
    free(out);
    assert_int_equal(check_oracle(t, "spm_legacy_hf", -1), 0);
    lop_tokenizer_free(t);
}

/* ---- decode details ------------------------------------------------------------------------------ */

static void check_decode_cases(lop_tokenizer *t, const char *name) {
    const cJSON *cases = cJSON_GetObjectItem(cJSON_GetObjectItem(g_cases, "decode_cases"), name), *c;
    assert_non_null(cases);
    int fails = 0;
    cJSON_ArrayForEach(c, cases) {
        const cJSON *ids = cJSON_GetObjectItem(c, "ids");
        int n = cJSON_GetArraySize(ids);
        int32_t v[64];
        assert_true(n <= 64);
        for (int i = 0; i < n; i++) v[i] = (int32_t)cJSON_GetArrayItem(ids, i)->valuedouble;
        char *d = NULL;
        assert_int_equal(lop_tokenizer_decode(t, v, n, &d), LOP_OK);
        const char *want = cJSON_GetObjectItem(c, "text")->valuestring;
        if (strcmp(d, want) != 0) {
            fprintf(stderr, "[%s decode]\n", name);
            show_ids("ids", v, n, -1);
            show("want", want);
            show("got ", d);
            fails++;
        }
        free(d);
    }
    assert_int_equal(fails, 0);
}

static void test_decode_broken_utf8(void **st) {
    (void)st;
    lop_tokenizer *t = from_json_file(FIX "smollm2/tokenizer.json");
    check_decode_cases(t, "smollm2");
    lop_tokenizer_free(t);
    t = from_json_file(FIX "spm/tokenizer.json");
    check_decode_cases(t, "spm");
    lop_tokenizer_free(t);
}

/* streaming: token_bytes over the ids concatenates to the decoded text */
static void stream_equals_decode(lop_tokenizer *t, int add_bos) {
    int n = cJSON_GetArraySize(g_texts);
    for (int i = 0; i < n; i++) {
        const char *text = cJSON_GetArrayItem(g_texts, i)->valuestring;
        int32_t *ids;
        int ni;
        assert_int_equal(lop_tokenizer_encode(t, text, strlen(text), add_bos, &ids, &ni), LOP_OK);
        int mid_bos = 0; /* token_bytes drops the space after any BOS (stream start); decode only at the start */
        for (int k = 1; k < ni; k++) mid_bos |= ids[k] == lop_tokenizer_bos(t);
        if (mid_bos && lop_tokenizer_kind(t) == LOP_TOK_SPM) {
            free(ids);
            continue;
        }
        char *d;
        int skip = add_bos && ni > 0 && ids[0] == lop_tokenizer_bos(t); /* streams start after BOS */
        assert_int_equal(lop_tokenizer_decode(t, ids + skip, ni - skip, &d), LOP_OK);
        size_t cap = strlen(text) * 4 + 64, len = 0;
        char *s = malloc(cap);
        int prev = skip ? ids[0] : -1;
        for (int k = skip; k < ni; k++) {
            int w = lop_tokenizer_token_bytes(t, prev, ids[k], s + len, (int)(cap - len));
            assert_true(w >= 0 && (size_t)w <= cap - len);
            len += (size_t)w;
            prev = ids[k];
        }
        s[len] = 0;
        if (strcmp(s, d) != 0) {
            fprintf(stderr, "[stream] text %d\n", i);
            show("decode", d);
            show("stream", s);
        }
        assert_string_equal(s, d);
        free(s);
        free(d);
        free(ids);
    }
    char small[2];
    assert_true(lop_tokenizer_token_bytes(t, -1, 0, small, 0) >= 0); /* cap 0: size only */
    assert_int_equal(lop_tokenizer_token_bytes(t, -1, lop_tokenizer_n_vocab(t), small, 2), -1);
}

static void test_token_bytes_stream(void **st) {
    (void)st;
    lop_tokenizer *t = from_gguf(FIX "smollm2/vocab.gguf", -1);
    stream_equals_decode(t, 0);
    lop_tokenizer_free(t);
    t = from_gguf(FIX "spm/vocab.gguf", -1);
    stream_equals_decode(t, 1);
    lop_tokenizer_free(t);
}

/* ---- bad input ----------------------------------------------------------------------------------- */

static void expect_json_error(const char *json, lop_status code, const char *needle) {
    lop_tokenizer *t = (lop_tokenizer *)1;
    lop_status st = lop_tokenizer_from_hf_json_text(json, strlen(json), "bad/tokenizer.json", &t);
    if (st != code || !strstr(lop_last_error(), needle) || !strstr(lop_last_error(), "bad/tokenizer.json"))
        fprintf(stderr, "json: %s\n  status %d (want %d), message: %s\n  (want '%s')\n", json, st, code,
                lop_last_error(), needle);
    assert_int_equal(st, code);
    assert_null(t);
    assert_non_null(strstr(lop_last_error(), needle));
    assert_non_null(strstr(lop_last_error(), "bad/tokenizer.json"));
}

#define BL_PRE "\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"}"
#define VOCAB "\"vocab\":{\"a\":0,\"b\":1,\"ab\":2}"

static void test_bad_json(void **st) {
    (void)st;
    expect_json_error("{\"model\": {\"type\": \"BPE\", ", LOP_ERR_FORMAT, "malformed JSON");
    expect_json_error("[1, 2]", LOP_ERR_FORMAT, "not a JSON object");
    expect_json_error("{" BL_PRE "}", LOP_ERR_FORMAT, "field 'model' must be an object");
    expect_json_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}," BL_PRE "}", LOP_ERR_UNSUPPORTED, "field 'model.type'");
    expect_json_error("{\"model\":{\"type\":\"WordPiece\"," VOCAB "}}", LOP_ERR_UNSUPPORTED, "'WordPiece'");
    expect_json_error("{\"model\":{\"type\":7," VOCAB "}}", LOP_ERR_FORMAT, "field 'model.type' must be a string");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":[\"a\"],\"merges\":[]}," BL_PRE "}", LOP_ERR_FORMAT,
                      "field 'model.vocab' must be an object");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":\"a b\"}," BL_PRE "}", LOP_ERR_FORMAT,
                      "field 'model.merges' must be an array");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[7]}," BL_PRE "}", LOP_ERR_FORMAT,
                      "field 'model.merges[0]'");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":9},\"merges\":[]}," BL_PRE "}",
                      LOP_ERR_FORMAT, "out of range");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}," BL_PRE "}", LOP_ERR_FORMAT,
                      "out of range");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}," BL_PRE "}",
                      LOP_ERR_FORMAT, "given to both");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}," BL_PRE "}", LOP_ERR_FORMAT,
                      "must be an integer id");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[\"a c\"]}," BL_PRE "}", LOP_ERR_FORMAT,
                      "merge 0");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[[\"b\",\"a\"]]}," BL_PRE "}", LOP_ERR_FORMAT,
                      "not in the vocabulary");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[\"ab\"]}," BL_PRE "}", LOP_ERR_FORMAT,
                      "no space");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[]},\"added_tokens\":{}," BL_PRE "}",
                      LOP_ERR_FORMAT, "field 'added_tokens' must be an array");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[]},\"added_tokens\":[{\"id\":1}]," BL_PRE "}",
                      LOP_ERR_FORMAT, "field 'added_tokens[0].content'");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[],\"byte_fallback\":\"yes\"}," BL_PRE "}",
                      LOP_ERR_FORMAT, "field 'model.byte_fallback'");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[],\"unk_token\":\"<unk>\"}," BL_PRE "}",
                      LOP_ERR_FORMAT, "field 'model.unk_token'");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[]},\"normalizer\":{\"type\":\"NFKC\"}," BL_PRE "}",
                      LOP_ERR_UNSUPPORTED, "field 'normalizer.type'");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Whitespace\"}}",
                      LOP_ERR_UNSUPPORTED, "field 'pre_tokenizer.type'");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Sequence\","
                      "\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"},"
                      "{\"type\":\"ByteLevel\"}]}}",
                      LOP_ERR_FORMAT, "pre-tokenizer pattern");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Sequence\","
                      "\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"}]}}",
                      LOP_ERR_FORMAT, "field 'pre_tokenizer.pretokenizers[0].behavior'");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[]},\"pre_tokenizer\":{\"type\":\"ByteLevel\"},"
                      "\"decoder\":{\"type\":\"WordPiece\"}}",
                      LOP_ERR_UNSUPPORTED, "field 'decoder.type'");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[]}}", LOP_ERR_UNSUPPORTED,
                      "field 'pre_tokenizer'");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[]}," BL_PRE ",\"post_processor\":"
                      "{\"type\":\"BertProcessing\"}}",
                      LOP_ERR_UNSUPPORTED, "field 'post_processor.type'");

    lop_tokenizer *t = (lop_tokenizer *)1;
    assert_int_equal(lop_tokenizer_from_hf_json(FIX "no/such/tokenizer.json", &t), LOP_ERR_IO);
    assert_null(t);
    /* a minimal valid file loads */
    const char *ok = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}," BL_PRE "}";
    assert_int_equal(lop_tokenizer_from_hf_json_text(ok, strlen(ok), "ok.json", &t), LOP_OK);
    int32_t *ids;
    int n;
    assert_int_equal(lop_tokenizer_encode(t, "abba", 4, -1, &ids, &n), LOP_OK);
    assert_int_equal(n, 3); /* ab b a */
    assert_int_equal(ids[0], 2);
    free(ids);
    lop_tokenizer_free(t);
}

static void test_bad_vocab_src(void **st) {
    (void)st;
    const char *toks[] = {"a", "b", "ab"};
    const char *merges[] = {"a b"}, *bad_merges[] = {"a c"};
    lop_vocab_src s = {0};
    s.kind = LOP_TOK_BPE;
    s.n_vocab = 3;
    s.tokens = toks;
    s.n_merges = 1;
    s.merges = merges;
    s.bos_id = s.eos_id = s.unk_id = s.pad_id = -1;
    s.origin = "test.gguf";
    lop_tokenizer *t;
    assert_int_equal(lop_tokenizer_create(&s, &t), LOP_OK);

    /* invalid UTF-8 input, bad ids for decode */
    int32_t *ids;
    int n;
    assert_int_equal(lop_tokenizer_encode(t, "a\xC3(", 3, -1, &ids, &n), LOP_ERR_ARG);
    assert_non_null(strstr(lop_last_error(), "UTF-8"));
    assert_null(ids);
    int32_t bad[] = {0, 3};
    char *d;
    assert_int_equal(lop_tokenizer_decode(t, bad, 2, &d), LOP_ERR_ARG);
    assert_null(d);
    assert_int_equal(lop_tokenizer_encode(t, "ab", 2, 1, &ids, &n), LOP_ERR_ARG); /* BOS forced, none */
    assert_int_equal(lop_tokenizer_set_bos_eos(t, 7, -1), LOP_ERR_ARG);
    assert_int_equal(lop_tokenizer_set_bos_eos(t, 0, 1), LOP_OK);
    assert_int_equal(lop_tokenizer_bos(t), 0);
    lop_tokenizer_free(t);

    lop_vocab_src b = s;
    b.merges = bad_merges;
    assert_int_equal(lop_tokenizer_create(&b, &t), LOP_ERR_FORMAT);
    assert_non_null(strstr(lop_last_error(), "test.gguf: merge 0"));
    assert_null(t);
    b = s;
    b.bos_id = 3;
    assert_int_equal(lop_tokenizer_create(&b, &t), LOP_ERR_FORMAT);
    assert_non_null(strstr(lop_last_error(), "BOS id 3 out of range"));
    b = s;
    b.n_vocab = 0;
    assert_int_equal(lop_tokenizer_create(&b, &t), LOP_ERR_FORMAT);
    b = s;
    b.add_bos = 1;
    assert_int_equal(lop_tokenizer_create(&b, &t), LOP_ERR_FORMAT);
    b = s;
    const char *holey[] = {"a", NULL, "ab"};
    b.tokens = holey;
    assert_int_equal(lop_tokenizer_create(&b, &t), LOP_ERR_FORMAT);
    b = s;
    b.kind = (lop_tok_kind)9;
    assert_int_equal(lop_tokenizer_create(&b, &t), LOP_ERR_ARG);

    /* a truncated GGUF vocabulary is refused with the file named, not crashed on */
    char *data;
    size_t size;
    assert_int_equal(lop_read_file(FIX "spm/vocab.gguf", &data, &size), LOP_OK);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/lop-test-tok-%d.gguf", (int)getpid());
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    fwrite(data, 1, size / 2, f);
    fclose(f);
    free(data);
    assert_int_not_equal(lop_tokenizer_from_gguf(tmp, &t), LOP_OK);
    assert_non_null(strstr(lop_last_error(), tmp));
    remove(tmp);
}

/* ---- robustness: mutated files and random text ------------------------------------------------- */

static uint64_t rng_state = 88172645463325252ULL;
static uint32_t rnd(void) { /* xorshift64, fixed seed: reproducible */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void test_fuzz_json(void **st) {
    (void)st;
    char *base;
    size_t len;
    assert_int_equal(lop_read_file(FIX "spm/tokenizer_legacy.json", &base, &len), LOP_OK);
    char *buf = malloc(len + 1);
    static const char junk[] = "{}[]\",:0123456789-.etrufalsn \\u";
    int loaded = 0;
    for (int it = 0; it < 300; it++) {
        memcpy(buf, base, len + 1);
        size_t n = len;
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = rnd() % n;
            switch (rnd() % 3) {
            case 0: buf[at] = junk[rnd() % (sizeof junk - 1)]; break;      /* replace */
            case 1: memmove(buf + at, buf + at + 1, n - at); n--; break;   /* delete */
            default: n = at; buf[n] = 0; break;                            /* truncate */
            }
        }
        lop_tokenizer *t = NULL;
        lop_status s2 = lop_tokenizer_from_hf_json_text(buf, n, "fuzz.json", &t);
        if (s2 != LOP_OK) {
            assert_null(t);
            assert_true(strlen(lop_last_error()) > 0);
            continue;
        }
        loaded++;
        int32_t *ids;
        int ni;
        const char *text = "Hello <s> w\xC3\xB6rld  \xE6\x97\xA5 12";
        if (lop_tokenizer_encode(t, text, strlen(text), -1, &ids, &ni) == LOP_OK) {
            char *d;
            if (lop_tokenizer_decode(t, ids, ni, &d) == LOP_OK) free(d);
            free(ids);
        }
        lop_tokenizer_free(t);
    }
    free(buf);
    free(base);
    assert_true(loaded > 0); /* some edits (inside strings) leave a valid file */
}

/* random valid UTF-8 (no special-token text, no "▁", which SPM decodes to a space): no failures,
 * and decode(encode(x)) == x */
static void random_roundtrip(lop_tokenizer *t, int n_iter) {
    static const uint32_t pool[] = {' ', ' ', ' ', '\t', '\n', '\r', 'a', 'e', 't', 'Z', '0', '7', '\'', '.', '-', '_',
                                    0xE9, 0xDF, 0x301, 0x120, 0x3000, 0xA0, 0x65E5, 0x672C, 0xD55C, 0x645,
                                    0x1F600, 0x1F44D, 0x200D, 0xFE0F, 0x85, 0x2028, 0x10FFFD};
    char text[512];
    for (int it = 0; it < n_iter; it++) {
        size_t n = 0;
        int k = (int)(rnd() % 60);
        for (int i = 0; i < k; i++) {
            uint32_t c = pool[rnd() % (sizeof pool / sizeof pool[0])];
            if (c < 0x80) text[n++] = (char)c;
            else if (c < 0x800) text[n++] = (char)(0xC0 | (c >> 6)), text[n++] = (char)(0x80 | (c & 0x3F));
            else if (c < 0x10000)
                text[n++] = (char)(0xE0 | (c >> 12)), text[n++] = (char)(0x80 | ((c >> 6) & 0x3F)),
                text[n++] = (char)(0x80 | (c & 0x3F));
            else
                text[n++] = (char)(0xF0 | (c >> 18)), text[n++] = (char)(0x80 | ((c >> 12) & 0x3F)),
                text[n++] = (char)(0x80 | ((c >> 6) & 0x3F)), text[n++] = (char)(0x80 | (c & 0x3F));
        }
        text[n] = 0;
        int32_t *ids;
        int ni;
        assert_int_equal(lop_tokenizer_encode(t, text, n, 0, &ids, &ni), LOP_OK);
        char *d;
        assert_int_equal(lop_tokenizer_decode(t, ids, ni, &d), LOP_OK);
        if (strcmp(d, text) != 0) {
            show("text", text);
            show("got ", d);
        }
        assert_string_equal(d, text);
        free(d);
        free(ids);
    }
}

static void test_random_roundtrip(void **st) {
    (void)st;
    lop_tokenizer *t = from_gguf(FIX "smollm2/vocab.gguf", -1);
    random_roundtrip(t, 400);
    lop_tokenizer_free(t);
    t = from_gguf(FIX "spm/vocab.gguf", -1);
    random_roundtrip(t, 400);
    lop_tokenizer_free(t);
    t = from_json_file(FIX "spm/tokenizer_legacy.json");
    random_roundtrip(t, 400);
    lop_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smol_json_converted),
        cmocka_unit_test(test_smol_json_digits),
        cmocka_unit_test(test_smol_gguf),
        cmocka_unit_test(test_smol_llama3_regex),
        cmocka_unit_test(test_smol_pretok_variants),
        cmocka_unit_test(test_spm_json_metaspace),
        cmocka_unit_test(test_spm_json_legacy),
        cmocka_unit_test(test_spm_json_metaspace_always_split),
        cmocka_unit_test(test_spm_json_no_byte_fallback),
        cmocka_unit_test(test_spm_gguf),
        cmocka_unit_test(test_spm_without_space_cuts),
        cmocka_unit_test(test_decode_broken_utf8),
        cmocka_unit_test(test_token_bytes_stream),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_bad_vocab_src),
        cmocka_unit_test(test_fuzz_json),
        cmocka_unit_test(test_random_roundtrip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
