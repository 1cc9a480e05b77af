/* Strict TOML reader: a recursive-descent parser over a byte buffer with explicit length.
 *
 * Every value is attached to the tree (or freed) as soon as it exists, so an error anywhere
 * only has to free the root. Line and column are computed from byte offsets on demand, which
 * keeps the scanning code free of line bookkeeping. */
#include "app/toml.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds that keep hostile input from exhausting the stack (the tree is at most about
 * MAX_DEPTH * MAX_KEY_PARTS deep, and freeing it recurses) or overflowing counters. */
#define TOML_MAX_DEPTH 32
#define TOML_MAX_KEY_PARTS 32
#define TOML_MAX_DOCUMENT ((size_t)256 * 1024 * 1024)

/* How a table or array came to exist decides what may later extend it (TOML 1.0 rules). */
enum {
    F_IMPLICIT = 1, /* created as a parent by a header ([a.b] creates a): may be defined once */
    F_DEFINED = 2,  /* created by its own [header] */
    F_DOTTED = 4,   /* created by a dotted key (a.b = 1): only dotted keys may extend it */
    F_INLINE = 8,   /* an inline table or inside one: closed */
    F_AOT = 16      /* an array created by [[header]] */
};

typedef struct {
    char *key;
    size_t keylen;
    toml_value *val;
} toml_kv;

struct toml_value {
    toml_type type;
    unsigned flags;
    int line, col;
    union {
        struct {
            char *ptr;
            size_t len;
        } s;
        int64_t i;
        double f;
        bool b;
        struct {
            toml_kv *items;
            size_t n, cap;
        } t;
        struct {
            toml_value **items;
            size_t n, cap;
        } a;
    } u;
};

typedef struct {
    const char *s;
    size_t n, pos;
    char *err;
    size_t errlen;
    bool failed;
    size_t loc_pos; /* cache for locate(): the line/column of byte loc_pos */
    int loc_line, loc_col;
    toml_value *root, *cur;
    int depth;
} parser;

typedef struct {
    char *s;
    size_t len;
    size_t pos;
    bool owned; /* false once the tree has taken the string (it stays valid for messages) */
} keyseg;

typedef struct {
    keyseg *v;
    size_t n, cap;
} keypath;

typedef struct {
    char *p;
    size_t len, cap;
} sbuf;

/* ---------------------------------------------------------------- values */

void toml_free(toml_value *v) {
    if (!v) return;
    switch (v->type) {
        case TOML_TABLE:
            for (size_t i = 0; i < v->u.t.n; i++) {
                free(v->u.t.items[i].key);
                toml_free(v->u.t.items[i].val);
            }
            free(v->u.t.items);
            break;
        case TOML_ARRAY:
            for (size_t i = 0; i < v->u.a.n; i++)
                toml_free(v->u.a.items[i]);
            free(v->u.a.items);
            break;
        case TOML_STRING:
            free(v->u.s.ptr);
            break;
        default:
            break;
    }
    free(v);
}

static toml_kv *table_find(const toml_value *t, const char *key, size_t keylen) {
    for (size_t i = 0; i < t->u.t.n; i++) {
        toml_kv *kv = &t->u.t.items[i];
        if (kv->keylen == keylen && memcmp(kv->key, key, keylen) == 0) return kv;
    }
    return NULL;
}

/* Takes ownership of key and val only on success. */
static int table_add(toml_value *t, char *key, size_t keylen, toml_value *val) {
    if (t->u.t.n == t->u.t.cap) {
        size_t cap = t->u.t.cap ? t->u.t.cap * 2 : 8;
        if (cap > SIZE_MAX / sizeof(toml_kv)) return -1;
        toml_kv *items = realloc(t->u.t.items, cap * sizeof(toml_kv));
        if (!items) return -1;
        t->u.t.items = items;
        t->u.t.cap = cap;
    }
    t->u.t.items[t->u.t.n].key = key;
    t->u.t.items[t->u.t.n].keylen = keylen;
    t->u.t.items[t->u.t.n].val = val;
    t->u.t.n++;
    return 0;
}

/* Takes ownership of val only on success. */
static int array_push(toml_value *a, toml_value *val) {
    if (a->u.a.n == a->u.a.cap) {
        size_t cap = a->u.a.cap ? a->u.a.cap * 2 : 8;
        if (cap > SIZE_MAX / sizeof(toml_value *)) return -1;
        toml_value **items = realloc(a->u.a.items, cap * sizeof(toml_value *));
        if (!items) return -1;
        a->u.a.items = items;
        a->u.a.cap = cap;
    }
    a->u.a.items[a->u.a.n++] = val;
    return 0;
}

/* ---------------------------------------------------------------- errors and positions */

