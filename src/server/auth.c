/* Authentication primitives: see auth.h for the rules and the reasons behind them. */
#include "server/auth.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(AUTH_HASH_LEN == crypto_pwhash_STRBYTES, "AUTH_HASH_LEN must match libsodium");
_Static_assert(AUTH_HMAC_LEN == crypto_auth_hmacsha256_BYTES, "AUTH_HMAC_LEN must match");
_Static_assert(AUTH_KEY_LEN == crypto_auth_hmacsha256_KEYBYTES, "AUTH_KEY_LEN must match");

/* ---- common ---- */

static void fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void ok_msg(char *err, size_t errlen) {
    if (err != NULL && errlen > 0) err[0] = '\0';
}

/* Copies client-supplied text into a message: at most `max` bytes, cut on a UTF-8 boundary, with
 * control characters, quotes and backslashes replaced so the message stays one readable line. */
static const char *sanitize(const char *s, size_t max, char *buf, size_t cap) {
    size_t n = 0;
    if (cap == 0) return buf;
    if (s == NULL) s = "(null)";
    size_t len = strnlen(s, max + 1);
    bool cut = len > max;
    if (cut) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    for (size_t i = 0; i < len && n + 1 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[n++] = (ch < 0x20 || ch == 0x7F || ch == '"' || ch == '\\') ? '?' : (char)ch;
    }
    if (cut) {
        for (const char *e = "..."; *e && n + 1 < cap; e++)
            buf[n++] = *e;
    }
    buf[n] = '\0';
    return buf;
}

const char *auth_result_name(auth_result r) {
    switch (r) {
        case AUTH_OK:
            return "ok";
        case AUTH_INVALID:
            return "invalid";
        case AUTH_MISMATCH:
            return "mismatch";
        case AUTH_INTERNAL:
            return "internal";
        case AUTH_TOKEN_MALFORMED:
            return "token_malformed";
        case AUTH_TOKEN_BAD_ALG:
            return "token_bad_alg";
        case AUTH_TOKEN_BAD_SIGNATURE:
            return "token_bad_signature";
        case AUTH_TOKEN_EXPIRED:
            return "token_expired";
    }
    return "unknown";
}

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static bool sodium_ready;

static void sodium_setup(void) {
    sodium_ready = sodium_init() >= 0;
}

bool auth_init(void) {
    if (pthread_once(&sodium_once, sodium_setup) != 0) return false;
    return sodium_ready;
}

/* ---- passwords ---- */

void auth_pwhash_cost_interactive(auth_pwhash_cost *c) {
    c->opslimit = crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE;
    c->memlimit = crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE;
}

void auth_pwhash_cost_fast(auth_pwhash_cost *c) {
    c->opslimit = crypto_pwhash_argon2id_OPSLIMIT_MIN;
    c->memlimit = crypto_pwhash_argon2id_MEMLIMIT_MIN;
}

static auth_pwhash_cost cost_or_default(const auth_pwhash_cost *cost) {
    auth_pwhash_cost c;
    if (cost != NULL) return *cost;
    auth_pwhash_cost_interactive(&c);
    return c;
}

static auth_result check_password(const char *password, char *err, size_t errlen) {
    if (password == NULL) {
        fail(err, errlen, "password is missing");
        return AUTH_INVALID;
    }
    size_t len = strnlen(password, AUTH_PASSWORD_MAX + 1);
    if (len == 0) {
        fail(err, errlen, "password is empty");
        return AUTH_INVALID;
    }
    if (len > AUTH_PASSWORD_MAX) {
        fail(err, errlen, "password is %zu bytes, the limit is %d", strlen(password),
             AUTH_PASSWORD_MAX);
        return AUTH_INVALID;
    }
    return AUTH_OK;
}

static auth_result check_cost(const auth_pwhash_cost *c, char *err, size_t errlen) {
    if (c->opslimit < crypto_pwhash_argon2id_OPSLIMIT_MIN ||
        c->opslimit > crypto_pwhash_argon2id_OPSLIMIT_MAX) {
        fail(err, errlen, "argon2id opslimit %llu is outside [%u, %u]", c->opslimit,
             (unsigned)crypto_pwhash_argon2id_OPSLIMIT_MIN,
             (unsigned)crypto_pwhash_argon2id_OPSLIMIT_MAX);
        return AUTH_INVALID;
    }
    if (c->memlimit < crypto_pwhash_argon2id_MEMLIMIT_MIN ||
        c->memlimit > (size_t)crypto_pwhash_argon2id_MEMLIMIT_MAX) {
        fail(err, errlen, "argon2id memlimit %zu bytes is outside [%zu, %zu]", c->memlimit,
             (size_t)crypto_pwhash_argon2id_MEMLIMIT_MIN,
             (size_t)crypto_pwhash_argon2id_MEMLIMIT_MAX);
        return AUTH_INVALID;
    }
    return AUTH_OK;
}

