/* Tests for the strict TOML reader: the exchange.toml layout, every value type, escapes,
 * every error class with its line/column message, and 20,000 random mutations of a valid
 * document (run under ASan/UBSan: no crash, no leak, always a tree or a message). */
#include "app/toml.h"
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static char err[512];

static toml_value *parse(const char *text) {
    err[0] = '\0';
    return toml_parse(text, strlen(text), err, sizeof err);
}

/* The document must be rejected with a message containing `expected`. */
static void expect_error(const char *text, const char *expected) {
    toml_value *root = parse(text);
    CHECK(root == NULL);
    CHECK_CONTAINS(err, expected);
    toml_free(root);
}

/* The seed's config/exchange.toml layout, plus the sections SPEC 2 adds. */
static const char exchange_toml[] =
    "# QAExchange configuration\n"
    "[server]\n"
    "name = \"QAExchange\"\n"
    "environment = \"development\" # development | production | testing\n"
    "log_level = \"info\"            # trace | debug | info | warn | error\n"
    "\n"
    "# HTTP API\n"
    "[http]\n"
    "host = \"127.0.0.1\"\n"
    "port = 8080\n"
    "\n"
    "[websocket]\n"
    "host = \"127.0.0.1\"\n"
    "port = 8081\n"
    "\n"
    "[storage]\n"
    "enabled = true\n"
    "base_path = \"/tmp/qaexchange/storage\"\n"
    "durability = \"sync\"\n"
    "\n"
    "[storage.subscriber]\n"
    "batch_size = 100        # batch write size\n"
    "batch_timeout_ms = 10\n"
    "buffer_size = 10_000\n"
    "\n"
    "[[instruments]]\n"
    "instrument_id = \"CFFEX.IF2501\"\n"
    "name = \"沪深300股指期货2501\"\n"
    "init_price = 3800.0\n"
    "multiplier = 300\n"
    "price_tick = 0.2\n"
    "margin_rate = 0.10\n"
    "commission_rate = 0.000023\n"
    "is_trading = true\n"
    "\n"
    "[[instruments]]\n"
    "instrument_id = \"CFFEX.IC2501\"\n"
    "name = \"中证500股指期货2501\"\n"
    "init_price = 5600\n"
    "multiplier = 200\n"
    "is_trading = true\n"
    "\n"
    "[[instruments]]  # the third\n"
    "instrument_id = \"CFFEX.IH2501\"\n"
    "init_price = 2.8e3\n"
    "multiplier = 300\n"
    "is_trading = false\n"
    "\n"
    "[risk]\n"
    "max_position_ratio = 0.5\n"
    "max_order_value = 10_000_000\n"
    "risk_ratio_reject = 0.95\n"
    "min_order_volume = 1\n"
    "max_order_volume = 10000\n"
    "force_close_threshold = 1.0\n"
    "self_trade_prevention = true\n"
    "\n"
    "[auth]\n"
    "admin_username = 'admin'\n"
    "admin_password = \"admin123\"\n"
    "token_secret = \"change-me\"\n"
    "token_ttl_secs = 86400\n"
    "open_mode = true\n";

