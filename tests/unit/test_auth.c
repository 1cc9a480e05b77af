/* Unit tests for the authentication library (src/server/auth.h): argon2id passwords, HS256
 * tokens against independent known answers (RFC 4648, RFC 4231, a token computed outside this
 * code), every refusal with its own result, and the throttle under an injected clock. */
#include "check.h"
#include "server/auth.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static auth_pwhash_cost fast_cost(void) {
    auth_pwhash_cost c;
    auth_pwhash_cost_fast(&c);
    return c;
}

static void hex_of(const uint8_t *b, size_t n, char *out) {
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- passwords ---- */

static void test_password_round_trip(void) {
    auth_pwhash_cost c = fast_cost();
    char h1[AUTH_HASH_LEN], h2[AUTH_HASH_LEN], err[256];
    CHECK_INT(auth_password_hash(&c, "s3cret-Passw0rd", h1, err, sizeof err), AUTH_OK);
    CHECK_STR(err, "");
    CHECK(strncmp(h1, "$argon2id$v=19$m=8,t=1,p=1$", 27) == 0);
    CHECK_INT(auth_password_verify(h1, "s3cret-Passw0rd", err, sizeof err), AUTH_OK);
    CHECK_INT(auth_password_verify(h1, "s3cret-Passw0rD", err, sizeof err), AUTH_MISMATCH);
    CHECK_STR(err, "wrong password");
    CHECK_INT(auth_password_verify(h1, "s3cret-Passw0r", err, sizeof err), AUTH_MISMATCH);

    /* a fresh salt each time: same password, different strings, both verify */
    CHECK_INT(auth_password_hash(&c, "s3cret-Passw0rd", h2, err, sizeof err), AUTH_OK);
    CHECK(strcmp(h1, h2) != 0);
    CHECK_INT(auth_password_verify(h2, "s3cret-Passw0rd", err, sizeof err), AUTH_OK);

    /* UTF-8 and exactly the byte limit are fine */
    char longest[AUTH_PASSWORD_MAX + 1];
    memset(longest, 'p', AUTH_PASSWORD_MAX);
    longest[AUTH_PASSWORD_MAX] = '\0';
    CHECK_INT(auth_password_hash(&c, longest, h1, err, sizeof err), AUTH_OK);
    CHECK_INT(auth_password_verify(h1, longest, err, sizeof err), AUTH_OK);
    CHECK_INT(auth_password_hash(&c, "密码-пароль", h1, err, sizeof err), AUTH_OK);
    CHECK_INT(auth_password_verify(h1, "密码-пароль", err, sizeof err), AUTH_OK);
    CHECK_INT(auth_password_verify(h1, "密码-пароль ", err, sizeof err), AUTH_MISMATCH);
}

static void test_password_rules(void) {
    auth_pwhash_cost c = fast_cost();
    char h[AUTH_HASH_LEN], err[256];
    CHECK_INT(auth_password_hash(&c, "", h, err, sizeof err), AUTH_INVALID);
    CHECK_STR(err, "password is empty");
    CHECK_STR(h, "");
    CHECK_INT(auth_password_hash(&c, NULL, h, err, sizeof err), AUTH_INVALID);
    CHECK_STR(err, "password is missing");

    char too_long[200];
    memset(too_long, 'Z', 129);
    too_long[129] = '\0';
    CHECK_INT(auth_password_hash(&c, too_long, h, err, sizeof err), AUTH_INVALID);
    CHECK_STR(err, "password is 129 bytes, the limit is 128");
    CHECK(strstr(err, "ZZZ") == NULL); /* never the password itself */

    /* verify applies the same rules, so a 10 kB password costs nothing */
    CHECK_INT(auth_password_hash(&c, "fine", h, err, sizeof err), AUTH_OK);
    CHECK_INT(auth_password_verify(h, too_long, err, sizeof err), AUTH_INVALID);
    CHECK_INT(auth_password_verify(h, "", err, sizeof err), AUTH_INVALID);

    /* a corrupt stored hash is not a wrong password */
    CHECK_INT(auth_password_verify("not-a-hash", "fine", err, sizeof err), AUTH_INVALID);
    CHECK_STR(err, "stored password hash (10 bytes) is not an argon2id string");
    CHECK_INT(auth_password_verify("$argon2i$v=19$m=8,t=1,p=1$AAAA$AAAA", "fine", err, sizeof err),
              AUTH_INVALID);
    CHECK_INT(auth_password_verify(NULL, "fine", err, sizeof err), AUTH_INVALID);
    CHECK_STR(err, "stored password hash is missing");

    /* cost outside libsodium's bounds */
    auth_pwhash_cost bad = {0, 8192};
    CHECK_INT(auth_password_hash(&bad, "fine", h, err, sizeof err), AUTH_INVALID);
    CHECK_CONTAINS(err, "opslimit 0");
    bad.opslimit = 1;
    bad.memlimit = 1024;
    CHECK_INT(auth_password_hash(&bad, "fine", h, err, sizeof err), AUTH_INVALID);
    CHECK_CONTAINS(err, "memlimit 1024 bytes");
    CHECK_INT(auth_password_hash(&c, "fine", NULL, err, sizeof err), AUTH_INVALID);
    /* err may be NULL */
    CHECK_INT(auth_password_hash(&c, "", h, NULL, 0), AUTH_INVALID);
}

static void test_password_rehash_and_burn(void) {
    auth_pwhash_cost fast = fast_cost(), inter;
    auth_pwhash_cost_interactive(&inter);
    CHECK(inter.opslimit > fast.opslimit && inter.memlimit > fast.memlimit);
    char h[AUTH_HASH_LEN];
    CHECK_INT(auth_password_hash(&fast, "pw", h, NULL, 0), AUTH_OK);
    CHECK(!auth_password_needs_rehash(h, &fast));
    CHECK(auth_password_needs_rehash(h, &inter));
    CHECK(auth_password_needs_rehash(h, NULL)); /* NULL = interactive */
    CHECK(auth_password_needs_rehash("garbage", &fast));
    CHECK(auth_password_needs_rehash(NULL, &fast));
    auth_password_burn(&fast, "pw"); /* returns, whatever the input */
    auth_password_burn(&fast, NULL);
    auth_password_burn(&fast, "");
}

/* ---- base64url and HMAC ---- */

static void test_b64url_vectors(void) {
    /* RFC 4648 section 10, without the padding (section 3.2 / 5) */
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    char enc[32];
    uint8_t dec[32];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].in);
        CHECK_INT(auth_b64url_encode((const uint8_t *)v[i].in, n, enc, sizeof enc),
                  strlen(v[i].out));
        CHECK_STR(enc, v[i].out);
        CHECK_INT(AUTH_B64URL_LEN(n), strlen(v[i].out));
        CHECK_INT(auth_b64url_decode(v[i].out, strlen(v[i].out), dec, sizeof dec), n);
        CHECK(memcmp(dec, v[i].in, n) == 0);
    }
    /* the URL-safe alphabet: 62 and 63 are '-' and '_', not '+' and '/' */
    static const uint8_t hi[] = {0xFB, 0xFF, 0xBF};
    CHECK_INT(auth_b64url_encode(hi, 3, enc, sizeof enc), 4);
    CHECK_STR(enc, "-_-_");
    CHECK_INT(auth_b64url_encode(hi, 2, enc, sizeof enc), 3);
    CHECK_STR(enc, "-_8");
    CHECK_INT(auth_b64url_decode("-_-_", 4, dec, sizeof dec), 3);
    CHECK(memcmp(dec, hi, 3) == 0);

    /* strict decoding */
    CHECK_INT(auth_b64url_decode("Zg==", 4, dec, sizeof dec), (size_t)-1);  /* padding */
    CHECK_INT(auth_b64url_decode("+/+/", 4, dec, sizeof dec), (size_t)-1);  /* std alphabet */
    CHECK_INT(auth_b64url_decode("Zm9vY", 5, dec, sizeof dec), (size_t)-1); /* len % 4 == 1 */
    CHECK_INT(auth_b64url_decode("Zh", 2, dec, sizeof dec), (size_t)-1);    /* trailing bits */
    CHECK_INT(auth_b64url_decode("Zm9", 3, dec, sizeof dec), (size_t)-1);   /* "fo" is Zm8 */
    CHECK_INT(auth_b64url_decode("Zm 9v", 5, dec, sizeof dec), (size_t)-1);
    /* capacity */
    CHECK_INT(auth_b64url_decode("Zm9vYmFy", 8, dec, 5), (size_t)-1);
    CHECK_INT(auth_b64url_decode("Zm9vYmFy", 8, dec, 6), 6);
    CHECK_INT(auth_b64url_encode((const uint8_t *)"foobar", 6, enc, 8), (size_t)-1);
    CHECK_INT(auth_b64url_encode((const uint8_t *)"foobar", 6, enc, 9), 8);
}