auth_result auth_password_hash(const auth_pwhash_cost *cost, const char *password,
                               char out[AUTH_HASH_LEN], char *err, size_t errlen) {
    if (out == NULL) {
        fail(err, errlen, "password hash output buffer is missing");
        return AUTH_INVALID;
    }
    out[0] = '\0';
    auth_pwhash_cost c = cost_or_default(cost);
    auth_result r = check_password(password, err, errlen);
    if (r == AUTH_OK) r = check_cost(&c, err, errlen);
    if (r != AUTH_OK) return r;
    if (!auth_init()) {
        fail(err, errlen, "password hashing unavailable: libsodium could not be initialised");
        return AUTH_INTERNAL;
    }
    if (crypto_pwhash_str_alg(out, password, strlen(password), c.opslimit, c.memlimit,
                              crypto_pwhash_ALG_ARGON2ID13) != 0) {
        out[0] = '\0';
        fail(err, errlen, "password hashing failed: out of memory (argon2id memlimit %zu bytes)",
             c.memlimit);
        return AUTH_INTERNAL;
    }
    ok_msg(err, errlen);
    return AUTH_OK;
}

/* A stored hash is ours and is an argon2id PHC string; anything else is a corrupt record. */
static bool hash_readable(const char *hash) {
    if (hash == NULL) return false;
    size_t len = strnlen(hash, AUTH_HASH_LEN);
    if (len == AUTH_HASH_LEN) return false;
    if (strncmp(hash, crypto_pwhash_argon2id_STRPREFIX, strlen(crypto_pwhash_argon2id_STRPREFIX)))
        return false;
    /* -1 when the string does not parse; the limits only decide between 0 and 1 */
    return crypto_pwhash_argon2id_str_needs_rehash(hash, crypto_pwhash_argon2id_OPSLIMIT_MIN,
                                                   crypto_pwhash_argon2id_MEMLIMIT_MIN) >= 0;
}

auth_result auth_password_verify(const char *hash, const char *password, char *err, size_t errlen) {
    auth_result r = check_password(password, err, errlen);
    if (r != AUTH_OK) return r;
    if (!auth_init()) {
        fail(err, errlen, "password check unavailable: libsodium could not be initialised");
        return AUTH_INTERNAL;
    }
    if (!hash_readable(hash)) {
        if (hash == NULL)
            fail(err, errlen, "stored password hash is missing");
        else
            fail(err, errlen, "stored password hash (%zu bytes) is not an argon2id string",
                 strnlen(hash, AUTH_HASH_LEN));
        return AUTH_INVALID;
    }
    if (crypto_pwhash_str_verify(hash, password, strlen(password)) != 0) {
        fail(err, errlen, "wrong password");
        return AUTH_MISMATCH;
    }
    ok_msg(err, errlen);
    return AUTH_OK;
}

bool auth_password_needs_rehash(const char *hash, const auth_pwhash_cost *cost) {
    auth_pwhash_cost c = cost_or_default(cost);
    if (!auth_init() || !hash_readable(hash)) return true;
    if (check_cost(&c, NULL, 0) != AUTH_OK) return true;
    return crypto_pwhash_argon2id_str_needs_rehash(hash, c.opslimit, c.memlimit) != 0;
}

void auth_password_burn(const auth_pwhash_cost *cost, const char *password) {
    char out[AUTH_HASH_LEN];
    if (check_password(password, NULL, 0) != AUTH_OK) password = "burn: invalid password";
    (void)auth_password_hash(cost, password, out, NULL, 0);
    sodium_memzero(out, sizeof out);
}

/* ---- base64url ---- */

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t auth_b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap) {
    if (out == NULL || (in == NULL && len > 0)) return (size_t)-1;
    if (len > (SIZE_MAX - 4) / 4 * 3) return (size_t)-1;
    size_t need = AUTH_B64URL_LEN(len);
    if (cap < need + 1) return (size_t)-1;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        out[o++] = b64url_alphabet[(v >> 6) & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        out[o++] = b64url_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64url_value(char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '-') return 62;
    if (ch == '_') return 63;
    return -1;
}

size_t auth_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap) {
    if ((in == NULL || out == NULL) && len > 0) return (size_t)-1;
    if (len % 4 == 1) return (size_t)-1;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap) return (size_t)-1;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(in[i]);
        if (v < 0) return (size_t)-1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1u;
        }
    }
    if (acc != 0) return (size_t)-1; /* the unused low bits of the last character */
    return o;
}

/* ---- HMAC ---- */