static void test_exchange_config(void) {
    toml_value *root = parse(exchange_toml);
    CHECK(root != NULL);
    if (!root) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    const char *s = NULL;
    int64_t i = 0;
    double d = 0;
    bool b = false;

    /* Sections in file order. */
    static const char *const sections[] = {"server",      "http", "websocket", "storage",
                                           "instruments", "risk", "auth"};
    CHECK_INT(toml_table_size(root), 7);
    for (size_t k = 0; k < 7; k++)
        CHECK_STR(toml_table_key(root, k), sections[k]);

    CHECK_INT(toml_get_string(root, "server.name", &s), 0);
    CHECK_STR(s, "QAExchange");
    CHECK_INT(toml_get_string(root, "server.environment", &s), 0);
    CHECK_STR(s, "development");
    CHECK_INT(toml_get_string(root, "server.log_level", &s), 0);
    CHECK_STR(s, "info");
    CHECK_INT(toml_get_string(root, "http.host", &s), 0);
    CHECK_STR(s, "127.0.0.1");
    CHECK_INT(toml_get_int(root, "http.port", &i), 0);
    CHECK_INT(i, 8080);
    CHECK_INT(toml_get_int(root, "websocket.port", &i), 0);
    CHECK_INT(i, 8081);
    CHECK_INT(toml_get_bool(root, "storage.enabled", &b), 0);
    CHECK(b);
    CHECK_INT(toml_get_string(root, "storage.base_path", &s), 0);
    CHECK_STR(s, "/tmp/qaexchange/storage");
    CHECK_INT(toml_get_string(root, "storage.durability", &s), 0);
    CHECK_STR(s, "sync");
    CHECK_INT(toml_get_int(root, "storage.subscriber.batch_size", &i), 0);
    CHECK_INT(i, 100);
    CHECK_INT(toml_get_int(root, "storage.subscriber.batch_timeout_ms", &i), 0);
    CHECK_INT(i, 10);
    CHECK_INT(toml_get_int(root, "storage.subscriber.buffer_size", &i), 0);
    CHECK_INT(i, 10000);

    const toml_value *instruments = NULL;
    CHECK_INT(toml_get_array(root, "instruments", &instruments), 0);
    CHECK_INT(toml_array_size(instruments), 3);
    static const char *const ids[] = {"CFFEX.IF2501", "CFFEX.IC2501", "CFFEX.IH2501"};
    static const double prices[] = {3800, 5600, 2800};
    static const int64_t mults[] = {300, 200, 300};
    for (size_t k = 0; k < 3; k++) {
        const toml_value *ins = toml_array_at(instruments, k);
        CHECK_INT(toml_type_of(ins), TOML_TABLE);
        CHECK_INT(toml_get_string(ins, "instrument_id", &s), 0);
        CHECK_STR(s, ids[k]);
        CHECK_INT(toml_get_double(ins, "init_price", &d), 0); /* 5600 (integer) accepted too */
        CHECK_MONEY(d, prices[k]);
        CHECK_INT(toml_get_int(ins, "multiplier", &i), 0);
        CHECK_INT(i, mults[k]);
        CHECK_INT(toml_get_bool(ins, "is_trading", &b), 0);
        CHECK(b == (k < 2));
    }
    CHECK_INT(toml_get_string(root, "instruments[0].name", &s), 0);
    CHECK_STR(s, "沪深300股指期货2501");
    CHECK_INT(toml_get_double(root, "instruments[0].price_tick", &d), 0);
    CHECK_MONEY(d, 0.2);
    CHECK_INT(toml_get_double(root, "instruments[0].commission_rate", &d), 0);
    CHECK(fabs(d - 0.000023) < 1e-12);
    d = -1;
    CHECK_INT(toml_get_double(root, "instruments[2].price_tick", &d), 1); /* absent */
    CHECK_MONEY(d, -1);                                                   /* untouched */
    CHECK_INT(toml_get_string(root, "instruments[3].instrument_id", &s), 1);
    CHECK_INT(toml_line(toml_array_at(instruments, 1)), 36);
    CHECK_INT(toml_line(toml_get_path(root, "instruments[1].multiplier")), 40);
    CHECK_INT(toml_column(toml_get_path(root, "instruments[1].multiplier")), 14);

    CHECK_INT(toml_get_double(root, "risk.max_position_ratio", &d), 0);
    CHECK_MONEY(d, 0.5);
    CHECK_INT(toml_get_int(root, "risk.max_order_value", &i), 0);
    CHECK_INT(i, 10000000);
    CHECK_INT(toml_get_double(root, "risk.risk_ratio_reject", &d), 0);
    CHECK_MONEY(d, 0.95);
    CHECK_INT(toml_get_int(root, "risk.min_order_volume", &i), 0);
    CHECK_INT(i, 1);
    CHECK_INT(toml_get_int(root, "risk.max_order_volume", &i), 0);
    CHECK_INT(i, 10000);
    CHECK_INT(toml_get_double(root, "risk.force_close_threshold", &d), 0);
    CHECK_MONEY(d, 1.0);
    CHECK_INT(toml_get_bool(root, "risk.self_trade_prevention", &b), 0);
    CHECK(b);

    CHECK_INT(toml_get_string(root, "auth.admin_username", &s), 0);
    CHECK_STR(s, "admin");
    CHECK_INT(toml_get_string(root, "auth.admin_password", &s), 0);
    CHECK_STR(s, "admin123");
    CHECK_INT(toml_get_string(root, "auth.token_secret", &s), 0);
    CHECK_STR(s, "change-me");
    CHECK_INT(toml_get_int(root, "auth.token_ttl_secs", &i), 0);
    CHECK_INT(i, 86400);
    CHECK_INT(toml_get_bool(root, "auth.open_mode", &b), 0);
    CHECK(b);

    /* Keys within a section in file order (lets a loader reject unknown keys). */
    const toml_value *server = toml_get(root, "server");
    CHECK_INT(toml_table_size(server), 3);
    CHECK_STR(toml_table_key(server, 0), "name");
    CHECK_STR(toml_table_key(server, 1), "environment");
    CHECK_STR(toml_table_key(server, 2), "log_level");
    CHECK_STR(toml_string(toml_table_value(server, 2)), "info");
    CHECK(toml_table_key(server, 3) == NULL);
    CHECK(toml_table_value(server, 3) == NULL);

    /* The other layout the seed shows (server.http_port) parses too. */
    toml_value *alt = parse("[exchange]\nname = \"QAExchange\"\ntrading_hours = \"09:00-15:00\"\n"
                            "[server]\nhttp_host = \"127.0.0.1\"\nhttp_port = 8000\n");
    CHECK(alt != NULL);
    CHECK_INT(toml_get_int(alt, "server.http_port", &i), 0);
    CHECK_INT(i, 8000);
    toml_free(alt);
    toml_free(root);
}

