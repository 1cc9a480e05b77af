/* A JSON object under construction that remembers whether any step failed (see json_builder.h). */
#include "proto/json_builder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_builder jb_new(void) {
    json_builder b = {json_object(), false, NULL};
    if (b.obj == NULL) b.failed = true;
    return b;
}

/* Steals value; json_object_set_new releases it on every failure path, NULL included. */
void jb_put(json_builder *b, const char *key, json_t *value) {
    if (b->text) {
        /* a nested value in a text object: rare (no hot message has one), so it goes through
         * jansson with the flags the server dumps everything with */
        char *dumped =
            value ? json_dumps(value, JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY)
                  : NULL;
        json_decref(value);
        if (dumped == NULL) {
            b->text->failed = true;
            return;
        }
        jt_key(b->text, key);
        jt_raw(b->text, dumped, strlen(dumped));
        free(dumped);
        return;
    }
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
    if (b->text) {
        jt_key(b->text, key);
        jt_string(b->text, s ? s : "");
        return;
    }
    jb_put(b, key, jb_string(s ? s : ""));
}

void jb_null(json_builder *b, const char *key) {
    if (b->text) {
        jt_key(b->text, key);
        jt_raw(b->text, "null", 4);
        return;
    }
    jb_put(b, key, json_null());
}

/* A date field: null when the engine holds none. */
void jb_date(json_builder *b, const char *key, const char *s) {
    if (s && s[0])
        jb_str(b, key, s);
    else
        jb_null(b, key);
}

json_t *jb_real_value(double v) {
    if (!isfinite(v)) return json_null();
    return json_real(v == 0 ? 0.0 : v); /* no "-0.0" */
}

void jb_real(json_builder *b, const char *key, double v) {
    if (b->text) {
        jt_key(b->text, key);
        jt_real(b->text, v);
        return;
    }
    jb_put(b, key, jb_real_value(v));
}

void jb_int(json_builder *b, const char *key, int64_t v) {
    if (b->text) {
        jt_key(b->text, key);
        jt_int(b->text, v);
        return;
    }
    jb_put(b, key, json_integer((json_int_t)v));
}

void jb_bool(json_builder *b, const char *key, bool v) {
    if (b->text) {
        jt_key(b->text, key);
        jt_raw(b->text, v ? "true" : "false", v ? 4 : 5);
        return;
    }
    jb_put(b, key, json_boolean(v));
}

json_t *jb_done(json_builder *b) {
    if (!b->failed) return b->obj;
    json_decref(b->obj);
    return NULL;
}

json_builder jb_text(json_text *t) {
    json_builder b = {NULL, false, t};
    jt_raw(t, "{", 1);
    return b;
}

bool jb_end(json_builder *b) {
    jt_raw(b->text, "}", 1);
    return !b->text->failed;
}

/* ==========================================================================================
 * JSON text
 * ========================================================================================== */

void jt_init(json_text *t) {
    t->buf = NULL;
    t->len = t->cap = 0;
    t->failed = false;
}

void jt_free(json_text *t) {
    free(t->buf);
    jt_init(t);
}

char *jt_take(json_text *t, size_t *len) {
    char *out = t->failed ? NULL : t->buf;
    if (out == NULL) free(t->buf);
    if (len) *len = out ? t->len : 0;
    jt_init(t);
    return out;
}

/* Room for n more bytes and the terminating NUL. */
static bool jt_reserve(json_text *t, size_t n) {
    if (t->failed) return false;
    if (t->len + n + 1 <= t->cap) return true;
    size_t cap = t->cap ? t->cap : 1024; /* an order or an account update fits at once */
    while (cap < t->len + n + 1)
        cap *= 2;
    char *p = realloc(t->buf, cap);
    if (p == NULL) {
        t->failed = true;
        return false;
    }
    t->buf = p;
    t->cap = cap;
    return true;
}

