/* Tests for the server configuration: embedded defaults, the seed's exchange.toml layout, the
 * precedence defaults < file < environment < command line, every error path with its message,
 * the admin_password refusal outside development, and the start-up banner. */
#include "app/config.h"
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static char tmpdir[256];
static char err[1024];
static server_config cfg;

/* Writes text to tmpdir/name and returns the path (static buffer, one at a time). */
static const char *write_file(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

static void clear_env(void) {
    unsetenv("QAEX_HTTP_PORT");
    unsetenv("QAEX_WS_PORT");
}

/* config_load over a NULL-terminated argument list (argv[0] is added). */
static int load_args(const char *const *args) {
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"qaexchange-server";
    for (size_t i = 0; args[i]; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    err[0] = '\0';
    return config_load(&cfg, argc, argv, err, sizeof err);
}

/* Loads a config file with the given text; extra CLI arguments may follow. */
static int load_text(const char *name, const char *text) {
    const char *path = write_file(name, text);
    const char *args[] = {"--config", path, NULL};
    return load_args(args);
}

/* The document must be refused with a message containing `expected`. */
static void expect_file_error(const char *text, const char *expected) {
    int rc = load_text("bad.toml", text);
    CHECK_INT(rc, CONFIG_ERROR);
    CHECK_CONTAINS(err, expected);
    config_free(&cfg);
}

static void expect_args_error(const char *const *args, const char *expected) {
    int rc = load_args(args);
    CHECK_INT(rc, CONFIG_ERROR);
    CHECK_CONTAINS(err, expected);
    config_free(&cfg);
}

static bool has_warning(const char *needle) {
    for (size_t i = 0; i < cfg.warning_count && i < CONFIG_MAX_WARNINGS; i++)
        if (strstr(cfg.warnings[i], needle)) return true;
    return false;
}

static const instrument_spec *find_instrument(const char *id) {
    for (size_t i = 0; i < cfg.instrument_count; i++)
        if (strcmp(cfg.instruments[i].instrument_id, id) == 0) return &cfg.instruments[i];
    return NULL;
}

/* The banner as a string (caller frees). */
static char *banner(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print_banner(&cfg, f);
    fclose(f);
    return buf;
}

/* ---- defaults ---- */

static void test_defaults(void) {
    clear_env();
    const char *args[] = {NULL};
    CHECK_INT(load_args(args), CONFIG_RUN);
    CHECK_STR(err, "");
    CHECK_STR(cfg.name, "QAExchange");
    CHECK_STR(cfg.environment, "development");
    CHECK_STR(cfg.log_level, "info");
    CHECK_STR(cfg.config_path, "");
    CHECK(cfg.http.enabled);
    CHECK_STR(cfg.http.host, "127.0.0.1");
    CHECK_INT(cfg.http.port, 8080);
    CHECK(!cfg.ws.enabled);
    CHECK_INT(cfg.http_max_body, 1 << 20);
    CHECK_INT(cfg.ws_ping_interval_ms, 5000);
    CHECK_INT(cfg.ws_idle_timeout_ms, 10000);
    CHECK_INT(cfg.ws_max_message, 65536);
    CHECK(cfg.storage_enabled);
    CHECK_STR(cfg.data_dir, "./data");
    CHECK_INT(cfg.durability, DURABILITY_SYNC);
    CHECK(cfg.snapshot_interval_secs > 0);
    CHECK(cfg.snapshot_interval_commands > 0);
    CHECK(cfg.journal_segment_size >= 4096);
    CHECK_STR(cfg.admin_username, "admin");
    CHECK_STR(cfg.admin_password, "admin123");
    CHECK_INT(cfg.token_ttl_secs, 86400);
    CHECK(cfg.open_mode);
    CHECK_STR(cfg.diff_bid, "qaexchange");
    CHECK(!cfg.diff_strict_bid);
    CHECK(!cfg.huge_pages);
    CHECK_INT(cfg.preallocate_orders, 0);
    CHECK_INT(cfg.preallocate_trades, 0);
    CHECK_INT(cfg.notify_batch_size, 100);
    CHECK_INT(cfg.notify_batch_interval_ms, 100);

    engine_config e;
    engine_config_default(&e);
    CHECK_MONEY(cfg.engine.max_position_ratio, 0.5);
    CHECK_MONEY(cfg.engine.max_order_value, 10000000.0);
    CHECK_MONEY(cfg.engine.risk_ratio_reject, 0.95);
    CHECK_INT(cfg.engine.min_order_volume, 1);
    CHECK_INT(cfg.engine.max_order_volume, 10000);
    CHECK_MONEY(cfg.engine.force_close_threshold, 1.0);
    CHECK(cfg.engine.self_trade_prevention);
    CHECK(memcmp(&cfg.engine, &e, sizeof e) == 0);

    CHECK_INT(cfg.instrument_count, 3);
    CHECK(!cfg.instruments_from_file);
    const instrument_spec *s = find_instrument("CFFEX.IF2501");
    CHECK(s != NULL);
    if (s) {
        CHECK_INT(s->contract_multiplier, 300);
        CHECK_MONEY(s->pre_settlement, 3800.0);
    }
    CHECK(find_instrument("CFFEX.IC2501") != NULL);
    CHECK(find_instrument("CFFEX.IH2501") != NULL);
    CHECK(cfg.instrument_trading[0] && cfg.instrument_trading[1] && cfg.instrument_trading[2]);
    CHECK_INT(cfg.warning_count, 0);
    config_free(&cfg);
    config_free(&cfg); /* idempotent */
}

/* ---- the seed's layout ---- */

static const char seed_toml[] =
    "# QAExchange configuration (seed layout plus SPEC 2 sections)\n"
    "[server]\n"
    "name = \"QAExchange\"\n"
    "environment = \"development\" # development | production | testing\n"
    "log_level = \"debug\"\n"
    "\n"
    "[http]\n"
    "host = \"0.0.0.0\"\n"
    "port = 8080\n"
    "max_body_size = \"2MiB\"\n"
    "\n"
    "[websocket]\n"
    "host = \"127.0.0.1\"\n"
    "port = 8081\n"
    "ping_interval_secs = 2\n"
    "idle_timeout_ms = 6000\n"
    "max_message_size = \"1MiB\"\n"
    "\n"
    "[storage]\n"
    "enabled = true\n"
    "base_path = \"/tmp/qaexchange/storage\"\n"
    "durability = \"async\"\n"
    "snapshot_interval_secs = 60\n"
    "snapshot_interval_commands = 5000\n"
    "journal_segment_size = 1048576\n"
    "\n"
    "[storage.subscriber]\n"
    "batch_size = 200\n"
    "batch_timeout_ms = 5\n"
    "buffer_size = 10_000\n"
    "\n"
    "[risk]\n"
    "max_position_ratio = 0.6\n"
    "max_order_value = 20000000\n"
    "risk_ratio_reject = 0.9\n"
    "min_order_volume = 2\n"
    "max_order_volume = 500\n"
    "force_close_threshold = 0.99\n"
    "self_trade_prevention = false\n"
    "risk_ratio_warning = 0.7\n"
    "\n"
    "[engine]\n"
    "trading_day = 2025-03-03\n"
    "finished_orders_per_account = 100\n"
    "trades_per_account = 50\n"
    "huge_pages = true\n"
    "preallocate_orders = 250000\n"
    "preallocate_trades = 120000\n"
    "\n"
    "[auth]\n"
    "admin_username = \"root\"\n"
    "admin_password = \"s3cret-pass\"\n"
    "token_secret = \"0123456789abcdef0123\"\n"
    "token_ttl_secs = 3600\n"
    "open_mode = false\n"
    "\n"
    "[diff]\n"
    "bid = \"mybroker\"\n"
    "strict_bid = true\n"
    "\n"
    "[notification]\n"
    "batch_size = 50\n"
    "batch_interval_ms = 20\n"
    "\n"
    "[cluster]\n"
    "node_id = 1\n"
    "\n"
    "# 合约配置\n"
    "[[instruments]]\n"
    "instrument_id = \"IF2501\"\n"
    "name = \"沪深300股指期货2501\"\n"
    "init_price = 3800.0\n"
    "is_trading = true\n"
    "\n"
    "[[instruments]]\n"
    "instrument_id = \"SHFE.cu2501\"\n"
    "exchange_id = \"SHFE\"\n"
    "product_id = \"cu\"\n"
    "price_tick = 10.0\n"
    "volume_multiple = 5\n"
    "margin_ratio = 0.12\n"
    "commission = 0.0005\n"
    "init_price = 70000\n"
    "expire_date = 2025-01-15\n"
    "colour = \"red\"\n"
    "\n"
    "[[instruments]]\n"
    "instrument_id = \"IO2501\"\n"
    "exchange = \"CFFEX\"\n"
    "instrument_name = \"CSI 300 option\"\n"
    "instrument_type = \"Option\"\n"
    "pre_settlement = 120.0\n"
    "pre_close = 118.0\n"
    "contract_multiplier = 100\n"
    "price_tick = 0.2\n"
    "margin_rate = 0.15\n"
    "commission_rate = 0\n"
    "commission_per_lot = 15\n"
    "limit_up_rate = 0.2\n"
    "limit_down_rate = 0.2\n"
    "list_date = \"2024-05-20\"\n"
    "is_trading = false\n";

static void test_seed_layout(void) {
    clear_env();
    CHECK_INT(load_text("exchange.toml", seed_toml), CONFIG_RUN);
    CHECK_STR(err, "");
    CHECK_CONTAINS(cfg.config_path, "exchange.toml");
    CHECK_STR(cfg.environment, "development");
    CHECK_STR(cfg.log_level, "debug");
    CHECK_STR(cfg.http.host, "0.0.0.0");
    CHECK_INT(cfg.http.port, 8080);
    CHECK_INT(cfg.http_max_body, 2 << 20);
    CHECK(cfg.ws.enabled);
    CHECK_STR(cfg.ws.host, "127.0.0.1");
    CHECK_INT(cfg.ws.port, 8081);
    CHECK_INT(cfg.ws_ping_interval_ms, 2000);
    CHECK_INT(cfg.ws_idle_timeout_ms, 6000);
    CHECK_INT(cfg.ws_max_message, 1 << 20);
    CHECK(cfg.storage_enabled);
    CHECK_STR(cfg.data_dir, "/tmp/qaexchange/storage");
    CHECK_INT(cfg.durability, DURABILITY_ASYNC);
    CHECK_INT(cfg.snapshot_interval_secs, 60);
    CHECK_INT(cfg.snapshot_interval_commands, 5000);
    CHECK_INT(cfg.journal_segment_size, 1048576);
    CHECK_INT(cfg.commit_batch_size, 200);
    CHECK_INT(cfg.commit_batch_timeout_ms, 5);
    CHECK_INT(cfg.commit_buffer_size, 10000);

    CHECK_MONEY(cfg.engine.max_position_ratio, 0.6);
    CHECK_MONEY(cfg.engine.max_order_value, 20000000.0);
    CHECK_MONEY(cfg.engine.risk_ratio_reject, 0.9);
    CHECK_INT(cfg.engine.min_order_volume, 2);
    CHECK_INT(cfg.engine.max_order_volume, 500);
    CHECK_MONEY(cfg.engine.force_close_threshold, 0.99);
    CHECK(!cfg.engine.self_trade_prevention);
    CHECK_MONEY(cfg.risk_ratio_warning, 0.7);
    CHECK_STR(cfg.engine.trading_day, "2025-03-03");
    CHECK_INT(cfg.engine.finished_orders_per_account, 100);
    CHECK_INT(cfg.engine.trades_per_account, 50);
    CHECK(cfg.huge_pages);
    CHECK_INT(cfg.preallocate_orders, 250000);
    CHECK_INT(cfg.preallocate_trades, 120000);

    CHECK_STR(cfg.admin_username, "root");
    CHECK_STR(cfg.admin_password, "s3cret-pass");
    CHECK_STR(cfg.token_secret, "0123456789abcdef0123");
    CHECK_INT(cfg.token_ttl_secs, 3600);
    CHECK(!cfg.open_mode);
    CHECK_STR(cfg.diff_bid, "mybroker");
    CHECK(cfg.diff_strict_bid);
    CHECK_INT(cfg.notify_batch_size, 50);
    CHECK_INT(cfg.notify_batch_interval_ms, 20);

    CHECK(cfg.instruments_from_file);
    CHECK_INT(cfg.instrument_count, 3);
    /* the seed's four-line entry: the default terms of IF2501 */
    const instrument_spec *s = find_instrument("CFFEX.IF2501");
    CHECK(s != NULL);
    if (s) {
        CHECK_STR(s->instrument_name, "沪深300股指期货2501");
        CHECK_STR(s->exchange, "CFFEX");
        CHECK_INT(s->contract_multiplier, 300);
        CHECK_MONEY(s->price_tick, 0.2);
        CHECK_MONEY(s->margin_rate, 0.10);
        CHECK_MONEY(s->commission_rate, 0.000023);
        CHECK_MONEY(s->pre_settlement, 3800.0);
        CHECK_MONEY(s->pre_close, 3800.0);
    }
    s = find_instrument("SHFE.cu2501");
    CHECK(s != NULL);
    if (s) {
        CHECK_STR(s->exchange, "SHFE");
        CHECK_STR(s->instrument_name, "cu2501");
        CHECK_INT(s->contract_multiplier, 5);
        CHECK_MONEY(s->price_tick, 10.0);
        CHECK_MONEY(s->margin_rate, 0.12);
        CHECK_MONEY(s->commission_rate, 0.0005);
        CHECK_MONEY(s->pre_settlement, 70000.0);
        CHECK_STR(s->expire_date, "2025-01-15");
        CHECK_INT(s->instrument_type, INSTRUMENT_FUTURE);
    }
    s = find_instrument("CFFEX.IO2501");
    CHECK(s != NULL);
    if (s) {
        CHECK_STR(s->instrument_name, "CSI 300 option");
        CHECK_INT(s->instrument_type, INSTRUMENT_OPTION);
        CHECK_INT(s->contract_multiplier, 100);
        CHECK_MONEY(s->pre_settlement, 120.0);
        CHECK_MONEY(s->pre_close, 118.0);
        CHECK_MONEY(s->margin_rate, 0.15);
        CHECK_MONEY(s->commission_rate, 0.0);
        CHECK_MONEY(s->commission_per_lot, 15.0);
        CHECK_MONEY(s->limit_up_rate, 0.2);
        CHECK_STR(s->list_date, "2024-05-20");
    }
    CHECK(cfg.instrument_trading[0]);
    CHECK(cfg.instrument_trading[1]);
    CHECK(!cfg.instrument_trading[2]);

    /* unknown section and key: warnings with the line, not errors */
    CHECK(has_warning("unknown section [cluster]"));
    CHECK(has_warning("unknown key instruments[1].colour"));
    CHECK(has_warning("exchange.toml:"));
    CHECK_INT(cfg.warning_count, 2);
    config_free(&cfg);
}

/* The other layouts of the seed: [server] http_port/ws_port, [exchange] name, [logging]. */
static void test_alternative_layout(void) {
    clear_env();
    CHECK_INT(load_text("alt.toml", "[exchange]\n"
                                    "name = \"SimEx\"\n"
                                    "trading_hours = \"09:00-15:00\"\n"
                                    "[server]\n"
                                    "http_host = \"127.0.0.1\"\n"
                                    "http_port = 8000\n"
                                    "ws_host = \"127.0.0.1\"\n"
                                    "ws_port = 8001\n"
                                    "max_connections = 500\n"
                                    "[risk]\n"
                                    "margin_ratio = 0.2\n"
                                    "[logging]\n"
                                    "level = \"WARN\"\n"
                                    "file = \"logs/app.log\"\n"
                                    "[storage]\n"
                                    "sync_mode = \"sync\"\n"
                                    "journal_segment_size = \"8 MiB\"\n"),
              CONFIG_RUN);
    CHECK_STR(err, "");
    CHECK_STR(cfg.name, "SimEx");
    CHECK_INT(cfg.http.port, 8000);
    CHECK(cfg.ws.enabled);
    CHECK_INT(cfg.ws.port, 8001);
    CHECK_INT(cfg.max_connections, 500);
    CHECK_STR(cfg.log_level, "warn");
    CHECK_STR(cfg.log_file, "logs/app.log");
    CHECK_INT(cfg.journal_segment_size, 8 << 20);
    CHECK(has_warning("unknown key exchange.trading_hours"));
    /* [risk] margin_ratio applies to the default instruments */
    CHECK_INT(cfg.instrument_count, 3);
    CHECK_MONEY(cfg.instruments[0].margin_rate, 0.2);
    config_free(&cfg);
}

/* ---- precedence ---- */

static const char ports_toml[] = "[http]\n"
                                 "host = \"127.0.0.1\"\n"
                                 "port = 8080\n"
                                 "[websocket]\n"
                                 "host = \"127.0.0.1\"\n"
                                 "port = 8081\n"
                                 "[storage]\n"
                                 "enabled = true\n"
                                 "data_dir = \"/var/lib/qaex\"\n";

static void test_env_overrides_file(void) {
    clear_env();
    setenv("QAEX_HTTP_PORT", "9000", 1);
    setenv("QAEX_WS_PORT", "9001", 1);
    CHECK_INT(load_text("ports.toml", ports_toml), CONFIG_RUN);
    CHECK_INT(cfg.http.port, 9000);
    CHECK_STR(cfg.http.host, "127.0.0.1");
    CHECK(cfg.ws.enabled);
    CHECK_INT(cfg.ws.port, 9001);
    CHECK_STR(cfg.data_dir, "/var/lib/qaex");
    config_free(&cfg);

    /* QAEX_WS_PORT alone turns the WebSocket listener on, on the HTTP host */
    clear_env();
    setenv("QAEX_WS_PORT", "7001", 1);
    const char *args[] = {"--http", "10.0.0.1:7000", NULL};
    CHECK_INT(load_args(args), CONFIG_RUN);
    CHECK(cfg.ws.enabled);
    CHECK_STR(cfg.ws.host, "10.0.0.1");
    CHECK_INT(cfg.ws.port, 7001);
    config_free(&cfg);

    /* an empty variable counts as unset */
    clear_env();
    setenv("QAEX_HTTP_PORT", "", 1);
    const char *none[] = {NULL};
    CHECK_INT(load_args(none), CONFIG_RUN);
    CHECK_INT(cfg.http.port, 8080);
    config_free(&cfg);
    clear_env();
}

static void test_cli_overrides_file_and_env(void) {
    clear_env();
    setenv("QAEX_HTTP_PORT", "9000", 1);
    setenv("QAEX_WS_PORT", "9001", 1);
    const char *path = write_file("ports.toml", ports_toml);
    const char *args[] = {
        "--config",  path,           "--http", "0.0.0.0:9090", "--ws=[::1]:9091", "--data-dir",
        "/srv/qaex", "--no-storage", NULL};
    CHECK_INT(load_args(args), CONFIG_RUN);
    CHECK_STR(err, "");
    CHECK_STR(cfg.http.host, "0.0.0.0");
    CHECK_INT(cfg.http.port, 9090);
    CHECK(cfg.ws.enabled);
    CHECK_STR(cfg.ws.host, "::1");
    CHECK_INT(cfg.ws.port, 9091);
    CHECK_STR(cfg.data_dir, "/srv/qaex");
    CHECK(!cfg.storage_enabled);
    config_free(&cfg);

    /* ":PORT" and "PORT" keep the host */
    clear_env();
    const char *args2[] = {"--config", path, "--http", ":7070", "--ws", "7071", NULL};
    CHECK_INT(load_args(args2), CONFIG_RUN);
    CHECK_STR(cfg.http.host, "127.0.0.1");
    CHECK_INT(cfg.http.port, 7070);
    CHECK_INT(cfg.ws.port, 7071);
    config_free(&cfg);

    /* --no-config ignores --config, even a missing file */
    const char *args3[] = {"--config", "/nonexistent/x.toml", "--no-config", NULL};
    CHECK_INT(load_args(args3), CONFIG_RUN);
    CHECK_STR(cfg.config_path, "");
    CHECK_INT(cfg.http.port, 8080);
    config_free(&cfg);
    clear_env();
}

static void test_help_and_version(void) {
    clear_env();
    const char *help[] = {"--http", "bad", "--help", NULL};
    CHECK_INT(load_args(help), CONFIG_EXIT);
    CHECK(cfg.show_help);
    config_free(&cfg);
    const char *version[] = {"--version", NULL};
    CHECK_INT(load_args(version), CONFIG_EXIT);
    CHECK(cfg.show_version);
    config_free(&cfg);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_usage(f);
    config_print_version(f);
    fclose(f);
    CHECK_CONTAINS(buf, "--config FILE");
    CHECK_CONTAINS(buf, "--http HOST:PORT");
    CHECK_CONTAINS(buf, "--ws HOST:PORT");
    CHECK_CONTAINS(buf, "--data-dir DIR");
    CHECK_CONTAINS(buf, "--no-storage");
    CHECK_CONTAINS(buf, "--no-config");
    CHECK_CONTAINS(buf, "QAEX_HTTP_PORT");
    CHECK_CONTAINS(buf, "qaexchange-server " QAEX_VERSION);
    free(buf);
}

/* ---- errors ---- */

static void test_cli_errors(void) {
    clear_env();
    const char *a1[] = {"--http", "127.0.0.1:abc", NULL};
    expect_args_error(a1, "--http: port must be a number in [0, 65535], got \"abc\"");
    const char *a2[] = {"--http", "127.0.0.1:70000", NULL};
    expect_args_error(a2, "--http: port must be a number in [0, 65535], got \"70000\"");
    const char *a3[] = {"--ws", "abc", NULL};
    expect_args_error(a3, "--ws: expected HOST:PORT (e.g. 127.0.0.1:8080), got \"abc\"");
    const char *a4[] = {"--http", NULL};
    expect_args_error(a4, "--http needs HOST:PORT");
    const char *a5[] = {"--bogus", NULL};
    expect_args_error(a5, "unknown option \"--bogus\"");
    const char *a6[] = {"extra", NULL};
    expect_args_error(a6, "unexpected argument \"extra\"");
    const char *a7[] = {"--no-storage=yes", NULL};
    expect_args_error(a7, "--no-storage takes no value");
    const char *a8[] = {"--http", "::1:80", NULL};
    expect_args_error(a8, "brackets");
    const char *a9[] = {"--config", "/nonexistent/qaex.toml", NULL};
    expect_args_error(a9, "/nonexistent/qaex.toml");
    const char *a10[] = {"--http", "127.0.0.1:8080", "--ws", "127.0.0.1:8080", NULL};
    expect_args_error(a10, "WebSocket listener 127.0.0.1:8080 is the HTTP listener's address");
    const char *a11[] = {"--data-dir", "", NULL};
    expect_args_error(a11, "--data-dir needs DIR");

    setenv("QAEX_HTTP_PORT", "abc", 1);
    const char *none[] = {NULL};
    expect_args_error(none, "QAEX_HTTP_PORT: port must be a number in [0, 65535], got \"abc\"");
    clear_env();
    setenv("QAEX_WS_PORT", "70000", 1);
    expect_args_error(none, "QAEX_WS_PORT: port must be a number in [0, 65535], got \"70000\"");
    clear_env();
}

static void test_file_errors(void) {
    clear_env();
    /* the example of the brief, to the letter */
    int rc = load_text("config.toml", "[risk]\n"
                                      "max_position_ratio = 1.5\n");
    CHECK_INT(rc, CONFIG_ERROR);
    char expected[600];
    snprintf(expected, sizeof expected,
             "%s/config.toml:2: risk.max_position_ratio must be in (0, 1], got 1.5", tmpdir);
    CHECK_STR(err, expected);
    config_free(&cfg);

    expect_file_error("[risk]\nmax_position_ratio = 0\n",
                      "bad.toml:2: risk.max_position_ratio must be in (0, 1], got 0");
    expect_file_error("[http]\nport = \"abc\"\n",
                      "bad.toml:2: http.port must be an integer, got string \"abc\"");
    expect_file_error("\n[http]\nhost = \"127.0.0.1\"\nport = 70000\n",
                      "bad.toml:4: http.port must be in [0, 65535], got 70000");
    expect_file_error("[websocket]\nport = -1\n",
                      "bad.toml:2: websocket.port must be in [0, 65535], got -1");
    expect_file_error("[storage]\ndurability = \"fast\"\n",
                      "bad.toml:2: storage.durability must be one of sync|async, got \"fast\"");
    expect_file_error("[storage]\ndurability = 1\n",
                      "storage.durability must be one of sync|async, got integer 1");
    expect_file_error("[storage]\nbase_path = \"/a\"\ndata_dir = \"/b\"\n",
                      "bad.toml:3: set storage.base_path or storage.data_dir, not both");
    expect_file_error("[storage]\njournal_segment_size = \"lots\"\n",
                      "storage.journal_segment_size must be a size in bytes");
    expect_file_error("[storage]\nenabled = \"yes\"\n",
                      "storage.enabled must be true or false, got string \"yes\"");
    expect_file_error("[server]\nenvironment = \"staging\"\n",
                      "server.environment must be one of development|production|testing, got "
                      "\"staging\"");
    expect_file_error("[server]\nlog_level = \"loud\"\n", "server.log_level must be one of");
    expect_file_error("[risk]\nmin_order_volume = 10\nmax_order_volume = 5\n",
                      "bad.toml:3: risk.min_order_volume (10) must not exceed "
                      "risk.max_order_volume (5)");
    expect_file_error("[risk]\nmax_order_volume = 2.5\n",
                      "risk.max_order_volume must be an integer, got float 2.5");
    expect_file_error("[risk]\nrisk_ratio_reject = inf\n", "risk.risk_ratio_reject must be in");
    expect_file_error("[websocket]\nping_interval_ms = 20000\n",
                      "websocket idle timeout (10000 ms) must be longer than the ping interval "
                      "(20000 ms)");
    expect_file_error("[websocket]\nping_interval_ms = 100\nping_interval_secs = 1\n", "not both");
    expect_file_error("[engine]\ntrading_day = \"2025-02-30\"\n",
                      "engine.trading_day must be a date YYYY-MM-DD, got \"2025-02-30\"");
    expect_file_error("[engine]\nhuge_pages = 1\n", "engine.huge_pages");
    expect_file_error("[engine]\npreallocate_orders = 200000000\n",
                      "engine.preallocate_orders must be in [0, 100000000], got 200000000");
    expect_file_error("[engine]\npreallocate_trades = -1\n", "engine.preallocate_trades");
    expect_file_error("[auth]\nadmin_password = \"\"\n",
                      "bad.toml:2: auth.admin_password must not be empty");
    expect_file_error("[auth]\ntoken_ttl_secs = 1\n", "auth.token_ttl_secs must be in [60, ");
    expect_file_error("risk = 5\n", "bad.toml:1: risk must be a table, got integer 5");
    expect_file_error("[instruments]\nx = 1\n", "instruments must be an array of tables");
    expect_file_error("[http]\nport = 80\nport = 81\n", "line 3");

    /* instruments: wrong field types, unknown type names, missing and inconsistent terms */
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"IF2501\"\n"
                      "init_price = \"abc\"\n",
                      "bad.toml:3: instruments[0].init_price must be a number, got string "
                      "\"abc\"");
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"IF2501\"\n"
                      "multiplier = 300.0\n",
                      "bad.toml:3: instruments[0].multiplier must be an integer, got float 300");
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"IF2501\"\n"
                      "instrument_type = \"Swap\"\n",
                      "bad.toml:3: instruments[0].instrument_type must be one of "
                      "Future|Option|Stock, got \"Swap\"");
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"IF2501\"\n"
                      "is_trading = 1\n",
                      "instruments[0].is_trading must be true or false, got integer 1");
    expect_file_error("[[instruments]]\n"
                      "name = \"nameless\"\n",
                      "bad.toml:1: instruments[0].instrument_id is missing");
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"IF2501\"\n"
                      "[[instruments]]\n"
                      "instrument_id = \"ZZ9\"\n"
                      "init_price = 10\n",
                      "bad.toml:3: instruments[1] (CFFEX.ZZ9): multiplier is missing");
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"ZZ9\"\n"
                      "multiplier = 10\n",
                      "instruments[0] (CFFEX.ZZ9): init_price is missing");
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"IF2501\"\n"
                      "[[instruments]]\n"
                      "instrument_id = \"CFFEX.IF2501\"\n",
                      "bad.toml:4: instruments[1].instrument_id \"CFFEX.IF2501\" is already "
                      "configured by instruments[0]");
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"SHFE.cu2501\"\n"
                      "exchange = \"DCE\"\n",
                      "instruments[0].instrument_id \"SHFE.cu2501\" is on exchange SHFE, but "
                      "instruments[0].exchange is \"DCE\"");
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"IF 2501\"\n",
                      "instruments[0].instrument_id must be CODE or EXCHANGE.CODE");
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"IF2501\"\n"
                      "margin_rate = 1.5\n",
                      "instruments[0].margin_rate must be in [0, 1], got 1.5");
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"IF2501\"\n"
                      "multiplier = 300\n"
                      "contract_multiplier = 300\n",
                      "set instruments[0].multiplier or instruments[0].contract_multiplier, not "
                      "both");
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"IF2501\"\n"
                      "price_tick = 0.0000001\n",
                      "instruments[0] (CFFEX.IF2501): limit band");
    expect_file_error("[[instruments]]\n"
                      "instrument_id = \"IF2501\"\n"
                      "list_date = \"2025-02-01\"\n"
                      "expire_date = \"2025-01-17\"\n",
                      "instruments[0].expire_date (2025-01-17) is before list_date (2025-02-01)");
}

