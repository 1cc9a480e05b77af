/* Server configuration: defaults, TOML file, environment, command line (see config.h). */
#include "app/config.h"

#include "app/toml.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NAME_LEN 96 /* "instruments[123].commission_per_lot" */
#define DEFAULT_INSTRUMENTS_MAX 16
#define DEFAULT_EXCHANGE "CFFEX"
#define DEFAULT_ADMIN_PASSWORD "admin123"

static const char *const environments[] = {"development", "production", "testing", NULL};
static const char *const log_levels[] = {"trace", "debug", "info", "warn", "error", NULL};
static const char *const durabilities[] = {"sync", "async", NULL};

/* ---- small helpers ---- */

static bool copy_str(char *dst, size_t dstlen, const char *src) {
    size_t n = strlen(src);
    if (n >= dstlen) return false;
    memcpy(dst, src, n + 1);
    return true;
}

static bool is_development(const server_config *cfg) {
    return strcmp(cfg->environment, "development") == 0;
}

static int errorf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int errorf(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return CONFIG_ERROR;
}

static void warnf(server_config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(server_config *cfg, const char *fmt, ...) {
    if (cfg->warning_count < CONFIG_MAX_WARNINGS) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cfg->warnings[cfg->warning_count], CONFIG_WARNING_LEN, fmt, ap);
        va_end(ap);
    }
    cfg->warning_count++;
}

static bool in_list(const char *s, const char *const list[]) {
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0) return true;
    return false;
}

/* "a|b|c" for messages. */
static void join_choices(const char *const list[], char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; list[i]; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? "|" : "", list[i]);
        if (n < 0 || (size_t)n >= len - used) return;
        used += (size_t)n;
    }
}

/* A host name or address without brackets: no blanks, no controls, no '/', '[' or ']'. */
static bool valid_host(const char *h) {
    if (!*h) return false;
    for (const unsigned char *p = (const unsigned char *)h; *p; p++)
        if (*p <= ' ' || *p == 0x7f || *p == '/' || *p == '[' || *p == ']') return false;
    return true;
}

/* Port text: 1 to 5 digits, at most 65535. */
static int parse_port(const char *s, size_t n, uint16_t *out) {
    if (n == 0 || n > 5) return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535) return -1;
    *out = (uint16_t)v;
    return 0;
}

/* "HOST:PORT", "[v6]:PORT", ":PORT" or "PORT". The host is written only when given. */
static int parse_hostport(const char *what, const char *text, config_listener *l, char *err,
                          size_t errlen) {
    const char *host = NULL, *port = NULL;
    size_t hostlen = 0;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return errorf(err, errlen, "%s: expected [ADDRESS]:PORT, got \"%s\"", what, text);
        host = text + 1;
        hostlen = (size_t)(close - host);
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon && strchr(text, ':') != colon)
            return errorf(err, errlen,
                          "%s: write IPv6 addresses in brackets ([::1]:8080), got \"%s\"", what,
                          text);
        if (colon) {
            host = text;
            hostlen = (size_t)(colon - text);
            port = colon + 1;
        } else {
            bool digits = text[0] != '\0';
            for (const char *p = text; *p; p++)
                if (*p < '0' || *p > '9') digits = false;
            if (!digits)
                return errorf(err, errlen,
                              "%s: expected HOST:PORT (e.g. 127.0.0.1:8080), got \"%s\"", what,
                              text);
            port = text;
        }
    }
    uint16_t p;
    if (parse_port(port, strlen(port), &p) != 0)
        return errorf(err, errlen, "%s: port must be a number in [0, 65535], got \"%s\"", what,
                      port);
    if (host && hostlen > 0) {
        char h[CONFIG_HOST_LEN];
        if (hostlen >= sizeof h)
            return errorf(err, errlen, "%s: host is too long (%zu bytes, at most %zu)", what,
                          hostlen, sizeof h - 1);
        memcpy(h, host, hostlen);
        h[hostlen] = '\0';
        if (!valid_host(h)) return errorf(err, errlen, "%s: invalid host \"%s\"", what, h);
        memcpy(l->host, h, hostlen + 1);
    }
    l->port = p;
    return 0;
}

/* Sizes: an integer of bytes, or a string "64MiB", "512 KB", "1g" (units are binary). */
static int parse_size(const char *s, uint64_t *out) {
    const char *p = s;
    if (*p < '0' || *p > '9') return -1;
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*p++ - '0');
    }
    while (*p == ' ' || *p == '_')
        p++;
    static const struct {
        const char *unit;
        unsigned shift;
    } units[] = {{"", 0},    {"b", 0},    {"k", 10}, {"kb", 10}, {"kib", 10}, {"m", 20},
                 {"mb", 20}, {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(p, units[i].unit) == 0) {
            if (units[i].shift && v > (UINT64_MAX >> units[i].shift)) return -1;
            *out = v << units[i].shift;
            return 0;
        }
    }
    return -1;
}

/* ---- reading the file ---- */

typedef struct loader {
    server_config *cfg;
    const char *path; /* the file, for messages */
    char *err;
    size_t errlen;
    bool has_default_margin; /* [risk] margin_ratio */
    double default_margin;
    bool open_mode_set;
    int password_line;
} loader;