static void test_value_types(void) {
    toml_value *root = parse("s = \"basic\"\n"
                             "l = 'C:\\path\\no\\escapes'\n"
                             "i1 = 42\ni2 = +17\ni3 = -5_000\ni4 = 0\ni5 = -0\n"
                             "big = 9223372036854775807\nsmall = -9223372036854775808\n"
                             "hex = 0xDEAD_beef\noct = 0o755\nbin = 0b1101\n"
                             "f1 = 3.14\nf2 = -0.5\nf3 = 5e+22\nf4 = 1E-3\nf5 = 6.626e-34\n"
                             "f6 = 1_000.000_1\nf7 = inf\nf8 = -inf\nf9 = nan\nf10 = +inf\n"
                             "t = true\nf = false\n"
                             "odt = 1979-05-27T07:32:00Z\nodt2 = 1979-05-27 00:32:00.999-07:00\n"
                             "ld = 2024-02-29\nlt = 07:32:00.5\nldt = 1979-05-27t07:32:00\n"
                             "empty = \"\"\nempty_lit = ''\n");
    CHECK(root != NULL);
    if (!root) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    int64_t i = 0;
    double d = 0;
    bool b = true;
    CHECK_STR(toml_string(toml_get(root, "s")), "basic");
    CHECK_STR(toml_string(toml_get(root, "l")), "C:\\path\\no\\escapes");
    static const struct {
        const char *key;
        int64_t value;
    } ints[] = {{"i1", 42},    {"i2", 17},         {"i3", -5000},        {"i4", 0},
                {"i5", 0},     {"big", INT64_MAX}, {"small", INT64_MIN}, {"hex", 0xDEADBEEF},
                {"oct", 0755}, {"bin", 13}};
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        i = 1;
        CHECK_INT(toml_get_int(root, ints[k].key, &i), 0);
        CHECK(i == ints[k].value);
    }
    CHECK_INT(toml_get_double(root, "f1", &d), 0);
    CHECK(d == 3.14);
    CHECK_INT(toml_get_double(root, "f2", &d), 0);
    CHECK(d == -0.5);
    CHECK_INT(toml_get_double(root, "f3", &d), 0);
    CHECK(d == 5e22);
    CHECK_INT(toml_get_double(root, "f4", &d), 0);
    CHECK(d == 1e-3);
    CHECK_INT(toml_get_double(root, "f5", &d), 0);
    CHECK(d == 6.626e-34);
    CHECK_INT(toml_get_double(root, "f6", &d), 0);
    CHECK(d == 1000.0001);
    CHECK_INT(toml_get_double(root, "f7", &d), 0);
    CHECK(isinf(d) && d > 0);
    CHECK_INT(toml_get_double(root, "f8", &d), 0);
    CHECK(isinf(d) && d < 0);
    CHECK_INT(toml_get_double(root, "f9", &d), 0);
    CHECK(isnan(d));
    CHECK_INT(toml_get_double(root, "f10", &d), 0);
    CHECK(isinf(d) && d > 0);
    CHECK_INT(toml_type_of(toml_get(root, "f1")), TOML_FLOAT);
    CHECK_INT(toml_type_of(toml_get(root, "i1")), TOML_INTEGER);
    CHECK_INT(toml_get_bool(root, "t", &b), 0);
    CHECK(b);
    CHECK_INT(toml_get_bool(root, "f", &b), 0);
    CHECK(!b);
    CHECK_STR(toml_string(toml_get(root, "odt")), "1979-05-27T07:32:00Z");
    CHECK_STR(toml_string(toml_get(root, "odt2")), "1979-05-27 00:32:00.999-07:00");
    CHECK_STR(toml_string(toml_get(root, "ld")), "2024-02-29");
    CHECK_STR(toml_string(toml_get(root, "lt")), "07:32:00.5");
    CHECK_STR(toml_string(toml_get(root, "ldt")), "1979-05-27t07:32:00");
    CHECK_STR(toml_string(toml_get(root, "empty")), "");
    CHECK_INT(toml_string_len(toml_get(root, "empty")), 0);
    CHECK_STR(toml_string(toml_get(root, "empty_lit")), "");

    /* Type mismatches are reported, and leave the default alone. */
    i = 7;
    CHECK_INT(toml_get_int(root, "f1", &i), -1);
    CHECK_INT(toml_get_int(root, "s", &i), -1);
    CHECK_INT(i, 7);
    const char *s = "default";
    CHECK_INT(toml_get_string(root, "i1", &s), -1);
    CHECK_STR(s, "default");
    CHECK_INT(toml_get_bool(root, "s", &b), -1);
    CHECK_INT(toml_get_double(root, "t", &d), -1);
    CHECK_INT(toml_get_int(root, "missing", &i), 1);
    CHECK_INT(toml_get_int(root, "i1.x", &i), -1); /* runs through an integer */
    CHECK_INT(toml_get_int(root, "s[0]", &i), -1);
    CHECK_INT(toml_get_table(root, "i1", NULL), -1);
    CHECK_INT(toml_get_array(root, "i1", NULL), -1);
    CHECK_INT(toml_get_table(root, "", NULL), 0); /* the root itself */
    CHECK_STR(toml_type_name(TOML_BOOLEAN), "boolean");
    CHECK_STR(toml_type_name(toml_type_of(toml_get(root, "s"))), "string");
    /* NULL-safe accessors. */
    CHECK(toml_get(NULL, "x") == NULL);
    CHECK(toml_get_path(NULL, "x") == NULL);
    CHECK_INT(toml_table_size(NULL), 0);
    CHECK_INT(toml_array_size(toml_get(root, "s")), 0);
    CHECK(toml_array_at(NULL, 0) == NULL);
    CHECK(toml_string(toml_get(root, "i1")) == NULL);
    CHECK_INT(toml_line(NULL), 0);
    CHECK_INT(toml_as_int(NULL, &i), 1);
    toml_free(NULL);
    toml_free(root);
}

