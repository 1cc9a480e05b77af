/* A JSON object under construction that remembers whether any step failed (see json_builder.h). */
#include "proto/json_builder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

json_builder jb_new(void) {
    json_builder b = {json_object(), false};
    if (b.obj == NULL) b.failed = true;
    return b;
}

/* Steals value; json_object_set_new releases it on every failure path, NULL included. */
void jb_put(json_builder *b, const char *key, json_t *value) {
    if (json_object_set_new(b->obj, key, value) != 0) b->failed = true;
}

/* The length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0. *truncated tells a sequence cut by the end of the
 * string from a malformed one. */
static size_t utf8_sequence(const unsigned char *s, size_t avail, bool *truncated) {
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
    *truncated = false;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (i >= avail) {
            *truncated = true;
            return 0;
        }
        unsigned char min = i == 1 ? lo : 0x80, max = i == 1 ? hi : 0xBF;
        if (s[i] < min || s[i] > max) return 0;
    }
    return n;
}

/* jansson refuses invalid UTF-8. Engine strings normally come from JSON, but a name from the
 * config or a message cut by snprintf may end inside a multi-byte character. Such a string is
 * repaired (a cut final character dropped, any other malformed byte shown as '?') instead of
 * being reported as an allocation failure; a valid string is never altered. */
json_t *jb_string(const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s), i = 0;
    bool truncated = false;
    while (i < len) {
        size_t n = utf8_sequence(u + i, len - i, &truncated);
        if (n == 0) break;
        i += n;
    }
    if (i == len) return json_stringn(s, len); /* valid: NULL here is an allocation failure */

    char *copy = malloc(len + 1);
    if (copy == NULL) return NULL;
    size_t out = 0;
    for (i = 0; i < len;) {
        size_t n = utf8_sequence(u + i, len - i, &truncated);
        if (n == 0 && truncated) break; /* the cut last character */
        if (n == 0) {
            copy[out++] = '?';
            i++;
            continue;
        }
        memcpy(copy + out, s + i, n);
        out += n;
        i += n;
    }
    json_t *v = json_stringn(copy, out);
    free(copy);
    return v;
}

void jb_str(json_builder *b, const char *key, const char *s) {
    jb_put(b, key, jb_string(s ? s : ""));
}

/* A date field: null when the engine holds none. */
void jb_date(json_builder *b, const char *key, const char *s) {
    jb_put(b, key, s && s[0] ? jb_string(s) : json_null());
}

json_t *jb_real_value(double v) {
    if (!isfinite(v)) return json_null();
    return json_real(v == 0 ? 0.0 : v); /* no "-0.0" */
}

void jb_real(json_builder *b, const char *key, double v) {
    jb_put(b, key, jb_real_value(v));
}

void jb_int(json_builder *b, const char *key, int64_t v) {
    jb_put(b, key, json_integer((json_int_t)v));
}

void jb_bool(json_builder *b, const char *key, bool v) {
    jb_put(b, key, json_boolean(v));
}

json_t *jb_done(json_builder *b) {
    if (!b->failed) return b->obj;
    json_decref(b->obj);
    return NULL;
}
