/* config.json reader and writer; see hf_config.h and docs/per-layer-config.md. */
#include "io/hf_config.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/status.h"
#include "io/file.h"

#define MAX_SIZE (1 << 30) /* sanity bound on every size field: keeps products far from overflow */

void lop_hf_extra_free(lop_hf_extra *x) {
    if (!x) return;
    free(x->lop_layers);
    x->lop_layers = NULL;
}

lop_status lop_json_read_file(const char *path, cJSON **out) {
    *out = NULL;
    char *text;
    size_t len;
    LOP_TRY(lop_read_file(path, &text, &len));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (root) { /* only whitespace may follow the value */
        while (end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
        if (end < text + len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        int line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        free(text);
        return lop_fail(LOP_ERR_FORMAT, "%s: malformed JSON at line %d, column %d (byte %zu)", path, line, col, off);
    }
    free(text);
    *out = root;
    return LOP_OK;
}

/* ---- typed field access ------------------------------------------------------------------- */
/* Field lookup; JSON null counts as absent (HF writes e.g. "rope_scaling": null). */
static const cJSON *field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNull(v) ? NULL : v;
}

/* Integer field in [lo, MAX_SIZE]; `name` is how the message names it (e.g. "lop_layers[2].head_dim"). */
static lop_status get_int(const char *path, const cJSON *o, const char *key, const char *name, int lo, int *out,
                          int *found) {
    const cJSON *v = field(o, key);
    if (found) *found = v != NULL;
    if (!v) return LOP_OK;
    if (!cJSON_IsNumber(v))
        return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' must be an integer", path, name ? name : key);
    double d = v->valuedouble;
    if (!(d == floor(d)))
        return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' must be an integer (got %g)", path, name ? name : key, d);
    if (d < lo || d > MAX_SIZE) {
        if (lo == 1 && d < 1)
            return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' must be positive (got %.0f)", path, name ? name : key, d);
        return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' = %.0f out of range [%d, %d]", path, name ? name : key, d, lo,
                        MAX_SIZE);
    }
    *out = (int)d;
    return LOP_OK;
}

static lop_status need_int(const char *path, const cJSON *o, const char *key, const char *name, int lo, int *out) {
    int found;
    LOP_TRY(get_int(path, o, key, name, lo, out, &found));
    if (!found) return lop_fail(LOP_ERR_FORMAT, "%s: missing field '%s'", path, name ? name : key);
    return LOP_OK;
}

/* Float field; positive = 1 requires > 0. */
static lop_status get_float(const char *path, const cJSON *o, const char *key, const char *name, int positive,
                            float *out, int *found) {
    const cJSON *v = field(o, key);
    if (found) *found = v != NULL;
    if (!v) return LOP_OK;
    if (!cJSON_IsNumber(v)) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' must be a number", path, name ? name : key);
    double d = v->valuedouble;
    if (!isfinite(d) || fabs(d) > 3e38 || (positive && !(d > 0)))
        return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' = %g out of range%s", path, name ? name : key, d,
                        positive ? " (must be positive)" : "");
    *out = (float)d;
    return LOP_OK;
}

static lop_status need_float(const char *path, const cJSON *o, const char *key, const char *name, float *out) {
    int found;
    LOP_TRY(get_float(path, o, key, name, 1, out, &found));
    if (!found) return lop_fail(LOP_ERR_FORMAT, "%s: missing field '%s'", path, name ? name : key);
    return LOP_OK;
}

static lop_status get_bool(const char *path, const cJSON *o, const char *key, int *out) {
    const cJSON *v = field(o, key);
    if (!v) return LOP_OK;
    if (!cJSON_IsBool(v)) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' must be true or false", path, key);
    *out = cJSON_IsTrue(v);
    return LOP_OK;
}

static lop_status get_string(const char *path, const cJSON *o, const char *key, const char *name, const char **out) {
    const cJSON *v = field(o, key);
    *out = NULL;
    if (!v) return LOP_OK;
    if (!cJSON_IsString(v)) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' must be a string", path, name ? name : key);
    *out = v->valuestring;
    return LOP_OK;
}