static void locate(parser *p, size_t pos, int *line, int *col) {
    if (pos > p->n) pos = p->n;
    if (pos < p->loc_pos) {
        p->loc_pos = 0;
        p->loc_line = 1;
        p->loc_col = 1;
    }
    for (size_t i = p->loc_pos; i < pos; i++) {
        unsigned char c = (unsigned char)p->s[i];
        if (c == '\n') {
            p->loc_line++;
            p->loc_col = 1;
        } else if ((c & 0xC0) != 0x80) {
            p->loc_col++;
        }
    }
    p->loc_pos = pos;
    *line = p->loc_line;
    *col = p->loc_col;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail_at(parser *p, size_t pos, const char *fmt, ...) {
    if (p->failed) return -1;
    p->failed = true;
    if (p->err && p->errlen) {
        int line, col;
        locate(p, pos, &line, &col);
        int k = snprintf(p->err, p->errlen, "line %d, column %d: ", line, col);
        if (k >= 0 && (size_t)k < p->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + k, p->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

/* "a" or "an" before a type name, so messages read naturally. */
static const char *article(const char *word) {
    return strchr("aeiou", word[0]) ? "an" : "a";
}

static int oom(parser *p) {
    return fail_at(p, p->pos, "out of memory");
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;  /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;  /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

/* A readable name for the character at pos, for "found ..." in messages. */
static const char *describe(const parser *p, size_t pos, char *buf, size_t size) {
    if (pos >= p->n) return "end of file";
    unsigned char c = (unsigned char)p->s[pos];
    if (c == '\n') return "end of line";
    if (c == '\r') return "carriage return";
    if (c >= 0x20 && c < 0x7F) {
        snprintf(buf, size, "'%c'", c);
    } else if (c < 0x80) {
        snprintf(buf, size, "control character U+%04X", c);
    } else {
        size_t l = utf8_len((const unsigned char *)p->s + pos, p->n - pos);
        if (l == 0) {
            snprintf(buf, size, "invalid UTF-8 byte 0x%02X", c);
        } else {
            snprintf(buf, size, "'%.*s'", (int)l, p->s + pos);
        }
    }
    return buf;
}

/* Appends s to buf for a message: printable, at most ~64 bytes, never split inside UTF-8. */
static void fmt_text(char *buf, size_t size, size_t *used, const char *s, size_t len) {
    for (size_t i = 0; i < len && *used + 8 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (*used >= 64) {
            memcpy(buf + *used, "...", 4);
            *used += 3;
            return;
        }
        if (c < 0x20 || c == 0x7F) {
            *used += (size_t)snprintf(buf + *used, size - *used, "\\x%02X", c);
        } else if (c >= 0x80) {
            size_t l = utf8_len((const unsigned char *)s + i, len - i);
            if (l == 0) l = 1;
            if (*used + l + 8 >= size) break;
            memcpy(buf + *used, s + i, l);
            *used += l;
            i += l - 1;
        } else {
            buf[(*used)++] = (char)c;
        }
    }
    buf[*used] = '\0';
}

/* "a.b.c" from the first `count` segments of a key, for messages. */
static const char *fmt_key(char *buf, size_t size, const keypath *k, size_t count) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < count && used + 8 < size; i++) {
        if (i > 0) buf[used++] = '.';
        fmt_text(buf, size, &used, k->v[i].s, k->v[i].len);
    }
    buf[used] = '\0';
    return buf;
}

/* ---------------------------------------------------------------- scanning helpers */

static bool is_digit(int c) {
    return c >= '0' && c <= '9';
}

static bool is_bare(int c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '_' || c == '-';
}

static int peek_at(const parser *p, size_t pos) {
    return pos < p->n ? (unsigned char)p->s[pos] : -1;
}

static int peek(const parser *p) {
    return peek_at(p, p->pos);
}

static void skip_ws(parser *p) {
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
        p->pos++;
}

static bool at_newline(const parser *p) {
    int c = peek(p);
    return c == '\n' || (c == '\r' && peek_at(p, p->pos + 1) == '\n');
}

/* Skips a comment up to (not including) the end of line. */
static int skip_comment(parser *p) {
    if (peek(p) != '#') return 0;
    p->pos++;
    while (p->pos < p->n) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '\n' || at_newline(p)) return 0;
        if ((c < 0x20 && c != '\t') || c == 0x7F) {
            return fail_at(p, p->pos, "control character U+%04X in comment", c);
        }
        if (c >= 0x80) {
            size_t l = utf8_len((const unsigned char *)p->s + p->pos, p->n - p->pos);
            if (l == 0) return fail_at(p, p->pos, "invalid UTF-8 in comment");
            p->pos += l;
        } else {
            p->pos++;
        }
    }
    return 0;
}

/* After a key/value pair or a header only a comment may follow on the line. */
static int expect_line_end(parser *p, const char *after) {
    skip_ws(p);
    if (skip_comment(p)) return -1;
    if (p->pos >= p->n) return 0;
    if (p->s[p->pos] == '\n') {
        p->pos++;
        return 0;
    }
    if (at_newline(p)) {
        p->pos += 2;
        return 0;
    }
    char buf[32];
    return fail_at(p, p->pos, "expected end of line after %s, found %s", after,
                   describe(p, p->pos, buf, sizeof buf));
}

/* Inside arrays: whitespace, newlines and comments. */
static int skip_ws_nl(parser *p) {
    for (;;) {
        skip_ws(p);
        if (peek(p) == '#') {
            if (skip_comment(p)) return -1;
        } else if (peek(p) == '\n') {
            p->pos++;
        } else if (at_newline(p)) {
            p->pos += 2;
        } else {
            return 0;
        }
    }
}

/* ---------------------------------------------------------------- strings */

static int sb_put(sbuf *b, const char *data, size_t len) {
    if (len > SIZE_MAX - b->len - 1) return -1;
    size_t need = b->len + len + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 32;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        char *np = realloc(b->p, cap);
        if (!np) return -1;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

/* Makes sure an empty string still owns a terminated buffer. */
static int sb_finish(sbuf *b) {
    if (b->p) return 0;
    b->p = malloc(1);
    if (!b->p) return -1;
    b->p[0] = '\0';
    b->cap = 1;
    return 0;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int put_codepoint(parser *p, sbuf *b, unsigned long cp) {
    char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return sb_put(b, out, n) ? oom(p) : 0;
}

/* One escape sequence; p->pos is on the backslash. */
static int parse_escape(parser *p, sbuf *b) {
    size_t start = p->pos;
    int c = peek_at(p, p->pos + 1);
    char ch;
    switch (c) {
        case 'b':
            ch = '\b';
            break;
        case 't':
            ch = '\t';
            break;
        case 'n':
            ch = '\n';
            break;
        case 'f':
            ch = '\f';
            break;
        case 'r':
            ch = '\r';
            break;
        case '"':
            ch = '"';
            break;
        case '\\':
            ch = '\\';
            break;
        case 'u':
        case 'U': {
            int digits = c == 'u' ? 4 : 8;
            unsigned long cp = 0;
            for (int i = 0; i < digits; i++) {
                int h = hexval(peek_at(p, p->pos + 2 + (size_t)i));
                if (h < 0) {
                    return fail_at(p, start, "escape \\%c needs %d hexadecimal digits", c, digits);
                }
                cp = cp * 16 + (unsigned long)h;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
                return fail_at(p, start,
                               "escape \\%c names U+%04lX, which is not a Unicode "
                               "scalar value",
                               c, cp);
            }
            p->pos += 2 + (size_t)digits;
            return put_codepoint(p, b, cp);
        }
        default: {
            char buf[32];
            if (c >= 0x20 && c < 0x7F) {
                return fail_at(p, start, "invalid escape sequence '\\%c'", c);
            }
            return fail_at(p, start, "invalid escape sequence: backslash followed by %s",
                           describe(p, p->pos + 1, buf, sizeof buf));
        }
    }
    p->pos += 2;
    return sb_put(b, &ch, 1) ? oom(p) : 0;
}

/* Copies one ordinary character (validating UTF-8 and control characters). */
static int string_char(parser *p, sbuf *b, const char *what) {
    unsigned char c = (unsigned char)p->s[p->pos];
    size_t l = 1;
    if ((c < 0x20 && c != '\t') || c == 0x7F) {
        return fail_at(p, p->pos, "control character U+%04X in %s must be escaped", c, what);
    }
    if (c >= 0x80) {
        l = utf8_len((const unsigned char *)p->s + p->pos, p->n - p->pos);
        if (l == 0) return fail_at(p, p->pos, "invalid UTF-8 in %s", what);
    }
    if (sb_put(b, p->s + p->pos, l)) return oom(p);
    p->pos += l;
    return 0;
}

/* A string of any of the four kinds; p->pos is on the opening quote. Keys may not be
 * multi-line. */
static int parse_string(parser *p, sbuf *b, bool is_key) {
    size_t start = p->pos;
    char q = p->s[p->pos];
    bool basic = q == '"';
    bool multi = peek_at(p, p->pos + 1) == q && peek_at(p, p->pos + 2) == q;
    if (multi && is_key) return fail_at(p, start, "a multi-line string cannot be a key");
    if (!multi) {
        p->pos++;
        for (;;) {
            int c = peek(p);
            if (c < 0 || c == '\n' || (c == '\r' && peek_at(p, p->pos + 1) == '\n')) {
                return fail_at(p, start, "unterminated string (missing closing %c on this line)",
                               q);
            }
            if (c == q) {
                p->pos++;
                return sb_finish(b) ? oom(p) : 0;
            }
            if (basic && c == '\\') {
                if (parse_escape(p, b)) return -1;
            } else if (string_char(p, b, "string")) {
                return -1;
            }
        }
    }
    p->pos += 3;
    /* A newline right after the opening delimiter is trimmed. */
    if (peek(p) == '\n') {
        p->pos++;
    } else if (at_newline(p)) {
        p->pos += 2;
    }
    for (;;) {
        int c = peek(p);
        if (c < 0) return fail_at(p, start, "unterminated multi-line string");
        if (c == q && peek_at(p, p->pos + 1) == q && peek_at(p, p->pos + 2) == q) {
            size_t nq = 3;
            while (peek_at(p, p->pos + nq) == q)
                nq++;
            if (nq > 5) {
                return fail_at(p, p->pos, "too many quotes at the end of a multi-line string");
            }
            for (size_t i = 3; i < nq; i++) {
                if (sb_put(b, &q, 1)) return oom(p);
            }
            p->pos += nq;
            return sb_finish(b) ? oom(p) : 0;
        }
        if (c == '\n' || at_newline(p)) {
            if (sb_put(b, "\n", 1)) return oom(p);
            p->pos += c == '\n' ? 1 : 2;
        } else if (basic && c == '\\') {
            /* A backslash at the end of a line swallows the newline and following blanks. */
            size_t j = p->pos + 1;
            while (peek_at(p, j) == ' ' || peek_at(p, j) == '\t')
                j++;
            if (peek_at(p, j) == '\n' || (peek_at(p, j) == '\r' && peek_at(p, j + 1) == '\n')) {
                p->pos = j;
                for (;;) {
                    int d = peek(p);
                    if (d == ' ' || d == '\t' || d == '\n') {
                        p->pos++;
                    } else if (at_newline(p)) {
                        p->pos += 2;
                    } else {
                        break;
                    }
                }
            } else if (parse_escape(p, b)) {
                return -1;
            }
        } else if (string_char(p, b, "multi-line string")) {
            return -1;
        }
    }
}

/* ---------------------------------------------------------------- keys */

static void keypath_free(keypath *k) {
    for (size_t i = 0; i < k->n; i++) {
        if (k->v[i].owned) free(k->v[i].s);
    }
    free(k->v);
    k->v = NULL;
    k->n = k->cap = 0;
}

/* Parses `a`, `"a b"`, `a . 'b'.c`; stops after the last segment and trailing blanks. */
static int parse_key(parser *p, keypath *k) {
    for (;;) {
        if (k->n == TOML_MAX_KEY_PARTS) {
            return fail_at(p, p->pos, "key has more than %d dotted parts", TOML_MAX_KEY_PARTS);
        }
        if (k->n == k->cap) {
            size_t cap = k->cap ? k->cap * 2 : 4;
            if (cap > SIZE_MAX / sizeof(keyseg)) return oom(p);
            keyseg *v = realloc(k->v, cap * sizeof(keyseg));
            if (!v) return oom(p);
            k->v = v;
            k->cap = cap;
        }
        keyseg *seg = &k->v[k->n];
        seg->pos = p->pos;
        seg->s = NULL;
        seg->len = 0;
        seg->owned = true;
        int c = peek(p);
        if (c == '"' || c == '\'') {
            sbuf b = {0};
            if (parse_string(p, &b, true)) {
                free(b.p);
                return -1;
            }
            seg->s = b.p;
            seg->len = b.len;
            k->n++;
        } else {
            size_t start = p->pos;
            while (p->pos < p->n && is_bare((unsigned char)p->s[p->pos]))
                p->pos++;
            if (p->pos == start) {
                char buf[32];
                return fail_at(p, p->pos, "expected a key, found %s",
                               describe(p, p->pos, buf, sizeof buf));
            }
            seg->len = p->pos - start;
            seg->s = malloc(seg->len + 1);
            if (!seg->s) return oom(p);
            memcpy(seg->s, p->s + start, seg->len);
            seg->s[seg->len] = '\0';
            k->n++;
        }
        skip_ws(p);
        if (peek(p) != '.') return 0;
        p->pos++;
        skip_ws(p);
    }
}

/* ---------------------------------------------------------------- scalars */

static toml_value *new_value(parser *p, toml_type type, size_t pos) {
    toml_value *v = calloc(1, sizeof *v);
    if (!v) {
        oom(p);
        return NULL;
    }
    v->type = type;
    locate(p, pos, &v->line, &v->col);
    return v;
}

/* Digits with single underscores between them, from s[i]; returns the end or 0 if malformed.
 * base selects which characters are digits. */
static size_t scan_digits(const char *s, size_t i, size_t end, int base) {
    size_t start = i;
    bool prev_digit = false;
    for (; i < end; i++) {
        int c = (unsigned char)s[i];
        int d = base == 16 ? hexval(c) : (is_digit(c) ? c - '0' : -1);
        if (d >= 0 && d < base) {
            prev_digit = true;
        } else if (c == '_') {
            if (!prev_digit) return 0;
            prev_digit = false;
        } else {
            break;
        }
    }
    if (i == start || !prev_digit) return 0;
    return i;
}

static bool two_digits(const char *s, size_t i, size_t n, int *out) {
    if (i + 2 > n || !is_digit((unsigned char)s[i]) || !is_digit((unsigned char)s[i + 1]))
        return false;
    *out = (s[i] - '0') * 10 + (s[i + 1] - '0');
    return true;
}

/* HH:MM:SS[.fraction] at i; returns the end or 0. */
static size_t scan_time(const char *s, size_t i, size_t n) {
    int h, m, sec;
    if (!two_digits(s, i, n, &h) || i + 2 >= n || s[i + 2] != ':' || !two_digits(s, i + 3, n, &m) ||
        i + 5 >= n || s[i + 5] != ':' || !two_digits(s, i + 6, n, &sec))
        return 0;
    if (h > 23 || m > 59 || sec > 60) return 0;
    i += 8;
    if (i < n && s[i] == '.') {
        size_t j = i + 1;
        while (j < n && is_digit((unsigned char)s[j]))
            j++;
        if (j == i + 1) return 0;
        i = j;
    }
    return i;
}

/* Dates and times are checked for shape and range, then kept as their source text. */
static toml_value *parse_datetime(parser *p) {
    const char *s = p->s;
    size_t n = p->n, start = p->pos, i = start;
    bool is_date = n - i >= 5 && is_digit((unsigned char)s[i + 1]) &&
                   is_digit((unsigned char)s[i + 2]) && is_digit((unsigned char)s[i + 3]) &&
                   s[i + 4] == '-';
    if (is_date) {
        int y1, y2, mo, d;
        if (!two_digits(s, i, n, &y1) || !two_digits(s, i + 2, n, &y2) || i + 7 >= n ||
            !two_digits(s, i + 5, n, &mo) || s[i + 7] != '-' || !two_digits(s, i + 8, n, &d)) {
            fail_at(p, start, "invalid date (expected YYYY-MM-DD)");
            return NULL;
        }
        int y = y1 * 100 + y2;
        static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap)) {
            fail_at(p, start, "invalid date %.10s", s + start);
            return NULL;
        }
        i += 10;
        int c = peek_at(p, i);
        if (c == 'T' || c == 't' || (c == ' ' && is_digit(peek_at(p, i + 1)))) {
            size_t e = scan_time(s, i + 1, n);
            if (!e) {
                fail_at(p, i + 1, "invalid time (expected HH:MM:SS)");
                return NULL;
            }
            i = e;
            c = peek_at(p, i);
            if (c == 'Z' || c == 'z') {
                i++;
            } else if (c == '+' || c == '-') {
                int oh, om;
                if (!two_digits(s, i + 1, n, &oh) || peek_at(p, i + 3) != ':' ||
                    !two_digits(s, i + 4, n, &om) || oh > 23 || om > 59) {
                    fail_at(p, i, "invalid time offset (expected +HH:MM)");
                    return NULL;
                }
                i += 6;
            }
        }
    } else {
        size_t e = scan_time(s, i, n);
        if (!e) {
            fail_at(p, start, "invalid time (expected HH:MM:SS)");
            return NULL;
        }
        i = e;
    }
    toml_value *v = new_value(p, TOML_STRING, start);
    if (!v) return NULL;
    v->u.s.len = i - start;
    v->u.s.ptr = malloc(v->u.s.len + 1);
    if (!v->u.s.ptr) {
        free(v);
        oom(p);
        return NULL;
    }
    memcpy(v->u.s.ptr, s + start, v->u.s.len);
    v->u.s.ptr[v->u.s.len] = '\0';
    p->pos = i;
    return v;
}

static bool token_is(const char *s, size_t len, const char *word) {
    return strlen(word) == len && memcmp(s, word, len) == 0;
}

static toml_value *number_error(parser *p, size_t start, size_t end, const char *why) {
    char buf[96];
    size_t used = 0;
    buf[0] = '\0';
    fmt_text(buf, sizeof buf, &used, p->s + start, end - start);
    fail_at(p, start, "invalid number \"%s\": %s", buf, why);
    return NULL;
}

static toml_value *parse_number(parser *p) {
    const char *s = p->s;
    size_t start = p->pos, end = start;
    while (end < p->n && (is_bare((unsigned char)s[end]) || s[end] == '.' || s[end] == '+'))
        end++;
    size_t i = start;
    bool neg = false, has_sign = false;
    if (s[i] == '+' || s[i] == '-') {
        neg = s[i] == '-';
        has_sign = true;
        i++;
    }
    if (token_is(s + i, end - i, "inf") || token_is(s + i, end - i, "nan")) {
        toml_value *v = new_value(p, TOML_FLOAT, start);
        if (!v) return NULL;
        if (s[i] == 'i') {
            v->u.f = neg ? -HUGE_VAL : HUGE_VAL;
        } else {
            v->u.f = neg ? -NAN : NAN;
        }
        p->pos = end;
        return v;
    }
    if (i < end && s[i] == '0' && i + 1 < end &&
        (s[i + 1] == 'x' || s[i + 1] == 'o' || s[i + 1] == 'b')) {
        int base = s[i + 1] == 'x' ? 16 : s[i + 1] == 'o' ? 8 : 2;
        if (has_sign) return number_error(p, start, end, "a sign is not allowed with 0x/0o/0b");
        size_t e = scan_digits(s, i + 2, end, base);
        if (e != end) return number_error(p, start, end, "bad digit or misplaced '_'");
        uint64_t val = 0;
        for (size_t j = i + 2; j < end; j++) {
            if (s[j] == '_') continue;
            uint64_t d = (uint64_t)hexval((unsigned char)s[j]);
            if (val > ((uint64_t)INT64_MAX - d) / (uint64_t)base) {
                return number_error(p, start, end, "does not fit in 64 bits");
            }
            val = val * (uint64_t)base + d;
        }
        toml_value *v = new_value(p, TOML_INTEGER, start);
        if (!v) return NULL;
        v->u.i = (int64_t)val;
        p->pos = end;
        return v;
    }
    size_t int_end = scan_digits(s, i, end, 10);
    if (!int_end) return number_error(p, start, end, "expected digits (with '_' only between)");
    if (s[i] == '0' && int_end > i + 1) {
        return number_error(p, start, end, "leading zeros are not allowed");
    }
    size_t j = int_end;
    bool is_float = false;
    if (j < end && s[j] == '.') {
        size_t e = scan_digits(s, j + 1, end, 10);
        if (!e) return number_error(p, start, end, "expected digits after '.'");
        j = e;
        is_float = true;
    }
    if (j < end && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < end && (s[k] == '+' || s[k] == '-')) k++;
        size_t e = scan_digits(s, k, end, 10);
        if (!e) return number_error(p, start, end, "expected digits in the exponent");
        j = e;
        is_float = true;
    }
    if (j != end) return number_error(p, start, end, "unexpected characters");

    if (is_float) {
        char local[128];
        char *buf = local;
        size_t len = end - start;
        if (len >= sizeof local) {
            buf = malloc(len + 1);
            if (!buf) {
                oom(p);
                return NULL;
            }
        }
        size_t o = 0;
        for (size_t k = start; k < end; k++) {
            if (s[k] != '_') buf[o++] = s[k];
        }
        buf[o] = '\0';
        char *stop;
        double d = strtod(buf, &stop);
        bool ok = stop == buf + o;
        if (buf != local) free(buf);
        if (!ok) return number_error(p, start, end, "not a number");
        if (d == HUGE_VAL || d == -HUGE_VAL) {
            return number_error(p, start, end, "out of range for a 64-bit float");
        }
        toml_value *v = new_value(p, TOML_FLOAT, start);
        if (!v) return NULL;
        v->u.f = d;
        p->pos = end;
        return v;
    }
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t val = 0;
    for (size_t k = i; k < end; k++) {
        if (s[k] == '_') continue;
        uint64_t d = (uint64_t)(s[k] - '0');
        if (val > (limit - d) / 10) return number_error(p, start, end, "does not fit in 64 bits");
        val = val * 10 + d;
    }
    toml_value *v = new_value(p, TOML_INTEGER, start);
    if (!v) return NULL;
    if (neg) {
        v->u.i = val == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)val;
    } else {
        v->u.i = (int64_t)val;
    }
    p->pos = end;
    return v;
}