static void test_arrays_and_inline_tables(void) {
    toml_value *root = parse("ints = [1, 2, 3]\n"
                             "empty = []\n"
                             "nested = [[1, 2], ['a', \"b\"], []]\n"
                             "mixed = [1, 2.5, \"x\", true, {k = 1}]\n"
                             "multi = [\n"
                             "  \"one\",   # first\n"
                             "  # a comment line\n"
                             "  \"two\",\n"
                             "]\n"
                             "point = { x = 1, y = -2, label = \"p\" }\n"
                             "nest = { a = { b = { c = [1, {d = true}] } } }\n"
                             "dotted_inline = { a.b = 1, a.c = 2 }\n"
                             "empty_inline = {}\n"
                             "ports = [ 8080, 8081, ]\n");
    CHECK(root != NULL);
    if (!root) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    const toml_value *ints = toml_get(root, "ints");
    CHECK_INT(toml_type_of(ints), TOML_ARRAY);
    CHECK_INT(toml_array_size(ints), 3);
    int64_t i = 0;
    CHECK_INT(toml_as_int(toml_array_at(ints, 2), &i), 0);
    CHECK_INT(i, 3);
    CHECK(toml_array_at(ints, 3) == NULL);
    CHECK_INT(toml_array_size(toml_get(root, "empty")), 0);
    CHECK_INT(toml_array_size(toml_get(root, "nested")), 3);
    CHECK_STR(toml_string(toml_get_path(root, "nested[1][1]")), "b");
    CHECK_INT(toml_get_int(root, "nested[0][1]", &i), 0);
    CHECK_INT(i, 2);
    CHECK_INT(toml_array_size(toml_get_path(root, "nested[2]")), 0);
    CHECK_INT(toml_get_int(root, "mixed[4].k", &i), 0);
    CHECK_INT(i, 1);
    CHECK_INT(toml_type_of(toml_get_path(root, "mixed[1]")), TOML_FLOAT);
    CHECK_INT(toml_array_size(toml_get(root, "multi")), 2);
    CHECK_STR(toml_string(toml_get_path(root, "multi[1]")), "two");
    CHECK_INT(toml_get_int(root, "point.y", &i), 0);
    CHECK_INT(i, -2);
    CHECK_STR(toml_table_key(toml_get(root, "point"), 2), "label");
    bool b = false;
    CHECK_INT(toml_get_bool(root, "nest.a.b.c[1].d", &b), 0);
    CHECK(b);
    CHECK_INT(toml_get_int(root, "dotted_inline.a.c", &i), 0);
    CHECK_INT(i, 2);
    CHECK_INT(toml_table_size(toml_get(root, "empty_inline")), 0);
    CHECK_INT(toml_type_of(toml_get(root, "empty_inline")), TOML_TABLE);
    CHECK_INT(toml_array_size(toml_get(root, "ports")), 2);
    CHECK_INT(toml_get_int(root, "ports[x]", &i), -1); /* malformed index */
    CHECK_INT(toml_get_int(root, "ports[1", &i), -1);
    toml_free(root);
}

static void test_escapes_and_strings(void) {
    toml_value *root = parse("q = \"say \\\"hi\\\"\"\n"
                             "bs = \"a\\\\b\"\n"
                             "nl = \"l1\\nl2\\tt\\r\\b\\f\"\n"
                             "u = \"caf\\u00E9 \\u4E2D\"\n"
                             "U = \"\\U0001F600\"\n"
                             "nul = \"a\\u0000b\"\n"
                             "lit = 'no \\n escape \"here\"'\n"
                             "utf8 = \"沪深 ok\"\n"
                             "tab = \"a\tb\"\n"
                             "ml = \"\"\"\nline one\nline two\"\"\"\n"
                             "ml_cont = \"\"\"\\\n    The quick \\\n    brown fox.\\\n    \"\"\"\n"
                             "ml_quotes = \"\"\"He said \"yes\"\"\"\"\n"
                             "ml_lit = '''\nraw \\n text\n'''\n"
                             "ml_lit_q = ''''quoted'''''\n"
                             "crlf = \"\"\"a\r\nb\"\"\"\n"
                             "\"quoted key\" = 1\n"
                             "'lit.key' = 2\n"
                             "\"esc\\u0041key\" = 3\n"
                             "\"\" = 4\n");
    CHECK(root != NULL);
    if (!root) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK_STR(toml_string(toml_get(root, "q")), "say \"hi\"");
    CHECK_STR(toml_string(toml_get(root, "bs")), "a\\b");
    CHECK_STR(toml_string(toml_get(root, "nl")), "l1\nl2\tt\r\b\f");
    CHECK_STR(toml_string(toml_get(root, "u")), "caf\xC3\xA9 \xE4\xB8\xAD");
    CHECK_STR(toml_string(toml_get(root, "U")), "\xF0\x9F\x98\x80");
    const toml_value *nul = toml_get(root, "nul");
    CHECK_INT(toml_string_len(nul), 3);
    CHECK(memcmp(toml_string(nul), "a\0b", 4) == 0);
    CHECK_STR(toml_string(toml_get(root, "lit")), "no \\n escape \"here\"");
    CHECK_STR(toml_string(toml_get(root, "utf8")), "沪深 ok");
    CHECK_STR(toml_string(toml_get(root, "tab")), "a\tb");
    CHECK_STR(toml_string(toml_get(root, "ml")), "line one\nline two");
    CHECK_STR(toml_string(toml_get(root, "ml_cont")), "The quick brown fox.");
    CHECK_STR(toml_string(toml_get(root, "ml_quotes")), "He said \"yes\"");
    CHECK_STR(toml_string(toml_get(root, "ml_lit")), "raw \\n text\n");
    CHECK_STR(toml_string(toml_get(root, "ml_lit_q")), "'quoted''");
    CHECK_STR(toml_string(toml_get(root, "crlf")), "a\nb");
    int64_t i = 0;
    CHECK_INT(toml_as_int(toml_get(root, "quoted key"), &i), 0);
    CHECK_INT(i, 1);
    CHECK_INT(toml_as_int(toml_get(root, "lit.key"), &i), 0); /* one key, not dotted */
    CHECK_INT(i, 2);
    CHECK(toml_get_path(root, "lit.key") == NULL);
    CHECK_INT(toml_as_int(toml_get(root, "escAkey"), &i), 0);
    CHECK_INT(i, 3);
    CHECK_INT(toml_as_int(toml_get(root, ""), &i), 0);
    CHECK_INT(i, 4);
    toml_free(root);

    /* CRLF line endings and a byte-order mark are accepted. */
    root = parse("\xEF\xBB\xBF[http]\r\nport = 8080\r\n# c\r\n");
    CHECK(root != NULL);
    CHECK_INT(toml_get_int(root, "http.port", &i), 0);
    CHECK_INT(i, 8080);
    toml_free(root);
}

