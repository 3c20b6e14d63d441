/* HF tokenizer.json reader: turns the file's model / added_tokens / normalizer / pre_tokenizer /
 * decoder / post_processor into a lop_vocab_src and hands it to lop_tokenizer_create.
 * Why a translation and not an interpreter: lop runs two algorithms (byte-level BPE and
 * SentencePiece-style BPE); this file recognises which one a tokenizer.json describes and refuses,
 * naming the field, anything it would not reproduce exactly (Unigram/WordPiece models, NFKC
 * normalizers, unknown pre-tokenizers...). Also reads tokenizer_config.json beside it (special
 * token names, add_bos_token), as HF does. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/file.h"
#include "tokenizer/tok_internal.h"

#define MAX_STEPS 8

typedef struct hf_build {
    const char *origin;
    lop_vocab_src src;
    const char **tokens;
    int32_t *types;
    const char **merges;
    size_t *merge_lens, *merge_split;
    char *merge_arena;
    lop_added_token *added;
    lop_pretok_step steps[MAX_STEPS];
    int n_steps;
    int bytelevel;   /* a ByteLevel pre-tokenizer step was seen */
    int metaspace;   /* Metaspace pre-tokenizer (SPM kind) */
    int prepend;     /* normalizer Prepend("▁") */
    int replace_sp;  /* normalizer Replace(" ", "▁") */
    int template_bos, template_eos; /* -1 = none */
    int dec_bytelevel, dec_spm, dec_strip;
} hf_build;

static const char SPACE_MARK[] = "\xE2\x96\x81";

static const char *type_of(const cJSON *o) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

static int is_null(const cJSON *j) { return !j || cJSON_IsNull(j); }

/* bool field with a default; a present non-bool is an error */
static lop_status get_bool(const hf_build *b, const cJSON *o, const char *name, const char *path, int def, int *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
    if (is_null(j)) {
        *out = def;
        return LOP_OK;
    }
    if (!cJSON_IsBool(j)) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.%s' must be true or false", b->origin, path, name);
    *out = cJSON_IsTrue(j);
    return LOP_OK;
}

static lop_status get_int(const hf_build *b, const cJSON *o, const char *name, const char *path, int *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(j) || j->valuedouble != (double)(int)j->valuedouble)
        return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.%s' must be an integer", b->origin, path, name);
    *out = (int)j->valuedouble;
    return LOP_OK;
}

/* {"String": s} or {"Regex": r} */
static lop_status get_pattern(const hf_build *b, const cJSON *o, const char *path, const char **pat, int *literal) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(p, "String"), *r = cJSON_GetObjectItemCaseSensitive(p, "Regex");
    if (cJSON_IsString(s)) *pat = s->valuestring, *literal = 1;
    else if (cJSON_IsString(r)) *pat = r->valuestring, *literal = 0;
    else return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.pattern' must be {\"String\": ...} or {\"Regex\": ...}", b->origin, path);
    return LOP_OK;
}

/* ---- model ----------------------------------------------------------------------------------- */

