/* HF directory loader: config.json (io/hf_config) + model.safetensors or a sharded checkpoint
 * (model.safetensors.index.json), mapped zero-copy into lop_weights by HF tensor name.
 * Why the checks here: the tensors, not config.json, are the truth for per-layer shapes (pruning
 * tools leave config stale), so this file maps names strictly (duplicates, out-of-range layer
 * indices, unsupported dtypes are errors) and lop_model_derive_shapes validates the shapes.
 *
 * shapes_only: every file is still mapped to read its header, but tensors get data = NULL, the
 * mappings are released before returning and weights_loaded stays 0; shapes and dtypes are exact. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/status.h"
#include "io/file.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/model.h"

typedef struct hf_ctx {
    lop_model *m;
    const char *dir;
    int shapes_only;
} hf_ctx;

/* ---- name -> slot ------------------------------------------------------------------------- */
static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Finds the lop_tensor an HF name maps to. *slot = NULL with LOP_OK means "not ours, ignore". */
static lop_status find_slot(lop_model *m, const char *file, const char *name, lop_tensor **slot) {
    *slot = NULL;
    lop_weights *w = &m->w;
    if (!strcmp(name, "model.embed_tokens.weight")) *slot = &w->tok_emb;
    else if (!strcmp(name, "model.norm.weight")) *slot = &w->out_norm;
    else if (!strcmp(name, "lm_head.weight")) *slot = &w->lm_head;
    if (*slot) return LOP_OK;
    if (ends_with(name, "rotary_emb.inv_freq")) return LOP_OK; /* old checkpoints store the RoPE buffer */
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1) != 0 || name[sizeof pre - 1] < '0' || name[sizeof pre - 1] > '9') {
        LOP_DEBUG("%s: ignoring tensor '%s'", file, name);
        return LOP_OK;
    }
    const char *p = name + sizeof pre - 1;
    int64_t idx = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        if (idx < INT32_MAX) idx = idx * 10 + (*p - '0');
    if (*p != '.') {
        LOP_DEBUG("%s: ignoring tensor '%s'", file, name);
        return LOP_OK;
    }
    if (idx >= m->cfg.n_layers)
        return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s' is for layer %lld but config.json says %d layers", file, name,
                        (long long)idx, m->cfg.n_layers);
    const char *suffix = p + 1;
    lop_layer_weights *L = &m->w.layers[idx];
#define X(f, sfx)                                                                                                      \
    if (!strcmp(suffix, sfx)) {                                                                                        \
        *slot = &L->f;                                                                                                 \
        return LOP_OK;                                                                                                 \
    }
    LOP_LAYER_TENSORS(X)
#undef X
    LOP_DEBUG("%s: ignoring tensor '%s'", file, name);
    return LOP_OK;
}

/* Fills *dst from a safetensors entry: dtype, shape, zero-copy data (copied only when misaligned). */
static lop_status set_tensor(hf_ctx *cx, const char *file, const lop_st_tensor *t, lop_tensor *dst) {
    if (dst->present) return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s' appears twice in the checkpoint", file, t->name);
    lop_dtype dt;
    if (!lop_st_to_lop_dtype(t->dtype, &dt))
        return lop_fail(LOP_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (lop reads F32, F16 and BF16 weights)", file,
                        t->name, lop_st_dtype_name(t->dtype));
    if (t->ndim != 1 && t->ndim != 2)
        return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s' has %d dims (expected 1 or 2)", file, t->name, t->ndim);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] > INT32_MAX)
            return lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s' dimension %d is implausibly large", file, t->name, d);
    dst->dtype = dt;
    dst->ndim = t->ndim;
    dst->shape[0] = t->shape[0];
    dst->shape[1] = t->ndim == 2 ? t->shape[1] : 1;
    dst->data = NULL;
    if (!cx->shapes_only && t->nbytes) {
        if ((uintptr_t)t->data % lop_dtype_size(dt) == 0) {
            dst->data = (void *)t->data;
        } else { /* the format does not promise alignment; typed reads need it */
            void *copy = lop_model_malloc(cx->m, t->nbytes, t->name);
            if (!copy) return LOP_ERR_OOM;
            memcpy(copy, t->data, t->nbytes);
            dst->data = copy;
        }
    }
    dst->present = 1;
    return LOP_OK;
}