static int fail_at(loader *L, const toml_value *v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(loader *L, const toml_value *v, const char *fmt, ...) {
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = toml_line(v);
    if (line > 0)
        snprintf(L->err, L->errlen, "%s:%d: %s", L->path, line, msg);
    else
        snprintf(L->err, L->errlen, "%s: %s", L->path, msg);
    return CONFIG_ERROR;
}

/* The value as written, for "got ..." (strings quoted). */
static void value_text(const toml_value *v, char *buf, size_t len) {
    switch (toml_type_of(v)) {
        case TOML_STRING: {
            const char *s = toml_string(v);
            size_t n = strlen(s);
            if (n + 3 <= len) {
                snprintf(buf, len, "\"%s\"", s);
            } else {
                snprintf(buf, len, "\"%.*s...\"", (int)(len > 8 ? len - 8 : 0), s);
            }
            return;
        }
        case TOML_INTEGER: {
            int64_t i = 0;
            toml_as_int(v, &i);
            snprintf(buf, len, "%" PRId64, i);
            return;
        }
        case TOML_FLOAT: {
            double d = 0;
            toml_as_double(v, &d);
            snprintf(buf, len, "%.15g", d);
            return;
        }
        case TOML_BOOLEAN: {
            bool b = false;
            toml_as_bool(v, &b);
            snprintf(buf, len, "%s", b ? "true" : "false");
            return;
        }
        case TOML_ARRAY:
            snprintf(buf, len, "an array");
            return;
        case TOML_TABLE:
            snprintf(buf, len, "a table");
            return;
    }
    snprintf(buf, len, "?");
}

static int type_error(loader *L, const toml_value *v, const char *name, const char *want) {
    char got[96];
    value_text(v, got, sizeof got);
    toml_type t = toml_type_of(v);
    if (t == TOML_TABLE || t == TOML_ARRAY)
        return fail_at(L, v, "%s must be %s, got %s", name, want, got);
    return fail_at(L, v, "%s must be %s, got %s %s", name, want, toml_type_name(t), got);
}

static const char *full_name(char *buf, const char *sect, const char *key) {
    snprintf(buf, NAME_LEN, "%s%s%s", sect, *sect ? "." : "", key);
    return buf;
}

static void warn_unknown(loader *L, const toml_value *tbl, const char *sect,
                         const char *const known[]) {
    for (size_t i = 0; i < toml_table_size(tbl); i++) {
        const char *key = toml_table_key(tbl, i);
        if (!in_list(key, known))
            warnf(L->cfg, "%s:%d: unknown key %s.%s (ignored)", L->path,
                  toml_line(toml_table_value(tbl, i)), sect, key);
    }
}

/* Which of several spellings of one key is present: NULL when none; an error when two are. */
static int pick_alias(loader *L, const toml_value *tbl, const char *sect, const char *const names[],
                      const char **which) {
    *which = NULL;
    for (size_t i = 0; names[i]; i++) {
        const toml_value *v = toml_get(tbl, names[i]);
        if (!v) continue;
        if (*which) {
            /* name them in file order, at the later one */
            const toml_value *first = toml_get(tbl, *which);
            const char *n1 = *which, *n2 = names[i];
            const toml_value *at = v;
            if (toml_line(first) > toml_line(v)) {
                n1 = names[i];
                n2 = *which;
                at = first;
            }
            char a[NAME_LEN], b[NAME_LEN];
            return fail_at(L, at, "set %s or %s, not both", full_name(a, sect, n1),
                           full_name(b, sect, n2));
        }
        *which = names[i];
    }
    return 0;
}

/* Each getter: 0 and *out set when present and acceptable, 1 when absent, CONFIG_ERROR with a
 * message otherwise. */

static int get_int(loader *L, const toml_value *tbl, const char *sect, const char *key, int64_t lo,
                   int64_t hi, int64_t *out) {
    const toml_value *v = toml_get(tbl, key);
    if (!v) return 1;
    char name[NAME_LEN];
    full_name(name, sect, key);
    int64_t x;
    if (toml_as_int(v, &x) != 0) return type_error(L, v, name, "an integer");
    if (x < lo || x > hi)
        return fail_at(L, v, "%s must be in [%" PRId64 ", %" PRId64 "], got %" PRId64, name, lo, hi,
                       x);
    *out = x;
    return 0;
}

static int get_u32(loader *L, const toml_value *tbl, const char *sect, const char *key, uint32_t lo,
                   uint32_t hi, uint32_t *out) {
    int64_t x = 0;
    int r = get_int(L, tbl, sect, key, lo, hi, &x);
    if (r == 0) *out = (uint32_t)x;
    return r;
}

static int get_u64(loader *L, const toml_value *tbl, const char *sect, const char *key, uint64_t lo,
                   uint64_t hi, uint64_t *out) {
    int64_t x = 0;
    int r = get_int(L, tbl, sect, key, (int64_t)lo, (int64_t)hi, &x);
    if (r == 0) *out = (uint64_t)x;
    return r;
}

static int get_port(loader *L, const toml_value *tbl, const char *sect, const char *key,
                    uint16_t *out) {
    int64_t x = 0;
    int r = get_int(L, tbl, sect, key, 0, 65535, &x);
    if (r == 0) *out = (uint16_t)x;
    return r;
}

/* A number in a range; lo_open/hi_open exclude the bound: "(0, 1]". */
static int get_double(loader *L, const toml_value *tbl, const char *sect, const char *key,
                      double lo, bool lo_open, double hi, bool hi_open, double *out) {
    const toml_value *v = toml_get(tbl, key);
    if (!v) return 1;
    char name[NAME_LEN];
    full_name(name, sect, key);
    double x;
    if (toml_as_double(v, &x) != 0) return type_error(L, v, name, "a number");
    bool ok = isfinite(x) && (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
    if (!ok)
        return fail_at(L, v, "%s must be in %c%.15g, %.15g%c, got %.15g", name, lo_open ? '(' : '[',
                       lo, hi, hi_open ? ')' : ']', x);
    *out = x;
    return 0;
}

static int get_bool(loader *L, const toml_value *tbl, const char *sect, const char *key,
                    bool *out) {
    const toml_value *v = toml_get(tbl, key);
    if (!v) return 1;
    char name[NAME_LEN];
    if (toml_as_bool(v, out) != 0)
        return type_error(L, v, full_name(name, sect, key), "true or false");
    return 0;
}

/* A string that fits out; no control characters; empty only when allow_empty. */
static int get_string(loader *L, const toml_value *tbl, const char *sect, const char *key,
                      char *out, size_t outlen, bool allow_empty) {
    const toml_value *v = toml_get(tbl, key);
    if (!v) return 1;
    char name[NAME_LEN];
    full_name(name, sect, key);
    const char *s;
    if (toml_as_string(v, &s) != 0) return type_error(L, v, name, "a string");
    size_t n = toml_string_len(v);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return fail_at(L, v, "%s must not contain control characters", name);
    }
    if (n == 0 && !allow_empty) return fail_at(L, v, "%s must not be empty", name);
    if (n >= outlen)
        return fail_at(L, v, "%s is too long (%zu bytes, at most %zu)", name, n, outlen - 1);
    memcpy(out, s, n + 1);
    return 0;
}

/* One of the lowercase choices, matched case-insensitively; *out is its index. */
static int get_choice(loader *L, const toml_value *tbl, const char *sect, const char *key,
                      const char *const choices[], int *out) {
    const toml_value *v = toml_get(tbl, key);
    if (!v) return 1;
    char name[NAME_LEN], list[128];
    full_name(name, sect, key);
    join_choices(choices, list, sizeof list);
    const char *s;
    if (toml_as_string(v, &s) != 0) {
        char want[160];
        snprintf(want, sizeof want, "one of %s", list);
        return type_error(L, v, name, want);
    }
    for (int i = 0; choices[i]; i++) {
        if (strcasecmp(s, choices[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    char got[96];
    value_text(v, got, sizeof got);
    return fail_at(L, v, "%s must be one of %s, got %s", name, list, got);
}

static int get_host(loader *L, const toml_value *tbl, const char *sect, const char *key,
                    char *out) {
    char h[CONFIG_HOST_LEN + 2];
    int r = get_string(L, tbl, sect, key, h, sizeof h, false);
    if (r != 0) return r;
    char *p = h;
    size_t n = strlen(p);
    if (n >= 2 && p[0] == '[' && p[n - 1] == ']') {
        p[n - 1] = '\0';
        p++;
    }
    char name[NAME_LEN];
    if (!valid_host(p) || strlen(p) >= CONFIG_HOST_LEN)
        return fail_at(L, toml_get(tbl, key), "%s must be a host name or address, got \"%s\"",
                       full_name(name, sect, key), h);
    memcpy(out, p, strlen(p) + 1);
    return 0;
}

/* A byte count: an integer or a string with a unit. */
static int get_size(loader *L, const toml_value *tbl, const char *sect, const char *key,
                    uint64_t lo, uint64_t hi, uint64_t *out) {
    const toml_value *v = toml_get(tbl, key);
    if (!v) return 1;
    char name[NAME_LEN], got[96];
    full_name(name, sect, key);
    value_text(v, got, sizeof got);
    uint64_t x = 0;
    int64_t i;
    const char *s;
    if (toml_as_int(v, &i) == 0) {
        if (i < 0)
            return fail_at(L, v, "%s must be in [%" PRIu64 ", %" PRIu64 "] bytes, got %s", name, lo,
                           hi, got);
        x = (uint64_t)i;
    } else if (toml_as_string(v, &s) == 0) {
        if (parse_size(s, &x) != 0)
            return fail_at(L, v, "%s must be a size in bytes (e.g. 1048576 or \"1MiB\"), got %s",
                           name, got);
    } else {
        return type_error(L, v, name, "a size in bytes (e.g. 1048576 or \"1MiB\")");
    }
    if (x < lo || x > hi)
        return fail_at(L, v, "%s must be in [%" PRIu64 ", %" PRIu64 "] bytes, got %s", name, lo, hi,
                       got);
    *out = x;
    return 0;
}

/* A duration given as base_ms (integer) or base_secs (number), kept in milliseconds. */
static int get_duration_ms(loader *L, const toml_value *tbl, const char *sect, const char *base,
                           uint32_t lo_ms, uint32_t hi_ms, uint32_t *out,
                           const toml_value **where) {
    char ms_key[64], secs_key[64];
    snprintf(ms_key, sizeof ms_key, "%s_ms", base);
    snprintf(secs_key, sizeof secs_key, "%s_secs", base);
    const char *const names[] = {ms_key, secs_key, NULL};
    const char *which;
    if (pick_alias(L, tbl, sect, names, &which) != 0) return CONFIG_ERROR;
    if (!which) return 1;
    *where = toml_get(tbl, which);
    if (which == ms_key) return get_u32(L, tbl, sect, ms_key, lo_ms, hi_ms, out);
    double secs = 0;
    int r = get_double(L, tbl, sect, secs_key, lo_ms / 1000.0, false, hi_ms / 1000.0, false, &secs);
    if (r == 0) *out = (uint32_t)llround(secs * 1000.0);
    return r;
}

/* ---- sections ---- */

static int load_server(loader *L, const toml_value *t) {
    static const char *const known[] = {"name",      "environment", "log_level", "max_connections",
                                        "http_host", "http_port",   "ws_host",   "ws_port",
                                        NULL};
    server_config *cfg = L->cfg;
    warn_unknown(L, t, "server", known);
    int idx, r;
    if (get_string(L, t, "server", "name", cfg->name, sizeof cfg->name, false) < 0) return -1;
    if ((r = get_choice(L, t, "server", "environment", environments, &idx)) < 0) return -1;
    if (r == 0) copy_str(cfg->environment, sizeof cfg->environment, environments[idx]);
    if ((r = get_choice(L, t, "server", "log_level", log_levels, &idx)) < 0) return -1;
    if (r == 0) copy_str(cfg->log_level, sizeof cfg->log_level, log_levels[idx]);
    if (get_u32(L, t, "server", "max_connections", 1, 1000000, &cfg->max_connections) < 0)
        return -1;
    if (get_host(L, t, "server", "http_host", cfg->http.host) < 0) return -1;
    if (get_port(L, t, "server", "http_port", &cfg->http.port) < 0) return -1;
    if ((r = get_host(L, t, "server", "ws_host", cfg->ws.host)) < 0) return -1;
    if (r == 0) cfg->ws.enabled = true;
    if ((r = get_port(L, t, "server", "ws_port", &cfg->ws.port)) < 0) return -1;
    if (r == 0) cfg->ws.enabled = true;
    return 0;
}

static int load_exchange(loader *L, const toml_value *t) {
    static const char *const known[] = {"name", NULL};
    warn_unknown(L, t, "exchange", known);
    return get_string(L, t, "exchange", "name", L->cfg->name, sizeof L->cfg->name, false) < 0 ? -1
                                                                                              : 0;
}

static int load_http(loader *L, const toml_value *t) {
    static const char *const known[] = {"host", "port", "max_body_size", NULL};
    server_config *cfg = L->cfg;
    warn_unknown(L, t, "http", known);
    if (get_host(L, t, "http", "host", cfg->http.host) < 0) return -1;
    if (get_port(L, t, "http", "port", &cfg->http.port) < 0) return -1;
    uint64_t body = cfg->http_max_body;
    if (get_size(L, t, "http", "max_body_size", 1024, (uint64_t)1 << 30, &body) < 0) return -1;
    cfg->http_max_body = (size_t)body;
    return 0;
}

static int load_websocket(loader *L, const toml_value *t) {
    static const char *const known[] = {"enabled",
                                        "host",
                                        "port",
                                        "ping_interval_ms",
                                        "ping_interval_secs",
                                        "idle_timeout_ms",
                                        "idle_timeout_secs",
                                        "max_message_size",
                                        NULL};
    server_config *cfg = L->cfg;
    warn_unknown(L, t, "websocket", known);
    int r1, r2, r3;
    if ((r1 = get_host(L, t, "websocket", "host", cfg->ws.host)) < 0) return -1;
    if ((r2 = get_port(L, t, "websocket", "port", &cfg->ws.port)) < 0) return -1;
    if (r1 == 0 || r2 == 0) cfg->ws.enabled = true;
    bool enabled;
    if ((r3 = get_bool(L, t, "websocket", "enabled", &enabled)) < 0) return -1;
    if (r3 == 0) cfg->ws.enabled = enabled;

    const toml_value *ping = NULL, *idle = NULL;
    if (get_duration_ms(L, t, "websocket", "ping_interval", 10, 3600000, &cfg->ws_ping_interval_ms,
                        &ping) < 0)
        return -1;
    if (get_duration_ms(L, t, "websocket", "idle_timeout", 20, 7200000, &cfg->ws_idle_timeout_ms,
                        &idle) < 0)
        return -1;
    if (cfg->ws_idle_timeout_ms <= cfg->ws_ping_interval_ms)
        return fail_at(L, idle ? idle : ping,
                       "websocket idle timeout (%" PRIu32 " ms) must be longer than the ping "
                       "interval (%" PRIu32 " ms)",
                       cfg->ws_idle_timeout_ms, cfg->ws_ping_interval_ms);
    uint64_t msg = cfg->ws_max_message;
    if (get_size(L, t, "websocket", "max_message_size", 1024, (uint64_t)1 << 30, &msg) < 0)
        return -1;
    cfg->ws_max_message = (size_t)msg;
    return 0;
}

static int load_storage(loader *L, const toml_value *t) {
    static const char *const known[] = {"enabled",
                                        "data_dir",
                                        "base_path",
                                        "durability",
                                        "sync_mode",
                                        "snapshot_interval_secs",
                                        "snapshot_interval_commands",
                                        "journal_segment_size",
                                        "subscriber",
                                        NULL};
    static const char *const dir_names[] = {"data_dir", "base_path", NULL};
    static const char *const durability_names[] = {"durability", "sync_mode", NULL};
    server_config *cfg = L->cfg;
    warn_unknown(L, t, "storage", known);
    if (get_bool(L, t, "storage", "enabled", &cfg->storage_enabled) < 0) return -1;
    const char *which;
    if (pick_alias(L, t, "storage", dir_names, &which) < 0) return -1;
    if (which && get_string(L, t, "storage", which, cfg->data_dir, sizeof cfg->data_dir, false) < 0)
        return -1;
    if (pick_alias(L, t, "storage", durability_names, &which) < 0) return -1;
    int idx;
    if (which) {
        if (get_choice(L, t, "storage", which, durabilities, &idx) < 0) return -1;
        cfg->durability = idx == 0 ? DURABILITY_SYNC : DURABILITY_ASYNC;
    }
    if (get_u32(L, t, "storage", "snapshot_interval_secs", 0, 31536000,
                &cfg->snapshot_interval_secs) < 0)
        return -1;
    if (get_u64(L, t, "storage", "snapshot_interval_commands", 0, 1000000000000ULL,
                &cfg->snapshot_interval_commands) < 0)
        return -1;
    if (get_size(L, t, "storage", "journal_segment_size", 4096, (uint64_t)1 << 40,
                 &cfg->journal_segment_size) < 0)
        return -1;

    const toml_value *sub = toml_get(t, "subscriber");
    if (sub) {
        static const char *const sub_known[] = {"batch_size", "batch_timeout_ms", "buffer_size",
                                                NULL};
        if (toml_type_of(sub) != TOML_TABLE)
            return type_error(L, sub, "storage.subscriber", "a table");
        warn_unknown(L, sub, "storage.subscriber", sub_known);
        if (get_u32(L, sub, "storage.subscriber", "batch_size", 1, 1000000,
                    &cfg->commit_batch_size) < 0)
            return -1;
        if (get_u32(L, sub, "storage.subscriber", "batch_timeout_ms", 0, 60000,
                    &cfg->commit_batch_timeout_ms) < 0)
            return -1;
        if (get_u32(L, sub, "storage.subscriber", "buffer_size", 1, 100000000,
                    &cfg->commit_buffer_size) < 0)
            return -1;
    }
    return 0;
}

static int load_risk(loader *L, const toml_value *t) {
    static const char *const known[] = {"max_position_ratio",    "max_order_value",
                                        "risk_ratio_reject",     "min_order_volume",
                                        "max_order_volume",      "force_close_threshold",
                                        "self_trade_prevention", "risk_ratio_warning",
                                        "margin_ratio",          NULL};
    server_config *cfg = L->cfg;
    engine_config *e = &cfg->engine;
    warn_unknown(L, t, "risk", known);
    if (get_double(L, t, "risk", "max_position_ratio", 0, true, 1, false, &e->max_position_ratio) <
        0)
        return -1;
    if (get_double(L, t, "risk", "max_order_value", 0, true, 1e15, false, &e->max_order_value) < 0)
        return -1;
    if (get_double(L, t, "risk", "risk_ratio_reject", 0, true, 10, false, &e->risk_ratio_reject) <
        0)
        return -1;
    if (get_int(L, t, "risk", "min_order_volume", 1, 1000000000, &e->min_order_volume) < 0)
        return -1;
    if (get_int(L, t, "risk", "max_order_volume", 1, 1000000000, &e->max_order_volume) < 0)
        return -1;
    if (e->min_order_volume > e->max_order_volume) {
        const toml_value *v = toml_get(t, "max_order_volume");
        return fail_at(L, v ? v : toml_get(t, "min_order_volume"),
                       "risk.min_order_volume (%" PRId64
                       ") must not exceed risk.max_order_volume (%" PRId64 ")",
                       e->min_order_volume, e->max_order_volume);
    }
    if (get_double(L, t, "risk", "force_close_threshold", 0, true, 10, false,
                   &e->force_close_threshold) < 0)
        return -1;
    if (get_bool(L, t, "risk", "self_trade_prevention", &e->self_trade_prevention) < 0) return -1;
    if (get_double(L, t, "risk", "risk_ratio_warning", 0, true, 10, false,
                   &cfg->risk_ratio_warning) < 0)
        return -1;
    int r = get_double(L, t, "risk", "margin_ratio", 0, false, 1, false, &L->default_margin);
    if (r < 0) return -1;
    if (r == 0) L->has_default_margin = true;
    return 0;
}

static int load_engine(loader *L, const toml_value *t) {
    static const char *const known[] = {"trading_day",
                                        "finished_orders_per_account",
                                        "trades_per_account",
                                        "kline_history",
                                        "recent_trades",
                                        "huge_pages",
                                        "preallocate_orders",
                                        "preallocate_trades",
                                        NULL};
    engine_config *e = &L->cfg->engine;
    warn_unknown(L, t, "engine", known);
    char day[32];
    int r = get_string(L, t, "engine", "trading_day", day, sizeof day, false);
    if (r < 0) return -1;
    if (r == 0) {
        if (!qaex_date_valid(day))
            return fail_at(L, toml_get(t, "trading_day"),
                           "engine.trading_day must be a date YYYY-MM-DD, got \"%s\"", day);
        copy_str(e->trading_day, sizeof e->trading_day, day);
    }
    if (get_u32(L, t, "engine", "finished_orders_per_account", 0, 100000000,
                &e->finished_orders_per_account) < 0)
        return -1;
    if (get_u32(L, t, "engine", "trades_per_account", 0, 100000000, &e->trades_per_account) < 0)
        return -1;
    if (get_u32(L, t, "engine", "kline_history", 0, 10000000, &e->kline_history) < 0) return -1;
    if (get_u32(L, t, "engine", "recent_trades", 0, 10000000, &e->recent_trades) < 0) return -1;
    if (get_bool(L, t, "engine", "huge_pages", &L->cfg->huge_pages) < 0) return -1;
    if (get_u32(L, t, "engine", "preallocate_orders", 0, 100000000, &L->cfg->preallocate_orders) <
        0)
        return -1;
    if (get_u32(L, t, "engine", "preallocate_trades", 0, 100000000, &L->cfg->preallocate_trades) <
        0)
        return -1;
    return 0;
}

static int load_auth(loader *L, const toml_value *t) {
    static const char *const known[] = {"admin_username",
                                        "admin_password",
                                        "token_secret",
                                        "token_ttl_secs",
                                        "open_mode",
                                        "password_cost",
                                        NULL};
    server_config *cfg = L->cfg;
    warn_unknown(L, t, "auth", known);
    int r = get_string(L, t, "auth", "admin_username", cfg->admin_username,
                       sizeof cfg->admin_username, false);
    if (r < 0) return -1;
    if (r == 0 && strchr(cfg->admin_username, ' '))
        return fail_at(L, toml_get(t, "admin_username"),
                       "auth.admin_username must not contain spaces, got \"%s\"",
                       cfg->admin_username);
    r = get_string(L, t, "auth", "admin_password", cfg->admin_password, sizeof cfg->admin_password,
                   false);
    if (r < 0) return -1;
    if (r == 0) L->password_line = toml_line(toml_get(t, "admin_password"));
    if (get_string(L, t, "auth", "token_secret", cfg->token_secret, sizeof cfg->token_secret,
                   true) < 0)
        return -1;
    if (cfg->token_secret[0] && strlen(cfg->token_secret) < 16)
        warnf(cfg,
              "%s:%d: auth.token_secret is shorter than 16 characters: tokens are easy to forge",
              L->path, toml_line(toml_get(t, "token_secret")));
    if (get_int(L, t, "auth", "token_ttl_secs", 60, 315360000, &cfg->token_ttl_secs) < 0) return -1;
    r = get_bool(L, t, "auth", "open_mode", &cfg->open_mode);
    if (r < 0) return -1;
    if (r == 0) L->open_mode_set = true;
    char cost[32];
    r = get_string(L, t, "auth", "password_cost", cost, sizeof cost, false);
    if (r < 0) return -1;
    if (r == 0) {
        if (strcmp(cost, "interactive") != 0 && strcmp(cost, "fast") != 0)
            return fail_at(L, toml_get(t, "password_cost"),
                           "auth.password_cost must be \"interactive\" or \"fast\", got \"%s\"",
                           cost);
        cfg->password_cost_fast = strcmp(cost, "fast") == 0;
    }
    return 0;
}

static int load_diff(loader *L, const toml_value *t) {
    static const char *const known[] = {"bid", "strict_bid", NULL};
    server_config *cfg = L->cfg;
    warn_unknown(L, t, "diff", known);
    if (get_string(L, t, "diff", "bid", cfg->diff_bid, sizeof cfg->diff_bid, false) < 0) return -1;
    if (get_bool(L, t, "diff", "strict_bid", &cfg->diff_strict_bid) < 0) return -1;
    return 0;
}

static int load_history(loader *L, const toml_value *t) {
    static const char *const known[] = {"enabled", "retention_days",
                                        "account_snapshot_interval_secs", NULL};
    server_config *cfg = L->cfg;
    warn_unknown(L, t, "history", known);
    if (get_bool(L, t, "history", "enabled", &cfg->history_enabled) < 0) return -1;
    if (get_u32(L, t, "history", "retention_days", 0, 36500, &cfg->history_retention_days) < 0)
        return -1;
    if (get_u32(L, t, "history", "account_snapshot_interval_secs", 0, 31536000,
                &cfg->history_account_snapshot_secs) < 0)
        return -1;
    return 0;
}

static int load_notification(loader *L, const toml_value *t) {
    static const char *const known[] = {"batch_size", "batch_interval_ms", "auto_subscribe", NULL};
    server_config *cfg = L->cfg;
    warn_unknown(L, t, "notification", known);
    if (get_u32(L, t, "notification", "batch_size", 1, 100000, &cfg->notify_batch_size) < 0)
        return -1;
    if (get_u32(L, t, "notification", "batch_interval_ms", 1, 60000,
                &cfg->notify_batch_interval_ms) < 0)
        return -1;
    if (get_bool(L, t, "notification", "auto_subscribe", &cfg->notify_auto_subscribe) < 0)
        return -1;
    return 0;
}

static int load_logging(loader *L, const toml_value *t) {
    static const char *const known[] = {"level", "file", NULL};
    server_config *cfg = L->cfg;
    warn_unknown(L, t, "logging", known);
    int idx, r;
    if ((r = get_choice(L, t, "logging", "level", log_levels, &idx)) < 0) return -1;
    if (r == 0) copy_str(cfg->log_level, sizeof cfg->log_level, log_levels[idx]);
    if (get_string(L, t, "logging", "file", cfg->log_file, sizeof cfg->log_file, true) < 0)
        return -1;
    return 0;
}

/* ---- instruments ---- */

static bool valid_code(const char *s, bool allow_dash) {
    if (!*s) return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || (allow_dash && c == '-');
        if (!ok) return false;
    }
    return true;
}

/* The terms an id starts from: a default instrument's, else the defaults of SPEC 2 without
 * price and multiplier (which the entry must then give). */
static bool instrument_base(const char *full_id, instrument_spec *s) {
    instrument_spec defaults[DEFAULT_INSTRUMENTS_MAX];
    size_t n = engine_default_instruments(defaults, DEFAULT_INSTRUMENTS_MAX);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(defaults[i].instrument_id, full_id) == 0) {
            *s = defaults[i];
            return true;
        }
    }
    memset(s, 0, sizeof *s);
    s->instrument_type = INSTRUMENT_FUTURE;
    s->price_tick = 0.2;
    s->margin_rate = 0.10;
    s->commission_rate = 0.000023;
    s->limit_up_rate = 0.10;
    s->limit_down_rate = 0.10;
    return false;
}

static int load_instrument(loader *L, const toml_value *t, size_t idx, instrument_spec *s,
                           bool *trading) {
    static const char *const known[] = {"instrument_id",
                                        "exchange",
                                        "exchange_id",
                                        "name",
                                        "instrument_name",
                                        "instrument_type",
                                        "init_price",
                                        "pre_settlement",
                                        "pre_close",
                                        "multiplier",
                                        "contract_multiplier",
                                        "volume_multiple",
                                        "price_tick",
                                        "margin_rate",
                                        "margin_ratio",
                                        "commission_rate",
                                        "commission",
                                        "commission_per_lot",
                                        "limit_up_rate",
                                        "limit_down_rate",
                                        "list_date",
                                        "expire_date",
                                        "is_trading",
                                        "product_id",
                                        NULL};
    static const char *const exchange_names[] = {"exchange", "exchange_id", NULL};
    static const char *const name_names[] = {"name", "instrument_name", NULL};
    static const char *const price_names[] = {"init_price", "pre_settlement", NULL};
    static const char *const mult_names[] = {"multiplier", "contract_multiplier", "volume_multiple",
                                             NULL};
    static const char *const margin_names[] = {"margin_rate", "margin_ratio", NULL};
    static const char *const commission_names[] = {"commission_rate", "commission", NULL};
    char sect[32];
    snprintf(sect, sizeof sect, "instruments[%zu]", idx);
    if (toml_type_of(t) != TOML_TABLE) return type_error(L, t, sect, "a table");
    warn_unknown(L, t, sect, known);

    char id[64], exch[16] = "";
    int r = get_string(L, t, sect, "instrument_id", id, sizeof id, false);
    if (r < 0) return -1;
    if (r == 1) return fail_at(L, t, "%s.instrument_id is missing", sect);
    const char *which;
    if (pick_alias(L, t, sect, exchange_names, &which) < 0) return -1;
    if (which) {
        if (get_string(L, t, sect, which, exch, sizeof exch, false) < 0) return -1;
        if (!valid_code(exch, false))
            return fail_at(L, toml_get(t, which), "%s.%s must be letters and digits, got \"%s\"",
                           sect, which, exch);
    }
    const toml_value *idv = toml_get(t, "instrument_id");
    char prefix[64];
    const char *code;
    const char *dot = strchr(id, '.');
    if (dot) {
        memcpy(prefix, id, (size_t)(dot - id));
        prefix[dot - id] = '\0';
        code = dot + 1;
        if (exch[0] && strcasecmp(exch, prefix) != 0)
            return fail_at(L, idv, "%s.instrument_id \"%s\" is on exchange %s, but %s.%s is \"%s\"",
                           sect, id, prefix, sect, which, exch);
    } else {
        copy_str(prefix, sizeof prefix, exch[0] ? exch : DEFAULT_EXCHANGE);
        code = id;
    }
    if (!valid_code(prefix, false) || !valid_code(code, true))
        return fail_at(L, idv,
                       "%s.instrument_id must be CODE or EXCHANGE.CODE (letters, digits, '_', "
                       "'-'), got \"%s\"",
                       sect, id);
    size_t plen = strlen(prefix), clen = strlen(code);
    if (plen >= sizeof s->exchange || plen + 1 + clen >= QAEX_INSTRUMENT_ID_LEN)
        return fail_at(L, idv,
                       "%s.instrument_id \"%s\" is too long (at most %d characters with "
                       "the exchange)",
                       sect, id, QAEX_INSTRUMENT_ID_LEN - 1);
    char full[QAEX_INSTRUMENT_ID_LEN];
    memcpy(full, prefix, plen);
    full[plen] = '.';
    memcpy(full + plen + 1, code, clen + 1);

    bool known_terms = instrument_base(full, s);
    memcpy(s->instrument_id, full, plen + 1 + clen + 1);
    memcpy(s->exchange, prefix, plen + 1);
    if (L->has_default_margin) s->margin_rate = L->default_margin;
    *trading = true;

    if (pick_alias(L, t, sect, name_names, &which) < 0) return -1;
    if (which &&
        get_string(L, t, sect, which, s->instrument_name, sizeof s->instrument_name, false) < 0)
        return -1;
    if (!s->instrument_name[0]) copy_str(s->instrument_name, sizeof s->instrument_name, code);

    char type[32];
    if ((r = get_string(L, t, sect, "instrument_type", type, sizeof type, false)) < 0) return -1;
    if (r == 0 && instrument_type_parse(type, &s->instrument_type) != 0)
        return fail_at(L, toml_get(t, "instrument_type"),
                       "%s.instrument_type must be one of Future|Option|Stock, got \"%s\"", sect,
                       type);

    bool has_price = false, has_mult = false;
    if (pick_alias(L, t, sect, price_names, &which) < 0) return -1;
    if (which) {
        if (get_double(L, t, sect, which, 0, true, 1e12, false, &s->pre_settlement) < 0) return -1;
        s->pre_close = s->pre_settlement;
        has_price = true;
    }
    if (get_double(L, t, sect, "pre_close", 0, false, 1e12, false, &s->pre_close) < 0) return -1;
    if (pick_alias(L, t, sect, mult_names, &which) < 0) return -1;
    if (which) {
        int64_t m = 0;
        if (get_int(L, t, sect, which, 1, 1000000000, &m) < 0) return -1;
        s->contract_multiplier = (int32_t)m;
        has_mult = true;
    }
    if (get_double(L, t, sect, "price_tick", 0, true, 1e9, false, &s->price_tick) < 0) return -1;
    if (pick_alias(L, t, sect, margin_names, &which) < 0) return -1;
    if (which && get_double(L, t, sect, which, 0, false, 1, false, &s->margin_rate) < 0) return -1;
    if (pick_alias(L, t, sect, commission_names, &which) < 0) return -1;
    if (which && get_double(L, t, sect, which, 0, false, 1, false, &s->commission_rate) < 0)
        return -1;
    if (get_double(L, t, sect, "commission_per_lot", 0, false, 1e9, false, &s->commission_per_lot) <
        0)
        return -1;
    if (get_double(L, t, sect, "limit_up_rate", 0, true, 10, false, &s->limit_up_rate) < 0)
        return -1;
    if (get_double(L, t, sect, "limit_down_rate", 0, true, 1, false, &s->limit_down_rate) < 0)
        return -1;
    static const char *const date_keys[] = {"list_date", "expire_date"};
    char *date_out[] = {s->list_date, s->expire_date};
    for (int i = 0; i < 2; i++) {
        char d[32];
        if ((r = get_string(L, t, sect, date_keys[i], d, sizeof d, false)) < 0) return -1;
        if (r == 0) {
            if (!qaex_date_valid(d))
                return fail_at(L, toml_get(t, date_keys[i]),
                               "%s.%s must be a date YYYY-MM-DD, got \"%s\"", sect, date_keys[i],
                               d);
            copy_str(date_out[i], QAEX_DATE_LEN, d);
        }
    }
    if (s->list_date[0] && s->expire_date[0] && strcmp(s->list_date, s->expire_date) > 0)
        return fail_at(L, toml_get(t, "expire_date") ? toml_get(t, "expire_date") : t,
                       "%s.expire_date (%s) is before list_date (%s)", sect, s->expire_date,
                       s->list_date);
    if (get_bool(L, t, sect, "is_trading", trading) < 0) return -1;
    char product[64];
    if (get_string(L, t, sect, "product_id", product, sizeof product, false) < 0) return -1;

    if (!known_terms && !has_price)
        return fail_at(L, t, "%s (%s): init_price is missing (the previous settlement price)", sect,
                       full);
    if (!known_terms && !has_mult)
        return fail_at(L, t, "%s (%s): multiplier is missing (the contract multiplier)", sect,
                       full);
    char msg[QAEX_MSG_LEN];
    if (instrument_spec_validate(s, msg, sizeof msg) != QAEX_OK)
        return fail_at(L, t, "%s (%s): %s", sect, full, msg);
    return 0;
}

static int load_instruments(loader *L, const toml_value *arr) {
    server_config *cfg = L->cfg;
    size_t n = toml_array_size(arr);
    if (n == 0) return 0;
    instrument_spec *specs = calloc(n, sizeof *specs);
    bool *trading = calloc(n, sizeof *trading);
    if (!specs || !trading) {
        free(specs);
        free(trading);
        return fail_at(L, arr, "out of memory for %zu instruments", n);
    }
    for (size_t i = 0; i < n; i++) {
        const toml_value *t = toml_array_at(arr, i);
        if (load_instrument(L, t, i, &specs[i], &trading[i]) < 0) goto fail;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(specs[j].instrument_id, specs[i].instrument_id) == 0) {
                fail_at(L, toml_get(t, "instrument_id"),
                        "instruments[%zu].instrument_id \"%s\" is already configured by "
                        "instruments[%zu]",
                        i, specs[i].instrument_id, j);
                goto fail;
            }
        }
    }
    free(cfg->instruments);
    free(cfg->instrument_trading);
    cfg->instruments = specs;
    cfg->instrument_trading = trading;
    cfg->instrument_count = n;
    cfg->instruments_from_file = true;
    return 0;
fail:
    free(specs);
    free(trading);
    return CONFIG_ERROR;
}