/* Token id: an integer, or a list of integers (first one is used); absent/null/[] leaves *out. */
static lop_status get_token_id(const char *path, const cJSON *o, const char *key, int *out) {
    const cJSON *v = field(o, key);
    if (!v) return LOP_OK;
    if (cJSON_IsArray(v)) {
        if (!v->child) return LOP_OK;
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, i++)
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > INT_MAX || e->valuedouble != floor(e->valuedouble))
                return lop_fail(LOP_ERR_FORMAT, "%s: field '%s[%d]' must be a non-negative integer", path, key, i);
        *out = (int)v->child->valuedouble;
        return LOP_OK;
    }
    if (get_int(path, o, key, NULL, 0, out, NULL) != LOP_OK)
        return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' must be a non-negative integer or a list of them", path, key);
    return LOP_OK;
}

static int parse_dtype_name(const char *s, lop_dtype *out) {
    if (strncmp(s, "torch.", 6) == 0) s += 6;
    if (!strcmp(s, "float32") || !strcmp(s, "float")) *out = LOP_F32;
    else if (!strcmp(s, "float16") || !strcmp(s, "half")) *out = LOP_F16;
    else if (!strcmp(s, "bfloat16")) *out = LOP_BF16;
    else return 0;
    return 1;
}

/* ---- RoPE --------------------------------------------------------------------------------- */
/* Reads a rope_scaling (old style) or rope_parameters (transformers 5) object named `obj_name`. */
static lop_status parse_rope(const char *path, const cJSON *o, const char *obj_name, lop_config *c) {
    char name[96];
    if (!cJSON_IsObject(o)) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' must be an object or null", path, obj_name);
    if (!strcmp(obj_name, "rope_parameters")) {
        snprintf(name, sizeof name, "%s.rope_theta", obj_name);
        LOP_TRY(get_float(path, o, "rope_theta", name, 1, &c->rope_theta, NULL));
    }
    const char *type;
    snprintf(name, sizeof name, "%s.rope_type", obj_name);
    LOP_TRY(get_string(path, o, "rope_type", name, &type));
    if (!type) {
        snprintf(name, sizeof name, "%s.type", obj_name);
        LOP_TRY(get_string(path, o, "type", name, &type));
    }
    if (!type) return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' has no rope_type", path, obj_name);
    if (!strcmp(type, "default")) {
        c->rope_scaling.type = LOP_ROPE_DEFAULT;
        return LOP_OK;
    }
    if (strcmp(type, "llama3") != 0)
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field '%s' = \"%s\" is not supported (lop supports default and llama3)",
                        path, name, type);
    lop_rope_scaling *r = &c->rope_scaling;
    r->type = LOP_ROPE_LLAMA3;
    snprintf(name, sizeof name, "%s.factor", obj_name);
    LOP_TRY(need_float(path, o, "factor", name, &r->factor));
    snprintf(name, sizeof name, "%s.low_freq_factor", obj_name);
    LOP_TRY(need_float(path, o, "low_freq_factor", name, &r->low_freq_factor));
    snprintf(name, sizeof name, "%s.high_freq_factor", obj_name);
    LOP_TRY(need_float(path, o, "high_freq_factor", name, &r->high_freq_factor));
    if (!(r->high_freq_factor > r->low_freq_factor))
        return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' must be greater than low_freq_factor", path, name);
    snprintf(name, sizeof name, "%s.original_max_position_embeddings", obj_name);
    return need_int(path, o, "original_max_position_embeddings", name, 1, &r->original_max_pos);
}