/* ---------------------------------------------------------------- compound values */

static toml_value *parse_value(parser *p);
static int parse_keyval(parser *p, toml_value *table);

static toml_value *parse_array(parser *p) {
    size_t start = p->pos;
    toml_value *arr = new_value(p, TOML_ARRAY, start);
    if (!arr) return NULL;
    p->pos++;
    for (;;) {
        if (skip_ws_nl(p)) goto fail;
        if (p->pos >= p->n) {
            fail_at(p, start, "unterminated array (missing ']')");
            goto fail;
        }
        if (p->s[p->pos] == ']') {
            p->pos++;
            return arr;
        }
        toml_value *v = parse_value(p);
        if (!v) goto fail;
        if (array_push(arr, v)) {
            toml_free(v);
            oom(p);
            goto fail;
        }
        if (skip_ws_nl(p)) goto fail;
        int c = peek(p);
        if (c == ',') {
            p->pos++;
        } else if (c == ']') {
            p->pos++;
            return arr;
        } else if (c < 0) {
            fail_at(p, start, "unterminated array (missing ']')");
            goto fail;
        } else {
            char buf[32];
            fail_at(p, p->pos, "expected ',' or ']' in array, found %s",
                    describe(p, p->pos, buf, sizeof buf));
            goto fail;
        }
    }
fail:
    toml_free(arr);
    return NULL;
}