/* ---- the file ---- */

typedef struct section {
    const char *name;
    int (*load)(loader *L, const toml_value *v);
    bool is_array;
} section;

static const section sections[] = {
    {"server", load_server, false},   {"exchange", load_exchange, false},
    {"http", load_http, false},       {"websocket", load_websocket, false},
    {"storage", load_storage, false}, {"risk", load_risk, false},
    {"engine", load_engine, false},   {"auth", load_auth, false},
    {"diff", load_diff, false},       {"notification", load_notification, false},
    {"logging", load_logging, false}, {"instruments", load_instruments, true},
    {"history", load_history, false},
};
#define SECTION_COUNT (sizeof sections / sizeof sections[0])

static int apply_root(loader *L, const toml_value *root) {
    for (size_t i = 0; i < toml_table_size(root); i++) {
        const char *key = toml_table_key(root, i);
        const toml_value *v = toml_table_value(root, i);
        const section *sec = NULL;
        for (size_t s = 0; s < SECTION_COUNT; s++)
            if (strcmp(sections[s].name, key) == 0) sec = &sections[s];
        if (!sec) {
            toml_type t = toml_type_of(v);
            bool array_of_tables = t == TOML_ARRAY && toml_array_size(v) > 0 &&
                                   toml_type_of(toml_array_at(v, 0)) == TOML_TABLE;
            if (t == TOML_TABLE)
                warnf(L->cfg, "%s:%d: unknown section [%s] (ignored)", L->path, toml_line(v), key);
            else if (array_of_tables)
                warnf(L->cfg, "%s:%d: unknown section [[%s]] (ignored)", L->path, toml_line(v),
                      key);
            else
                warnf(L->cfg, "%s:%d: unknown key %s (ignored)", L->path, toml_line(v), key);
            continue;
        }
        toml_type want = sec->is_array ? TOML_ARRAY : TOML_TABLE;
        if (toml_type_of(v) != want)
            return type_error(L, v, key,
                              sec->is_array ? "an array of tables ([[instruments]])" : "a table");
    }
    for (size_t s = 0; s < SECTION_COUNT; s++) {
        const toml_value *v = toml_get(root, sections[s].name);
        if (v && sections[s].load(L, v) < 0) return CONFIG_ERROR;
    }
    return 0;
}