static lop_status read_vocab(hf_build *b, const cJSON *root, const cJSON *model) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return lop_fail(LOP_ERR_FORMAT, "%s: field 'model.vocab' must be an object", b->origin);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!is_null(added) && !cJSON_IsArray(added))
        return lop_fail(LOP_ERR_FORMAT, "%s: field 'added_tokens' must be an array", b->origin);
    int nv = cJSON_GetArraySize(vocab), na = is_null(added) ? 0 : cJSON_GetArraySize(added);
    if (nv == 0) return lop_fail(LOP_ERR_FORMAT, "%s: field 'model.vocab' is empty", b->origin);
    long limit = (long)nv + na; /* ids must fit in the entries given */
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble != (double)(long)e->valuedouble)
            return lop_fail(LOP_ERR_FORMAT, "%s: field 'model.vocab': entry '%.40s' must be an integer id", b->origin,
                            e->string);
        long id = (long)e->valuedouble;
        if (id < 0 || id >= limit)
            return lop_fail(LOP_ERR_FORMAT, "%s: field 'model.vocab': id %ld of '%.40s' out of range (%ld entries)",
                            b->origin, id, e->string, limit);
        if (id + 1 > n) n = (int)id + 1;
    }
    for (int i = 0; i < na; i++) {
        const cJSON *a = cJSON_GetArrayItem(added, i);
        char path[48];
        snprintf(path, sizeof path, "added_tokens[%d]", i);
        if (!cJSON_IsObject(a)) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' must be an object", b->origin, path);
        int id;
        LOP_TRY(get_int(b, a, "id", path, &id));
        if (id < 0 || id >= limit)
            return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.id': %d out of range (%ld entries)", b->origin, path, id, limit);
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(a, "content")))
            return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.content' must be a string", b->origin, path);
        if (id + 1 > n) n = id + 1;
    }
    b->tokens = calloc((size_t)n, sizeof *b->tokens);
    b->types = malloc((size_t)n * sizeof *b->types);
    b->added = calloc((size_t)na + 1, sizeof *b->added);
    if (!b->tokens || !b->types || !b->added) return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
    cJSON_ArrayForEach(e, vocab) {
        int id = (int)e->valuedouble;
        if (b->tokens[id])
            return lop_fail(LOP_ERR_FORMAT, "%s: field 'model.vocab': id %d given to both '%.40s' and '%.40s'",
                            b->origin, id, b->tokens[id], e->string);
        b->tokens[id] = e->string;
        b->types[id] = LOP_TT_NORMAL;
    }
    for (int i = 0; i < na; i++) {
        const cJSON *a = cJSON_GetArrayItem(added, i);
        char path[48];
        snprintf(path, sizeof path, "added_tokens[%d]", i);
        lop_added_token *t = &b->added[i];
        int special, lstrip, rstrip, single;
        LOP_TRY(get_int(b, a, "id", path, &t->id));
        LOP_TRY(get_bool(b, a, "special", path, 0, &special));
        LOP_TRY(get_bool(b, a, "lstrip", path, 0, &lstrip));
        LOP_TRY(get_bool(b, a, "rstrip", path, 0, &rstrip));
        LOP_TRY(get_bool(b, a, "single_word", path, 0, &single));
        if (single)
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s.single_word': single-word added tokens are not supported",
                            b->origin, path);
        t->special = special, t->lstrip = lstrip, t->rstrip = rstrip;
        b->tokens[t->id] = cJSON_GetObjectItemCaseSensitive(a, "content")->valuestring; /* HF: added content wins */
        b->types[t->id] = special ? LOP_TT_CONTROL : LOP_TT_USER;
    }
    for (int i = 0; i < n; i++)
        if (!b->tokens[i]) b->tokens[i] = "", b->types[i] = LOP_TT_UNUSED; /* a hole in the id space */
    b->src.n_vocab = n;
    b->src.tokens = b->tokens;
    b->src.token_types = b->types;
    b->src.n_added = na;
    b->src.added = b->added;
    return LOP_OK;
}