/* ---- the admin password outside development ---- */

static void test_admin_password_refused(void) {
    clear_env();
    int rc = load_text("prod.toml", "[server]\nenvironment = \"production\"\n");
    CHECK_INT(rc, CONFIG_ERROR);
    CHECK_CONTAINS(err, "auth.admin_password is the default \"admin123\"");
    CHECK_CONTAINS(err, "environment = \"production\"");
    CHECK_CONTAINS(err, "[auth]");
    config_free(&cfg);

    /* written out explicitly: the message points at the line */
    rc = load_text("prod.toml", "[server]\nenvironment = \"testing\"\n"
                                "[auth]\nadmin_password = \"admin123\"\n");
    CHECK_INT(rc, CONFIG_ERROR);
    CHECK_CONTAINS(err, "prod.toml:4: auth.admin_password is the default");
    config_free(&cfg);

    /* a real password: accepted, and open mode defaults to off */
    rc = load_text("prod.toml", "[server]\nenvironment = \"production\"\n"
                                "[auth]\nadmin_password = \"correct horse battery\"\n");
    CHECK_INT(rc, CONFIG_RUN);
    CHECK_STR(err, "");
    CHECK(!cfg.open_mode);
    CHECK_INT(cfg.warning_count, 0);
    config_free(&cfg);

    /* open mode forced on outside development: allowed, with a warning */
    rc = load_text("prod.toml", "[server]\nenvironment = \"production\"\n"
                                "[auth]\nadmin_password = \"pw-1234567\"\nopen_mode = true\n");
    CHECK_INT(rc, CONFIG_RUN);
    CHECK(cfg.open_mode);
    CHECK(has_warning("auth.open_mode is on"));
    config_free(&cfg);

    /* development keeps the default password and open mode */
    rc = load_text("dev.toml", "[server]\nenvironment = \"development\"\n");
    CHECK_INT(rc, CONFIG_RUN);
    CHECK(cfg.open_mode);
    config_free(&cfg);
}