/* Opens a safetensors file; unless shapes_only, the model takes its mapping. */
static lop_status open_st(hf_ctx *cx, const char *path, lop_st_file *f) {
    LOP_TRY(lop_st_open(f, path));
    if (cx->shapes_only) return LOP_OK;
    lop_mapped map;
    lop_st_detach_map(f, &map);
    if (map.data && lop_model_own(cx->m, (void *)map.data, map.size, 1) != LOP_OK) {
        lop_unmap_file(&map);
        lop_st_close(f);
        return lop_fail(LOP_ERR_OOM, "%s: out of memory", path);
    }
    return LOP_OK;
}

/* ---- single file -------------------------------------------------------------------------- */
static lop_status load_single(hf_ctx *cx, const char *path) {
    lop_st_file f;
    LOP_TRY(open_st(cx, path, &f));
    lop_status st = LOP_OK;
    for (int i = 0; i < f.n_tensors && st == LOP_OK; i++) {
        lop_tensor *slot;
        st = find_slot(cx->m, path, f.tensors[i].name, &slot);
        if (st == LOP_OK && slot) st = set_tensor(cx, path, &f.tensors[i], slot);
    }
    lop_st_close(&f);
    return st;
}

/* ---- sharded ------------------------------------------------------------------------------ */
static int plain_file_name(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static lop_status load_shard(hf_ctx *cx, const char *index_path, const cJSON *wm, const char *shard,
                             const char *first_tensor) {
    char *path = lop_path_join(cx->dir, shard);
    if (!path) return lop_fail(LOP_ERR_OOM, "out of memory");
    if (!lop_file_exists(path)) {
        lop_status st = lop_fail(LOP_ERR_IO, "%s: shard '%s' (holding tensor '%s') not found: %s", index_path, shard,
                                 first_tensor, path);
        free(path);
        return st;
    }
    lop_st_file f;
    lop_status st = open_st(cx, path, &f);
    if (st != LOP_OK) {
        free(path);
        return st;
    }
    for (const cJSON *e = wm->child; e && st == LOP_OK; e = e->next) {
        if (strcmp(e->valuestring, shard) != 0) continue;
        const lop_st_tensor *t = lop_st_find(&f, e->string);
        if (!t) {
            st = lop_fail(LOP_ERR_FORMAT, "%s: tensor '%s' is listed for shard '%s' but %s does not contain it",
                          index_path, e->string, shard, path);
            break;
        }
        lop_tensor *slot;
        st = find_slot(cx->m, path, t->name, &slot);
        if (st == LOP_OK && slot) st = set_tensor(cx, path, t, slot);
    }
    lop_st_close(&f);
    free(path);
    return st;
}

static lop_status load_sharded(hf_ctx *cx, const char *index_path) {
    cJSON *root;
    LOP_TRY(lop_json_read_file(index_path, &root));
    lop_status st = LOP_OK;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        st = lop_fail(LOP_ERR_FORMAT, "%s: field 'weight_map' missing or not an object", index_path);
        goto done;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !plain_file_name(e->valuestring)) {
            st = lop_fail(LOP_ERR_FORMAT, "%s: weight_map entry for tensor '%s' is not a file name in the directory",
                          index_path, e->string);
            goto done;
        }
    }
    /* each shard once, in order of first appearance */
    for (const cJSON *e = wm->child; e && st == LOP_OK; e = e->next) {
        int seen = 0;
        for (const cJSON *p = wm->child; p != e && !seen; p = p->next) seen = !strcmp(p->valuestring, e->valuestring);
        if (!seen) st = load_shard(cx, index_path, wm, e->valuestring, e->string);
    }
done:
    cJSON_Delete(root);
    return st;
}

/* ---- checks after loading ----------------------------------------------------------------- */
static int layer_has_tensors(const lop_layer_weights *L) {
    int any = 0;
#define X(f, sfx) any |= L->f.present;
    LOP_LAYER_TENSORS(X)
#undef X
    return any;
}