/* Inline tables are complete when closed: mark them and their sub-tables as closed. */
static void mark_inline(toml_value *t) {
    t->flags |= F_INLINE;
    for (size_t i = 0; i < t->u.t.n; i++) {
        if (t->u.t.items[i].val->type == TOML_TABLE) mark_inline(t->u.t.items[i].val);
    }
}

static toml_value *parse_inline_table(parser *p) {
    size_t start = p->pos;
    toml_value *t = new_value(p, TOML_TABLE, start);
    if (!t) return NULL;
    p->pos++;
    skip_ws(p);
    if (peek(p) == '}') {
        p->pos++;
        mark_inline(t);
        return t;
    }
    for (;;) {
        if (p->pos >= p->n || at_newline(p) || peek(p) == '\n') {
            fail_at(p, p->pos, "unterminated inline table (an inline table must be on one line)");
            goto fail;
        }
        if (parse_keyval(p, t)) goto fail;
        skip_ws(p);
        int c = peek(p);
        if (c == ',') {
            size_t comma = p->pos++;
            skip_ws(p);
            if (peek(p) == '}') {
                fail_at(p, comma, "trailing comma in inline table");
                goto fail;
            }
        } else if (c == '}') {
            p->pos++;
            mark_inline(t);
            return t;
        } else if (c < 0 || c == '\n' || at_newline(p)) {
            fail_at(p, p->pos, "unterminated inline table (an inline table must be on one line)");
            goto fail;
        } else {
            char buf[32];
            fail_at(p, p->pos, "expected ',' or '}' in inline table, found %s",
                    describe(p, p->pos, buf, sizeof buf));
            goto fail;
        }
    }
fail:
    toml_free(t);
    return NULL;
}