static lop_status read_merges(hf_build *b, const cJSON *model) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (is_null(merges)) return LOP_OK; /* a BPE without merges: every piece is a character */
    if (!cJSON_IsArray(merges)) return lop_fail(LOP_ERR_FORMAT, "%s: field 'model.merges' must be an array", b->origin);
    int n = cJSON_GetArraySize(merges);
    size_t total = 0;
    const cJSON *m;
    int i = 0;
    cJSON_ArrayForEach(m, merges) { /* pass 1: check the shape, size the arena */
        if (cJSON_IsString(m)) {
            total += strlen(m->valuestring) + 1;
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            total += strlen(cJSON_GetArrayItem(m, 0)->valuestring) + strlen(cJSON_GetArrayItem(m, 1)->valuestring) + 2;
        } else {
            return lop_fail(LOP_ERR_FORMAT, "%s: field 'model.merges[%d]' must be \"a b\" or [\"a\", \"b\"]", b->origin, i);
        }
        i++;
    }
    b->merges = malloc((size_t)n * sizeof *b->merges + 1);
    b->merge_lens = malloc((size_t)n * sizeof *b->merge_lens + 1);
    b->merge_split = malloc((size_t)n * sizeof *b->merge_split + 1);
    b->merge_arena = malloc(total + 1);
    if (!b->merges || !b->merge_lens || !b->merge_split || !b->merge_arena)
        return lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
    char *p = b->merge_arena;
    int pairs = 0;
    i = 0;
    cJSON_ArrayForEach(m, merges) {
        b->merges[i] = p;
        if (cJSON_IsString(m)) {
            size_t l = strlen(m->valuestring);
            memcpy(p, m->valuestring, l + 1);
            b->merge_lens[i] = l;
            const char *sp = strchr(p, ' ');
            b->merge_split[i] = sp ? (size_t)(sp - p) : l; /* HF splits string merges at the first space */
            p += l + 1;
        } else {
            const char *x = cJSON_GetArrayItem(m, 0)->valuestring, *y = cJSON_GetArrayItem(m, 1)->valuestring;
            size_t lx = strlen(x), ly = strlen(y);
            memcpy(p, x, lx);
            p[lx] = ' ';
            memcpy(p + lx + 1, y, ly + 1);
            b->merge_lens[i] = lx + 1 + ly;
            b->merge_split[i] = lx;
            p += lx + ly + 2;
            pairs++;
        }
        if (b->merge_split[i] >= b->merge_lens[i])
            return lop_fail(LOP_ERR_FORMAT, "%s: field 'model.merges[%d]' ('%.40s') has no space between two tokens",
                            b->origin, i, b->merges[i]);
        i++;
    }
    b->src.n_merges = n;
    b->src.merges = b->merges;
    b->src.merge_lens = b->merge_lens;
    b->src.merge_split = b->merge_split;
    return LOP_OK;
}

static lop_status read_model(hf_build *b, const cJSON *root) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return lop_fail(LOP_ERR_FORMAT, "%s: field 'model' must be an object", b->origin);
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!is_null(ty) && !cJSON_IsString(ty))
        return lop_fail(LOP_ERR_FORMAT, "%s: field 'model.type' must be a string", b->origin);
    if (cJSON_IsString(ty) && strcmp(ty->valuestring, "BPE") != 0)
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field 'model.type' is '%.40s': only \"BPE\" models are supported",
                        b->origin, ty->valuestring);
    if (is_null(ty) && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field 'model.type' is missing and the model has no merges", b->origin);
    LOP_TRY(read_vocab(b, root, model));
    LOP_TRY(read_merges(b, model));
    LOP_TRY(get_bool(b, model, "byte_fallback", "model", 0, &b->src.byte_fallback));
    LOP_TRY(get_bool(b, model, "fuse_unk", "model", 0, &b->src.fuse_unk));
    LOP_TRY(get_bool(b, model, "ignore_merges", "model", 0, &b->src.ignore_merges));
    const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (!is_null(a) && !(cJSON_IsString(a) && a->valuestring[0] == 0))
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field 'model.%s' must be empty (word affixes are not supported)",
                            b->origin, affixes[i]);
    }
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (!is_null(drop) && !(cJSON_IsNumber(drop) && drop->valuedouble == 0.0))
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field 'model.dropout' must be null (BPE dropout is not supported)",
                        b->origin);
    b->src.unk_id = -1;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (!is_null(unk)) {
        if (!cJSON_IsString(unk)) return lop_fail(LOP_ERR_FORMAT, "%s: field 'model.unk_token' must be a string", b->origin);
        for (int i = 0; i < b->src.n_vocab && b->src.unk_id < 0; i++)
            if (strcmp(b->tokens[i], unk->valuestring) == 0) b->src.unk_id = i;
        if (b->src.unk_id < 0)
            return lop_fail(LOP_ERR_FORMAT, "%s: field 'model.unk_token' ('%.40s') is not in the vocabulary", b->origin,
                            unk->valuestring);
        b->src.unk_fallback = 1;
    }
    return LOP_OK;
}

/* ---- normalizer / pre_tokenizer -------------------------------------------------------------- */