/* ---- lop_layers --------------------------------------------------------------------------- */
static lop_status parse_lop_layers(const char *path, const cJSON *arr, const lop_config *c, lop_hf_extra *x) {
    if (!cJSON_IsArray(arr)) return lop_fail(LOP_ERR_FORMAT, "%s: field 'lop_layers' must be an array", path);
    int n = cJSON_GetArraySize(arr);
    if (n != c->n_layers)
        return lop_fail(LOP_ERR_FORMAT, "%s: field 'lop_layers' has %d entries but num_hidden_layers is %d", path, n,
                        c->n_layers);
    lop_layer_shape *L = calloc((size_t)n, sizeof *L);
    if (!L) return lop_fail(LOP_ERR_OOM, "%s: out of memory (lop_layers)", path);
    lop_status st = LOP_OK;
    int i = 0;
    char name[96];
    for (const cJSON *e = arr->child; e && st == LOP_OK; e = e->next, i++) {
        lop_layer_shape *s = &L[i];
        if (!cJSON_IsObject(e)) {
            st = lop_fail(LOP_ERR_FORMAT, "%s: field 'lop_layers[%d]' must be an object", path, i);
            break;
        }
#define NM(k) (snprintf(name, sizeof name, "lop_layers[%d].%s", i, k), name)
        int found;
        if ((st = need_int(path, e, "num_attention_heads", NM("num_attention_heads"), 0, &s->n_heads))) break;
        if ((st = get_int(path, e, "num_key_value_heads", NM("num_key_value_heads"), 0, &s->n_kv_heads, &found)))
            break;
        if (!found) s->n_kv_heads = s->n_heads;
        if ((st = get_int(path, e, "head_dim", NM("head_dim"), 1, &s->head_dim, &found))) break;
        if (!found) s->head_dim = c->head_dim;
        if ((st = need_int(path, e, "intermediate_size", NM("intermediate_size"), 0, &s->ffn_dim))) break;
        if (s->n_heads > 0 && (s->n_kv_heads == 0 || s->n_heads % s->n_kv_heads != 0))
            st = lop_fail(LOP_ERR_FORMAT, "%s: field 'lop_layers[%d].num_key_value_heads' = %d must divide "
                          "num_attention_heads = %d", path, i, s->n_kv_heads, s->n_heads);
        else if (s->n_heads == 0 && s->n_kv_heads != 0)
            st = lop_fail(LOP_ERR_FORMAT, "%s: field 'lop_layers[%d].num_key_value_heads' must be 0 when the layer "
                          "has no attention (num_attention_heads 0)", path, i);
        else if (s->n_heads > 0 && s->head_dim <= 0)
            st = lop_fail(LOP_ERR_FORMAT, "%s: field 'lop_layers[%d].head_dim' missing and no model head_dim", path, i);
        else if ((int64_t)s->n_heads * s->head_dim > MAX_SIZE)
            st = lop_fail(LOP_ERR_FORMAT, "%s: field 'lop_layers[%d]': heads x head_dim too large", path, i);
#undef NM
    }
    if (st != LOP_OK) {
        free(L);
        return st;
    }
    x->lop_layers = L;
    return LOP_OK;
}