static toml_value *parse_value(parser *p) {
    size_t start = p->pos;
    int c = peek(p);
    char buf[32];
    if (c < 0 || c == '\n' || c == '#' || at_newline(p)) {
        fail_at(p, start, "missing value, found %s", describe(p, start, buf, sizeof buf));
        return NULL;
    }
    if (c == '"' || c == '\'') {
        sbuf b = {0};
        if (parse_string(p, &b, false)) {
            free(b.p);
            return NULL;
        }
        toml_value *v = new_value(p, TOML_STRING, start);
        if (!v) {
            free(b.p);
            return NULL;
        }
        v->u.s.ptr = b.p;
        v->u.s.len = b.len;
        return v;
    }
    if (c == '[' || c == '{') {
        if (p->depth >= TOML_MAX_DEPTH) {
            fail_at(p, start, "arrays and inline tables nested more than %d deep", TOML_MAX_DEPTH);
            return NULL;
        }
        p->depth++;
        toml_value *v = c == '[' ? parse_array(p) : parse_inline_table(p);
        p->depth--;
        return v;
    }
    if (is_digit(c)) {
        /* 1979-05-27 and 07:32:00 start like numbers. */
        if ((is_digit(peek_at(p, start + 1)) && peek_at(p, start + 2) == ':') ||
            (is_digit(peek_at(p, start + 1)) && is_digit(peek_at(p, start + 2)) &&
             is_digit(peek_at(p, start + 3)) && peek_at(p, start + 4) == '-')) {
            return parse_datetime(p);
        }
        return parse_number(p);
    }
    if (c == '+' || c == '-') return parse_number(p);
    if (is_bare(c)) {
        size_t end = start;
        while (end < p->n && is_bare((unsigned char)p->s[end]))
            end++;
        if (token_is(p->s + start, end - start, "true") ||
            token_is(p->s + start, end - start, "false")) {
            toml_value *v = new_value(p, TOML_BOOLEAN, start);
            if (!v) return NULL;
            v->u.b = c == 't';
            p->pos = end;
            return v;
        }
        if (token_is(p->s + start, end - start, "inf") ||
            token_is(p->s + start, end - start, "nan")) {
            return parse_number(p);
        }
        char word[96];
        size_t used = 0;
        word[0] = '\0';
        fmt_text(word, sizeof word, &used, p->s + start, end - start);
        fail_at(p, start, "invalid value \"%s\" (strings must be quoted)", word);
        return NULL;
    }
    fail_at(p, start, "expected a value, found %s", describe(p, start, buf, sizeof buf));
    return NULL;
}