static void test_tables_and_dotted_keys(void) {
    toml_value *root = parse("title = \"root keys first\"\n"
                             "site.\"google.com\" = true\n"
                             "a . b . c = 1\n"
                             "a.b.d = 2\n"
                             "[x.y.z]\n"
                             "k = 1\n"
                             "[x]  # defining an implicit parent later is allowed\n"
                             "k = 2\n"
                             "[fruit]\n"
                             "apple.color = \"red\"\n"
                             "[fruit.apple.texture]  # sub-table of a dotted table\n"
                             "smooth = true\n"
                             "[[fruit.variety]]\n"
                             "name = \"red delicious\"\n"
                             "[[fruit.variety]]\n"
                             "name = \"plantain\"\n"
                             "[fruit.variety.detail]  # belongs to the last element\n"
                             "ripe = false\n"
                             "[ \"quoted table\" . 'x' ]\n"
                             "v = 3\n");
    CHECK(root != NULL);
    if (!root) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    int64_t i = 0;
    bool b = false;
    CHECK_INT(toml_as_bool(toml_get(toml_get(root, "site"), "google.com"), &b), 0);
    CHECK(b);
    CHECK_INT(toml_get_int(root, "a.b.c", &i), 0);
    CHECK_INT(i, 1);
    CHECK_INT(toml_get_int(root, "a.b.d", &i), 0);
    CHECK_INT(i, 2);
    CHECK_INT(toml_get_int(root, "x.y.z.k", &i), 0);
    CHECK_INT(i, 1);
    CHECK_INT(toml_get_int(root, "x.k", &i), 0);
    CHECK_INT(i, 2);
    CHECK_INT(toml_line(toml_get(root, "x")), 7); /* where it was defined, not implied */
    CHECK_STR(toml_string(toml_get_path(root, "fruit.apple.color")), "red");
    CHECK_INT(toml_get_bool(root, "fruit.apple.texture.smooth", &b), 0);
    CHECK(b);
    CHECK_INT(toml_array_size(toml_get_path(root, "fruit.variety")), 2);
    CHECK_STR(toml_string(toml_get_path(root, "fruit.variety[1].name")), "plantain");
    CHECK(toml_get_path(root, "fruit.variety[0].detail") == NULL);
    CHECK_INT(toml_get_bool(root, "fruit.variety[1].detail.ripe", &b), 0);
    CHECK(!b);
    CHECK_INT(toml_get_int(toml_get(root, "quoted table"), "x.v", &i), 0);
    CHECK_INT(i, 3);
    CHECK_STR(toml_table_key(root, 0), "title");
    CHECK_STR(toml_table_key(root, 1), "site");
    CHECK_STR(toml_table_key(root, 2), "a");
    CHECK_STR(toml_table_key(root, 3), "x");
    CHECK_STR(toml_table_key(root, 4), "fruit");
    CHECK_STR(toml_table_key(root, 5), "quoted table");
    toml_free(root);

    /* Empty documents and comment-only documents are empty tables. */
    root = parse("");
    CHECK(root != NULL);
    CHECK_INT(toml_table_size(root), 0);
    toml_free(root);
    root = parse("# only a comment\n\n   \t\n");
    CHECK(root != NULL);
    toml_free(root);
    root = toml_parse(NULL, 0, NULL, 0);
    CHECK(root != NULL);
    toml_free(root);
}

