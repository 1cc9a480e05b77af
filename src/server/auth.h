/* Authentication primitives for issue #7 (SPEC 5 "Auth", SPEC 6 `auth`/`req_login`, SPEC 7 codes
 * 9001/9002/9004): password hashing, signed expiring login tokens, login throttling and user
 * ids. The gateway owns users, routes and the clock; this module owns only the cryptography and
 * the bookkeeping, so it can be tested without a network and without real time.
 *
 * Choices:
 *   - Passwords: argon2id (libsodium crypto_pwhash_str_alg), the PHC string format, so a stored
 *     hash carries its own salt and cost and old hashes stay verifiable when the cost changes
 *     (auth_password_needs_rehash tells when to upgrade one at the next successful login).
 *   - Tokens: JWT HS256 (RFC 7519/7515), so any JWT tool can read one while debugging. The
 *     header is fixed, {"alg":"HS256","typ":"JWT"}; the payload is exactly
 *     {"sub":…,"name":…,"role":"user"|"admin","iat":…,"exp":…} (epoch seconds). Verification
 *     is strict: the only header accepted is alg HS256 (never "none": a token must not choose
 *     how it is checked), unknown or missing claims, duplicate keys, non-integer times, padding
 *     or non-canonical base64url are refused, and the signature is compared in constant time.
 *     The signature is checked before the payload is parsed: forged input reaches no parser
 *     beyond the 3-part split and the header.
 *   - Throttling: failures per key (a username, or a client address: the caller decides and
 *     may keep one table for each) in a sliding window; too many lock the key, and each further
 *     lockout in a row doubles, so guessing stays slow while one mistyped password costs
 *     nothing. Keys are stored as keyed BLAKE2b digests: any key length fits a fixed slot and
 *     nobody can aim keys at one index bucket.
 *
 * Threads: libsodium is initialised once (auth_init, called by every function that needs it, is
 * safe to race). Everything else is reentrant; an auth_throttle must be used by one thread at a
 * time (it lives on the I/O thread, like the notification broker).
 *
 * Errors: functions that can fail take `err, errlen` and write a message naming the offending
 * value (a length, a claim, an alg, a time), never a password, a secret or a whole token,
 * because these messages reach logs and clients. err may be NULL. */
#ifndef QAEX_AUTH_H
#define QAEX_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The SPEC 7 codes the gateway answers with. */
#define AUTH_CODE_AUTH_FAILED 9001
#define AUTH_CODE_NOT_AUTHENTICATED 9002
#define AUTH_CODE_RATE_LIMITED 9004

typedef enum auth_result {
    AUTH_OK = 0,
    AUTH_INVALID,             /* an argument broke a rule; the message says which */
    AUTH_MISMATCH,            /* wrong password */
    AUTH_INTERNAL,            /* libsodium unusable, out of memory, or a buffer too small */
    AUTH_TOKEN_MALFORMED,     /* not three base64url parts, bad JSON, bad or missing claims */
    AUTH_TOKEN_BAD_ALG,       /* header alg is not HS256 ("none" included) */
    AUTH_TOKEN_BAD_SIGNATURE, /* signed with another key, or altered after signing */
    AUTH_TOKEN_EXPIRED        /* well signed, but now >= exp */
} auth_result;

/* "ok", "invalid", …, "token_expired"; "unknown" for a value outside the enum. */
const char *auth_result_name(auth_result r);

/* Initialises libsodium once per process. False when it cannot be (no entropy source): every
 * function then fails with AUTH_INTERNAL rather than produce weak salts or keys. */
bool auth_init(void);

/* ---- passwords ---- */

#define AUTH_HASH_LEN 128     /* crypto_pwhash_STRBYTES: the PHC string and its NUL */
#define AUTH_PASSWORD_MAX 128 /* bytes; longer ones are refused, not truncated */

/* argon2id cost. Production uses interactive (about 64 MiB and 0.1 s per hash, what an attacker
 * with the hash file pays per guess); tests and the `fast` config use the minimum, which is
 * still argon2id but costs almost nothing. */