/* key = value into `table`, creating the tables of a dotted key on the way. */
static int parse_keyval(parser *p, toml_value *table) {
    keypath k = {0};
    char kbuf[160];
    int rc = -1;
    if (parse_key(p, &k)) goto done;
    if (peek(p) != '=') {
        char buf[32];
        fail_at(p, p->pos, "expected '=' after key \"%s\", found %s",
                fmt_key(kbuf, sizeof kbuf, &k, k.n), describe(p, p->pos, buf, sizeof buf));
        goto done;
    }
    p->pos++;
    skip_ws(p);
    int c = peek(p);
    if (c < 0 || c == '\n' || c == '#' || at_newline(p)) {
        fail_at(p, p->pos, "missing value for key \"%s\"", fmt_key(kbuf, sizeof kbuf, &k, k.n));
        goto done;
    }
    toml_value *t = table;
    for (size_t i = 0; i + 1 < k.n; i++) {
        keyseg *seg = &k.v[i];
        toml_kv *kv = table_find(t, seg->s, seg->len);
        if (!kv) {
            toml_value *child = new_value(p, TOML_TABLE, seg->pos);
            if (!child) goto done;
            child->flags = F_DOTTED;
            if (table_add(t, seg->s, seg->len, child)) {
                toml_free(child);
                oom(p);
                goto done;
            }
            seg->owned = false; /* now owned by the table */
            t = child;
        } else if (kv->val->type == TOML_TABLE && (kv->val->flags & F_DOTTED) &&
                   !(kv->val->flags & F_INLINE)) {
            t = kv->val;
        } else if (kv->val->type == TOML_TABLE) {
            fail_at(p, seg->pos,
                    "table \"%s\" is already defined and cannot be extended by a "
                    "dotted key",
                    fmt_key(kbuf, sizeof kbuf, &k, i + 1));
            goto done;
        } else {
            const char *tn = toml_type_name(kv->val->type);
            fail_at(p, seg->pos, "key \"%s\" already holds %s %s, not a table",
                    fmt_key(kbuf, sizeof kbuf, &k, i + 1), article(tn), tn);
            goto done;
        }
    }
    keyseg *last = &k.v[k.n - 1];
    if (table_find(t, last->s, last->len)) {
        fail_at(p, last->pos, "duplicate key \"%s\"", fmt_key(kbuf, sizeof kbuf, &k, k.n));
        goto done;
    }
    toml_value *v = parse_value(p);
    if (!v) goto done;
    if (table_add(t, last->s, last->len, v)) {
        toml_free(v);
        oom(p);
        goto done;
    }
    last->owned = false;
    rc = 0;
done:
    keypath_free(&k);
    return rc;
}

