/* JSON helpers for tests; see json_util.h. */
#include "json_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "io/file.h"

cJSON *json_load(const char *path) {
    char *s;
    size_t n;
    if (lop_read_file(path, &s, &n) != LOP_OK) fail_msg("cannot read %s", path);
    cJSON *j = cJSON_Parse(s);
    free(s);
    if (!j) fail_msg("%s: not valid JSON", path);
    return j;
}

cJSON *json_at(const cJSON *o, const char *path) {
    char key[128];
    const char *p = path;
    const cJSON *cur = o;
    while (*p) {
        size_t l = strcspn(p, ".");
        if (l >= sizeof key) fail_msg("json path too long");
        memcpy(key, p, l);
        key[l] = 0;
        cur = cJSON_GetObjectItemCaseSensitive(cur, key);
        if (!cur) fail_msg("json: missing '%s' (in %s)", key, path);
        p += l + (p[l] == '.');
    }
    return (cJSON *)cur;
}

double json_num(const cJSON *o, const char *path) {
    cJSON *v = json_at(o, path);
    if (!cJSON_IsNumber(v)) fail_msg("json: '%s' is not a number", path);
    return v->valuedouble;
}

int32_t *json_ids(const cJSON *arr, int *n) {
    if (!cJSON_IsArray(arr)) fail_msg("json: expected an array of ids");
    *n = cJSON_GetArraySize(arr);
    int32_t *ids = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *ids);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) ids[i++] = (int32_t)e->valuedouble;
    return ids;
}