static void test_errors(void) {
    /* Syntax around keys. */
    expect_error("[http]\nport 8080\n",
                 "line 2, column 6: expected '=' after key \"port\", found '8'");
    expect_error("a.b c = 1\n", "line 1, column 5: expected '=' after key \"a.b\", found 'c'");
    expect_error("= 1\n", "line 1, column 1: expected a key, found '='");
    expect_error("a. = 1\n", "line 1, column 4: expected a key, found '='");
    expect_error("[server]\nport =\n", "line 2, column 7: missing value for key \"port\"");
    expect_error("port = # nothing\n", "line 1, column 8: missing value for key \"port\"");
    expect_error("port = 8080 8081\n",
                 "line 1, column 13: expected end of line after value, found '8'");
    expect_error("name = \"a\" \"b\"\n", "line 1, column 12: expected end of line after value");
    expect_error("\"\"\"k\"\"\" = 1\n", "line 1, column 1: a multi-line string cannot be a key");
    expect_error("k\xC3\xA9 = 1\n", "line 1, column 2: expected '=' after key \"k\", found 'é'");
    expect_error("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.aa.bb.cc.dd.ee.ff.gg = 1\n",
                 "more than 32 dotted parts");

    /* Headers. */
    expect_error("[server\nport = 1\n",
                 "line 1, column 8: expected ']' to close the header [server, found end of line");
    expect_error(
        "[[instruments]\n",
        "line 1, column 15: expected ']]' to close the header [[instruments, found end of line");
    expect_error("[]\n", "line 1, column 2: expected a key, found ']'");
    expect_error("[http] port = 1\n",
                 "line 1, column 8: expected end of line after table header, found 'p'");

    /* Values. */
    expect_error("host = localhost\n",
                 "line 1, column 8: invalid value \"localhost\" (strings must be quoted)");
    expect_error("on = True\n", "line 1, column 6: invalid value \"True\"");
    expect_error("x = @\n", "line 1, column 5: expected a value, found '@'");
    expect_error("s = \"abc\n", "line 1, column 5: unterminated string (missing closing \"");
    expect_error("s = 'abc", "line 1, column 5: unterminated string (missing closing '");
    expect_error("\n\ns = \"\"\"abc\n\n", "line 3, column 5: unterminated multi-line string");
    expect_error("s = '''abc''''''\n", "line 1, column 11: too many quotes");
    expect_error("s = \"bad \\q escape\"\n", "line 1, column 10: invalid escape sequence '\\q'");
    expect_error("s = \"\\u12\"\n", "line 1, column 6: escape \\u needs 4 hexadecimal digits");
    expect_error("s = \"\\uD800\"\n", "line 1, column 6: escape \\u names U+D800");
    expect_error("s = \"\\U00110000\"\n", "line 1, column 6: escape \\U names U+110000");
    expect_error("s = \"a\x01"
                 "b\"\n",
                 "line 1, column 7: control character U+0001 in string");
    expect_error("s = \"\xC3\x28\"\n", "line 1, column 6: invalid UTF-8 in string");
    expect_error("# bad \xFF byte\n", "line 1, column 7: invalid UTF-8 in comment");
    expect_error("# bell \x07\n", "line 1, column 8: control character U+0007 in comment");
    expect_error("a = 1\rb = 2\n", "line 1, column 6: expected end of line after value, "
                                   "found carriage return");
    expect_error("\r", "line 1, column 1: carriage return not followed by a line feed");
    expect_error("n = 0123\n", "line 1, column 5: invalid number \"0123\": leading zeros");
    expect_error("n = 1__000\n", "line 1, column 5: invalid number \"1__000\"");
    expect_error("n = 1000_\n", "line 1, column 5: invalid number \"1000_\"");
    expect_error("n = _1\n", "line 1, column 5: invalid value \"_1\"");
    expect_error("n = 1.\n", "line 1, column 5: invalid number \"1.\": expected digits after '.'");
    expect_error("n = .5\n", "line 1, column 5: expected a value, found '.'");
    expect_error("n = 1e\n", "line 1, column 5: invalid number \"1e\": expected digits in the "
                             "exponent");
    expect_error("n = 12abc\n", "line 1, column 5: invalid number \"12abc\"");
    expect_error("n = 9223372036854775808\n", "line 1, column 5: invalid number "
                                              "\"9223372036854775808\": does not fit in 64 bits");
    expect_error("n = -9223372036854775809\n", "does not fit in 64 bits");
    expect_error("n = 0x1_0000_0000_0000_0000\n", "does not fit in 64 bits");
    expect_error("n = -0x10\n", "a sign is not allowed with 0x/0o/0b");
    expect_error("n = 0o8\n", "line 1, column 5: invalid number \"0o8\"");
    expect_error("n = 1e400\n", "line 1, column 5: invalid number \"1e400\": out of range");
    expect_error("d = 2023-02-29\n", "line 1, column 5: invalid date 2023-02-29");
    expect_error("d = 2023-13-01\n", "line 1, column 5: invalid date");
    expect_error("d = 1979-05-27T25:00:00\n", "line 1, column 16: invalid time");
    expect_error("d = 1979-05-27T07:32:00+1\n", "line 1, column 24: invalid time offset");
    expect_error("t = 07:32\n", "line 1, column 5: invalid time");

    /* Arrays and inline tables. */
    expect_error("a = [1, 2\n", "line 1, column 5: unterminated array (missing ']')");
    expect_error("a = [1 2]\n", "line 1, column 8: expected ',' or ']' in array, found '2'");
    expect_error("a = [1,,2]\n", "line 1, column 8: expected a value, found ','");
    expect_error("a = { x = 1, }\n", "line 1, column 12: trailing comma in inline table");
    expect_error("a = { x = 1\n, y = 2 }\n",
                 "line 1, column 12: unterminated inline table (an inline table must be on one "
                 "line)");
    expect_error("a = { x = 1 y = 2 }\n",
                 "line 1, column 13: expected ',' or '}' in inline table, found 'y'");
    expect_error("a = { x = 1, x = 2 }\n", "line 1, column 14: duplicate key \"x\"");
    expect_error("a = { b = {c = 1}, b.d = 2 }\n",
                 "line 1, column 20: table \"b\" is already defined and cannot be extended");

    /* Nesting beyond the limit is refused, never a stack overflow. */
    char deep[400];
    strcpy(deep, "a = ");
    memset(deep + 4, '[', 300);
    deep[304] = '\0';
    expect_error(deep, "line 1, column 37: arrays and inline tables nested more than 32 deep");

    /* Duplicates and redefinitions. */
    expect_error("[http]\nport = 1\nport = 2\n", "line 3, column 1: duplicate key \"port\"");
    expect_error("a.b = 1\na.b = 2\n", "line 2, column 3: duplicate key \"a.b\"");
    expect_error("[http]\nport = 1\n\n[http]\n",
                 "line 4, column 1: table [http] is already defined (line 1)");
    expect_error("[a.b]\n[a]\n[a.b]\n", "line 3, column 1: table [a.b] is already defined");
    expect_error("[fruit]\napple.color = 'red'\n[fruit.apple]\n",
                 "line 3, column 1: table [fruit.apple] is already defined (line 2)");
    expect_error("[a.b.c]\nz = 9\n[a]\nb.c.t = 9\n",
                 "line 4, column 1: table \"b\" is already defined and cannot be extended by a "
                 "dotted key");
    expect_error("a = 1\na.b = 2\n", "line 2, column 1: key \"a\" already holds an integer, "
                                     "not a table");
    expect_error("a = 1\n[a]\n", "line 2, column 1: cannot define table [a]: key already holds "
                                 "a value (line 1)");
    expect_error("a = 1\n[a.b]\n", "line 2, column 1: cannot open [a.b]: \"a\" is an integer");
    expect_error("a = {x = 1}\n[a.y]\n", "cannot open [a.y]: \"a\" is an inline table");
    expect_error("a = {x = 1}\n[a]\n", "line 2, column 1: table [a] is already defined (line 1)");
    expect_error("a = [1]\n[[a]]\n", "line 2, column 1: cannot define array of tables [[a]]: "
                                     "key already holds a static array (line 1)");
    expect_error("[a]\n[[a]]\n", "line 2, column 1: cannot define array of tables [[a]]: key "
                                 "already holds a table");
    expect_error("[[instruments]]\nx = 1\n[instruments]\n",
                 "line 3, column 1: [instruments] is already an array of tables (line 1): use "
                 "[[instruments]]");
    expect_error("[[a]]\nb = 1\nb = 2\n", "line 3, column 1: duplicate key \"b\"");

    /* Columns count characters, not bytes. */
    expect_error("name = \"沪深\" x\n", "line 1, column 13: expected end of line after value");

    /* Without an error buffer the result is still NULL. */
    CHECK(toml_parse("a = ", 4, NULL, 0) == NULL);
    /* A short buffer truncates the message safely. */
    char small[12];
    CHECK(toml_parse("a = ", 4, small, sizeof small) == NULL);
    CHECK_STR(small, "line 1, col");
    /* Length is honoured: the bytes after len are not read. */
    toml_value *root = toml_parse("a = 1\nb = ", 6, err, sizeof err);
    CHECK(root != NULL);
    toml_free(root);
}

