/* Results container and the JSON reader used by lop plot; see results.h. */
#include "bench/results.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/file.h"

const char *lop_cell_status_name(lop_cell_status s) {
    switch (s) {
    case LOP_CELL_OK: return "ok";
    case LOP_CELL_OOM: return "oom";
    case LOP_CELL_OOM_PREDICTED: return "oom-predicted";
    case LOP_CELL_ERROR: return "error";
    case LOP_CELL_SKIPPED: return "skipped";
    }
    return "?";
}

lop_status lop_results_add(lop_results *r, const lop_cell *c) {
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 64;
        lop_cell *n = realloc(r->cells, (size_t)cap * sizeof *n);
        if (!n) return lop_fail(LOP_ERR_OOM, "out of memory (results)");
        r->cells = n;
        r->cap = cap;
    }
    r->cells[r->n++] = *c;
    return LOP_OK;
}

void lop_results_free(lop_results *r) {
    free(r->cells);
    memset(r, 0, sizeof *r);
}

static double num(const cJSON *o, const char *k, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static void str(const cJSON *o, const char *k, char *dst, size_t n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsString(v)) snprintf(dst, n, "%s", v->valuestring);
}

lop_status lop_results_read(const char *path, lop_results *r) {
    char *text;
    LOP_TRY(lop_read_file(path, &text, NULL));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return lop_fail(LOP_ERR_FORMAT, "%s: not valid JSON (expected lop bench results)", path);
    const cJSON *cells = cJSON_GetObjectItemCaseSensitive(root, "cells");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "meta");
    lop_status st = LOP_OK;
    if (!cJSON_IsArray(cells)) st = lop_fail(LOP_ERR_FORMAT, "%s: field 'cells' missing or not an array", path);
    char card[64] = "";
    if (cJSON_IsObject(meta)) str(meta, "card", card, sizeof card);
    int i = 0;
    const cJSON *e;
    const cJSON *list = st == LOP_OK ? cells : NULL;
    cJSON_ArrayForEach(e, list) {
        lop_cell c;
        memset(&c, 0, sizeof c);
        char status[32] = "";
        str(e, "model", c.model, sizeof c.model);
        snprintf(c.card, sizeof c.card, "%s", card);
        str(e, "card", c.card, sizeof c.card);
        str(e, "status", status, sizeof status);
        c.batch = (int)num(e, "batch", 0);
        c.len = (int)num(e, "len", 0);
        if (!c.model[0] || c.batch <= 0 || c.len <= 0) {
            st = lop_fail(LOP_ERR_FORMAT, "%s: cells[%d] needs 'model', 'batch' > 0 and 'len' > 0", path, i);
            break;
        }
        c.status = LOP_CELL_ERROR;
        for (int s = LOP_CELL_OK; s <= LOP_CELL_SKIPPED; s++)
            if (!strcmp(status, lop_cell_status_name((lop_cell_status)s))) c.status = (lop_cell_status)s;
        c.prompt_len = (int)num(e, "prompt_len", 0);
        c.latency_ms = num(e, "latency_ms", -1);
        c.prefill_ms = num(e, "prefill_ms", -1);
        c.decode_step_ms = num(e, "decode_step_ms", -1);
        c.throughput = num(e, "throughput", -1);
        c.util_gpu = num(e, "util_gpu", -1);
        c.util_mem = num(e, "util_mem", -1);
        c.sm_active = num(e, "sm_active", -1);
        c.dram_bw = num(e, "dram_bw", -1);
        c.mem_used_mib = num(e, "mem_used_mib", -1);
        c.mem_planned_mib = num(e, "mem_planned_mib", -1);
        c.bytes_per_step = num(e, "bytes_per_step", -1);
        c.flops_per_step = num(e, "flops_per_step", -1);
        c.mbu = num(e, "mbu", -1);
        c.mfu = num(e, "mfu", -1);
        c.roofline_ms = num(e, "roofline_ms", -1);
        c.runs = (int)num(e, "runs", 0);
        if ((st = lop_results_add(r, &c)) != LOP_OK) break;
        i++;
    }
    cJSON_Delete(root);
    return st;
}