void jt_raw(json_text *t, const char *s, size_t n) {
    if (!jt_reserve(t, n)) return;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

void jt_key(json_text *t, const char *key) {
    size_t k = strlen(key);
    if (!jt_reserve(t, k + 4)) return;
    char *p = t->buf + t->len;
    if (t->len > 0 && t->buf[t->len - 1] != '{') *p++ = ',';
    *p++ = '"';
    memcpy(p, key, k);
    p += k;
    *p++ = '"';
    *p++ = ':';
    t->len = (size_t)(p - t->buf);
    t->buf[t->len] = '\0';
}

/* One character of a repaired string, escaped as jansson escapes it: '"', '\\' and control
 * characters; everything else, UTF-8 included, as is. */
static void jt_escaped_ascii(json_text *t, unsigned char c) {
    char seq[8];
    const char *text = seq;
    size_t n = 2;
    switch (c) {
        case '"':
            text = "\\\"";
            break;
        case '\\':
            text = "\\\\";
            break;
        case '\b':
            text = "\\b";
            break;
        case '\f':
            text = "\\f";
            break;
        case '\n':
            text = "\\n";
            break;
        case '\r':
            text = "\\r";
            break;
        case '\t':
            text = "\\t";
            break;
        default:
            if (c >= 0x20) {
                seq[0] = (char)c;
                n = 1;
            } else {
                n = (size_t)snprintf(seq, sizeof seq, "\\u%04X", (unsigned)c);
            }
            break;
    }
    jt_raw(t, text, n);
}

void jt_string(json_text *t, const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s), i = 0;
    bool truncated = false;
    jt_raw(t, "\"", 1);
    while (i < len) {
        /* the common case: a run of printable ASCII that needs no escape, copied at once */
        size_t run = i;
        while (run < len && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i) {
            jt_raw(t, s + i, run - i);
            i = run;
            continue;
        }
        size_t n = utf8_sequence(u + i, len - i, &truncated);
        if (n == 0 && truncated) break; /* the cut last character is dropped, as in jb_string */
        if (n == 0) {
            jt_raw(t, "?", 1);
            i++;
        } else if (n == 1) {
            jt_escaped_ascii(t, u[i]);
            i++;
        } else {
            jt_raw(t, s + i, n);
            i += n;
        }
    }
    jt_raw(t, "\"", 1);
}