/* lop_layers (when config.json has it) must agree with what the tensors say. */
static lop_status check_lop_layers(const lop_model *m, const char *cfg_path, const lop_layer_shape *want) {
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const lop_layer_shape *e = &want[i], *s = &m->cfg.layers[i];
        if (e->n_heads != s->n_heads)
            return lop_fail(LOP_ERR_FORMAT,
                            "%s: field 'lop_layers[%d].num_attention_heads' is %d but the tensors of layer %d have %d "
                            "(self_attn.q_proj.weight)", cfg_path, i, e->n_heads, i, s->n_heads);
        if (e->n_heads && e->n_kv_heads != s->n_kv_heads)
            return lop_fail(LOP_ERR_FORMAT,
                            "%s: field 'lop_layers[%d].num_key_value_heads' is %d but the tensors of layer %d have %d "
                            "(self_attn.k_proj.weight)", cfg_path, i, e->n_kv_heads, i, s->n_kv_heads);
        if (e->ffn_dim != s->ffn_dim)
            return lop_fail(LOP_ERR_FORMAT,
                            "%s: field 'lop_layers[%d].intermediate_size' is %d but the tensors of layer %d have %d "
                            "(mlp.gate_proj.weight)", cfg_path, i, e->ffn_dim, i, s->ffn_dim);
    }
    return LOP_OK;
}

static lop_status load_hf(lop_model *m, const char *dir, const lop_load_opts *o, const char *cfg_path,
                          lop_hf_extra *x, char **weights_path) {
    LOP_TRY(lop_hf_read_config(cfg_path, &m->cfg, x));
    int config_vocab = m->cfg.vocab_size;
    LOP_TRY(lop_model_alloc_layers(m, m->cfg.n_layers));
    if (x->lop_layers)
        for (int i = 0; i < m->cfg.n_layers; i++) m->cfg.layers[i].head_dim = x->lop_layers[i].head_dim;

    hf_ctx cx = {m, dir, o->shapes_only};
    char *single = lop_path_join(dir, "model.safetensors"), *index = lop_path_join(dir, "model.safetensors.index.json");
    if (!single || !index) {
        free(single);
        free(index);
        return lop_fail(LOP_ERR_OOM, "out of memory");
    }
    lop_status st;
    if (lop_file_exists(single)) {
        st = load_single(&cx, single);
        *weights_path = single;
        free(index);
    } else if (lop_file_exists(index)) {
        st = load_sharded(&cx, index);
        *weights_path = index;
        free(single);
    } else {
        char *bin = lop_path_join(dir, "pytorch_model.bin");
        int has_bin = bin && lop_file_exists(bin);
        free(bin);
        st = lop_fail(has_bin ? LOP_ERR_UNSUPPORTED : LOP_ERR_IO,
                      "%s: no model.safetensors or model.safetensors.index.json%s", dir,
                      has_bin ? " (pytorch_model.bin is not supported; convert to safetensors)" : "");
        free(single);
        free(index);
    }
    if (st != LOP_OK) return st;
    const char *wp = *weights_path;

    if (m->w.tok_emb.present && config_vocab > 0 && m->w.tok_emb.shape[0] != config_vocab)
        return lop_fail(LOP_ERR_FORMAT, "%s: field 'vocab_size' is %d but tensor 'model.embed_tokens.weight' has %lld rows",
                        cfg_path, config_vocab, (long long)m->w.tok_emb.shape[0]);
    for (int i = 0; i < m->cfg.n_layers; i++) {
        int declared_empty = x->lop_layers && !x->lop_layers[i].n_heads && !x->lop_layers[i].ffn_dim;
        if (!layer_has_tensors(&m->w.layers[i]) && !declared_empty)
            return lop_fail(LOP_ERR_FORMAT, "%s: no tensors for layer %d ('model.layers.%d.*'; config.json says %d layers)",
                            wp, i, i, m->cfg.n_layers);
    }
    LOP_TRY(lop_model_derive_shapes(m, wp));
    if (x->lop_layers) LOP_TRY(check_lop_layers(m, cfg_path, x->lop_layers));
    m->cfg.dtype = m->w.tok_emb.dtype; /* the stored weights' dtype, whatever config.json claims */
    m->weights_loaded = !o->shapes_only;
    return LOP_OK;
}

lop_status lop_load_hf(lop_model *m, const char *dir, const lop_load_opts *o) {
    lop_load_opts def = {0};
    if (!o) o = &def;
    char *cfg_path = lop_path_join(dir, "config.json"), *weights_path = NULL;
    if (!cfg_path) return lop_fail(LOP_ERR_OOM, "out of memory");
    lop_hf_extra x = {0};
    lop_status st = load_hf(m, dir, o, cfg_path, &x, &weights_path);
    lop_hf_extra_free(&x);
    free(weights_path);
    free(cfg_path);
    return st;
}