static lop_status read_normalizer1(hf_build *b, const cJSON *n, const char *path) {
    const char *ty = type_of(n);
    if (!ty) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.type' must be a string", b->origin, path);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *x;
        if (!cJSON_IsArray(list)) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.normalizers' must be an array", b->origin, path);
        int i = 0;
        cJSON_ArrayForEach(x, list) {
            char sub[64];
            snprintf(sub, sizeof sub, "%s.normalizers[%d]", path, i++);
            LOP_TRY(read_normalizer1(b, x, sub));
        }
        return LOP_OK;
    }
    if (strcmp(ty, "Prepend") == 0) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(n, "prepend");
        if (!cJSON_IsString(p) || strcmp(p->valuestring, SPACE_MARK) != 0)
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s.prepend': only \"\u2581\" is supported", b->origin, path);
        if (b->replace_sp) return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s': Prepend must come before Replace", b->origin, path);
        b->prepend = 1;
        return LOP_OK;
    }
    if (strcmp(ty, "Replace") == 0) {
        const char *pat;
        int lit;
        LOP_TRY(get_pattern(b, n, path, &pat, &lit));
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(n, "content");
        if (!lit || strcmp(pat, " ") != 0 || !cJSON_IsString(c) || strcmp(c->valuestring, SPACE_MARK) != 0)
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s': only Replace(\" \", \"\u2581\") is supported", b->origin, path);
        b->replace_sp = 1;
        return LOP_OK;
    }
    return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s.type' is '%.40s': normalizer not supported", b->origin, path, ty);
}

static lop_status add_step(hf_build *b, lop_pretok_step s, const char *path) {
    if (b->n_steps == MAX_STEPS) return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s': too many pre-tokenizers", b->origin, path);
    b->steps[b->n_steps++] = s;
    return LOP_OK;
}

static lop_status read_pretok1(hf_build *b, const cJSON *p, const char *path, int top) {
    const char *ty = type_of(p);
    if (!ty) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.type' must be a string", b->origin, path);
    lop_pretok_step s;
    memset(&s, 0, sizeof s);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"), *x;
        if (!cJSON_IsArray(list)) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.pretokenizers' must be an array", b->origin, path);
        int i = 0;
        cJSON_ArrayForEach(x, list) {
            char sub[64];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", path, i++);
            LOP_TRY(read_pretok1(b, x, sub, 0));
        }
        return LOP_OK;
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        s.type = LOP_STEP_BYTELEVEL;
        LOP_TRY(get_bool(b, p, "use_regex", path, 1, &s.use_regex));
        LOP_TRY(get_bool(b, p, "add_prefix_space", path, 0, &s.add_prefix_space));
        b->bytelevel = 1;
        return add_step(b, s, path);
    }
    if (strcmp(ty, "Digits") == 0) {
        s.type = LOP_STEP_DIGITS;
        LOP_TRY(get_bool(b, p, "individual_digits", path, 0, &s.individual_digits));
        return add_step(b, s, path);
    }
    if (strcmp(ty, "Split") == 0) {
        s.type = LOP_STEP_SPLIT;
        LOP_TRY(get_pattern(b, p, path, &s.pattern, &s.literal));
        LOP_TRY(get_bool(b, p, "invert", path, 0, &s.invert));
        const cJSON *bh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
        static const char *names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int k = -1;
        for (int i = 0; i < 5 && cJSON_IsString(bh); i++)
            if (strcmp(bh->valuestring, names[i]) == 0) k = i;
        if (k < 0) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.behavior' must be one of Isolated, Removed, "
                                   "MergedWithPrevious, MergedWithNext, Contiguous", b->origin, path);
        s.behavior = (lop_split_behavior)k;
        return add_step(b, s, path);
    }
    if (strcmp(ty, "Metaspace") == 0) {
        if (!top) return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s': Metaspace inside a Sequence is not supported", b->origin, path);
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(p, "replacement");
        if (!is_null(r) && !(cJSON_IsString(r) && strcmp(r->valuestring, SPACE_MARK) == 0))
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s.replacement': only \"\u2581\" is supported", b->origin, path);
        const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(p, "prepend_scheme");
        int prefix;
        if (cJSON_IsString(scheme)) {
            if (strcmp(scheme->valuestring, "first") == 0) prefix = LOP_PREFIX_FIRST;
            else if (strcmp(scheme->valuestring, "always") == 0) prefix = LOP_PREFIX_EVERY_NOSP;
            else if (strcmp(scheme->valuestring, "never") == 0) prefix = LOP_PREFIX_NONE;
            else return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.prepend_scheme' must be first, always or never", b->origin, path);
        } else if (is_null(scheme)) { /* older files: add_prefix_space */
            int aps;
            LOP_TRY(get_bool(b, p, "add_prefix_space", path, 1, &aps));
            prefix = aps ? LOP_PREFIX_EVERY_NOSP : LOP_PREFIX_NONE;
        } else {
            return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.prepend_scheme' must be a string", b->origin, path);
        }
        LOP_TRY(get_bool(b, p, "split", path, 1, &b->src.spm_split));
        b->src.add_space_prefix = prefix;
        b->metaspace = 1;
        return LOP_OK;
    }
    return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s.type' is '%.40s': pre-tokenizer not supported", b->origin, path, ty);
}