static void test_hmac_rfc4231(void) {
    uint8_t mac[AUTH_HMAC_LEN], key[131];
    char hex[2 * AUTH_HMAC_LEN + 1];

    /* test case 1 */
    memset(key, 0x0b, 20);
    auth_hmac_sha256(key, 20, (const uint8_t *)"Hi There", 8, mac);
    hex_of(mac, sizeof mac, hex);
    CHECK_STR(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    /* test case 2: a key shorter than the hash */
    const char *data2 = "what do ya want for nothing?";
    auth_hmac_sha256((const uint8_t *)"Jefe", 4, (const uint8_t *)data2, strlen(data2), mac);
    hex_of(mac, sizeof mac, hex);
    CHECK_STR(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    /* test case 6: a key longer than the block is hashed first */
    const char *data6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    memset(key, 0xaa, 131);
    auth_hmac_sha256(key, 131, (const uint8_t *)data6, strlen(data6), mac);
    hex_of(mac, sizeof mac, hex);
    CHECK_STR(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* ---- keys ---- */

static void test_keys(void) {
    auth_keys a, b, r1, r2;
    char err[256], hex[2 * AUTH_KEY_LEN + 1];
    /* BLAKE2b-256, personal "qaex-jwt-hs256": the same answer as Python's hashlib.blake2b(
     * b"correct horse battery staple", digest_size=32, person=b"qaex-jwt-hs256") */
    CHECK_INT(auth_keys_from_secret(&a, "correct horse battery staple", err, sizeof err), AUTH_OK);
    hex_of(a.secret, sizeof a.secret, hex);
    CHECK_STR(hex, "01464d5d153b65a1f9a378b1dcf2fac2f4438701a39a5347130e3fb812811ad9");
    CHECK_INT(auth_keys_from_secret(&b, "correct horse battery staplf", err, sizeof err), AUTH_OK);
    CHECK(memcmp(a.secret, b.secret, AUTH_KEY_LEN) != 0);
    CHECK_INT(auth_keys_from_secret(&b, "", err, sizeof err), AUTH_INVALID);
    CHECK_CONTAINS(err, "token secret is empty");
    CHECK_INT(auth_keys_from_secret(&b, NULL, err, sizeof err), AUTH_INVALID);
    CHECK_INT(auth_keys_from_secret(NULL, "x", err, sizeof err), AUTH_INVALID);

    static const uint8_t zero[AUTH_KEY_LEN];
    CHECK_INT(auth_keys_generate(&r1), AUTH_OK);
    CHECK_INT(auth_keys_generate(&r2), AUTH_OK);
    CHECK(memcmp(r1.secret, r2.secret, AUTH_KEY_LEN) != 0);
    CHECK(memcmp(r1.secret, zero, AUTH_KEY_LEN) != 0);
    auth_keys_wipe(&r1);
    CHECK(memcmp(r1.secret, zero, AUTH_KEY_LEN) == 0);
    CHECK_INT(auth_keys_generate(NULL), AUTH_INVALID);
}

/* ---- claims and tokens ---- */

#define ALICE_ID "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
#define T0 1700000000

static void alice_keys(auth_keys *k) {
    auth_keys_from_secret(k, "correct horse battery staple", NULL, 0);
}

/* Signs header.payload with the real key, as an attacker who had the key (or a bug in our own
 * signer) would: the refusals below must come from the content, not from the signature. */
static void forge(const auth_keys *k, const char *header, const char *payload, char *out,
                  size_t cap) {
    size_t n = auth_b64url_encode((const uint8_t *)header, strlen(header), out, cap);
    out[n++] = '.';
    n += auth_b64url_encode((const uint8_t *)payload, strlen(payload), out + n, cap - n);
    uint8_t mac[AUTH_HMAC_LEN];
    auth_hmac_sha256(k->secret, AUTH_KEY_LEN, (const uint8_t *)out, n, mac);
    out[n++] = '.';
    auth_b64url_encode(mac, sizeof mac, out + n, cap - n);
}

static void test_claims_rules(void) {
    auth_claims c;
    char err[256];
    CHECK_INT(auth_claims_init(&c, ALICE_ID, "alice", AUTH_ROLE_USER, T0, 86400, err, sizeof err),
              AUTH_OK);
    CHECK_STR(c.sub, ALICE_ID);
    CHECK_STR(c.name, "alice");
    CHECK_INT(c.iat, T0);
    CHECK_INT(c.exp, T0 + 86400);

    char long_name[80];
    memset(long_name, 'n', 70);
    long_name[70] = '\0';
    CHECK_INT(auth_claims_init(&c, ALICE_ID, long_name, AUTH_ROLE_USER, T0, 60, err, sizeof err),
              AUTH_INVALID);
    CHECK_STR(err, "username is 70 bytes, the limit is 63");
    long_name[63] = '\0';
    CHECK_INT(auth_claims_init(&c, ALICE_ID, long_name, AUTH_ROLE_USER, T0, 60, err, sizeof err),
              AUTH_OK);
    CHECK_INT(auth_claims_init(&c, "", "alice", AUTH_ROLE_USER, T0, 60, err, sizeof err),
              AUTH_INVALID);
    CHECK_STR(err, "user_id is empty");
    CHECK_INT(auth_claims_init(&c, ALICE_ID, "al\nice", AUTH_ROLE_USER, T0, 60, err, sizeof err),
              AUTH_INVALID);
    CHECK_STR(err, "username \"al?ice\" has a control character (0x0a) at byte 2");
    CHECK_INT(auth_claims_init(&c, ALICE_ID, "al\xC3(", AUTH_ROLE_USER, T0, 60, err, sizeof err),
              AUTH_INVALID);
    CHECK_STR(err, "username is not valid UTF-8 at byte 2 (0xc3)");
    CHECK_INT(auth_claims_init(&c, ALICE_ID, "\xC0\xAF", AUTH_ROLE_USER, T0, 60, err, sizeof err),
              AUTH_INVALID); /* overlong '/' */
    CHECK_INT(
        auth_claims_init(&c, ALICE_ID, "\xED\xA0\x80", AUTH_ROLE_USER, T0, 60, err, sizeof err),
        AUTH_INVALID); /* a surrogate */
    CHECK_INT(auth_claims_init(&c, ALICE_ID, "al\xE4\xB8", AUTH_ROLE_USER, T0, 60, err, sizeof err),
              AUTH_INVALID); /* truncated sequence at the end */
    CHECK_INT(auth_claims_init(&c, ALICE_ID, "张三", AUTH_ROLE_USER, T0, 60, err, sizeof err),
              AUTH_OK);
    CHECK_INT(auth_claims_init(&c, ALICE_ID, "alice", AUTH_ROLE_USER, T0, 0, err, sizeof err),
              AUTH_INVALID);
    CHECK_STR(err, "token lifetime 0 s is not positive");
    CHECK_INT(
        auth_claims_init(&c, ALICE_ID, "alice", AUTH_ROLE_USER, INT64_MAX - 5, 60, err, sizeof err),
        AUTH_INVALID);
    CHECK_INT(auth_claims_init(&c, ALICE_ID, "alice", (auth_role)7, T0, 60, err, sizeof err),
              AUTH_INVALID);
    CHECK_STR(err, "role 7 is neither user nor admin");

    CHECK_STR(auth_role_name(AUTH_ROLE_ADMIN), "admin");
    CHECK_INT(auth_role_parse("user"), AUTH_ROLE_USER);
    CHECK_INT(auth_role_parse("Admin"), -1);
}

static void test_token_known_answer(void) {
    /* computed with Python's hmac/base64 from the same key and claims */
    static const char expected[] =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        "eyJzdWIiOiIzZjI1MDRlMC00Zjg5LTQxZDMtOWEwYy0wMzA1ZTgyYzMzMDEiLCJuYW1lIjoiYWxpY2UiLCJyb2"
        "xlIjoidXNlciIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDg2NDAwfQ."
        "ZCAyNWfW4l46FC5_4OrjzSOGcO1pWVxdmYMBGwvBnnE";
    auth_keys k;
    auth_claims c, got;
    char tok[AUTH_TOKEN_MAX], err[256];
    alice_keys(&k);
    CHECK_INT(auth_claims_init(&c, ALICE_ID, "alice", AUTH_ROLE_USER, T0, 86400, NULL, 0), AUTH_OK);
    CHECK_INT(auth_token_sign(&k, &c, tok, sizeof tok, err, sizeof err), strlen(expected));
    CHECK_STR(tok, expected);
    CHECK_INT(auth_token_verify(&k, expected, T0 + 10, &got, err, sizeof err), AUTH_OK);
    CHECK_STR(err, "");
    CHECK_STR(got.sub, ALICE_ID);
    CHECK_STR(got.name, "alice");
    CHECK_INT(got.role, AUTH_ROLE_USER);
    CHECK_INT(got.iat, T0);
    CHECK_INT(got.exp, T0 + 86400);
}

static void test_token_round_trip_escaping(void) {
    auth_keys k;
    auth_claims c, got;
    char tok[AUTH_TOKEN_MAX], err[256];
    CHECK_INT(auth_keys_generate(&k), AUTH_OK);
    /* quotes, backslashes and non-ASCII survive JSON both ways */
    CHECK_INT(auth_claims_init(&c, "ACC_\"x\\y", "Ann \"the\" \\ 张 é", AUTH_ROLE_ADMIN, T0, 3600,
                               err, sizeof err),
              AUTH_OK);
    size_t n = auth_token_sign(&k, &c, tok, sizeof tok, err, sizeof err);
    CHECK(n > 0 && n == strlen(tok));
    CHECK_INT(auth_token_verify(&k, tok, T0, &got, err, sizeof err), AUTH_OK);
    CHECK_INT(got.iat, c.iat);
    CHECK_INT(got.exp, c.exp);
    CHECK_STR(got.sub, "ACC_\"x\\y");
    CHECK_STR(got.name, "Ann \"the\" \\ 张 é");
    CHECK_INT(got.role, AUTH_ROLE_ADMIN);

    /* the payload is the escaped JSON */
    const char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
    uint8_t pay[AUTH_TOKEN_MAX];
    size_t pn = auth_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), pay, sizeof pay - 1);
    CHECK(pn != (size_t)-1);
    pay[pn == (size_t)-1 ? 0 : pn] = '\0';
    CHECK_STR((const char *)pay,
              "{\"sub\":\"ACC_\\\"x\\\\y\",\"name\":\"Ann \\\"the\\\" \\\\ 张 é\","
              "\"role\":\"admin\",\"iat\":1700000000,\"exp\":1700003600}");

    /* the worst case (63 characters that JSON would escape, in both strings) fits */
    char worst[64];
    memset(worst, '"', 63);
    worst[63] = '\0';
    CHECK_INT(auth_claims_init(&c, worst, worst, AUTH_ROLE_USER, T0, 60, NULL, 0), AUTH_OK);
    n = auth_token_sign(&k, &c, tok, sizeof tok, err, sizeof err);
    CHECK(n > 0 && n < AUTH_TOKEN_MAX);
    CHECK_INT(auth_token_verify(&k, tok, T0, &got, err, sizeof err), AUTH_OK);
    CHECK_STR(got.name, worst);

    /* sign refuses a small buffer and bad claims with a reason */
    CHECK_INT(auth_token_sign(&k, &c, tok, 40, err, sizeof err), 0);
    CHECK_CONTAINS(err, "token buffer of 40 bytes is too small");
    CHECK_STR(tok, "");
    c.exp = c.iat;
    CHECK_INT(auth_token_sign(&k, &c, tok, sizeof tok, err, sizeof err), 0);
    CHECK_STR(err, "expiry 1700000000 is not after issued-at 1700000000");
    CHECK_INT(auth_token_sign(NULL, &c, tok, sizeof tok, err, sizeof err), 0);
}

static void make_alice_token(const auth_keys *k, char *tok, size_t cap) {
    auth_claims c;
    auth_claims_init(&c, ALICE_ID, "alice", AUTH_ROLE_USER, T0, 3600, NULL, 0);
    auth_token_sign(k, &c, tok, cap, NULL, 0);
}

static void test_token_refusals(void) {
    auth_keys k, other;
    auth_claims got;
    char tok[AUTH_TOKEN_MAX], bad[AUTH_TOKEN_MAX * 2], err[256];
    alice_keys(&k);
    auth_keys_from_secret(&other, "another secret entirely", NULL, 0);
    make_alice_token(&k, tok, sizeof tok);
    CHECK_INT(auth_token_verify(&k, tok, T0, &got, err, sizeof err), AUTH_OK);

    /* expired: valid until exp - 1, refused from exp on; out is zeroed */
    CHECK_INT(auth_token_verify(&k, tok, T0 + 3599, &got, err, sizeof err), AUTH_OK);
    CHECK_INT(auth_token_verify(&k, tok, T0 + 3600, &got, err, sizeof err), AUTH_TOKEN_EXPIRED);
    CHECK_STR(err, "token for \"alice\" expired at 1700003600 (now 1700003600)");
    CHECK_STR(got.sub, "");
    CHECK_INT(got.exp, 0);

    /* wrong key */
    CHECK_INT(auth_token_verify(&other, tok, T0, &got, err, sizeof err), AUTH_TOKEN_BAD_SIGNATURE);
    CHECK_STR(err, "token signature does not match (another key, or altered)");

    /* tampered payload: role user -> admin, the old signature kept */
    const char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
    uint8_t pay[AUTH_TOKEN_MAX];
    size_t pn = auth_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), pay, sizeof pay - 1);
    CHECK(pn != (size_t)-1 && pn > 0);
    pay[pn] = '\0';
    char *role = strstr((char *)pay, "\"role\":\"user\"");
    CHECK(role != NULL);
    char evil[512];
    snprintf(evil, sizeof evil, "%.*s\"role\":\"admin\"%s", (int)(role - (char *)pay),
             (const char *)pay, role + strlen("\"role\":\"user\""));
    size_t n = (size_t)(d1 - tok) + 1;
    memcpy(bad, tok, n);
    n += auth_b64url_encode((const uint8_t *)evil, strlen(evil), bad + n, sizeof bad - n);
    snprintf(bad + n, sizeof bad - n, "%s", d2);
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_BAD_SIGNATURE);
    CHECK_STR(got.name, "");

    /* tampered signature: every position, flipped to another alphabet character */
    size_t sig_at = (size_t)(d2 - tok) + 1, len = strlen(tok);
    int refused = 0;
    for (size_t i = sig_at; i < len; i++) {
        memcpy(bad, tok, len + 1);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        refused +=
            auth_token_verify(&k, bad, T0, &got, err, sizeof err) == AUTH_TOKEN_BAD_SIGNATURE;
    }
    CHECK_INT(refused, (int)(len - sig_at));

    /* truncated: one character off the signature, the whole signature, the third part */
    memcpy(bad, tok, len + 1);
    bad[len - 1] = '\0';
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_BAD_SIGNATURE);
    CHECK_STR(err, "token signature is 42 characters of text, expected 43 of base64url");
    bad[sig_at] = '\0';
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_BAD_SIGNATURE);
    bad[sig_at - 1] = '\0';
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    CHECK_STR(err, "token has 2 parts, expected 3 (header.payload.signature)");
    memcpy(bad, tok, 20);
    bad[20] = '\0';
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    CHECK_STR(err, "token has 1 part, expected 3 (header.payload.signature)");

    /* alg none (unsigned), and other algorithms, even carrying a valid HMAC */
    char enc_h[128], enc_p[512];
    const char *none = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    auth_b64url_encode((const uint8_t *)none, strlen(none), enc_h, sizeof enc_h);
    memcpy(enc_p, d1 + 1, (size_t)(d2 - d1 - 1));
    enc_p[d2 - d1 - 1] = '\0';
    snprintf(bad, sizeof bad, "%s.%s.", enc_h, enc_p);
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_BAD_ALG);
    CHECK_STR(err, "token alg \"none\" refused: only HS256 is accepted");
    CHECK_STR(got.sub, "");
    forge(&k, "{\"alg\":\"none\"}", "{}", bad, sizeof bad);
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_BAD_ALG);
    forge(&k, "{\"alg\":\"HS512\",\"typ\":\"JWT\"}", (const char *)pay, bad, sizeof bad);
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_BAD_ALG);
    CHECK_STR(err, "token alg \"HS512\" refused: only HS256 is accepted");
    forge(&k, "{\"alg\":\"hs256\",\"typ\":\"JWT\"}", (const char *)pay, bad, sizeof bad);
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_BAD_ALG);
    forge(&k, "{\"alg\":\"RS256\"}", (const char *)pay, bad, sizeof bad);
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_BAD_ALG);
    /* the forge helper itself is sound: the real header and payload pass through it */
    forge(&k, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", (const char *)pay, bad, sizeof bad);
    CHECK_STR(bad, tok);

    /* garbage */
    CHECK_INT(auth_token_verify(&k, "garbage", T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    CHECK_INT(auth_token_verify(&k, "a.b.c", T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    CHECK_INT(auth_token_verify(&k, "..", T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    CHECK_INT(auth_token_verify(&k, "", T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    CHECK_STR(err, "token is missing");
    CHECK_INT(auth_token_verify(&k, NULL, T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    CHECK_INT(auth_token_verify(&k, "a.b.c.d", T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    CHECK_STR(err, "token has 4 parts, expected 3 (header.payload.signature)");
    snprintf(bad, sizeof bad, "%s.", tok);
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    snprintf(bad, sizeof bad, "Bearer %s", tok);
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    memset(bad, 'A', AUTH_TOKEN_MAX + 10);
    bad[AUTH_TOKEN_MAX + 10] = '\0';
    bad[10] = bad[20] = '.';
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    CHECK_STR(err, "token is longer than 2048 bytes");
    /* the header is checked before the signature: a header that is not JSON */
    forge(&k, "not json", (const char *)pay, bad, sizeof bad);
    CHECK_INT(auth_token_verify(&k, bad, T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    CHECK_CONTAINS(err, "token header is not a JSON object");
    CHECK_INT(auth_token_verify(NULL, tok, T0, &got, err, sizeof err), AUTH_INVALID);
    CHECK_INT(auth_token_verify(&k, tok, T0, NULL, err, sizeof err), AUTH_INVALID);
}

/* Well signed, but not what we issue: each is refused as malformed, naming the problem. */
static void test_token_strict_parsing(void) {
    static const char *hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    static const struct {
        const char *header, *payload, *msg;
    } cases[] = {
        {NULL, "{\"sub\":\"u\",\"name\":\"n\",\"role\":\"user\",\"iat\":1,\"exp\":2,\"adm\":true}",
         "token payload has an unknown claim \"adm\""},
        {NULL, "{\"sub\":\"u\",\"name\":\"n\",\"role\":\"user\",\"iat\":1}",
         "token claim exp is missing, expected an integer"},
        {NULL, "{\"sub\":\"u\",\"name\":\"n\",\"role\":\"user\",\"iat\":1,\"exp\":2.5}",
         "token claim exp is not an integer, expected an integer"},
        {NULL, "{\"sub\":\"u\",\"name\":\"n\",\"role\":\"user\",\"iat\":1,\"exp\":\"2\"}",
         "token claim exp is not an integer, expected an integer"},
        {NULL, "{\"sub\":7,\"name\":\"n\",\"role\":\"user\",\"iat\":1,\"exp\":2}",
         "token claim sub is not a string, expected a string"},
        {NULL, "{\"sub\":\"u\",\"name\":\"n\",\"role\":\"root\",\"iat\":1,\"exp\":2}",
         "token role \"root\" is neither user nor admin"},
        {NULL, "{\"sub\":\"u\",\"sub\":\"v\",\"name\":\"n\",\"role\":\"user\",\"iat\":1,\"exp\":2}",
         NULL},
        {NULL, "{\"sub\":\"u\",\"name\":\"n\",\"role\":\"user\",\"iat\":5,\"exp\":5}",
         "token claims refused: expiry 5 is not after issued-at 5"},
        {NULL, "{\"sub\":\"u\",\"name\":\"\",\"role\":\"user\",\"iat\":1,\"exp\":2}",
         "token claims refused: username is empty"},
        {NULL, "{\"sub\":\"u\",\"name\":\"a\\u0000b\",\"role\":\"user\",\"iat\":1,\"exp\":2}",
         NULL},
        {NULL, "{\"sub\":\"u\",\"name\":\"a\\nb\",\"role\":\"user\",\"iat\":1,\"exp\":2}",
         "token claims refused: username \"a?b\" has a control character (0x0a) at byte 1"},
        {NULL,
         "{\"sub\":\"0123456789012345678901234567890123456789012345678901234567890123\","
         "\"name\":\"n\",\"role\":\"user\",\"iat\":1,\"exp\":2}",
         "token claim sub is 64 bytes, the limit is 63"},
        {NULL, "{\"sub\":\"u\",\"name\":\"n\",\"role\":\"user\",\"iat\":1,\"exp\":2} x", NULL},
        {NULL, "[\"sub\"]", "token payload is not a JSON object"},
        {NULL, "{\"sub\":\"u\",\"name\":\"n\",\"role\":\"user\",\"iat\":-1,\"exp\":2}",
         "token claims refused: issued-at -1 is negative"},
        {NULL,
         "{\"sub\":\"u\",\"name\":\"n\",\"role\":\"user\",\"iat\":1,\"exp\":99999999999999999999}",
         NULL},
        {"{\"alg\":\"HS256\",\"typ\":\"JWS\"}", NULL,
         "token typ \"JWS\" refused: only JWT is accepted"},
        {"{\"alg\":\"HS256\",\"kid\":\"k1\"}", NULL, "token header has an unknown field \"kid\""},
        {"{\"typ\":\"JWT\"}", NULL, "token header has no alg string"},
        {"{\"alg\":\"HS256\",\"alg\":\"HS256\"}", NULL, NULL},
    };
    static const char *good =
        "{\"sub\":\"u\",\"name\":\"n\",\"role\":\"user\",\"iat\":1,\"exp\":2000000000}";
    auth_keys k;
    auth_claims got;
    char tok[AUTH_TOKEN_MAX], err[256];
    alice_keys(&k);
    forge(&k, hdr, good, tok, sizeof tok);
    CHECK_INT(auth_token_verify(&k, tok, T0, &got, err, sizeof err), AUTH_OK);
    CHECK_STR(got.sub, "u");
    forge(&k, "{\"alg\":\"HS256\"}", good, tok, sizeof tok); /* typ is optional */
    CHECK_INT(auth_token_verify(&k, tok, T0, &got, err, sizeof err), AUTH_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        forge(&k, cases[i].header ? cases[i].header : hdr,
              cases[i].payload ? cases[i].payload : good, tok, sizeof tok);
        auth_result r = auth_token_verify(&k, tok, 0, &got, err, sizeof err);
        if (r != AUTH_TOKEN_MALFORMED) fprintf(stderr, "case %zu: %s\n", i, auth_result_name(r));
        CHECK_INT(r, AUTH_TOKEN_MALFORMED);
        if (cases[i].msg) CHECK_STR(err, cases[i].msg);
        CHECK_STR(got.sub, "");
    }
    /* a payload that is not base64url, behind a valid signature over those characters */
    char raw[256];
    uint8_t mac[AUTH_HMAC_LEN];
    size_t n = auth_b64url_encode((const uint8_t *)hdr, strlen(hdr), raw, sizeof raw);
    memcpy(raw + n, ".Zh", 4);
    n += 3;
    auth_hmac_sha256(k.secret, AUTH_KEY_LEN, (const uint8_t *)raw, n, mac);
    raw[n++] = '.';
    auth_b64url_encode(mac, sizeof mac, raw + n, sizeof raw - n);
    CHECK_INT(auth_token_verify(&k, raw, T0, &got, err, sizeof err), AUTH_TOKEN_MALFORMED);
    CHECK_STR(err, "token payload (2 characters) is not base64url");
}

/* ---- throttling ---- */

static auth_throttle *throttle(uint32_t capacity, uint32_t max_failures) {
    auth_throttle_config c;
    auth_throttle_config_default(&c);
    c.capacity = capacity;
    c.max_failures = max_failures;
    c.window_ms = 60000;
    c.lockout_ms = 60000;
    c.lockout_max_ms = 240000;
    return auth_throttle_new(&c, NULL, 0);
}

static void test_throttle_lock_and_wait(void) {
    auth_throttle *t = throttle(16, 5);
    CHECK(t != NULL);
    if (t == NULL) return;
    int64_t now = 1000000;
    CHECK_INT(auth_throttle_check(t, "alice", now), 0);
    for (int i = 0; i < 4; i++) {
        CHECK_INT(auth_throttle_failure(t, "alice", now + i * 1000), 0);
        CHECK_INT(auth_throttle_check(t, "alice", now + i * 1000), 0);
    }
    /* the fifth failure within 60 s locks for 60 s */
    CHECK_INT(auth_throttle_failure(t, "alice", now + 4000), 60000);
    CHECK_INT(auth_throttle_check(t, "alice", now + 4000), 60000);
    CHECK_INT(auth_throttle_check(t, "alice", now + 5000), 59000);
    CHECK_INT(auth_throttle_check(t, "alice", now + 34000), 30000);
    CHECK_INT(auth_throttle_check(t, "alice", now + 63999), 1);
    /* a failure during the lock does not extend it */
    CHECK_INT(auth_throttle_failure(t, "alice", now + 10000), 54000);
    CHECK_INT(auth_throttle_check(t, "alice", now + 10000), 54000);
    CHECK_INT(auth_throttle_check(t, "alice", now + 64000), 0);
    /* keys are independent */
    CHECK_INT(auth_throttle_check(t, "bob", now + 5000), 0);
    CHECK_INT(auth_throttle_check(t, "alic", now + 5000), 0);
    CHECK_INT(auth_throttle_size(t), 1);

    /* right after the lock, 5 more failures lock twice as long, then 4x, then the 240 s cap */
    now += 64000;
    for (int i = 0; i < 4; i++)
        CHECK_INT(auth_throttle_failure(t, "alice", now), 0);
    CHECK_INT(auth_throttle_failure(t, "alice", now), 120000);
    now += 120000;
    for (int i = 0; i < 4; i++)
        CHECK_INT(auth_throttle_failure(t, "alice", now), 0);
    CHECK_INT(auth_throttle_failure(t, "alice", now), 240000);
    now += 240000;
    for (int i = 0; i < 4; i++)
        CHECK_INT(auth_throttle_failure(t, "alice", now), 0);
    CHECK_INT(auth_throttle_failure(t, "alice", now), 240000);
    /* a full quiet window after the lock ends: back to the first lockout */
    now += 240000 + 60000;
    for (int i = 0; i < 4; i++)
        CHECK_INT(auth_throttle_failure(t, "alice", now), 0);
    CHECK_INT(auth_throttle_failure(t, "alice", now), 60000);

    /* success forgets everything */
    auth_throttle_success(t, "alice");
    CHECK_INT(auth_throttle_check(t, "alice", now), 0);
    CHECK_INT(auth_throttle_size(t), 0);
    for (int i = 0; i < 4; i++)
        CHECK_INT(auth_throttle_failure(t, "alice", now), 0);
    auth_throttle_success(t, "alice");
    CHECK_INT(auth_throttle_failure(t, "alice", now), 0); /* the count restarted */
    auth_throttle_success(t, "nobody");                   /* unknown key: nothing happens */
    CHECK_INT(auth_throttle_size(t), 1);

    /* invalid input */
    CHECK_INT(auth_throttle_check(t, "", now), AUTH_THROTTLE_INVALID);
    CHECK_INT(auth_throttle_check(t, NULL, now), AUTH_THROTTLE_INVALID);
    CHECK_INT(auth_throttle_check(NULL, "alice", now), AUTH_THROTTLE_INVALID);
    CHECK_INT(auth_throttle_failure(t, "", now), AUTH_THROTTLE_INVALID);
    auth_throttle_success(t, NULL);
    auth_throttle_free(t);
}

static void test_throttle_sliding_window(void) {
    auth_throttle *t = throttle(16, 5);
    CHECK(t != NULL);
    if (t == NULL) return;
    /* failures at 0, 10, 20, 30 s; one counts while it is less than 60 s old */
    for (int i = 0; i < 4; i++)
        CHECK_INT(auth_throttle_failure(t, "10.0.0.1", i * 10000), 0);
    CHECK_INT(auth_throttle_failure(t, "10.0.0.1", 60000), 0); /* 0 s has left: 10,20,30,60 */
    CHECK_INT(auth_throttle_check(t, "10.0.0.1", 60000), 0);
    CHECK_INT(auth_throttle_failure(t, "10.0.0.1", 69999), 60000); /* 10 s is still inside */
    CHECK_INT(auth_throttle_check(t, "10.0.0.1", 70000), 59999);
    /* spread out, failures never lock */
    for (int i = 0; i < 50; i++)
        CHECK_INT(auth_throttle_failure(t, "slow", 1000000 + (int64_t)i * 15001), 0);
    CHECK_INT(auth_throttle_check(t, "slow", 2000000), 0);
    auth_throttle_free(t);
}

static void test_throttle_eviction(void) {
    auth_throttle *t = throttle(3, 5);
    CHECK(t != NULL);
    if (t == NULL) return;
    for (int i = 0; i < 5; i++)
        auth_throttle_failure(t, "a", 0);
    CHECK_INT(auth_throttle_check(t, "a", 1), 59999);
    auth_throttle_failure(t, "b", 1);
    auth_throttle_failure(t, "c", 2);
    CHECK_INT(auth_throttle_size(t), 3);
    /* a is the least recently failed: d takes its place, and a's lock is forgotten */
    auth_throttle_failure(t, "d", 3);
    CHECK_INT(auth_throttle_size(t), 3);
    CHECK_INT(auth_throttle_check(t, "a", 4), 0);
    /* a failure refreshes: b fails again, so c goes next */
    for (int i = 0; i < 4; i++)
        auth_throttle_failure(t, "b", 5);
    CHECK_INT(auth_throttle_check(t, "b", 5), 60000); /* b kept its first failure: 5 in all */
    auth_throttle_failure(t, "e", 6);
    CHECK_INT(auth_throttle_check(t, "b", 6), 59999);
    for (int i = 0; i < 4; i++)
        CHECK_INT(auth_throttle_failure(t, "c", 7), 0); /* c restarted */
    CHECK_INT(auth_throttle_size(t), 3);
    auth_throttle_free(t);

    /* many keys through a small table: exactly the most recent 64 stay (max_failures 1, so
     * every remembered key is locked), with successes punching holes in the index on the way */
    t = throttle(64, 1);
    CHECK(t != NULL);
    if (t == NULL) return;
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "203.0.113.%d", i);
        CHECK_INT(auth_throttle_failure(t, key, 100), 60000);
        if (i % 7 == 3) {
            snprintf(key, sizeof key, "203.0.113.%d", i - 2);
            auth_throttle_success(t, key);
        }
    }
    CHECK(auth_throttle_size(t) <= 64);
    int present = 0, wrong = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "203.0.113.%d", i);
        bool locked = auth_throttle_check(t, key, 100) > 0;
        present += locked;
        /* among the newest keys, only those removed by a success are missing */
        bool removed = (i + 2) % 7 == 3 && i + 2 < 5000;
        if (i >= 5000 - 50 && locked == removed) wrong++;
    }
    CHECK_INT(present, (int)auth_throttle_size(t));
    CHECK_INT(wrong, 0);
    auth_throttle_free(t);
}

static void test_throttle_config_and_message(void) {
    auth_throttle_config c;
    char err[256];
    auth_throttle_config_default(&c);
    CHECK_INT(c.max_failures, 5);
    CHECK_INT(c.window_ms, 60000);
    auth_throttle *t = auth_throttle_new(NULL, err, sizeof err);
    CHECK(t != NULL);
    auth_throttle_free(t);
    c.capacity = 0;
    CHECK(auth_throttle_new(&c, err, sizeof err) == NULL);
    CHECK_STR(err, "throttle capacity 0 is outside [1, 16777216]");
    auth_throttle_config_default(&c);
    c.max_failures = 33;
    CHECK(auth_throttle_new(&c, err, sizeof err) == NULL);
    CHECK_STR(err, "throttle max_failures 33 is outside [1, 32]");
    auth_throttle_config_default(&c);
    c.lockout_max_ms = 10;
    CHECK(auth_throttle_new(&c, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "lockout max 10 ms");
    auth_throttle_free(NULL);

    CHECK_STR(auth_throttle_message("alice", 41001, err, sizeof err),
              "too many failed logins for \"alice\": retry in 42 s");
    CHECK_STR(auth_throttle_message("alice", 42000, err, sizeof err),
              "too many failed logins for \"alice\": retry in 42 s");
    CHECK_STR(auth_throttle_message("a\"b\nc", 1, err, sizeof err),
              "too many failed logins for \"a?b?c\": retry in 1 s");
    char big[200];
    memset(big, 'k', 199);
    big[199] = '\0';
    auth_throttle_message(big, 1000, err, sizeof err);
    CHECK_CONTAINS(err, "kkk...\": retry in 1 s");
    CHECK_INT(strlen(err), strlen("too many failed logins for \"\": retry in 1 s") + 64 + 3);
}

/* ---- user ids and names ---- */

static void test_uuid4(void) {
    char a[AUTH_UUID_LEN], b[AUTH_UUID_LEN];
    CHECK(auth_uuid4(a));
    CHECK(auth_uuid4(b));
    CHECK_INT(strlen(a), 36);
    CHECK(auth_uuid_valid(a));
    CHECK(strcmp(a, b) != 0);
    CHECK(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
    CHECK(a[14] == '4');
    CHECK(strchr("89ab", a[19]) != NULL);
    int variants_ok = 0;
    for (int i = 0; i < 200; i++) {
        auth_uuid4(a);
        variants_ok += a[14] == '4' && strchr("89ab", a[19]) != NULL && auth_uuid_valid(a) &&
                       strspn(a, "0123456789abcdef-") == 36;
    }
    CHECK_INT(variants_ok, 200);
    CHECK(auth_uuid_valid("3F2504E0-4F89-11D3-9A0C-0305E82C3301"));
    CHECK(!auth_uuid_valid("3f2504e0-4f89-41d3-9a0c-0305e82c330"));
    CHECK(!auth_uuid_valid("3f2504e0-4f89-41d3-9a0c-0305e82c33011"));
    CHECK(!auth_uuid_valid("3f2504e0x4f89-41d3-9a0c-0305e82c3301"));
    CHECK(!auth_uuid_valid("3f2504e0-4f89-41d3-9a0c-0305e82c330g"));
    CHECK(!auth_uuid_valid(""));
    CHECK(!auth_uuid_valid(NULL));
}

static void test_result_names(void) {
    CHECK(auth_init());
    CHECK_STR(auth_result_name(AUTH_OK), "ok");
    CHECK_STR(auth_result_name(AUTH_TOKEN_BAD_ALG), "token_bad_alg");
    CHECK_STR(auth_result_name(AUTH_TOKEN_EXPIRED), "token_expired");
    CHECK_STR(auth_result_name((auth_result)99), "unknown");
}

int main(void) {
    RUN_TEST(test_result_names);
    RUN_TEST(test_password_round_trip);
    RUN_TEST(test_password_rules);
    RUN_TEST(test_password_rehash_and_burn);
    RUN_TEST(test_b64url_vectors);
    RUN_TEST(test_hmac_rfc4231);
    RUN_TEST(test_keys);
    RUN_TEST(test_claims_rules);
    RUN_TEST(test_token_known_answer);
    RUN_TEST(test_token_round_trip_escaping);
    RUN_TEST(test_token_refusals);
    RUN_TEST(test_token_strict_parsing);
    RUN_TEST(test_throttle_lock_and_wait);
    RUN_TEST(test_throttle_sliding_window);
    RUN_TEST(test_throttle_eviction);
    RUN_TEST(test_throttle_config_and_message);
    RUN_TEST(test_uuid4);
    return CHECK_REPORT();
}