/* ---- reader ------------------------------------------------------------------------------- */
lop_status lop_hf_config_from_json(const cJSON *root, const char *path, lop_config *c, lop_hf_extra *x) {
    lop_hf_extra dummy;
    if (!x) x = &dummy;
    memset(x, 0, sizeof *x);
    if (!cJSON_IsObject(root)) return lop_fail(LOP_ERR_FORMAT, "%s: not a JSON object", path);
    /* Python keeps the last of duplicate keys, cJSON the first: refuse rather than read differently */
    for (const cJSON *a = root->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (!strcmp(a->string, b->string))
                return lop_fail(LOP_ERR_FORMAT, "%s: field '%s' appears twice", path, a->string);
    const char *mt;
    LOP_TRY(get_string(path, root, "model_type", NULL, &mt));
    if (!mt) return lop_fail(LOP_ERR_FORMAT, "%s: missing field 'model_type'", path);
    if (strcmp(mt, "llama") != 0)
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: field 'model_type' = \"%s\" is not supported (lop reads \"llama\")",
                        path, mt);
    /* HF defaults for absent optional fields */
    c->vocab_size = 0;
    c->dim = 0;
    c->n_heads = 0;
    c->head_dim = 0;
    c->ffn_dim = 0;
    c->max_seq_len = 2048;
    c->norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    memset(&c->rope_scaling, 0, sizeof c->rope_scaling);
    c->tie_embeddings = 0;
    c->bos_id = c->eos_id = -1;
    c->dtype = LOP_F32;
    LOP_TRY(need_int(path, root, "num_hidden_layers", NULL, 1, &c->n_layers));
    if (c->n_layers > 100000)
        return lop_fail(LOP_ERR_FORMAT, "%s: field 'num_hidden_layers' = %d out of range", path, c->n_layers);
    LOP_TRY(get_int(path, root, "hidden_size", NULL, 1, &c->dim, NULL));
    LOP_TRY(get_int(path, root, "num_attention_heads", NULL, 1, &c->n_heads, NULL));
    int found;
    LOP_TRY(get_int(path, root, "num_key_value_heads", NULL, 1, &c->n_kv_heads, &found));
    if (!found) c->n_kv_heads = c->n_heads;
    LOP_TRY(get_int(path, root, "head_dim", NULL, 1, &c->head_dim, &found));
    if (!found && c->dim > 0 && c->n_heads > 0) c->head_dim = c->dim / c->n_heads;
    if (c->n_heads > 0 && c->n_kv_heads > 0 && c->n_heads % c->n_kv_heads != 0)
        return lop_fail(LOP_ERR_FORMAT, "%s: field 'num_key_value_heads' = %d does not divide num_attention_heads = %d",
                        path, c->n_kv_heads, c->n_heads);
    LOP_TRY(get_int(path, root, "intermediate_size", NULL, 1, &c->ffn_dim, NULL));
    LOP_TRY(get_int(path, root, "vocab_size", NULL, 1, &c->vocab_size, NULL));
    LOP_TRY(get_int(path, root, "max_position_embeddings", NULL, 1, &c->max_seq_len, NULL));
    LOP_TRY(get_float(path, root, "rms_norm_eps", NULL, 1, &c->norm_eps, NULL));
    LOP_TRY(get_bool(path, root, "tie_word_embeddings", &c->tie_embeddings));
    LOP_TRY(get_bool(path, root, "attention_bias", &x->attention_bias));
    LOP_TRY(get_bool(path, root, "mlp_bias", &x->mlp_bias));
    LOP_TRY(get_token_id(path, root, "bos_token_id", &c->bos_id));
    LOP_TRY(get_token_id(path, root, "eos_token_id", &c->eos_id));
    const char *dt = NULL, *dt_key = "dtype";
    LOP_TRY(get_string(path, root, "dtype", NULL, &dt));
    if (!dt) {
        dt_key = "torch_dtype";
        LOP_TRY(get_string(path, root, "torch_dtype", NULL, &dt));
    }
    if (dt && !parse_dtype_name(dt, &c->dtype)) /* the tensors' dtype is the truth; this is a default */
        LOP_DEBUG("%s: field '%s' = \"%s\" not a weight dtype lop knows; using the tensors' dtype", path, dt_key, dt);
    /* RoPE: rope_theta + rope_scaling (transformers 4), rope_parameters (transformers 5) wins */
    LOP_TRY(get_float(path, root, "rope_theta", NULL, 1, &c->rope_theta, NULL));
    const cJSON *rs = field(root, "rope_scaling"), *rp = field(root, "rope_parameters");
    if (rp) LOP_TRY(parse_rope(path, rp, "rope_parameters", c));
    else if (rs) LOP_TRY(parse_rope(path, rs, "rope_scaling", c));
    const cJSON *ll = field(root, "lop_layers");
    if (ll) LOP_TRY(parse_lop_layers(path, ll, c, x));
    if (x == &dummy) lop_hf_extra_free(&dummy);
    return LOP_OK;
}

lop_status lop_hf_read_config(const char *path, lop_config *c, lop_hf_extra *x) {
    if (x) memset(x, 0, sizeof *x);
    cJSON *root;
    LOP_TRY(lop_json_read_file(path, &root));
    lop_status st = lop_hf_config_from_json(root, path, c, x);
    cJSON_Delete(root);
    if (st != LOP_OK) lop_hf_extra_free(x);
    return st;
}

/* ---- writer ------------------------------------------------------------------------------- */
void lop_hf_extra_from_model(const lop_model *m, lop_hf_extra *x) {
    memset(x, 0, sizeof *x);
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const lop_layer_weights *L = &m->w.layers[i];
        if (L->bq.present || L->bk.present || L->bv.present || L->bo.present) x->attention_bias = 1;
        if (L->b_gate.present || L->b_up.present || L->b_down.present) x->mlp_bias = 1;
    }
}