static void test_parse_file(void) {
    char path[] = "/tmp/test_toml_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(exchange_toml, f);
    fclose(f);
    toml_value *root = toml_parse_file(path, err, sizeof err);
    CHECK(root != NULL);
    int64_t port = 0;
    CHECK_INT(toml_get_int(root, "http.port", &port), 0);
    CHECK_INT(port, 8080);
    toml_free(root);

    f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("[http]\nport = \"8080\n", f);
        fclose(f);
    }
    root = toml_parse_file(path, err, sizeof err);
    CHECK(root == NULL);
    char expected[128];
    snprintf(expected, sizeof expected, "%s: line 2, column 8: unterminated string", path);
    CHECK(strncmp(err, expected, strlen(expected)) == 0);
    CHECK_CONTAINS(err, expected);
    unlink(path);

    root = toml_parse_file("/nonexistent/exchange.toml", err, sizeof err);
    CHECK(root == NULL);
    CHECK_CONTAINS(err, "/nonexistent/exchange.toml: ");
    CHECK_CONTAINS(err, "No such file");
    root = toml_parse_file("/tmp", err, sizeof err);
    CHECK(root == NULL);
    CHECK_CONTAINS(err, "/tmp: ");
}

/* ---------------------------------------------------------------- fuzz */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t xorshift64(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static size_t rnd(size_t n) {
    return n ? (size_t)(xorshift64() % n) : 0;
}

/* Visits every node through the public API; returns the node count. */
static size_t walk(const toml_value *v, int depth) {
    size_t count = 1;
    CHECK(depth < 2000);
    CHECK(toml_line(v) >= 1 && toml_column(v) >= 1);
    int64_t i;
    double d;
    bool b;
    const char *s;
    switch (toml_type_of(v)) {
        case TOML_TABLE:
            for (size_t k = 0; k < toml_table_size(v); k++) {
                CHECK(toml_table_key(v, k) != NULL);
                CHECK(toml_get(v, toml_table_key(v, k)) != NULL);
                count += walk(toml_table_value(v, k), depth + 1);
            }
            break;
        case TOML_ARRAY:
            for (size_t k = 0; k < toml_array_size(v); k++) {
                count += walk(toml_array_at(v, k), depth + 1);
            }
            break;
        case TOML_STRING:
            CHECK_INT(toml_as_string(v, &s), 0);
            CHECK(strlen(s) <= toml_string_len(v));
            break;
        case TOML_INTEGER:
            CHECK_INT(toml_as_int(v, &i), 0);
            CHECK_INT(toml_as_double(v, &d), 0);
            break;
        case TOML_FLOAT:
            CHECK_INT(toml_as_double(v, &d), 0);
            CHECK_INT(toml_as_int(v, &i), -1);
            break;
        case TOML_BOOLEAN:
            CHECK_INT(toml_as_bool(v, &b), 0);
            break;
    }
    return count;
}

static void test_fuzz_mutations(void) {
    static const char alphabet[] = "[]{}=\"'#.,\n\r\\ \t0123456789xobeE_+-:tfuUaZ";
    static const char *const snippets[] = {"[a]\n",
                                           "[[instruments]]\n",
                                           "= ",
                                           "\"\"\"",
                                           "'''",
                                           "\\u00E9",
                                           "{ x = 1 }",
                                           "[1, 2,]",
                                           "1979-05-27T07:32:00Z",
                                           "\xE4\xB8\xAD",
                                           "\xFF",
                                           "a.b.c = 1\n",
                                           "inf",
                                           "0x7F"};
    const size_t base_len = strlen(exchange_toml);
    size_t parsed = 0, rejected = 0, nodes = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t cap = base_len * 2 + 256;
        char *doc = malloc(cap);
        CHECK(doc != NULL);
        if (!doc) return;
        memcpy(doc, exchange_toml, base_len);
        size_t len = base_len;
        int ops = 1 + (int)rnd(4);
        for (int op = 0; op < ops; op++) {
            size_t at = rnd(len + 1);
            switch (rnd(6)) {
                case 0: /* replace a byte with a syntax character */
                    if (len) doc[rnd(len)] = alphabet[rnd(sizeof alphabet - 1)];
                    break;
                case 1: /* replace a byte with any byte */
                    if (len) doc[rnd(len)] = (char)rnd(256);
                    break;
                case 2: /* delete a run */
                    if (at < len) {
                        size_t n = 1 + rnd(16);
                        if (n > len - at) n = len - at;
                        memmove(doc + at, doc + at + n, len - at - n);
                        len -= n;
                    }
                    break;
                case 3: { /* insert a snippet */
                    const char *sn = snippets[rnd(sizeof snippets / sizeof snippets[0])];
                    size_t n = strlen(sn);
                    if (len + n <= cap) {
                        memmove(doc + at + n, doc + at, len - at);
                        memcpy(doc + at, sn, n);
                        len += n;
                    }
                    break;
                }
                case 4: { /* duplicate a slice (duplicate keys and tables) */
                    size_t from = rnd(len + 1), n = rnd(200);
                    if (n > len - from) n = len - from;
                    if (len + n <= cap) {
                        char slice[200];
                        memcpy(slice, doc + from, n);
                        memmove(doc + at + n, doc + at, len - at);
                        memcpy(doc + at, slice, n);
                        len += n;
                    }
                    break;
                }
                default: /* truncate */
                    len = at;
                    break;
            }
        }
        /* Exactly len bytes, no terminator: ASan catches any read past the end. */
        char *exact = malloc(len ? len : 1);
        CHECK(exact != NULL);
        if (!exact) {
            free(doc);
            return;
        }
        memcpy(exact, doc, len);
        free(doc);
        err[0] = '\0';
        toml_value *root = toml_parse(exact, len, err, sizeof err);
        if (root) {
            parsed++;
            CHECK(err[0] == '\0');
            CHECK_INT(toml_type_of(root), TOML_TABLE);
            nodes += walk(root, 0);
            toml_free(root);
        } else {
            rejected++;
            CHECK(strncmp(err, "line ", 5) == 0);
            CHECK_CONTAINS(err, ", column ");
        }
        free(exact);
    }
    /* Both outcomes must be exercised for the loop to mean anything. */
    CHECK(parsed > 1000);
    CHECK(rejected > 1000);
    CHECK(nodes > parsed);
}

