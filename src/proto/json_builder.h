/* Building jansson objects field by field without checking every call: the builder remembers a
 * failure and jb_done reports it once. Strings are repaired to valid UTF-8 rather than refused,
 * reals that are not finite become null and -0.0 becomes 0.0, so every encoder of the server
 * writes values the same way.
 *
 * The same field list can also be written straight to JSON text (jb_text): the hot messages of
 * the server (the order of a REST response, the WebSocket order_response and the pushes of each
 * order) were mostly jansson allocation and serialisation on the engine thread (see
 * docs/BENCHMARKS.md, "Server"). The text is byte for byte what json_dumps(JSON_COMPACT |
 * JSON_REAL_PRECISION(15)) gives for the object the jansson builder makes: same keys in the same
 * order, same string repairs and escapes, same number formatting. */
#ifndef QAEX_PROTO_JSON_BUILDER_H
#define QAEX_PROTO_JSON_BUILDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* JSON text under construction: a NUL-terminated malloc'ed buffer that remembers a failed
 * allocation (every later write is then ignored). */
typedef struct json_text {
    char *buf;
    size_t len, cap;
    bool failed;
} json_text;

typedef struct json_builder {
    json_t *obj;
    bool failed;
    json_text *text; /* non-NULL: fields are written to this text instead of obj */
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
void jb_null(json_builder *b, const char *key);
/* The object, or NULL (and everything released) when a step failed. Not for jb_text builders. */
json_t *jb_done(json_builder *b);

/* A builder that writes an object to t from its current end ("{" now, "}" at jb_end): at the
 * start of t, or as the value after a jt_key. jb_put dumps the value it is given. */
json_builder jb_text(json_text *t);
/* Closes a jb_text object; false when t has failed. */
bool jb_end(json_builder *b);

/* A JSON string of s with malformed UTF-8 repaired; NULL only when out of memory. */
json_t *jb_string(const char *s);
/* A JSON real, null when not finite. */
json_t *jb_real_value(double v);

/* ---- JSON text ---- */

/* An empty text; nothing is allocated before the first write. */
void jt_init(json_text *t);
void jt_free(json_text *t);
/* The text (the caller frees it) and its length, or NULL (and t released) when a write failed.
 * t is empty afterwards. */
char *jt_take(json_text *t, size_t *len);
void jt_raw(json_text *t, const char *s, size_t n);
/* `"key":`, after a comma unless it is the first member of the enclosing object. key is
 * written as is: the server's keys are plain ASCII. */
void jt_key(json_text *t, const char *key);
/* A string (repaired as jb_string repairs it), a real (null when not finite, -0.0 as 0.0, the
 * digits of "%.15g" as jansson writes them), an integer. */
void jt_string(json_text *t, const char *s);
void jt_real(json_text *t, double v);
void jt_int(json_text *t, int64_t v);

#endif