void auth_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *msg, size_t len,
                      uint8_t out[AUTH_HMAC_LEN]) {
    crypto_auth_hmacsha256_state st;
    static const uint8_t empty[1];
    (void)auth_init();
    crypto_auth_hmacsha256_init(&st, key ? key : empty, key ? keylen : 0);
    crypto_auth_hmacsha256_update(&st, msg ? msg : empty, msg ? len : 0);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

/* ---- keys ---- */

auth_result auth_keys_from_secret(auth_keys *k, const char *secret, char *err, size_t errlen) {
    static const uint8_t personal[crypto_generichash_blake2b_PERSONALBYTES] = "qaex-jwt-hs256";
    static const uint8_t salt[crypto_generichash_blake2b_SALTBYTES];
    if (k == NULL) {
        fail(err, errlen, "token key output is missing");
        return AUTH_INVALID;
    }
    memset(k, 0, sizeof *k);
    if (secret == NULL || secret[0] == '\0') {
        fail(err, errlen, "token secret is empty (leave it unset to get a random key)");
        return AUTH_INVALID;
    }
    if (!auth_init()) {
        fail(err, errlen, "token keys unavailable: libsodium could not be initialised");
        return AUTH_INTERNAL;
    }
    if (crypto_generichash_blake2b_salt_personal(k->secret, sizeof k->secret,
                                                 (const unsigned char *)secret, strlen(secret),
                                                 NULL, 0, salt, personal) != 0) {
        fail(err, errlen, "token key derivation failed (secret of %zu bytes)", strlen(secret));
        return AUTH_INTERNAL;
    }
    ok_msg(err, errlen);
    return AUTH_OK;
}

auth_result auth_keys_generate(auth_keys *k) {
    if (k == NULL) return AUTH_INVALID;
    memset(k, 0, sizeof *k);
    if (!auth_init()) return AUTH_INTERNAL;
    randombytes_buf(k->secret, sizeof k->secret);
    return AUTH_OK;
}

void auth_keys_wipe(auth_keys *k) {
    if (k != NULL) sodium_memzero(k, sizeof *k);
}

/* ---- claims ---- */

const char *auth_role_name(auth_role r) {
    switch (r) {
        case AUTH_ROLE_USER:
            return "user";
        case AUTH_ROLE_ADMIN:
            return "admin";
    }
    return NULL;
}

int auth_role_parse(const char *s) {
    if (s == NULL) return -1;
    if (strcmp(s, "user") == 0) return AUTH_ROLE_USER;
    if (strcmp(s, "admin") == 0) return AUTH_ROLE_ADMIN;
    return -1;
}

/* The byte offset of the first invalid UTF-8 sequence (overlong forms, surrogates and code
 * points above U+10FFFF included), or len when s[0..len) is valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (i + n >= len) return i; /* truncated sequence */
        for (size_t j = 1; j <= n; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n + 1;
    }
    return len;
}

static auth_result check_text(const char *what, const char *s, size_t bufsize, char *err,
                              size_t errlen) {
    if (s == NULL) {
        fail(err, errlen, "%s is missing", what);
        return AUTH_INVALID;
    }
    size_t len = strnlen(s, bufsize);
    if (len == 0) {
        fail(err, errlen, "%s is empty", what);
        return AUTH_INVALID;
    }
    if (len >= bufsize) {
        fail(err, errlen, "%s is %zu bytes, the limit is %zu", what, strlen(s), bufsize - 1);
        return AUTH_INVALID;
    }
    char shown[96];
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7F) {
            fail(err, errlen, "%s \"%s\" has a control character (0x%02x) at byte %zu", what,
                 sanitize(s, 64, shown, sizeof shown), ch, i);
            return AUTH_INVALID;
        }
    }
    size_t bad = utf8_invalid_at((const unsigned char *)s, len);
    if (bad != len) {
        fail(err, errlen, "%s is not valid UTF-8 at byte %zu (0x%02x)", what, bad,
             (unsigned char)s[bad]);
        return AUTH_INVALID;
    }
    return AUTH_OK;
}

auth_result auth_claims_check(const auth_claims *c, char *err, size_t errlen) {
    if (c == NULL) {
        fail(err, errlen, "token claims are missing");
        return AUTH_INVALID;
    }
    auth_result r = check_text("user_id", c->sub, sizeof c->sub, err, errlen);
    if (r == AUTH_OK) r = check_text("username", c->name, sizeof c->name, err, errlen);
    if (r != AUTH_OK) return r;
    if (auth_role_name(c->role) == NULL) {
        fail(err, errlen, "role %d is neither user nor admin", (int)c->role);
        return AUTH_INVALID;
    }
    if (c->iat < 0) {
        fail(err, errlen, "issued-at %" PRId64 " is negative", c->iat);
        return AUTH_INVALID;
    }
    if (c->exp <= c->iat) {
        fail(err, errlen, "expiry %" PRId64 " is not after issued-at %" PRId64, c->exp, c->iat);
        return AUTH_INVALID;
    }
    ok_msg(err, errlen);
    return AUTH_OK;
}