static int load_file(loader *L, const char *path) {
    server_config *cfg = L->cfg;
    if (!copy_str(cfg->config_path, sizeof cfg->config_path, path))
        return errorf(L->err, L->errlen, "--config: path is too long");
    toml_value *root = toml_parse_file(path, L->err, L->errlen);
    if (!root) return CONFIG_ERROR;
    L->path = path;
    int rc = apply_root(L, root);
    toml_free(root);
    return rc;
}

/* ---- command line ---- */

typedef struct cli_opts {
    const char *config;
    bool no_config;
    bool has_http, has_ws;
    config_listener http, ws; /* host empty: not given */
    const char *data_dir;
    bool no_storage;
    bool recover_to_corruption;
} cli_opts;

static int parse_cli(int argc, char **argv, cli_opts *o, char *err, size_t errlen) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        char flag[32];
        size_t flen = eq ? (size_t)(eq - arg) : strlen(arg);
        if (flen >= sizeof flag) flen = sizeof flag - 1;
        memcpy(flag, arg, flen);
        flag[flen] = '\0';
        const char *val = eq ? eq + 1 : NULL;

        bool takes_value = strcmp(flag, "--config") == 0 || strcmp(flag, "--http") == 0 ||
                           strcmp(flag, "--ws") == 0 || strcmp(flag, "--data-dir") == 0;
        bool is_switch = strcmp(flag, "--no-config") == 0 || strcmp(flag, "--no-storage") == 0 ||
                         strcmp(flag, "--recover-to-corruption") == 0;
        if (!takes_value && !is_switch) {
            if (arg[0] == '-')
                return errorf(err, errlen, "unknown option \"%s\" (see --help)", arg);
            return errorf(err, errlen, "unexpected argument \"%s\" (see --help)", arg);
        }
        if (is_switch) {
            if (val) return errorf(err, errlen, "%s takes no value, got \"%s\"", flag, val);
            if (strcmp(flag, "--no-config") == 0)
                o->no_config = true;
            else if (strcmp(flag, "--no-storage") == 0)
                o->no_storage = true;
            else
                o->recover_to_corruption = true;
            continue;
        }
        const char *what = strcmp(flag, "--config") == 0     ? "FILE"
                           : strcmp(flag, "--data-dir") == 0 ? "DIR"
                                                             : "HOST:PORT";
        if (!val) {
            if (i + 1 >= argc) return errorf(err, errlen, "%s needs %s", flag, what);
            val = argv[++i];
            if (strncmp(val, "--", 2) == 0)
                return errorf(err, errlen, "%s needs %s, got the option \"%s\"", flag, what, val);
        }
        if (!*val) return errorf(err, errlen, "%s needs %s, got \"\"", flag, what);
        if (strcmp(flag, "--config") == 0) {
            o->config = val;
        } else if (strcmp(flag, "--data-dir") == 0) {
            if (strlen(val) >= CONFIG_PATH_LEN)
                return errorf(err, errlen, "--data-dir: path is too long (%zu bytes, at most %d)",
                              strlen(val), CONFIG_PATH_LEN - 1);
            o->data_dir = val;
        } else if (strcmp(flag, "--http") == 0) {
            memset(&o->http, 0, sizeof o->http);
            if (parse_hostport("--http", val, &o->http, err, errlen) != 0) return CONFIG_ERROR;
            o->has_http = true;
        } else {
            memset(&o->ws, 0, sizeof o->ws);
            if (parse_hostport("--ws", val, &o->ws, err, errlen) != 0) return CONFIG_ERROR;
            o->has_ws = true;
        }
    }
    return 0;
}