/* Shortest decimal that reads back as the same float, always with a '.' or exponent ("8.0", "1e-05")
 * so that Python reads a float, added as a raw JSON number. */
static int add_float(cJSON *o, const char *key, float f) {
    char b[48];
    if (f == (float)(int64_t)f && fabsf(f) < 1e15f) {
        snprintf(b, sizeof b, "%.1f", (double)f); /* 500000.0 rather than 5e+05 */
    } else {
        for (int prec = 1; prec <= 9; prec++) {
            snprintf(b, sizeof b, "%.*g", prec, (double)f);
            if ((float)strtod(b, NULL) == f) break;
        }
    }
    if (!strpbrk(b, ".eEn")) strcat(b, ".0");
    return cJSON_AddRawToObject(o, key, b) != NULL;
}

static int add_int(cJSON *o, const char *key, int v) { return cJSON_AddNumberToObject(o, key, v) != NULL; }

static int add_token(cJSON *o, const char *key, int v) {
    return (v >= 0 ? cJSON_AddNumberToObject(o, key, v) : cJSON_AddNullToObject(o, key)) != NULL;
}

static int add_llama3(cJSON *o, const lop_rope_scaling *r) {
    return add_float(o, "factor", r->factor) && add_float(o, "high_freq_factor", r->high_freq_factor) &&
           add_float(o, "low_freq_factor", r->low_freq_factor) &&
           add_int(o, "original_max_position_embeddings", r->original_max_pos);
}