auth_result auth_claims_init(auth_claims *c, const char *user_id, const char *username,
                             auth_role role, int64_t now_s, int64_t ttl_s, char *err,
                             size_t errlen) {
    if (c == NULL) {
        fail(err, errlen, "token claims output is missing");
        return AUTH_INVALID;
    }
    memset(c, 0, sizeof *c);
    auth_result r = check_text("user_id", user_id, sizeof c->sub, err, errlen);
    if (r == AUTH_OK) r = check_text("username", username, sizeof c->name, err, errlen);
    if (r != AUTH_OK) return r;
    if (ttl_s <= 0) {
        fail(err, errlen, "token lifetime %" PRId64 " s is not positive", ttl_s);
        return AUTH_INVALID;
    }
    if (now_s < 0 || ttl_s > INT64_MAX - now_s) {
        fail(err, errlen, "token time %" PRId64 " + lifetime %" PRId64 " s is out of range", now_s,
             ttl_s);
        return AUTH_INVALID;
    }
    memcpy(c->sub, user_id, strlen(user_id) + 1);
    memcpy(c->name, username, strlen(username) + 1);
    c->role = role;
    c->iat = now_s;
    c->exp = now_s + ttl_s;
    return auth_claims_check(c, err, errlen);
}

/* ---- tokens ---- */

static const char jwt_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* A bounded writer: once it overflows it stays overflowed, so callers check once at the end. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool overflow;
} sbuf;

static void sb_putc(sbuf *b, char ch) {
    if (b->len + 1 >= b->cap) {
        b->overflow = true;
        return;
    }
    b->p[b->len++] = ch;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) {
    while (*s)
        sb_putc(b, *s++);
}

static void sb_json_string(sbuf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    sb_putc(b, '"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        switch (ch) {
            case '"':
                sb_puts(b, "\\\"");
                break;
            case '\\':
                sb_puts(b, "\\\\");
                break;
            case '\n':
                sb_puts(b, "\\n");
                break;
            case '\r':
                sb_puts(b, "\\r");
                break;
            case '\t':
                sb_puts(b, "\\t");
                break;
            case '\b':
                sb_puts(b, "\\b");
                break;
            case '\f':
                sb_puts(b, "\\f");
                break;
            default:
                if (ch < 0x20) {
                    sb_puts(b, "\\u00");
                    sb_putc(b, hex[ch >> 4]);
                    sb_putc(b, hex[ch & 15]);
                } else {
                    sb_putc(b, (char)ch);
                }
        }
    }
    sb_putc(b, '"');
}

static void sb_b64url(sbuf *b, const uint8_t *in, size_t len) {
    if (b->overflow) return;
    size_t n = auth_b64url_encode(in, len, b->p + b->len, b->cap - b->len);
    if (n == (size_t)-1) {
        b->overflow = true;
        return;
    }
    b->len += n;
}

size_t auth_token_sign(const auth_keys *k, const auth_claims *c, char *out, size_t cap, char *err,
                       size_t errlen) {
    if (out != NULL && cap > 0) out[0] = '\0';
    if (k == NULL || out == NULL) {
        fail(err, errlen, "token signing needs a key and an output buffer");
        return 0;
    }
    if (auth_claims_check(c, err, errlen) != AUTH_OK) return 0;
    if (!auth_init()) {
        fail(err, errlen, "token signing unavailable: libsodium could not be initialised");
        return 0;
    }

    char payload[AUTH_TOKEN_MAX];
    sbuf p = {payload, 0, sizeof payload, false};
    char num[32];
    payload[0] = '\0';
    sb_puts(&p, "{\"sub\":");
    sb_json_string(&p, c->sub);
    sb_puts(&p, ",\"name\":");
    sb_json_string(&p, c->name);
    sb_puts(&p, ",\"role\":");
    sb_json_string(&p, auth_role_name(c->role));
    snprintf(num, sizeof num, ",\"iat\":%" PRId64, c->iat);
    sb_puts(&p, num);
    snprintf(num, sizeof num, ",\"exp\":%" PRId64 "}", c->exp);
    sb_puts(&p, num);
    if (p.overflow) { /* cannot happen with checked claims; kept as a guard */
        fail(err, errlen, "token payload for user_id \"%s\" is too long", c->sub);
        return 0;
    }

    sbuf t = {out, 0, cap, false};
    sb_b64url(&t, (const uint8_t *)jwt_header, strlen(jwt_header));
    sb_putc(&t, '.');
    sb_b64url(&t, (const uint8_t *)payload, p.len);
    uint8_t mac[AUTH_HMAC_LEN];
    if (!t.overflow)
        auth_hmac_sha256(k->secret, sizeof k->secret, (const uint8_t *)out, t.len, mac);
    sb_putc(&t, '.');
    sb_b64url(&t, mac, sizeof mac);
    if (t.overflow) {
        out[0] = '\0';
        fail(err, errlen, "token buffer of %zu bytes is too small (AUTH_TOKEN_MAX is %d)", cap,
             AUTH_TOKEN_MAX);
        return 0;
    }
    ok_msg(err, errlen);
    return t.len;
}