static int env_port(const char *name, uint16_t *out, bool *given, char *err, size_t errlen) {
    const char *v = getenv(name);
    *given = false;
    if (!v || !*v) return 0;
    if (parse_port(v, strlen(v), out) != 0)
        return errorf(err, errlen, "%s: port must be a number in [0, 65535], got \"%s\"", name, v);
    *given = true;
    return 0;
}

/* ---- public ---- */

int config_defaults(server_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    copy_str(cfg->name, sizeof cfg->name, "QAExchange");
    copy_str(cfg->environment, sizeof cfg->environment, "development");
    copy_str(cfg->log_level, sizeof cfg->log_level, "info");
    cfg->http.enabled = true;
    copy_str(cfg->http.host, sizeof cfg->http.host, "127.0.0.1");
    cfg->http.port = 8080;
    cfg->ws.enabled = false;
    cfg->ws.port = 8081;
    cfg->max_connections = 10000;
    cfg->http_max_body = (size_t)1 << 20;
    cfg->ws_ping_interval_ms = 5000;
    cfg->ws_idle_timeout_ms = 10000;
    cfg->ws_max_message = (size_t)64 << 10;
    cfg->storage_enabled = true;
    copy_str(cfg->data_dir, sizeof cfg->data_dir, "./data");
    cfg->durability = DURABILITY_SYNC;
    cfg->snapshot_interval_secs = 300;
    cfg->snapshot_interval_commands = 100000;
    cfg->journal_segment_size = (uint64_t)64 << 20;
    cfg->commit_batch_size = 100;
    cfg->commit_batch_timeout_ms = 10;
    cfg->commit_buffer_size = 10000;
    cfg->history_enabled = true;
    cfg->history_retention_days = 0;
    cfg->history_account_snapshot_secs = 0;
    copy_str(cfg->admin_username, sizeof cfg->admin_username, "admin");
    copy_str(cfg->admin_password, sizeof cfg->admin_password, DEFAULT_ADMIN_PASSWORD);
    cfg->token_ttl_secs = 86400;
    cfg->open_mode = true;
    copy_str(cfg->diff_bid, sizeof cfg->diff_bid, "qaexchange");
    cfg->diff_strict_bid = false;
    cfg->notify_batch_size = 100;
    cfg->notify_batch_interval_ms = 100;
    cfg->risk_ratio_warning = 0.8;
    engine_config_default(&cfg->engine);

    instrument_spec defaults[DEFAULT_INSTRUMENTS_MAX];
    size_t n = engine_default_instruments(defaults, DEFAULT_INSTRUMENTS_MAX);
    cfg->instruments = calloc(n ? n : 1, sizeof *cfg->instruments);
    cfg->instrument_trading = calloc(n ? n : 1, sizeof *cfg->instrument_trading);
    if (!cfg->instruments || !cfg->instrument_trading) {
        config_free(cfg);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        cfg->instruments[i] = defaults[i];
        cfg->instrument_trading[i] = true;
    }
    cfg->instrument_count = n;
    return 0;
}