/* ---- decoder / post_processor ----------------------------------------------------------------- */

static lop_status read_decoder1(hf_build *b, const cJSON *d, const char *path) {
    const char *ty = type_of(d);
    if (!ty) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.type' must be a string", b->origin, path);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders"), *x;
        if (!cJSON_IsArray(list)) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.decoders' must be an array", b->origin, path);
        int i = 0;
        cJSON_ArrayForEach(x, list) {
            char sub[64];
            snprintf(sub, sizeof sub, "%s.decoders[%d]", path, i++);
            LOP_TRY(read_decoder1(b, x, sub));
        }
        return LOP_OK;
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        b->dec_bytelevel = 1;
        return LOP_OK;
    }
    if (strcmp(ty, "Replace") == 0) {
        const char *pat;
        int lit;
        LOP_TRY(get_pattern(b, d, path, &pat, &lit));
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "content");
        if (!lit || strcmp(pat, SPACE_MARK) != 0 || !cJSON_IsString(c) || strcmp(c->valuestring, " ") != 0)
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s': only Replace(\"\u2581\", \" \") is supported", b->origin, path);
        b->dec_spm = 1;
        return LOP_OK;
    }
    if (strcmp(ty, "ByteFallback") == 0 || strcmp(ty, "Fuse") == 0) return LOP_OK;
    if (strcmp(ty, "Strip") == 0) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "content");
        int start = 0, stop = 0;
        LOP_TRY(get_int(b, d, "start", path, &start));
        LOP_TRY(get_int(b, d, "stop", path, &stop));
        if (!cJSON_IsString(c) || strcmp(c->valuestring, " ") != 0 || start > 1 || stop != 0)
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s': only Strip(\" \", start<=1, stop=0) is supported", b->origin, path);
        b->dec_strip = start ? 1 : -1;
        return LOP_OK;
    }
    if (strcmp(ty, "Metaspace") == 0) {
        const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(d, "prepend_scheme");
        int aps = 1;
        if (cJSON_IsString(scheme)) aps = strcmp(scheme->valuestring, "never") != 0;
        else LOP_TRY(get_bool(b, d, "add_prefix_space", path, 1, &aps));
        b->dec_spm = 1;
        b->dec_strip = aps ? 1 : -1;
        return LOP_OK;
    }
    return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s.type' is '%.40s': decoder not supported", b->origin, path, ty);
}

static int find_token(const hf_build *b, const char *s) {
    for (int i = 0; i < b->src.n_added; i++)
        if (strcmp(b->tokens[b->added[i].id], s) == 0) return b->added[i].id;
    for (int i = 0; i < b->src.n_vocab; i++)
        if (strcmp(b->tokens[i], s) == 0) return i;
    return -1;
}

static lop_status read_template(hf_build *b, const cJSON *p, const char *path) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single"), *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
    if (!cJSON_IsArray(single)) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.single' must be an array", b->origin, path);
    int seen_a = 0, n_before = 0, n_after = 0, i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, single) {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(item, "Sequence");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        if (seq) {
            seen_a = 1;
        } else if (sp) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "id");
            if (!cJSON_IsString(name)) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.single[%d].SpecialToken.id' must be a string", b->origin, path, i);
            const cJSON *ent = cJSON_GetObjectItemCaseSensitive(specials, name->valuestring);
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(ent, "ids");
            if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) != 1 || !cJSON_IsNumber(cJSON_GetArrayItem(ids, 0)))
                return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s.special_tokens.%.40s.ids': one id expected", b->origin, path, name->valuestring);
            int id = (int)cJSON_GetArrayItem(ids, 0)->valuedouble;
            if (id < 0 || id >= b->src.n_vocab)
                return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.special_tokens.%.40s.ids': id %d out of range", b->origin, path, name->valuestring, id);
            if (seen_a) b->template_eos = id, n_after++;
            else b->template_bos = id, n_before++;
        } else {
            return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.single[%d]' must be a Sequence or a SpecialToken", b->origin, path, i);
        }
        i++;
    }
    if (n_before > 1 || n_after > 1)
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s.single': at most one special token before and after the text is supported", b->origin, path);
    return LOP_OK;
}