typedef struct auth_pwhash_cost {
    unsigned long long opslimit;
    size_t memlimit; /* bytes */
} auth_pwhash_cost;

void auth_pwhash_cost_interactive(auth_pwhash_cost *c);
void auth_pwhash_cost_fast(auth_pwhash_cost *c);

/* out receives a NUL-terminated "$argon2id$v=19$m=…,t=…,p=1$salt$hash" string; a fresh random
 * salt makes two hashes of one password differ. cost NULL = interactive. AUTH_INVALID for a
 * NULL, empty or over-long password or a cost outside libsodium's bounds. */
auth_result auth_password_hash(const auth_pwhash_cost *cost, const char *password,
                               char out[AUTH_HASH_LEN], char *err, size_t errlen);

/* AUTH_OK, AUTH_MISMATCH, or AUTH_INVALID when the password breaks the length rules or the
 * stored hash is not an argon2id string (a corrupt user record, not a wrong guess). */
auth_result auth_password_verify(const char *hash, const char *password, char *err, size_t errlen);

/* True when hash was made with another cost than `cost` (or is unreadable): rehash the
 * password after the next successful verify. cost NULL = interactive. */
bool auth_password_needs_rehash(const char *hash, const auth_pwhash_cost *cost);

/* Spends the time of one hash and discards it. Call it when the username is unknown, so a
 * failed login takes as long whether or not the user exists (no user enumeration by timing). */
void auth_password_burn(const auth_pwhash_cost *cost, const char *password);

/* ---- base64url and HMAC (the JWT building blocks, exposed for tests) ---- */

/* RFC 4648 section 5 without padding. Encoding writes the text and a NUL and returns its length,
 * or (size_t)-1 when cap < AUTH_B64URL_LEN(len) + 1. */
#define AUTH_B64URL_LEN(n) (((n) / 3) * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))
size_t auth_b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap);
/* Decodes exactly `len` characters; (size_t)-1 for a character outside the alphabet, '=', a
 * length that no encoding has (len % 4 == 1), non-zero unused trailing bits (so every byte
 * string has one encoding and a token cannot be altered without changing its bytes), or
 * cap too small. */
size_t auth_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#define AUTH_HMAC_LEN 32
/* HMAC-SHA256 (RFC 2104) with a key of any length. */
void auth_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *msg, size_t len,
                      uint8_t out[AUTH_HMAC_LEN]);

/* ---- token keys ---- */

#define AUTH_KEY_LEN 32

typedef struct auth_keys {
    uint8_t secret[AUTH_KEY_LEN];
} auth_keys;

/* From the configured [auth] token_secret: BLAKE2b-256 with a personalisation of this use, so the
 * same string used elsewhere yields an unrelated key and tokens survive a restart. Any non-empty
 * string is accepted (the config loader warns below 16 characters); empty is AUTH_INVALID,
 * because an empty secret means "generate one", which is auth_keys_generate. */
auth_result auth_keys_from_secret(auth_keys *k, const char *secret, char *err, size_t errlen);
/* A random key: tokens die with the process. */
auth_result auth_keys_generate(auth_keys *k);
/* Zeroes the key in a way the compiler keeps. */
void auth_keys_wipe(auth_keys *k);

/* ---- tokens ---- */

#define AUTH_ID_LEN 64   /* sub (user_id) buffer with its NUL, as QAEX_ID_LEN */
#define AUTH_NAME_LEN 64 /* name (username) buffer with its NUL, as QAEX_NAME_LEN */
/* Enough for any valid claims, even names made only of characters JSON escapes as \u00XX. */
#define AUTH_TOKEN_MAX 2048

typedef enum auth_role { AUTH_ROLE_USER, AUTH_ROLE_ADMIN } auth_role;

/* "user" / "admin"; NULL for a value outside the enum. */
const char *auth_role_name(auth_role r);
/* -1 when s is neither (case-sensitive: the token is ours, it never has another spelling). */
int auth_role_parse(const char *s);

