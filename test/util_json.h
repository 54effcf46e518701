/*
 * util_json.h: a small JSON parser for tests that check machine-readable
 * output (shmkit stat --json, the demo's /status). Strict: the whole input
 * must be one JSON value, and strings valid UTF-8 (RFC 8259: raw bytes
 * >= 0x80 one valid sequence each, \u escapes decoded to UTF-8, surrogates
 * only in pairs); anything else is a parse error.
 */
#ifndef UTIL_JSON_H
#define UTIL_JSON_H

#include <stddef.h>

typedef enum { TJ_NULL, TJ_BOOL, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ } tj_type_t;

typedef struct tj_s {
    tj_type_t type;
    double num;      /* TJ_NUM, TJ_BOOL (0/1) */
    char *str;       /* TJ_STR (decoded) */
    char *key;       /* member name when inside an object */
    struct tj_s *kids;
    size_t nkids;
} tj_t;

/* Parse; NULL on error with a message in err (if given). */
tj_t *tj_parse(const char *text, char *err, size_t errsz);
void tj_free(tj_t *v);

/* Look up a dotted path: "zones.0.slab.pages_free" (numbers index arrays).
 * NULL if absent. */
const tj_t *tj_get(const tj_t *v, const char *path);
/* Shorthands: the number / string at path, or def / NULL. */
double tj_num(const tj_t *v, const char *path, double def);
const char *tj_str(const tj_t *v, const char *path);

/* Length of the valid UTF-8 sequence at p (1 for ASCII, NUL included), 0
 * if p does not start one. */
size_t tj_utf8_len(const char *p);

#endif
