/* Test support: read a JSON file with cJSON and small typed getters that fail the test loudly. */
#ifndef LOP_TESTS_JSON_UTIL_H
#define LOP_TESTS_JSON_UTIL_H
#include <cJSON.h>
#include <stdint.h>

cJSON *json_load(const char *path);                      /* fails the test when unreadable */
cJSON *json_at(const cJSON *o, const char *dotted_path); /* "a.b.c"; fails when missing */
double json_num(const cJSON *o, const char *dotted_path);
int32_t *json_ids(const cJSON *arr, int *n);             /* malloc'd int array from a JSON array */
#endif