/* Header: alg first (a wrong alg is its own verdict), then typ, then nothing else. */
static auth_result parse_header(const uint8_t *json, size_t len, char *err, size_t errlen) {
    json_error_t je;
    char shown[48];
    json_t *h = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, &je);
    if (h == NULL || !json_is_object(h)) {
        fail(err, errlen, "token header is not a JSON object%s%s", h ? "" : ": ",
             h ? "" : sanitize(je.text, 40, shown, sizeof shown));
        json_decref(h);
        return AUTH_TOKEN_MALFORMED;
    }
    auth_result r = AUTH_OK;
    json_t *alg = json_object_get(h, "alg");
    json_t *typ = json_object_get(h, "typ");
    const char *key;
    json_t *val;
    if (!json_is_string(alg)) {
        fail(err, errlen, "token header has no alg string");
        r = AUTH_TOKEN_MALFORMED;
    } else if (strcmp(json_string_value(alg), "HS256") != 0 ||
               json_string_length(alg) != strlen("HS256")) {
        fail(err, errlen, "token alg \"%s\" refused: only HS256 is accepted",
             sanitize(json_string_value(alg), 16, shown, sizeof shown));
        r = AUTH_TOKEN_BAD_ALG;
    } else if (typ != NULL &&
               (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0)) {
        fail(err, errlen, "token typ %s%s%s refused: only JWT is accepted",
             json_is_string(typ) ? "\"" : "",
             json_is_string(typ) ? sanitize(json_string_value(typ), 16, shown, sizeof shown)
                                 : "(not a string)",
             json_is_string(typ) ? "\"" : "");
        r = AUTH_TOKEN_MALFORMED;
    } else {
        json_object_foreach(h, key, val) {
            if (strcmp(key, "alg") != 0 && strcmp(key, "typ") != 0) {
                fail(err, errlen, "token header has an unknown field \"%s\"",
                     sanitize(key, 16, shown, sizeof shown));
                r = AUTH_TOKEN_MALFORMED;
                break;
            }
        }
    }
    json_decref(h);
    return r;
}

static bool claim_string(json_t *v, const char *name, char *dst, size_t cap, char *err,
                         size_t errlen) {
    if (!json_is_string(v)) {
        fail(err, errlen, "token claim %s is %s, expected a string", name,
             v ? "not a string" : "missing");
        return false;
    }
    size_t len = json_string_length(v);
    if (len != strlen(json_string_value(v))) {
        fail(err, errlen, "token claim %s has a NUL character", name);
        return false;
    }
    if (len >= cap) {
        fail(err, errlen, "token claim %s is %zu bytes, the limit is %zu", name, len, cap - 1);
        return false;
    }
    memcpy(dst, json_string_value(v), len + 1);
    return true;
}

static bool claim_time(json_t *v, const char *name, int64_t *dst, char *err, size_t errlen) {
    if (!json_is_integer(v)) {
        fail(err, errlen, "token claim %s is %s, expected an integer", name,
             v ? "not an integer" : "missing");
        return false;
    }
    *dst = (int64_t)json_integer_value(v);
    return true;
}

static auth_result parse_payload(const uint8_t *json, size_t len, auth_claims *c, char *err,
                                 size_t errlen) {
    static const char *const known[] = {"sub", "name", "role", "iat", "exp"};
    json_error_t je;
    char shown[48];
    json_t *p = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, &je);
    if (p == NULL || !json_is_object(p)) {
        fail(err, errlen, "token payload is not a JSON object%s%s", p ? "" : ": ",
             p ? "" : sanitize(je.text, 40, shown, sizeof shown));
        json_decref(p);
        return AUTH_TOKEN_MALFORMED;
    }
    const char *key;
    json_t *val;
    json_object_foreach(p, key, val) {
        bool found = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            found |= !strcmp(key, known[i]);
        if (!found) {
            fail(err, errlen, "token payload has an unknown claim \"%s\"",
                 sanitize(key, 16, shown, sizeof shown));
            json_decref(p);
            return AUTH_TOKEN_MALFORMED;
        }
    }
    char role[16];
    bool ok =
        claim_string(json_object_get(p, "sub"), "sub", c->sub, sizeof c->sub, err, errlen) &&
        claim_string(json_object_get(p, "name"), "name", c->name, sizeof c->name, err, errlen) &&
        claim_string(json_object_get(p, "role"), "role", role, sizeof role, err, errlen) &&
        claim_time(json_object_get(p, "iat"), "iat", &c->iat, err, errlen) &&
        claim_time(json_object_get(p, "exp"), "exp", &c->exp, err, errlen);
    json_decref(p);
    if (!ok) return AUTH_TOKEN_MALFORMED;
    int rl = auth_role_parse(role);
    if (rl < 0) {
        fail(err, errlen, "token role \"%s\" is neither user nor admin",
             sanitize(role, 16, shown, sizeof shown));
        return AUTH_TOKEN_MALFORMED;
    }
    c->role = (auth_role)rl;
    char why[160];
    if (auth_claims_check(c, why, sizeof why) != AUTH_OK) {
        fail(err, errlen, "token claims refused: %s", why);
        return AUTH_TOKEN_MALFORMED;
    }
    return AUTH_OK;
}