/* [a.b.c] or [[a.b.c]]: makes the named table current. */
static int parse_header(parser *p) {
    size_t start = p->pos;
    bool aot = peek_at(p, p->pos + 1) == '[';
    keypath k = {0};
    char kbuf[160];
    char buf[32];
    int rc = -1;
    p->pos += aot ? 2 : 1;
    skip_ws(p);
    if (parse_key(p, &k)) goto done;
    if (peek(p) != ']' || (aot && peek_at(p, p->pos + 1) != ']')) {
        if (peek(p) == ']') p->pos++; /* [[a] : point at what stands where the second ']' is */
        fail_at(p, p->pos, "expected '%s' to close the header [%s%s, found %s", aot ? "]]" : "]",
                aot ? "[" : "", fmt_key(kbuf, sizeof kbuf, &k, k.n),
                describe(p, p->pos, buf, sizeof buf));
        goto done;
    }
    p->pos += aot ? 2 : 1;
    toml_value *t = p->root;
    for (size_t i = 0; i + 1 < k.n; i++) {
        keyseg *seg = &k.v[i];
        toml_kv *kv = table_find(t, seg->s, seg->len);
        if (!kv) {
            toml_value *child = new_value(p, TOML_TABLE, start);
            if (!child) goto done;
            child->flags = F_IMPLICIT;
            if (table_add(t, seg->s, seg->len, child)) {
                toml_free(child);
                oom(p);
                goto done;
            }
            seg->owned = false;
            t = child;
        } else if (kv->val->type == TOML_TABLE && !(kv->val->flags & F_INLINE)) {
            t = kv->val;
        } else if (kv->val->type == TOML_ARRAY && (kv->val->flags & F_AOT)) {
            t = kv->val->u.a.items[kv->val->u.a.n - 1];
        } else {
            char pbuf[160];
            const char *tn =
                kv->val->type == TOML_TABLE ? "inline table" : toml_type_name(kv->val->type);
            fail_at(p, start, "cannot open %s%s%s: \"%s\" is %s %s (line %d)", aot ? "[[" : "[",
                    fmt_key(kbuf, sizeof kbuf, &k, k.n), aot ? "]]" : "]",
                    fmt_key(pbuf, sizeof pbuf, &k, i + 1), article(tn), tn, kv->val->line);
            goto done;
        }
    }
    keyseg *last = &k.v[k.n - 1];
    toml_kv *kv = table_find(t, last->s, last->len);
    if (!aot) {
        if (!kv) {
            toml_value *child = new_value(p, TOML_TABLE, start);
            if (!child) goto done;
            child->flags = F_DEFINED;
            if (table_add(t, last->s, last->len, child)) {
                toml_free(child);
                oom(p);
                goto done;
            }
            last->owned = false;
            p->cur = child;
        } else if (kv->val->type == TOML_TABLE && kv->val->flags == F_IMPLICIT) {
            kv->val->flags = F_DEFINED;
            locate(p, start, &kv->val->line, &kv->val->col);
            p->cur = kv->val;
        } else if (kv->val->type == TOML_TABLE) {
            fail_at(p, start, "table [%s] is already defined (line %d)",
                    fmt_key(kbuf, sizeof kbuf, &k, k.n), kv->val->line);
            goto done;
        } else if (kv->val->type == TOML_ARRAY && (kv->val->flags & F_AOT)) {
            fail_at(p, start, "[%s] is already an array of tables (line %d): use [[%s]]",
                    fmt_key(kbuf, sizeof kbuf, &k, k.n), kv->val->line, kbuf);
            goto done;
        } else {
            fail_at(p, start, "cannot define table [%s]: key already holds a value (line %d)",
                    fmt_key(kbuf, sizeof kbuf, &k, k.n), kv->val->line);
            goto done;
        }
    } else {
        toml_value *arr;
        if (!kv) {
            arr = new_value(p, TOML_ARRAY, start);
            if (!arr) goto done;
            arr->flags = F_AOT;
            if (table_add(t, last->s, last->len, arr)) {
                toml_free(arr);
                oom(p);
                goto done;
            }
            last->owned = false;
        } else if (kv->val->type == TOML_ARRAY && (kv->val->flags & F_AOT)) {
            arr = kv->val;
        } else {
            const char *tn = kv->val->type == TOML_ARRAY   ? "static array"
                             : kv->val->type == TOML_TABLE ? "table"
                                                           : toml_type_name(kv->val->type);
            fail_at(p, start,
                    "cannot define array of tables [[%s]]: key already holds %s %s "
                    "(line %d)",
                    fmt_key(kbuf, sizeof kbuf, &k, k.n), article(tn), tn, kv->val->line);
            goto done;
        }
        toml_value *elem = new_value(p, TOML_TABLE, start);
        if (!elem) goto done;
        elem->flags = F_DEFINED;
        if (array_push(arr, elem)) {
            toml_free(elem);
            oom(p);
            goto done;
        }
        p->cur = elem;
    }
    rc = expect_line_end(p, "table header");
done:
    keypath_free(&k);
    return rc;
}

/* ---------------------------------------------------------------- entry points */

toml_value *toml_parse(const char *text, size_t len, char *err, size_t errlen) {
    parser p;
    memset(&p, 0, sizeof p);
    p.s = text ? text : "";
    p.n = text ? len : 0;
    p.err = err;
    p.errlen = errlen;
    p.loc_line = 1;
    p.loc_col = 1;
    if (err && errlen) err[0] = '\0';
    if (p.n > TOML_MAX_DOCUMENT) {
        fail_at(&p, 0, "document larger than %zu bytes", TOML_MAX_DOCUMENT);
        return NULL;
    }
    p.root = new_value(&p, TOML_TABLE, 0);
    if (!p.root) return NULL;
    p.root->flags = F_DEFINED;
    p.cur = p.root;
    if (p.n >= 3 && memcmp(p.s, "\xEF\xBB\xBF", 3) == 0) p.pos = 3; /* byte-order mark */
    while (!p.failed) {
        skip_ws(&p);
        int c = peek(&p);
        if (c < 0) break;
        if (c == '#') {
            skip_comment(&p);
        } else if (c == '\n') {
            p.pos++;
        } else if (c == '\r') {
            if (peek_at(&p, p.pos + 1) != '\n') {
                fail_at(&p, p.pos, "carriage return not followed by a line feed");
            } else {
                p.pos += 2;
            }
        } else if (c == '[') {
            parse_header(&p);
        } else if (parse_keyval(&p, p.cur) == 0) {
            expect_line_end(&p, "value");
        }
    }
    if (p.failed) {
        toml_free(p.root);
        return NULL;
    }
    return p.root;
}