/* Decimal digits of v into the end of buf[24]; returns where they start. */
static char *u64_digits(uint64_t v, char *end) {
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

void jt_int(json_text *t, int64_t v) {
    char buf[24], *end = buf + sizeof buf;
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *p = u64_digits(mag, end);
    if (v < 0) *--p = '-';
    jt_raw(t, p, (size_t)(end - p));
}

/* "%.15g" of v with jansson's adjustments (a ".0" when the text has neither '.' nor 'e', no '+'
 * or leading zeros in the exponent): the slow path, through printf. */
static size_t real_printf(double v, char *out, size_t cap) {
    char tmp[64];
    int k = snprintf(tmp, sizeof tmp, "%.15g", v);
    if (k < 0 || (size_t)k >= sizeof tmp) return 0;
    size_t n = 0;
    bool point = false;
    for (int i = 0; i < k && n + 3 < cap; i++) {
        char c = tmp[i];
        if (c == '.') point = true;
        if (c == 'e') {
            point = true;
            out[n++] = 'e';
            i++;
            if (tmp[i] == '-') out[n++] = '-';
            if (tmp[i] == '-' || tmp[i] == '+') i++;
            while (i < k - 1 && tmp[i] == '0')
                i++;
            for (; i < k && n + 1 < cap; i++)
                out[n++] = tmp[i];
            break;
        }
        out[n++] = c;
    }
    if (!point) {
        out[n++] = '.';
        out[n++] = '0';
    }
    return n;
}

/* The 15 significant digits printf's "%.15g" gives for a, 1e-4 <= a < 1e15: *q in
 * [10^14, 10^15) and *x, the decimal exponent of its first digit. Exact: a = m / 2^shift with m
 * a 53-bit integer, and m * 10^k (k <= 19) fits in 128 bits, so q = round(a * 10^k) is computed
 * with the exact remainder and rounded as glibc rounds, to nearest with ties to even. false when
 * out of that range. */
static bool digits15(double a, uint64_t *q_out, int *x_out) {
    static const uint64_t p10[20] = {1ULL,
                                     10ULL,
                                     100ULL,
                                     1000ULL,
                                     10000ULL,
                                     100000ULL,
                                     1000000ULL,
                                     10000000ULL,
                                     100000000ULL,
                                     1000000000ULL,
                                     10000000000ULL,
                                     100000000000ULL,
                                     1000000000000ULL,
                                     10000000000000ULL,
                                     100000000000000ULL,
                                     1000000000000000ULL,
                                     10000000000000000ULL,
                                     100000000000000000ULL,
                                     1000000000000000000ULL,
                                     10000000000000000000ULL};
    int e;
    double f = frexp(a, &e); /* a = f * 2^e, f in [0.5, 1) */
    uint64_t m = (uint64_t)ldexp(f, 53);
    int shift = 53 - e; /* a = m / 2^shift; 3 <= shift <= 67 in this range */
    /* a is in [2^(e-1), 2^e): its decimal exponent is this or one more (the loop finds out) */
    int x = (int)floor((e - 1) * 0.30102999566398120);
    for (int tries = 0; tries < 3; tries++) {
        int k = 14 - x;
        if (k < 0 || k > 19) return false;
        unsigned __int128 n = (unsigned __int128)m * p10[k];
        unsigned __int128 q = n >> shift;
        unsigned __int128 rem = n - (q << shift), half = (unsigned __int128)1 << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        if (q >= p10[15]) { /* the estimate was low, or the rounding carried to a 16th digit */
            x++;
            continue;
        }
        if (q < p10[14]) { /* cannot happen with the estimate above; kept as a guard */
            x--;
            continue;
        }
        *q_out = (uint64_t)q;
        *x_out = x;
        return true;
    }
    return false;
}

/* "%.15g" of a finite v as jansson writes it (see real_printf), without printf for the values
 * money and prices take: "%g" writes the 15 digits in plain notation when the exponent is
 * -4..14, without trailing zeros, and jansson adds ".0" to a whole number. Other magnitudes go
 * through printf. */
static size_t real_text(double v, char *out, size_t cap) {
    if (v == 0) {
        memcpy(out, "0.0", 3);
        return 3;
    }
    double a = fabs(v);
    uint64_t q;
    int x;
    if (!(a >= 1e-4 && a < 1e15) || !digits15(a, &q, &x) || x < -4 || x > 14)
        return real_printf(v, out, cap);
    char digits[16];
    for (int i = 14; i >= 0; i--) {
        digits[i] = (char)('0' + q % 10);
        q /= 10;
    }
    int last = 14; /* the last significant digit: trailing zeros are dropped */
    while (last > 0 && digits[last] == '0')
        last--;
    char *p = out;
    if (v < 0) *p++ = '-';
    if (x >= 0) {
        memcpy(p, digits, (size_t)x + 1);
        p += x + 1;
        *p++ = '.';
        if (last > x) {
            memcpy(p, digits + x + 1, (size_t)(last - x));
            p += last - x;
        } else {
            *p++ = '0';
        }
    } else {
        *p++ = '0';
        *p++ = '.';
        for (int i = 0; i < -x - 1; i++)
            *p++ = '0';
        memcpy(p, digits, (size_t)last + 1);
        p += last + 1;
    }
    return (size_t)(p - out);
}

void jt_real(json_text *t, double v) {
    if (!isfinite(v)) {
        jt_raw(t, "null", 4);
        return;
    }
    char buf[64];
    size_t n = real_text(v == 0 ? 0.0 : v, buf, sizeof buf);
    if (n == 0) {
        t->failed = true;
        return;
    }
    jt_raw(t, buf, n);
}
