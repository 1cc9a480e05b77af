/* Building jansson objects field by field without checking every call: the builder remembers a
 * failure and jb_done reports it once. Strings are repaired to valid UTF-8 rather than refused,
 * reals that are not finite become null and -0.0 becomes 0.0, so every encoder of the server
 * writes values the same way. */
#ifndef QAEX_PROTO_JSON_BUILDER_H
#define QAEX_PROTO_JSON_BUILDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct json_builder {
    json_t *obj;
    bool failed;
} json_builder;

json_builder jb_new(void);
/* Steals value (NULL counts as a failure). */
void jb_put(json_builder *b, const char *key, json_t *value);
void jb_str(json_builder *b, const char *key, const char *s);
/* A date field: null when empty. */
void jb_date(json_builder *b, const char *key, const char *s);
void jb_real(json_builder *b, const char *key, double v);
void jb_int(json_builder *b, const char *key, int64_t v);
void jb_bool(json_builder *b, const char *key, bool v);
/* The object, or NULL (and everything released) when a step failed. */
json_t *jb_done(json_builder *b);

/* A JSON string of s with malformed UTF-8 repaired; NULL only when out of memory. */
json_t *jb_string(const char *s);
/* A JSON real, null when not finite. */
json_t *jb_real_value(double v);

#endif