toml_value *toml_parse_file(const char *path, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errlen) snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    bool too_big = false, no_mem = false;
    errno = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= TOML_MAX_DOCUMENT) {
                too_big = true;
                break;
            }
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                no_mem = true;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int read_errno = errno ? errno : EIO;
    bool read_error = ferror(f) != 0;
    fclose(f);
    if (read_error || too_big || no_mem) {
        free(buf);
        if (err && errlen) {
            snprintf(err, errlen, "%s: %s", path,
                     read_error ? strerror(read_errno)
                     : too_big  ? "file too large"
                                : "out of memory");
        }
        return NULL;
    }
    char msg[512];
    toml_value *root = toml_parse(buf, len, msg, sizeof msg);
    free(buf);
    if (!root && err && errlen) snprintf(err, errlen, "%s: %s", path, msg);
    return root;
}

/* ---------------------------------------------------------------- accessors */

toml_type toml_type_of(const toml_value *v) {
    return v ? v->type : TOML_TABLE;
}

const char *toml_type_name(toml_type type) {
    switch (type) {
        case TOML_TABLE:
            return "table";
        case TOML_ARRAY:
            return "array";
        case TOML_STRING:
            return "string";
        case TOML_INTEGER:
            return "integer";
        case TOML_FLOAT:
            return "float";
        case TOML_BOOLEAN:
            return "boolean";
    }
    return "unknown";
}

int toml_line(const toml_value *v) {
    return v ? v->line : 0;
}

int toml_column(const toml_value *v) {
    return v ? v->col : 0;
}

size_t toml_table_size(const toml_value *table) {
    return table && table->type == TOML_TABLE ? table->u.t.n : 0;
}

const char *toml_table_key(const toml_value *table, size_t i) {
    return i < toml_table_size(table) ? table->u.t.items[i].key : NULL;
}

const toml_value *toml_table_value(const toml_value *table, size_t i) {
    return i < toml_table_size(table) ? table->u.t.items[i].val : NULL;
}

const toml_value *toml_get(const toml_value *table, const char *key) {
    if (!table || table->type != TOML_TABLE || !key) return NULL;
    toml_kv *kv = table_find(table, key, strlen(key));
    return kv ? kv->val : NULL;
}

size_t toml_array_size(const toml_value *array) {
    return array && array->type == TOML_ARRAY ? array->u.a.n : 0;
}

const toml_value *toml_array_at(const toml_value *array, size_t i) {
    return i < toml_array_size(array) ? array->u.a.items[i] : NULL;
}

/* 0 found, 1 absent, -1 the path runs through a non-container or is malformed. */
static int resolve(const toml_value *root, const char *path, const toml_value **out) {
    const toml_value *v = root;
    *out = NULL;
    if (!root || !path) return 1;
    const char *s = path;
    while (*s) {
        size_t n = strcspn(s, ".[");
        if (v->type != TOML_TABLE) return -1;
        toml_kv *kv = table_find(v, s, n);
        if (!kv) return 1;
        v = kv->val;
        s += n;
        while (*s == '[') {
            char *end;
            if (!is_digit((unsigned char)s[1])) return -1;
            errno = 0;
            unsigned long long idx = strtoull(s + 1, &end, 10);
            if (*end != ']' || errno) return -1;
            if (v->type != TOML_ARRAY) return -1;
            if (idx >= v->u.a.n) return 1;
            v = v->u.a.items[idx];
            s = end + 1;
        }
        if (*s == '.') {
            s++;
        } else if (*s) {
            return -1;
        }
    }
    *out = v;
    return 0;
}

const toml_value *toml_get_path(const toml_value *root, const char *path) {
    const toml_value *v;
    return resolve(root, path, &v) == 0 ? v : NULL;
}

const char *toml_string(const toml_value *v) {
    return v && v->type == TOML_STRING ? v->u.s.ptr : NULL;
}

size_t toml_string_len(const toml_value *v) {
    return v && v->type == TOML_STRING ? v->u.s.len : 0;
}

int toml_as_int(const toml_value *v, int64_t *out) {
    if (!v) return 1;
    if (v->type != TOML_INTEGER) return -1;
    if (out) *out = v->u.i;
    return 0;
}

int toml_as_double(const toml_value *v, double *out) {
    if (!v) return 1;
    if (v->type == TOML_INTEGER) {
        if (out) *out = (double)v->u.i;
        return 0;
    }
    if (v->type != TOML_FLOAT) return -1;
    if (out) *out = v->u.f;
    return 0;
}

int toml_as_bool(const toml_value *v, bool *out) {
    if (!v) return 1;
    if (v->type != TOML_BOOLEAN) return -1;
    if (out) *out = v->u.b;
    return 0;
}

int toml_as_string(const toml_value *v, const char **out) {
    if (!v) return 1;
    if (v->type != TOML_STRING) return -1;
    if (out) *out = v->u.s.ptr;
    return 0;
}

int toml_get_int(const toml_value *table, const char *path, int64_t *out) {
    const toml_value *v;
    int r = resolve(table, path, &v);
    return r ? r : toml_as_int(v, out);
}

int toml_get_double(const toml_value *table, const char *path, double *out) {
    const toml_value *v;
    int r = resolve(table, path, &v);
    return r ? r : toml_as_double(v, out);
}

int toml_get_bool(const toml_value *table, const char *path, bool *out) {
    const toml_value *v;
    int r = resolve(table, path, &v);
    return r ? r : toml_as_bool(v, out);
}

int toml_get_string(const toml_value *table, const char *path, const char **out) {
    const toml_value *v;
    int r = resolve(table, path, &v);
    return r ? r : toml_as_string(v, out);
}

int toml_get_table(const toml_value *table, const char *path, const toml_value **out) {
    const toml_value *v;
    int r = resolve(table, path, &v);
    if (r) return r;
    if (v->type != TOML_TABLE) return -1;
    if (out) *out = v;
    return 0;
}

int toml_get_array(const toml_value *table, const char *path, const toml_value **out) {
    const toml_value *v;
    int r = resolve(table, path, &v);
    if (r) return r;
    if (v->type != TOML_ARRAY) return -1;
    if (out) *out = v;
    return 0;
}