auth_result auth_token_verify(const auth_keys *k, const char *token, int64_t now_s,
                              auth_claims *out, char *err, size_t errlen) {
    if (out != NULL) memset(out, 0, sizeof *out);
    if (k == NULL || out == NULL) {
        fail(err, errlen, "token verification needs a key and a claims output");
        return AUTH_INVALID;
    }
    if (token == NULL || token[0] == '\0') {
        fail(err, errlen, "token is missing");
        return AUTH_TOKEN_MALFORMED;
    }
    size_t len = strnlen(token, AUTH_TOKEN_MAX + 1);
    if (len > AUTH_TOKEN_MAX) {
        fail(err, errlen, "token is longer than %d bytes", AUTH_TOKEN_MAX);
        return AUTH_TOKEN_MALFORMED;
    }
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    size_t parts = 1;
    for (size_t i = 0; i < len; i++)
        parts += token[i] == '.';
    if (parts != 3) {
        fail(err, errlen, "token has %zu part%s, expected 3 (header.payload.signature)", parts,
             parts == 1 ? "" : "s");
        return AUTH_TOKEN_MALFORMED;
    }
    if (!auth_init()) {
        fail(err, errlen, "token verification unavailable: libsodium could not be initialised");
        return AUTH_INTERNAL;
    }

    uint8_t buf[AUTH_TOKEN_MAX];
    size_t hlen = (size_t)(dot1 - token);
    size_t n = auth_b64url_decode(token, hlen, buf, sizeof buf);
    if (n == (size_t)-1 || n == 0) {
        fail(err, errlen, "token header (%zu characters) is not base64url", hlen);
        return AUTH_TOKEN_MALFORMED;
    }
    auth_result r = parse_header(buf, n, err, errlen);
    if (r != AUTH_OK) return r;

    const char *sig = dot2 + 1;
    size_t slen = len - (size_t)(sig - token);
    uint8_t mac[AUTH_HMAC_LEN], given[AUTH_HMAC_LEN];
    if (slen != AUTH_B64URL_LEN(AUTH_HMAC_LEN) ||
        auth_b64url_decode(sig, slen, given, sizeof given) != AUTH_HMAC_LEN) {
        fail(err, errlen, "token signature is %zu characters of %s, expected %d of base64url", slen,
             slen ? "text" : "nothing", (int)AUTH_B64URL_LEN(AUTH_HMAC_LEN));
        return AUTH_TOKEN_BAD_SIGNATURE;
    }
    auth_hmac_sha256(k->secret, sizeof k->secret, (const uint8_t *)token, (size_t)(dot2 - token),
                     mac);
    if (sodium_memcmp(mac, given, sizeof mac) != 0) {
        fail(err, errlen, "token signature does not match (another key, or altered)");
        return AUTH_TOKEN_BAD_SIGNATURE;
    }

    const char *pay = dot1 + 1;
    size_t plen = (size_t)(dot2 - pay);
    n = auth_b64url_decode(pay, plen, buf, sizeof buf);
    if (n == (size_t)-1 || n == 0) {
        fail(err, errlen, "token payload (%zu characters) is not base64url", plen);
        return AUTH_TOKEN_MALFORMED;
    }
    auth_claims c;
    memset(&c, 0, sizeof c);
    r = parse_payload(buf, n, &c, err, errlen);
    if (r != AUTH_OK) return r;
    if (now_s >= c.exp) {
        fail(err, errlen, "token for \"%s\" expired at %" PRId64 " (now %" PRId64 ")", c.name,
             c.exp, now_s);
        return AUTH_TOKEN_EXPIRED;
    }
    *out = c;
    ok_msg(err, errlen);
    return AUTH_OK;
}

/* ---- login throttling ---- */

#define THROTTLE_FAIL_MAX 32
#define THROTTLE_DIGEST 16
#define NIL UINT32_MAX

typedef struct tslot {
    uint8_t digest[THROTTLE_DIGEST];
    uint32_t prev, next; /* LRU list, most recent failure first */
    int64_t locked_until;
    uint32_t level;       /* lockouts in a row: the next one lasts lockout_ms << level */
    uint32_t nfail, head; /* ring of failure times in fails[slot * max_failures] */
} tslot;

struct auth_throttle {
    auth_throttle_config cfg;
    uint8_t hashkey[crypto_generichash_KEYBYTES];
    tslot *slots;
    int64_t *fails;
    uint32_t *index; /* open addressing, linear probing: slot number or NIL */
    uint32_t mask;   /* index size - 1 */
    uint32_t lru_head, lru_tail, free_head, size;
};

void auth_throttle_config_default(auth_throttle_config *c) {
    c->capacity = 4096;
    c->max_failures = 5;
    c->window_ms = 60000;
    c->lockout_ms = 60000;
    c->lockout_max_ms = 3600000;
}

