/* tokenizer.json + tokenizer_config.json from a GGUF file's tokenizer metadata, so that a model
 * converted from GGUF (e.g. a pruned SmolLM2) is a complete HF directory.
 * Why generate rather than leave it out: a checkpoint without a tokenizer cannot be evaluated or
 * served by stock tools. For byte-level BPE the GGUF holds everything HF needs (token strings in
 * the same "Ġ" form, ranked merges, token types, special ids, the pre-tokenizer by name), and the
 * pre-tokenizer is written as llama.cpp / lop run it (SmolLM2: Digits(individual) then ByteLevel,
 * as SmolLM2's own tokenizer.json; transformers' GGUF converter drops the Digits step).
 * SentencePiece-style vocabularies are not written (*written = 0, desc says so). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "core/status.h"
#include "io/file.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static size_t tok_len(const lop_vocab_src *s, int i) {
    return s->token_lens ? s->token_lens[i] : strlen(s->tokens[i]);
}

/* a JSON string from bytes that may not be NUL-terminated */
static cJSON *str_n(const char *s, size_t n) {
    char *d = dup_n(s, n);
    cJSON *j = d ? cJSON_CreateString(d) : NULL;
    free(d);
    return j;
}

static cJSON *bytelevel(int use_regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", 0);
    cJSON_AddBoolToObject(o, "trim_offsets", 1);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

/* the Llama-3 split regex, as in bpe.c and llama.cpp */
static const char LLAMA3_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static cJSON *pre_tokenizer(lop_pretok p) {
    if (p == LOP_PRETOK_GPT2) return bytelevel(1);
    cJSON *seq = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(seq, "pretokenizers");
    cJSON_AddStringToObject(seq, "type", "Sequence");
    if (p == LOP_PRETOK_SMOLLM) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "type", "Digits");
        cJSON_AddBoolToObject(d, "individual_digits", 1);
        cJSON_AddItemToArray(arr, d);
        cJSON_AddItemToArray(arr, bytelevel(1));
    } else { /* LLAMA3 */
        cJSON *sp = cJSON_CreateObject(), *pat = cJSON_AddObjectToObject(sp, "pattern");
        cJSON_AddStringToObject(sp, "type", "Split");
        cJSON_AddStringToObject(pat, "Regex", LLAMA3_RE);
        cJSON_AddStringToObject(sp, "behavior", "Isolated");
        cJSON_AddBoolToObject(sp, "invert", 0);
        cJSON_AddItemToArray(arr, sp);
        cJSON_AddItemToArray(arr, bytelevel(0));
    }
    return seq;
}

/* BOS prepended by a TemplateProcessing post-processor when the vocabulary asks for it */
static cJSON *post_processor(const lop_vocab_src *s) {
    if (!s->add_bos || s->bos_id < 0) {
        cJSON *o = bytelevel(1);
        cJSON_ReplaceItemInObject(o, "trim_offsets", cJSON_CreateFalse());
        return o;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "TemplateProcessing");
    cJSON *bos = str_n(s->tokens[s->bos_id], tok_len(s, s->bos_id));
    const char *b = cJSON_GetStringValue(bos);
    const char *shapes[2] = {"single", "pair"};
    for (int k = 0; k < 2; k++) {
        cJSON *arr = cJSON_AddArrayToObject(o, shapes[k]);
        for (int part = 0; part <= k; part++) {
            cJSON *sp = cJSON_CreateObject(), *inner = cJSON_AddObjectToObject(sp, "SpecialToken");
            cJSON_AddStringToObject(inner, "id", b);
            cJSON_AddNumberToObject(inner, "type_id", part);
            cJSON_AddItemToArray(arr, sp);
            cJSON *sq = cJSON_CreateObject(), *si = cJSON_AddObjectToObject(sq, "Sequence");
            cJSON_AddStringToObject(si, "id", part ? "B" : "A");
            cJSON_AddNumberToObject(si, "type_id", part);
            cJSON_AddItemToArray(arr, sq);
        }
    }
    cJSON *sp = cJSON_AddObjectToObject(o, "special_tokens"), *e = cJSON_AddObjectToObject(sp, b);
    cJSON_AddStringToObject(e, "id", b);
    cJSON *ids = cJSON_AddArrayToObject(e, "ids"), *toks = cJSON_AddArrayToObject(e, "tokens");
    cJSON_AddItemToArray(ids, cJSON_CreateNumber(s->bos_id));
    cJSON_AddItemToArray(toks, cJSON_CreateString(b));
    cJSON_Delete(bos);
    return o;
}