cJSON *lop_hf_config_to_json(const lop_config *c, const lop_hf_extra *x) {
    /* model-wide sizes: the layers' own when uniform, the defaults otherwise */
    int heads = c->n_heads, kv = c->n_kv_heads > 0 ? c->n_kv_heads : c->n_heads, hd = c->head_dim, ffn = c->ffn_dim;
    int uniform = c->layers != NULL && c->n_layers > 0;
    for (int i = 0; uniform && i < c->n_layers; i++) {
        const lop_layer_shape *s = &c->layers[i], *s0 = &c->layers[0];
        if (s->n_heads == 0 || s->ffn_dim == 0 || s->n_heads != s0->n_heads || s->n_kv_heads != s0->n_kv_heads ||
            s->head_dim != s0->head_dim || s->ffn_dim != s0->ffn_dim)
            uniform = 0;
    }
    if (uniform) {
        heads = c->layers[0].n_heads;
        kv = c->layers[0].n_kv_heads;
        hd = c->layers[0].head_dim;
        ffn = c->layers[0].ffn_dim;
    } else if (c->layers) { /* fill unknown defaults from the first layer that has the module */
        for (int i = 0; i < c->n_layers; i++) {
            const lop_layer_shape *s = &c->layers[i];
            if (heads <= 0 && s->n_heads > 0) heads = s->n_heads, kv = s->n_kv_heads;
            if (hd <= 0 && s->n_heads > 0) hd = s->head_dim;
            if (ffn <= 0 && s->ffn_dim > 0) ffn = s->ffn_dim;
        }
    }
    if (hd <= 0 && heads > 0) hd = c->dim / heads;
    cJSON *o = cJSON_CreateObject();
    cJSON *arch = o ? cJSON_AddArrayToObject(o, "architectures") : NULL;
    int ok = arch && cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    const char *dt = c->dtype == LOP_BF16 ? "bfloat16" : c->dtype == LOP_F16 ? "float16" : "float32";
    ok = ok && cJSON_AddBoolToObject(o, "attention_bias", x && x->attention_bias) &&
         add_float(o, "attention_dropout", 0.0f) && add_token(o, "bos_token_id", c->bos_id) &&
         cJSON_AddStringToObject(o, "dtype", dt) && add_token(o, "eos_token_id", c->eos_id) &&
         add_int(o, "head_dim", hd) && cJSON_AddStringToObject(o, "hidden_act", "silu") &&
         add_int(o, "hidden_size", c->dim) && add_float(o, "initializer_range", 0.02f) &&
         add_int(o, "intermediate_size", ffn) && add_int(o, "max_position_embeddings", c->max_seq_len) &&
         cJSON_AddBoolToObject(o, "mlp_bias", x && x->mlp_bias) && cJSON_AddStringToObject(o, "model_type", "llama") &&
         add_int(o, "num_attention_heads", heads) && add_int(o, "num_hidden_layers", c->n_layers) &&
         add_int(o, "num_key_value_heads", kv) && add_int(o, "pretraining_tp", 1) &&
         add_float(o, "rms_norm_eps", c->norm_eps);
    /* RoPE twice: rope_parameters for transformers 5, rope_theta + rope_scaling for transformers 4 */
    cJSON *rp = ok ? cJSON_AddObjectToObject(o, "rope_parameters") : NULL;
    ok = rp != NULL;
    if (ok && c->rope_scaling.type == LOP_ROPE_LLAMA3) ok = add_llama3(rp, &c->rope_scaling);
    ok = ok && add_float(rp, "rope_theta", c->rope_theta) &&
         cJSON_AddStringToObject(rp, "rope_type", c->rope_scaling.type == LOP_ROPE_LLAMA3 ? "llama3" : "default");
    if (ok && c->rope_scaling.type == LOP_ROPE_LLAMA3) {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        ok = rs && add_llama3(rs, &c->rope_scaling) && cJSON_AddStringToObject(rs, "rope_type", "llama3");
    } else {
        ok = ok && cJSON_AddNullToObject(o, "rope_scaling");
    }
    ok = ok && add_float(o, "rope_theta", c->rope_theta) &&
         cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_embeddings != 0) &&
         cJSON_AddStringToObject(o, "torch_dtype", dt) && cJSON_AddBoolToObject(o, "use_cache", 1) &&
         add_int(o, "vocab_size", c->vocab_size);
    if (ok && c->layers && !uniform) {
        cJSON *ll = cJSON_AddArrayToObject(o, "lop_layers");
        ok = ll != NULL;
        for (int i = 0; ok && i < c->n_layers; i++) {
            const lop_layer_shape *s = &c->layers[i];
            cJSON *e = cJSON_CreateObject();
            ok = e && cJSON_AddItemToArray(ll, e) && add_int(e, "num_attention_heads", s->n_heads) &&
                 add_int(e, "num_key_value_heads", s->n_heads ? s->n_kv_heads : 0) &&
                 add_int(e, "head_dim", s->head_dim > 0 ? s->head_dim : hd) &&
                 add_int(e, "intermediate_size", s->ffn_dim);
        }
    }
    if (!ok) {
        cJSON_Delete(o);
        lop_fail(LOP_ERR_OOM, "out of memory building config.json");
        return NULL;
    }
    return o;
}

/* cJSON indents with tabs and puts a tab after ':'; HF writes 2-space indents. Tabs never occur
 * inside printed strings (cJSON escapes them), so this rewrite is safe. */
static char *reindent(const char *s) {
    size_t n = 0;
    for (const char *p = s; *p; p++) n += *p == '\t' ? 2 : 1;
    char *out = malloc(n + 2);
    if (!out) return NULL;
    char *q = out;
    int line_start = 1;
    for (const char *p = s; *p; p++) {
        if (*p == '\t') {
            if (line_start) *q++ = ' ', *q++ = ' ';
            else *q++ = ' ';
            continue;
        }
        line_start = *p == '\n';
        *q++ = *p;
    }
    *q++ = '\n';
    *q = 0;
    return out;
}

lop_status lop_hf_write_config(const char *path, const lop_config *c, const lop_hf_extra *x) {
    cJSON *o = lop_hf_config_to_json(c, x);
    if (!o) return lop_fail(LOP_ERR_OOM, "%s: out of memory building config.json", path);
    char *js = cJSON_Print(o);
    cJSON_Delete(o);
    char *txt = js ? reindent(js) : NULL;
    free(js);
    if (!txt) return lop_fail(LOP_ERR_OOM, "%s: out of memory printing config.json", path);
    lop_status st = lop_write_file_atomic(path, txt, strlen(txt));
    free(txt);
    return st;
}