typedef struct auth_claims {
    char sub[AUTH_ID_LEN];    /* user_id: 1..63 bytes of UTF-8, no control characters */
    char name[AUTH_NAME_LEN]; /* username: same rules */
    auth_role role;
    int64_t iat; /* issued at, epoch seconds, >= 0 */
    int64_t exp; /* expires at, epoch seconds, > iat */
} auth_claims;

/* Fills c for a token issued at now_s that lives ttl_s seconds, checking every field (it is how
 * the gateway should build claims, so an over-long name is refused here with its length rather
 * than silently cut). */
auth_result auth_claims_init(auth_claims *c, const char *user_id, const char *username,
                             auth_role role, int64_t now_s, int64_t ttl_s, char *err,
                             size_t errlen);
/* The rules above, for claims built another way. */
auth_result auth_claims_check(const auth_claims *c, char *err, size_t errlen);

/* Writes header.payload.signature and a NUL into out and returns its length; 0 when the claims
 * break a rule, cap is too small (AUTH_TOKEN_MAX always suffices) or memory runs out, with the
 * reason in err. */
size_t auth_token_sign(const auth_keys *k, const auth_claims *c, char *out, size_t cap, char *err,
                       size_t errlen);

/* Checks, in this order: shape (3 parts, at most AUTH_TOKEN_MAX bytes), header (alg HS256),
 * signature, payload, expiry (expired when now_s >= exp). out receives the claims only on
 * AUTH_OK (it is zeroed otherwise, so a refused token never leaves a usable identity behind). */
auth_result auth_token_verify(const auth_keys *k, const char *token, int64_t now_s,
                              auth_claims *out, char *err, size_t errlen);

/* ---- login throttling (9004) ---- */

typedef struct auth_throttle_config {
    uint32_t capacity;      /* keys remembered; the least recently failed is evicted (4096) */
    uint32_t max_failures;  /* failures within window_ms that lock a key (5, at most 32) */
    int64_t window_ms;      /* 60000 */
    int64_t lockout_ms;     /* the first lockout (60000) */
    int64_t lockout_max_ms; /* lockouts double up to this (3600000) */
} auth_throttle_config;

void auth_throttle_config_default(auth_throttle_config *c);

typedef struct auth_throttle auth_throttle;

/* One allocation for the whole table; no call after this one allocates. NULL when out of memory
 * or the config is inconsistent (zero capacity or failures, max_failures > 32, a window or
 * lockout <= 0, lockout_max_ms < lockout_ms), with the reason in err. cfg NULL = defaults. */
auth_throttle *auth_throttle_new(const auth_throttle_config *cfg, char *err, size_t errlen);
void auth_throttle_free(auth_throttle *t);

#define AUTH_THROTTLE_INVALID (-1)
/* 0 when key may try to log in at now_ms, else the milliseconds until it may.
 * AUTH_THROTTLE_INVALID for a NULL table or a NULL or empty key. Read-only. */
int64_t auth_throttle_check(const auth_throttle *t, const char *key, int64_t now_ms);
/* Records a failed login. Returns what auth_throttle_check would now return: > 0 when this
 * failure locked the key (or it was locked already, which does not extend the lock). */
int64_t auth_throttle_failure(auth_throttle *t, const char *key, int64_t now_ms);
/* A successful login forgets the key: its failures and its lockout history. */
void auth_throttle_success(auth_throttle *t, const char *key);
/* Keys remembered now (for tests and monitoring). */
size_t auth_throttle_size(const auth_throttle *t);

/* The 9004 message: "too many failed logins for \"alice\": retry in 42 s" (seconds rounded up;
 * the key is cut to 64 bytes and control characters are replaced, since it comes from a
 * client). Returns err. */
const char *auth_throttle_message(const char *key, int64_t wait_ms, char *err, size_t errlen);

/* ---- user ids ---- */

#define AUTH_UUID_LEN 37 /* 36 characters and the NUL */

/* A random (version 4, RFC 9562) UUID in lower-case 8-4-4-4-12 form. False only when libsodium
 * cannot be initialised (out is then ""). */
bool auth_uuid4(char out[AUTH_UUID_LEN]);
/* True for the 8-4-4-4-12 hex form (either case), any version. */
bool auth_uuid_valid(const char *s);

#endif