/* splits merge i into its two tokens: at merge_split when given, else at the first space where
 * both sides are tokens */
static int split_merge(const lop_vocab_src *s, const lop_tokenizer *t, int i, size_t *at) {
    const char *m = s->merges[i];
    size_t n = s->merge_lens ? s->merge_lens[i] : strlen(m);
    if (s->merge_split) {
        *at = s->merge_split[i];
        return *at < n;
    }
    for (size_t k = 1; k + 1 < n; k++)
        if (m[k] == ' ' && lop_tokenizer_find(t, m, k) >= 0 && lop_tokenizer_find(t, m + k + 1, n - k - 1) >= 0) {
            *at = k;
            return 1;
        }
    return 0;
}

static cJSON *model_json(const lop_vocab_src *s, const lop_tokenizer *t, lop_status *st) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "BPE");
    cJSON_AddNullToObject(o, "dropout");
    cJSON_AddNullToObject(o, "unk_token");
    cJSON_AddStringToObject(o, "continuing_subword_prefix", "");
    cJSON_AddStringToObject(o, "end_of_word_suffix", "");
    cJSON_AddBoolToObject(o, "fuse_unk", 0);
    cJSON_AddBoolToObject(o, "byte_fallback", 0);
    cJSON_AddBoolToObject(o, "ignore_merges", s->pretok == LOP_PRETOK_LLAMA3);
    cJSON *vocab = cJSON_AddObjectToObject(o, "vocab"), *merges = cJSON_AddArrayToObject(o, "merges");
    for (int i = 0; i < s->n_vocab; i++) {
        char *k = dup_n(s->tokens[i], tok_len(s, i));
        if (!k) break;
        cJSON_AddItemToObject(vocab, k, cJSON_CreateNumber(i));
        free(k);
    }
    for (int i = 0; i < s->n_merges && *st == LOP_OK; i++) {
        size_t at;
        if (!split_merge(s, t, i, &at)) {
            *st = lop_fail(LOP_ERR_FORMAT, "%s: merge %d ('%s') is not two tokens", s->origin, i, s->merges[i]);
            break;
        }
        size_t n = s->merge_lens ? s->merge_lens[i] : strlen(s->merges[i]);
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, str_n(s->merges[i], at));
        cJSON_AddItemToArray(pair, str_n(s->merges[i] + at + 1, n - at - 1));
        cJSON_AddItemToArray(merges, pair);
    }
    return o;
}

static cJSON *tokenizer_json(const lop_vocab_src *s, const lop_tokenizer *t, lop_status *st) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", "1.0");
    cJSON_AddNullToObject(o, "truncation");
    cJSON_AddNullToObject(o, "padding");
    cJSON *added = cJSON_AddArrayToObject(o, "added_tokens");
    for (int i = 0; s->token_types && i < s->n_vocab; i++) {
        int ty = s->token_types[i];
        if (ty != LOP_TT_CONTROL && ty != LOP_TT_USER && ty != LOP_TT_UNKNOWN) continue;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", i);
        cJSON_AddItemToObject(a, "content", str_n(s->tokens[i], tok_len(s, i)));
        cJSON_AddBoolToObject(a, "single_word", 0);
        cJSON_AddBoolToObject(a, "lstrip", 0);
        cJSON_AddBoolToObject(a, "rstrip", 0);
        cJSON_AddBoolToObject(a, "normalized", ty == LOP_TT_USER);
        cJSON_AddBoolToObject(a, "special", ty != LOP_TT_USER);
        cJSON_AddItemToArray(added, a);
    }
    cJSON_AddNullToObject(o, "normalizer");
    cJSON_AddItemToObject(o, "pre_tokenizer", pre_tokenizer(s->pretok));
    cJSON_AddItemToObject(o, "post_processor", post_processor(s));
    cJSON *dec = bytelevel(1);
    cJSON_ReplaceItemInObject(dec, "add_prefix_space", cJSON_CreateTrue());
    cJSON_AddItemToObject(o, "decoder", dec);
    cJSON_AddItemToObject(o, "model", model_json(s, t, st));
    return o;
}