static lop_status read_post1(hf_build *b, const cJSON *p, const char *path) {
    const char *ty = type_of(p);
    if (!ty) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.type' must be a string", b->origin, path);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "processors"), *x;
        if (!cJSON_IsArray(list)) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s.processors' must be an array", b->origin, path);
        int i = 0;
        cJSON_ArrayForEach(x, list) {
            char sub[64];
            snprintf(sub, sizeof sub, "%s.processors[%d]", path, i++);
            LOP_TRY(read_post1(b, x, sub));
        }
        return LOP_OK;
    }
    if (strcmp(ty, "ByteLevel") == 0) return LOP_OK; /* offsets only */
    if (strcmp(ty, "TemplateProcessing") == 0) return read_template(b, p, path);
    return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s.type' is '%.40s': post-processor not supported", b->origin, path, ty);
}

/* ---- tokenizer_config.json ------------------------------------------------------------------- */

static const char *config_token(const cJSON *cfg, const char *name) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, name);
    if (cJSON_IsString(j)) return j->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "content"); /* {"content": ..., "__type": "AddedToken"} */
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static lop_status apply_config(hf_build *b, const cJSON *cfg, const char *cfg_path) {
    struct { const char *key; int *id; } ids[] = {{"bos_token", &b->src.bos_id}, {"eos_token", &b->src.eos_id},
                                                  {"pad_token", &b->src.pad_id}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        const char *s = config_token(cfg, ids[i].key);
        if (!s) continue;
        int id = find_token(b, s);
        if (id < 0)
            return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' ('%.40s') is not a token of the tokenizer", cfg_path, ids[i].key, s);
        *ids[i].id = id;
    }
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token"), *ae = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
    if (cJSON_IsBool(ab)) b->src.add_bos = cJSON_IsTrue(ab);
    if (cJSON_IsBool(ae)) b->src.add_eos = cJSON_IsTrue(ae);
    return LOP_OK;
}

/* ---- putting it together ---------------------------------------------------------------------- */

static lop_status build(hf_build *b, const cJSON *root, const cJSON *cfg, const char *cfg_path, lop_tokenizer **out) {
    if (!cJSON_IsObject(root)) return lop_fail(LOP_ERR_FORMAT, "%s: not a JSON object", b->origin);
    b->src.origin = b->origin;
    b->src.bos_id = b->src.eos_id = b->src.unk_id = b->src.pad_id = -1;
    b->template_bos = b->template_eos = -1;
    LOP_TRY(read_model(b, root));

    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (!is_null(norm)) LOP_TRY(read_normalizer1(b, norm, "normalizer"));
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!is_null(pre)) LOP_TRY(read_pretok1(b, pre, "pre_tokenizer", 1));
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!is_null(dec)) LOP_TRY(read_decoder1(b, dec, "decoder"));
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (!is_null(post)) LOP_TRY(read_post1(b, post, "post_processor"));

    if (b->bytelevel) {
        if (b->metaspace || b->prepend || b->replace_sp || b->dec_spm)
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field 'pre_tokenizer': ByteLevel mixed with SentencePiece-style parts", b->origin);
        b->src.kind = LOP_TOK_BPE;
        b->src.n_pretok_steps = b->n_steps;
        b->src.pretok_steps = b->steps;
    } else if (b->metaspace || b->replace_sp) {
        if (b->n_steps) return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field 'pre_tokenizer': splits are only supported with ByteLevel", b->origin);
        if (b->dec_bytelevel) return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field 'decoder': ByteLevel with a SentencePiece-style tokenizer", b->origin);
        if (b->metaspace && (b->prepend || b->replace_sp))
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field 'normalizer': Prepend/Replace together with a Metaspace pre-tokenizer", b->origin);
        if (!b->metaspace) {
            if (!b->replace_sp) return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field 'normalizer': Prepend without Replace(\" \", \"\u2581\")", b->origin);
            b->src.add_space_prefix = b->prepend ? LOP_PREFIX_EVERY : LOP_PREFIX_NONE;
        }
        b->src.kind = LOP_TOK_SPM;
        b->src.decode_strip = b->dec_strip ? b->dec_strip : -1;
        if (b->src.n_merges == 0) /* HF applies no merges then; score mode would merge */
            return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field 'model.merges': a SentencePiece-style BPE without merges", b->origin);
    } else {
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field 'pre_tokenizer': neither ByteLevel nor Metaspace (nor a "
                        "Replace(\" \", \"\u2581\") normalizer): not a byte-level or SentencePiece-style BPE", b->origin);
    }
    if (b->template_bos >= 0) b->src.bos_id = b->template_bos, b->src.add_bos = 1;
    if (b->template_eos >= 0) b->src.eos_id = b->template_eos, b->src.add_eos = 1;
    if (cfg) LOP_TRY(apply_config(b, cfg, cfg_path));
    return lop_tokenizer_create(&b->src, out);
}