int config_load(server_config *cfg, int argc, char **argv, char *err, size_t errlen) {
    char scratch[1];
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = '\0';
    if (config_defaults(cfg) != 0) return errorf(err, errlen, "out of memory");

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) cfg->show_help = true;
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0)
            cfg->show_version = true;
    }
    if (cfg->show_help || cfg->show_version) return CONFIG_EXIT;

    cli_opts o;
    memset(&o, 0, sizeof o);
    if (parse_cli(argc, argv, &o, err, errlen) != 0) return CONFIG_ERROR;

    loader L;
    memset(&L, 0, sizeof L);
    L.cfg = cfg;
    L.err = err;
    L.errlen = errlen;
    L.path = "";
    if (o.config && !o.no_config) {
        if (load_file(&L, o.config) != 0) return CONFIG_ERROR;
        if (L.has_default_margin && !cfg->instruments_from_file)
            for (size_t i = 0; i < cfg->instrument_count; i++)
                cfg->instruments[i].margin_rate = L.default_margin;
    }

    uint16_t port;
    bool given;
    if (env_port("QAEX_HTTP_PORT", &port, &given, err, errlen) != 0) return CONFIG_ERROR;
    if (given) cfg->http.port = port;
    if (env_port("QAEX_WS_PORT", &port, &given, err, errlen) != 0) return CONFIG_ERROR;
    if (given) {
        cfg->ws.port = port;
        cfg->ws.enabled = true;
    }

    if (o.has_http) {
        if (o.http.host[0]) copy_str(cfg->http.host, sizeof cfg->http.host, o.http.host);
        cfg->http.port = o.http.port;
    }
    if (o.has_ws) {
        if (o.ws.host[0]) copy_str(cfg->ws.host, sizeof cfg->ws.host, o.ws.host);
        cfg->ws.port = o.ws.port;
        cfg->ws.enabled = true;
    }
    if (o.data_dir) copy_str(cfg->data_dir, sizeof cfg->data_dir, o.data_dir);
    if (o.no_storage) cfg->storage_enabled = false;
    if (o.recover_to_corruption) cfg->recover_to_corruption = true;

    /* what depends on the final values */
    if (cfg->ws.enabled) {
        if (!cfg->ws.host[0]) copy_str(cfg->ws.host, sizeof cfg->ws.host, cfg->http.host);
        if (cfg->ws.port != 0 && cfg->ws.port == cfg->http.port &&
            strcmp(cfg->ws.host, cfg->http.host) == 0)
            return errorf(err, errlen,
                          "the WebSocket listener %s:%u is the HTTP listener's address: /ws and "
                          "/ws/diff are served there anyway, so drop --ws / [websocket] or give "
                          "another port",
                          cfg->ws.host, (unsigned)cfg->ws.port);
    } else {
        cfg->ws.host[0] = '\0';
    }
    bool dev = is_development(cfg);
    if (!L.open_mode_set)
        cfg->open_mode = dev;
    else if (cfg->open_mode && !dev)
        warnf(cfg,
              "auth.open_mode is on with environment = \"%s\": any client can act on any "
              "account without a token",
              cfg->environment);
    if (!dev && strcmp(cfg->admin_password, DEFAULT_ADMIN_PASSWORD) == 0) {
        char where[CONFIG_PATH_LEN + 16] = "";
        if (L.password_line > 0) snprintf(where, sizeof where, "%s:%d: ", L.path, L.password_line);
        return errorf(err, errlen,
                      "%sauth.admin_password is the default \"%s\", which is refused with "
                      "environment = \"%s\": set admin_password = \"...\" in the [auth] section "
                      "of the --config file (only environment = \"development\" may keep the "
                      "default)",
                      where, DEFAULT_ADMIN_PASSWORD, cfg->environment);
    }
    return CONFIG_RUN;
}