/* Larger inputs stay linear enough: 5,000 instrument tables. */
static void test_many_tables(void) {
    size_t cap = 5000 * 64 + 1;
    char *doc = malloc(cap);
    CHECK(doc != NULL);
    if (!doc) return;
    size_t len = 0;
    for (int k = 0; k < 5000; k++) {
        len += (size_t)snprintf(doc + len, cap - len,
                                "[[instruments]]\ninstrument_id = \"X.%d\"\nprice = %d.5\n", k, k);
    }
    toml_value *root = toml_parse(doc, len, err, sizeof err);
    CHECK(root != NULL);
    CHECK_INT(toml_array_size(toml_get(root, "instruments")), 5000);
    CHECK_STR(toml_string(toml_get_path(root, "instruments[4999].instrument_id")), "X.4999");
    CHECK_INT(toml_line(toml_get_path(root, "instruments[4999].price")), 3 * 4999 + 3);
    toml_free(root);
    free(doc);
}

int main(void) {
    RUN_TEST(test_exchange_config);
    RUN_TEST(test_value_types);
    RUN_TEST(test_arrays_and_inline_tables);
    RUN_TEST(test_escapes_and_strings);
    RUN_TEST(test_tables_and_dotted_keys);
    RUN_TEST(test_errors);
    RUN_TEST(test_parse_file);
    RUN_TEST(test_fuzz_mutations);
    RUN_TEST(test_many_tables);
    return CHECK_REPORT();
}