static void build_free(hf_build *b) {
    free(b->tokens);
    free(b->types);
    free(b->merges);
    free(b->merge_lens);
    free(b->merge_split);
    free(b->merge_arena);
    free(b->added);
}

static lop_status parse_json(const char *text, size_t len, const char *origin, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!*out) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        size_t line = 1;
        for (size_t i = 0; i < off && i < len; i++) line += text[i] == '\n';
        return lop_fail(LOP_ERR_FORMAT, "%s: malformed JSON near byte %zu (line %zu)", origin, off, line);
    }
    return LOP_OK;
}

static lop_status from_text(const char *json, size_t len, const char *origin, const cJSON *cfg, const char *cfg_path,
                            lop_tokenizer **out) {
    cJSON *root;
    LOP_TRY(parse_json(json, len, origin, &root));
    hf_build b;
    memset(&b, 0, sizeof b);
    b.origin = origin;
    lop_status st = build(&b, root, cfg, cfg_path, out);
    build_free(&b);
    cJSON_Delete(root);
    return st;
}

lop_status lop_tokenizer_from_hf_json_text(const char *json, size_t len, const char *origin, lop_tokenizer **out) {
    if (!out) return lop_fail(LOP_ERR_ARG, "tokenizer: no output");
    *out = NULL;
    if (!json) return lop_fail(LOP_ERR_ARG, "tokenizer: no JSON text");
    return from_text(json, len, origin ? origin : "tokenizer.json", NULL, NULL, out);
}

lop_status lop_tokenizer_from_hf_json(const char *path, lop_tokenizer **out) {
    if (!out) return lop_fail(LOP_ERR_ARG, "tokenizer: no output");
    *out = NULL;
    if (!path) return lop_fail(LOP_ERR_ARG, "tokenizer: no path");
    char *text = NULL, *ctext = NULL, *cpath = NULL;
    size_t len = 0, clen = 0;
    cJSON *cfg = NULL;
    lop_status st = lop_read_file(path, &text, &len);
    if (st == LOP_OK) { /* tokenizer_config.json in the same folder, when there is one */
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path + 1) : 0;
        cpath = malloc(dl + sizeof "tokenizer_config.json");
        if (!cpath) st = lop_fail(LOP_ERR_OOM, "tokenizer: out of memory");
        else {
            memcpy(cpath, path, dl);
            strcpy(cpath + dl, "tokenizer_config.json");
            if (lop_file_exists(cpath)) {
                st = lop_read_file(cpath, &ctext, &clen);
                if (st == LOP_OK) st = parse_json(ctext, clen, cpath, &cfg);
                if (st == LOP_OK && !cJSON_IsObject(cfg)) st = lop_fail(LOP_ERR_FORMAT, "%s: not a JSON object", cpath);
            }
        }
    }
    if (st == LOP_OK) st = from_text(text, len, path, cfg, cpath, out);
    cJSON_Delete(cfg);
    free(text);
    free(ctext);
    free(cpath);
    return st;
}