static void add_token_field(cJSON *o, const char *key, const lop_vocab_src *s, int id) {
    if (id >= 0 && id < s->n_vocab) cJSON_AddItemToObject(o, key, str_n(s->tokens[id], tok_len(s, id)));
    else cJSON_AddNullToObject(o, key);
}

static lop_status write_json(const char *dir, const char *name, cJSON *o) {
    char *txt = cJSON_PrintUnformatted(o), *path = lop_path_join(dir, name);
    lop_status st = txt && path ? lop_write_file_atomic(path, txt, strlen(txt)) : lop_fail(LOP_ERR_OOM, "out of memory");
    free(txt);
    free(path);
    return st;
}

lop_status lop_tokenizer_write_hf_from_gguf(const char *gguf, const char *dir, int *written, char *desc, size_t cap) {
    *written = 0;
    lop_gguf_vocab *v;
    const lop_vocab_src *s;
    lop_status st = lop_gguf_vocab_open(gguf, &v, &s);
    if (st != LOP_OK) {
        snprintf(desc, cap, "none (%s)", lop_last_error());
        return LOP_OK; /* a model without a readable tokenizer still saves */
    }
    if (s->kind != LOP_TOK_BPE) {
        snprintf(desc, cap, "none (SentencePiece-style GGUF vocabularies are not converted to tokenizer.json yet)");
        lop_gguf_vocab_close(v);
        return LOP_OK;
    }
    lop_tokenizer *t = NULL;
    st = lop_tokenizer_create(s, &t);
    cJSON *tj = st == LOP_OK ? tokenizer_json(s, t, &st) : NULL, *tc = cJSON_CreateObject();
    if (st == LOP_OK && tj && tc) {
        cJSON_AddBoolToObject(tc, "add_bos_token", s->add_bos);
        cJSON_AddBoolToObject(tc, "add_eos_token", 0);
        add_token_field(tc, "bos_token", s, s->bos_id);
        add_token_field(tc, "eos_token", s, s->eos_id);
        add_token_field(tc, "unk_token", s, s->unk_id);
        add_token_field(tc, "pad_token", s, s->pad_id);
        cJSON_AddBoolToObject(tc, "clean_up_tokenization_spaces", 0);
        cJSON_AddStringToObject(tc, "tokenizer_class", "PreTrainedTokenizerFast");
        lop_gguf *g;
        const char *tmpl;
        size_t tl;
        if (lop_gguf_open(gguf, &g) == LOP_OK) {
            if (lop_gguf_find_kv(g, "tokenizer.chat_template") &&
                lop_gguf_get_str(g, "tokenizer.chat_template", &tmpl, &tl) == LOP_OK)
                cJSON_AddItemToObject(tc, "chat_template", str_n(tmpl, tl));
            lop_gguf_close(g);
        }
        st = write_json(dir, "tokenizer.json", tj);
        if (st == LOP_OK) st = write_json(dir, "tokenizer_config.json", tc);
    } else if (st == LOP_OK) {
        st = lop_fail(LOP_ERR_OOM, "out of memory building tokenizer.json");
    }
    if (st == LOP_OK) {
        *written = 1;
        snprintf(desc, cap, "generated from the GGUF vocabulary (byte-level BPE, %d tokens, %d merges, pre-tokenizer %s)",
                 s->n_vocab, s->n_merges,
                 s->pretok == LOP_PRETOK_SMOLLM ? "digits + GPT-2" : s->pretok == LOP_PRETOK_LLAMA3 ? "llama3" : "GPT-2");
    }
    cJSON_Delete(tj);
    cJSON_Delete(tc);
    lop_tokenizer_free(t);
    lop_gguf_vocab_close(v);
    return st;
}