/* ---- banner ---- */

static void test_banner(void) {
    clear_env();
    const char *none[] = {NULL};
    CHECK_INT(load_args(none), CONFIG_RUN);
    char *b = banner();
    CHECK_CONTAINS(b, "QAExchange Server v" QAEX_VERSION " Started");
    CHECK_CONTAINS(b, "http://127.0.0.1:8080");
    CHECK_CONTAINS(b, "ws://127.0.0.1:8080/ws");
    CHECK_CONTAINS(b, "ws://127.0.0.1:8080/ws/diff");
    CHECK_CONTAINS(b, "http://127.0.0.1:8080/health");
    CHECK_CONTAINS(b, "Environment: development");
    CHECK_CONTAINS(b, "Enabled");
    CHECK_CONTAINS(b, "Path: ./data");
    CHECK_CONTAINS(b, "Durability: sync");
    CHECK_CONTAINS(b, "Instruments: 3 (CFFEX.IF2501, CFFEX.IC2501, CFFEX.IH2501)");
    CHECK_CONTAINS(b, "open mode on");
    CHECK(strstr(b, "memory only") == NULL);
    free(b);
    config_free(&cfg);

    const char *args[] = {"--http", "0.0.0.0:9090", "--ws", "[::1]:9091", "--no-storage", NULL};
    CHECK_INT(load_args(args), CONFIG_RUN);
    b = banner();
    CHECK_CONTAINS(b, "http://0.0.0.0:9090");
    CHECK_CONTAINS(b, "ws://0.0.0.0:9090/ws");
    CHECK_CONTAINS(b, "ws://[::1]:9091/ws");
    CHECK_CONTAINS(b, "ws://[::1]:9091/ws/diff");
    CHECK_CONTAINS(b, "memory only (--no-storage)");
    free(b);
    config_free(&cfg);

    CHECK_INT(load_text("exchange.toml", seed_toml), CONFIG_RUN);
    b = banner();
    CHECK_CONTAINS(b, "Path: /tmp/qaexchange/storage");
    CHECK_CONTAINS(b, "Durability: async");
    CHECK_CONTAINS(b, "CFFEX.IO2501 suspended");
    CHECK_CONTAINS(b, "open mode off");
    CHECK_CONTAINS(b, "unknown section [cluster]");
    CHECK_CONTAINS(b, "exchange.toml");
    free(b);
    config_free(&cfg);
}

/* Reloading into the same struct after config_free, many times: no leak, same result. */
static void test_reload(void) {
    clear_env();
    for (int i = 0; i < 50; i++) {
        CHECK_INT(load_text("exchange.toml", seed_toml), CONFIG_RUN);
        CHECK_INT(cfg.instrument_count, 3);
        config_free(&cfg);
        CHECK_INT(load_text("bad.toml", "[[instruments]]\ninstrument_id = \"ZZ9\"\n"),
                  CONFIG_ERROR);
        config_free(&cfg);
    }
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/qaex-config-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    RUN_TEST(test_defaults);
    RUN_TEST(test_seed_layout);
    RUN_TEST(test_alternative_layout);
    RUN_TEST(test_env_overrides_file);
    RUN_TEST(test_cli_overrides_file_and_env);
    RUN_TEST(test_help_and_version);
    RUN_TEST(test_cli_errors);
    RUN_TEST(test_file_errors);
    RUN_TEST(test_admin_password_refused);
    RUN_TEST(test_banner);
    RUN_TEST(test_reload);

    static const char *const files[] = {"exchange.toml", "alt.toml",  "ports.toml", "config.toml",
                                        "bad.toml",      "prod.toml", "dev.toml"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    return CHECK_REPORT();
}