auth_throttle *auth_throttle_new(const auth_throttle_config *cfg, char *err, size_t errlen) {
    auth_throttle_config c;
    if (cfg)
        c = *cfg;
    else
        auth_throttle_config_default(&c);
    if (c.capacity == 0 || c.capacity > (1u << 24)) {
        fail(err, errlen, "throttle capacity %" PRIu32 " is outside [1, %u]", c.capacity, 1u << 24);
        return NULL;
    }
    if (c.max_failures == 0 || c.max_failures > THROTTLE_FAIL_MAX) {
        fail(err, errlen, "throttle max_failures %" PRIu32 " is outside [1, %d]", c.max_failures,
             THROTTLE_FAIL_MAX);
        return NULL;
    }
    if (c.window_ms <= 0 || c.lockout_ms <= 0 || c.lockout_max_ms < c.lockout_ms) {
        fail(err, errlen,
             "throttle times are inconsistent: window %" PRId64 " ms, lockout %" PRId64
             " ms, lockout max %" PRId64 " ms (all > 0, max >= lockout)",
             c.window_ms, c.lockout_ms, c.lockout_max_ms);
        return NULL;
    }
    if (!auth_init()) {
        fail(err, errlen, "throttle unavailable: libsodium could not be initialised");
        return NULL;
    }
    uint32_t isize = 1;
    while (isize < 2 * c.capacity)
        isize <<= 1;
    size_t bytes_slots = sizeof(tslot) * c.capacity;
    size_t bytes_fails = sizeof(int64_t) * c.capacity * c.max_failures;
    size_t bytes_index = sizeof(uint32_t) * isize;
    char *mem = malloc(sizeof(auth_throttle) + bytes_slots + bytes_fails + bytes_index);
    if (mem == NULL) {
        fail(err, errlen, "throttle of %" PRIu32 " keys: out of memory", c.capacity);
        return NULL;
    }
    auth_throttle *t = (auth_throttle *)mem;
    t->cfg = c;
    randombytes_buf(t->hashkey, sizeof t->hashkey);
    t->slots = (tslot *)(mem + sizeof(auth_throttle));
    t->fails = (int64_t *)(mem + sizeof(auth_throttle) + bytes_slots);
    t->index = (uint32_t *)(mem + sizeof(auth_throttle) + bytes_slots + bytes_fails);
    t->mask = isize - 1;
    for (uint32_t i = 0; i < isize; i++)
        t->index[i] = NIL;
    memset(t->slots, 0, bytes_slots);
    for (uint32_t i = 0; i < c.capacity; i++)
        t->slots[i].next = i + 1 < c.capacity ? i + 1 : NIL;
    t->free_head = 0;
    t->lru_head = t->lru_tail = NIL;
    t->size = 0;
    ok_msg(err, errlen);
    return t;
}

void auth_throttle_free(auth_throttle *t) {
    if (t == NULL) return;
    sodium_memzero(t->hashkey, sizeof t->hashkey);
    free(t);
}

size_t auth_throttle_size(const auth_throttle *t) {
    return t ? t->size : 0;
}

static bool throttle_digest(const auth_throttle *t, const char *key, uint8_t out[THROTTLE_DIGEST]) {
    if (t == NULL || key == NULL || key[0] == '\0') return false;
    crypto_generichash(out, THROTTLE_DIGEST, (const unsigned char *)key, strlen(key), t->hashkey,
                       sizeof t->hashkey);
    return true;
}

static uint32_t digest_home(const auth_throttle *t, const uint8_t d[THROTTLE_DIGEST]) {
    uint32_t h;
    memcpy(&h, d, sizeof h);
    return h & t->mask;
}

/* The index position holding the slot for d, or NIL. */
static uint32_t index_find(const auth_throttle *t, const uint8_t d[THROTTLE_DIGEST]) {
    for (uint32_t i = digest_home(t, d);; i = (i + 1) & t->mask) {
        uint32_t s = t->index[i];
        if (s == NIL) return NIL;
        if (memcmp(t->slots[s].digest, d, THROTTLE_DIGEST) == 0) return i;
    }
}

/* Backward-shift deletion keeps every probe chain unbroken without tombstones. */
static void index_remove_at(auth_throttle *t, uint32_t i) {
    uint32_t j = i;
    t->index[i] = NIL;
    for (;;) {
        j = (j + 1) & t->mask;
        uint32_t s = t->index[j];
        if (s == NIL) return;
        uint32_t home = digest_home(t, t->slots[s].digest);
        /* move s back to the hole when the hole lies on its probe path (home..j, cyclically) */
        bool movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            t->index[i] = s;
            t->index[j] = NIL;
            i = j;
        }
    }
}