void config_free(server_config *cfg) {
    if (!cfg) return;
    free(cfg->instruments);
    free(cfg->instrument_trading);
    cfg->instruments = NULL;
    cfg->instrument_trading = NULL;
    cfg->instrument_count = 0;
}

/* ---- output ---- */

/* Terminal columns of UTF-8 text: wide for CJK and emoji, zero for joiners and selectors. */
static size_t display_width(const char *text) {
    size_t w = 0;
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        uint32_t cp;
        int n;
        if (*p < 0x80) {
            cp = *p;
            n = 1;
        } else if ((*p & 0xE0) == 0xC0) {
            cp = *p & 0x1F;
            n = 2;
        } else if ((*p & 0xF0) == 0xE0) {
            cp = *p & 0x0F;
            n = 3;
        } else {
            cp = *p & 0x07;
            n = 4;
        }
        int i = 1;
        for (; i < n && (p[i] & 0xC0) == 0x80; i++)
            cp = (cp << 6) | (p[i] & 0x3F);
        p += i;
        if (cp == 0x200D || (cp >= 0xFE00 && cp <= 0xFE0F)) continue;
        bool wide = (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF) ||
                    (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
                    (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
                    (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1FAFF) ||
                    (cp >= 0x20000 && cp <= 0x3FFFD);
        w += wide ? 2 : 1;
    }
    return w;
}

static void endpoint(char *buf, size_t len, const char *scheme, const config_listener *l,
                     const char *path) {
    bool v6 = strchr(l->host, ':') != NULL;
    snprintf(buf, len, "%s://%s%s%s:%u%s", scheme, v6 ? "[" : "", l->host, v6 ? "]" : "",
             (unsigned)l->port, path);
}

static void print_size(FILE *out, uint64_t bytes) {
    if (bytes >= ((uint64_t)1 << 30) && bytes % ((uint64_t)1 << 30) == 0)
        fprintf(out, "%" PRIu64 " GiB", bytes >> 30);
    else if (bytes >= ((uint64_t)1 << 20) && bytes % ((uint64_t)1 << 20) == 0)
        fprintf(out, "%" PRIu64 " MiB", bytes >> 20);
    else if (bytes >= 1024 && bytes % 1024 == 0)
        fprintf(out, "%" PRIu64 " KiB", bytes >> 10);
    else
        fprintf(out, "%" PRIu64 " bytes", bytes);
}

void config_print_banner(const server_config *cfg, FILE *out) {
    enum { BOX = 71 };
    char title[160], url[CONFIG_HOST_LEN + 64];
    snprintf(title, sizeof title, "🚀 %s Server v%s Started", cfg->name, QAEX_VERSION);
    size_t w = display_width(title) + 2;
    fputs("╔", out);
    for (int i = 0; i < BOX; i++)
        fputs("═", out);
    fputs("╗\n║  ", out);
    fputs(title, out);
    for (size_t i = w; i < BOX; i++)
        fputc(' ', out);
    fputs("║\n╚", out);
    for (int i = 0; i < BOX; i++)
        fputs("═", out);
    fputs("╝\n", out);

    fputs("📡 Service Endpoints:\n", out);
    endpoint(url, sizeof url, "http", &cfg->http, "");
    fprintf(out, "  • HTTP API:   %s\n", url);
    endpoint(url, sizeof url, "ws", &cfg->http, "/ws");
    fprintf(out, "  • WebSocket:  %s", url);
    endpoint(url, sizeof url, "ws", &cfg->http, "/ws/diff");
    fprintf(out, "  (DIFF: %s)\n", url);
    if (cfg->ws.enabled) {
        endpoint(url, sizeof url, "ws", &cfg->ws, "/ws");
        fprintf(out, "  • WS only:    %s", url);
        endpoint(url, sizeof url, "ws", &cfg->ws, "/ws/diff");
        fprintf(out, "  (DIFF: %s)\n", url);
    }
    endpoint(url, sizeof url, "http", &cfg->http, "/health");
    fprintf(out, "  • Health:     %s\n", url);
    endpoint(url, sizeof url, "http", &cfg->http, "/metrics");
    fprintf(out, "  • Metrics:    %s\n", url);

    fprintf(out, "⚙️  Environment: %s (log level %s)\n", cfg->environment, cfg->log_level);
    fprintf(out, "📄 Config: %s\n", cfg->config_path[0] ? cfg->config_path : "embedded defaults");

    fputs("💾 Storage:\n", out);
    if (cfg->storage_enabled) {
        fputs("  • Status: Enabled ✓\n", out);
        fprintf(out, "  • Path: %s\n", cfg->data_dir);
        /* the journal's writer takes whatever arrived while it wrote: batches size themselves,
         * so [storage.subscriber] has nothing to set and is not shown */
        if (cfg->durability == DURABILITY_SYNC)
            fputs("  • Durability: sync (fdatasync before acknowledging; one sync covers every "
                  "command that arrived meanwhile)\n",
                  out);
        else
            fputs("  • Durability: async (acknowledged once written, before the disk has it; "
                  "synced every 100 ms)\n",
                  out);
        fputs("  • Journal segments: ", out);
        print_size(out, cfg->journal_segment_size);
        fputs("; snapshots: ", out);
        if (cfg->snapshot_interval_secs == 0 && cfg->snapshot_interval_commands == 0)
            fputs("off", out);
        if (cfg->snapshot_interval_secs)
            fprintf(out, "every %" PRIu32 " s", cfg->snapshot_interval_secs);
        if (cfg->snapshot_interval_secs && cfg->snapshot_interval_commands) fputs(" or ", out);
        if (cfg->snapshot_interval_commands)
            fprintf(out, "every %" PRIu64 " commands", cfg->snapshot_interval_commands);
        fputc('\n', out);
        if (cfg->history_enabled) {
            fprintf(out, "  • History: %s/history.db (retention ", cfg->data_dir);
            if (cfg->history_retention_days)
                fprintf(out, "%" PRIu32 " days", cfg->history_retention_days);
            else
                fputs("unlimited", out);
            fputs(")\n", out);
        } else {
            fputs("  • History: off\n", out);
        }
    } else {
        fputs("  • Status: Disabled: memory only (--no-storage)\n", out);
    }

    fprintf(out, "📈 Instruments: %zu", cfg->instrument_count);
    for (size_t i = 0; i < cfg->instrument_count && i < 8; i++)
        fprintf(out, "%s%s%s", i ? ", " : " (", cfg->instruments[i].instrument_id,
                cfg->instrument_trading && !cfg->instrument_trading[i] ? " suspended" : "");
    if (cfg->instrument_count > 8) fprintf(out, ", … %zu more", cfg->instrument_count - 8);
    fputs(cfg->instrument_count ? ")\n" : "\n", out);

    fprintf(out, "🔐 Auth: open mode %s; admin user \"%s\"\n",
            cfg->open_mode ? "on (no token needed)" : "off (token required)", cfg->admin_username);

    if (cfg->warning_count) {
        fprintf(out, "⚠️  Config warnings (%zu):\n", cfg->warning_count);
        for (size_t i = 0; i < cfg->warning_count && i < CONFIG_MAX_WARNINGS; i++)
            fprintf(out, "  • %s\n", cfg->warnings[i]);
        if (cfg->warning_count > CONFIG_MAX_WARNINGS)
            fprintf(out, "  • … and %zu more\n", cfg->warning_count - CONFIG_MAX_WARNINGS);
    }
}

void config_usage(FILE *out) {
    fputs("Usage: " QAEX_SERVER_NAME " [OPTIONS]\n"
          "\n"
          "A simulated futures exchange. One listener serves the REST API, WebSocket\n"
          "(/ws and the DIFF protocol on /ws/diff).\n"
          "\n"
          "Options:\n"
          "  --config FILE      read settings from a TOML file (layout of config/exchange.toml)\n"
          "  --no-config        ignore any --config: embedded defaults only\n"
          "  --http HOST:PORT   the main listener (default 127.0.0.1:8080; port 0 = any free)\n"
          "  --ws HOST:PORT     an extra listener for WebSocket only (e.g. 127.0.0.1:8081)\n"
          "  --data-dir DIR     journal, snapshots and history (default ./data)\n"
          "  --no-storage       memory only: nothing is written, nothing survives a restart\n"
          "  --recover-to-corruption\n"
          "                     start even if the journal is corrupt in the middle: keep what\n"
          "                     precedes the damage, set the rest aside (reported at start-up)\n"
          "  -h, --help         show this text\n"
          "  -V, --version      show the version\n"
          "\n"
          "Environment:\n"
          "  QAEX_HTTP_PORT     port of the main listener\n"
          "  QAEX_WS_PORT       port of the WebSocket-only listener (enables it)\n"
          "\n"
          "Precedence: embedded defaults < config file < environment < command line.\n"
          "Outside environment = \"development\" set [auth] admin_password in the config file.\n",
          out);
}

void config_print_version(FILE *out) {
    fputs(QAEX_SERVER_NAME " " QAEX_VERSION "\n", out);
}