static void lru_unlink(auth_throttle *t, uint32_t s) {
    tslot *e = &t->slots[s];
    if (e->prev != NIL)
        t->slots[e->prev].next = e->next;
    else
        t->lru_head = e->next;
    if (e->next != NIL)
        t->slots[e->next].prev = e->prev;
    else
        t->lru_tail = e->prev;
    e->prev = e->next = NIL;
}

static void lru_push_front(auth_throttle *t, uint32_t s) {
    tslot *e = &t->slots[s];
    e->prev = NIL;
    e->next = t->lru_head;
    if (t->lru_head != NIL) t->slots[t->lru_head].prev = s;
    t->lru_head = s;
    if (t->lru_tail == NIL) t->lru_tail = s;
}

static void slot_release(auth_throttle *t, uint32_t index_pos) {
    uint32_t s = t->index[index_pos];
    index_remove_at(t, index_pos);
    lru_unlink(t, s);
    memset(&t->slots[s], 0, sizeof t->slots[s]);
    t->slots[s].next = t->free_head;
    t->free_head = s;
    t->size--;
}

int64_t auth_throttle_check(const auth_throttle *t, const char *key, int64_t now_ms) {
    uint8_t d[THROTTLE_DIGEST];
    if (!throttle_digest(t, key, d)) return AUTH_THROTTLE_INVALID;
    uint32_t i = index_find(t, d);
    if (i == NIL) return 0;
    const tslot *e = &t->slots[t->index[i]];
    return e->locked_until > now_ms ? e->locked_until - now_ms : 0;
}

int64_t auth_throttle_failure(auth_throttle *t, const char *key, int64_t now_ms) {
    uint8_t d[THROTTLE_DIGEST];
    if (!throttle_digest(t, key, d)) return AUTH_THROTTLE_INVALID;
    const auth_throttle_config *c = &t->cfg;
    uint32_t i = index_find(t, d);
    uint32_t s;
    if (i != NIL) {
        s = t->index[i];
        lru_unlink(t, s);
    } else {
        if (t->free_head == NIL) slot_release(t, index_find(t, t->slots[t->lru_tail].digest));
        s = t->free_head;
        t->free_head = t->slots[s].next;
        memset(&t->slots[s], 0, sizeof t->slots[s]);
        memcpy(t->slots[s].digest, d, THROTTLE_DIGEST);
        t->slots[s].locked_until = INT64_MIN;
        for (i = digest_home(t, d); t->index[i] != NIL; i = (i + 1) & t->mask) {
        }
        t->index[i] = s;
        t->size++;
    }
    lru_push_front(t, s);
    tslot *e = &t->slots[s];
    if (e->locked_until > now_ms) return e->locked_until - now_ms;

    int64_t *ring = &t->fails[(size_t)s * c->max_failures];
    while (e->nfail > 0 && ring[e->head] <= now_ms - c->window_ms) {
        e->head = (e->head + 1) % c->max_failures;
        e->nfail--;
    }
    /* a full quiet window after the last lockout ended: the next lockout starts short again */
    if (e->level > 0 && e->nfail == 0 && now_ms - e->locked_until >= c->window_ms) e->level = 0;
    ring[(e->head + e->nfail) % c->max_failures] = now_ms;
    e->nfail++;
    if (e->nfail < c->max_failures) return 0;

    int64_t dur = c->lockout_ms;
    for (uint32_t l = 0; l < e->level && dur < c->lockout_max_ms; l++)
        dur = dur > c->lockout_max_ms / 2 ? c->lockout_max_ms : dur * 2;
    if (dur > c->lockout_max_ms) dur = c->lockout_max_ms;
    if (e->level < 63) e->level++;
    e->locked_until = now_ms + dur;
    e->nfail = 0;
    e->head = 0;
    return dur;
}

void auth_throttle_success(auth_throttle *t, const char *key) {
    uint8_t d[THROTTLE_DIGEST];
    if (!throttle_digest(t, key, d)) return;
    uint32_t i = index_find(t, d);
    if (i != NIL) slot_release(t, i);
}

const char *auth_throttle_message(const char *key, int64_t wait_ms, char *err, size_t errlen) {
    char shown[80];
    if (err == NULL || errlen == 0) return err;
    if (wait_ms < 0) wait_ms = 0;
    int64_t secs = wait_ms / 1000 + (wait_ms % 1000 != 0);
    snprintf(err, errlen, "too many failed logins for \"%s\": retry in %" PRId64 " s",
             sanitize(key, 64, shown, sizeof shown), secs);
    return err;
}

/* ---- user ids ---- */

bool auth_uuid4(char out[AUTH_UUID_LEN]) {
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    out[0] = '\0';
    if (!auth_init()) return false;
    randombytes_buf(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3F) | 0x80); /* variant 10xx */
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
    return true;
}

bool auth_uuid_valid(const char *s) {
    if (s == NULL) return false;
    for (int i = 0; i < 36; i++) {
        char ch = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (ch != '-') return false;
        } else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                     (ch >= 'A' && ch <= 'F'))) {
            return false;
        }
    }
    return s[36] == '\0';
}
