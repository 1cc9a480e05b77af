/* Server configuration: embedded defaults, then `--config FILE` (TOML, the layout of the seed's
 * config/exchange.toml plus the sections of SPEC 2), then the environment (QAEX_HTTP_PORT,
 * QAEX_WS_PORT), then the command line. Later layers win.
 *
 * Every unacceptable value stops the start with a message that names the key or flag, the value
 * and, for the file, the line:
 *
 *     exchange.toml:12: risk.max_position_ratio must be in (0, 1], got 1.5
 *     --http: port must be a number in [0, 65535], got "abc"
 *
 * Unknown sections and keys are not fatal (the seed's files carry many sections this server does
 * not use): each becomes a warning in cfg->warnings, printed by config_print_banner.
 *
 * File layout (all sections and keys optional):
 *
 *   [server]    name, environment (development|production|testing), log_level
 *               (trace|debug|info|warn|error), max_connections; the seed's older layout
 *               http_host/http_port/ws_host/ws_port is accepted too ([http]/[websocket] win)
 *   [exchange]  name
 *   [http]      host, port, max_body_size (bytes, or "1MiB" / "512KB")
 *   [websocket] host, port (a second listener for WebSocket only; absent: /ws and /ws/diff are
 *               served by the HTTP listener alone), ping_interval_ms|_secs, idle_timeout_ms|_secs,
 *               max_message_size
 *   [storage]   enabled, data_dir (alias base_path), durability "sync"|"async" (alias sync_mode),
 *               snapshot_interval_secs, snapshot_interval_commands (0 disables either),
 *               journal_segment_size
 *   [storage.subscriber] batch_size, batch_timeout_ms, buffer_size: the journal's group commit
 *   [history]   enabled (the SQLite history store, with storage on; default true),
 *               retention_days (0 keeps everything), account_snapshot_interval_secs (0: account
 *               snapshots at settlements only)
 *   [risk]      max_position_ratio, max_order_value, risk_ratio_reject, min_order_volume,
 *               max_order_volume, force_close_threshold, self_trade_prevention, risk_ratio_warning,
 *               margin_ratio (the margin rate of instruments that name none)
 *   [engine]    trading_day (YYYY-MM-DD), finished_orders_per_account, trades_per_account,
 *               kline_history (finished bars kept per instrument and period, 10000),
 *               recent_trades (matches kept per instrument, 1000), huge_pages (false:
 *               transparent huge pages for the order and trade pools; pool_mem.h),
 *               preallocate_orders, preallocate_trades (0: pools sized at start for this many)
 *   [auth]      admin_username, admin_password, token_secret, token_ttl_secs, open_mode,
 *               password_cost ("interactive" | "fast": argon2id at its minimum, for tests)
 *   [diff]      bid, strict_bid
 *   [notification] batch_size, batch_interval_ms
 *   [logging]   level, file
 *   [[instruments]] instrument_id ("IF2501" or "CFFEX.IF2501"), exchange (alias exchange_id;
 *               default "CFFEX"), name|instrument_name, instrument_type, init_price|pre_settlement,
 *               pre_close, multiplier|contract_multiplier|volume_multiple, price_tick,
 *               margin_rate|margin_ratio, commission_rate|commission, commission_per_lot,
 *               limit_up_rate, limit_down_rate, list_date, expire_date, is_trading, product_id.
 *               An id of a default instrument (IF2501, IC2501, IH2501) starts from its terms, so
 *               the seed's four-line entry is complete; other ids need init_price and multiplier.
 *
 * With no [[instruments]] the defaults of SPEC 2 are used (engine_default_instruments). */
#ifndef QAEX_CONFIG_H
#define QAEX_CONFIG_H

#include "engine/engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef QAEX_VERSION
#define QAEX_VERSION "0.1.0"
#endif
#define QAEX_SERVER_NAME "qaexchange-server"

#define CONFIG_HOST_LEN 256
#define CONFIG_PATH_LEN 4096
#define CONFIG_MAX_WARNINGS 32
#define CONFIG_WARNING_LEN 320

/* What config_load returns. */
enum {
    CONFIG_ERROR = -1, /* err holds the reason: print it and exit non-zero */
    CONFIG_RUN = 0,    /* start the server */
    CONFIG_EXIT = 1,   /* --help or --version: print config_usage / the version, exit 0 */
};

typedef enum config_durability {
    DURABILITY_SYNC = 0, /* acknowledged after fdatasync (group commit) */
    DURABILITY_ASYNC = 1 /* acknowledged before the journal reaches the disk */
} config_durability;

typedef struct config_listener {
    bool enabled;
    char host[CONFIG_HOST_LEN];
    uint16_t port; /* 0 asks the kernel for a free port; the server writes back the real one */
} config_listener;

typedef struct server_config {
    char name[64];                     /* "QAExchange" */
    char environment[16];              /* "development" | "production" | "testing" */
    char log_level[8];                 /* "trace" | "debug" | "info" | "warn" | "error" */
    char log_file[CONFIG_PATH_LEN];    /* empty: stderr */
    char config_path[CONFIG_PATH_LEN]; /* the file loaded, empty when none */

    /* listeners: http serves REST, /ws, /ws/diff and the web UI; ws (optional) WebSocket only */
    config_listener http;         /* always enabled, default 127.0.0.1:8080 */
    config_listener ws;           /* enabled by [websocket] host/port, --ws or QAEX_WS_PORT */
    uint32_t max_connections;     /* 10000 */
    size_t http_max_body;         /* bytes, 1 MiB; larger requests get 413 */
    uint32_t ws_ping_interval_ms; /* 5000 */
    uint32_t ws_idle_timeout_ms;  /* 10000: a session silent this long is dropped */
    size_t ws_max_message;        /* bytes, 64 KiB */

    /* storage */
    bool storage_enabled;                /* false with --no-storage: memory only */
    bool recover_to_corruption;          /* --recover-to-corruption */
    char data_dir[CONFIG_PATH_LEN];      /* "./data" */
    config_durability durability;        /* sync */
    uint32_t snapshot_interval_secs;     /* 300; 0: not by time */
    uint64_t snapshot_interval_commands; /* 100000; 0: not by count */
    uint64_t journal_segment_size;       /* bytes, 64 MiB */
    uint32_t commit_batch_size;          /* [storage.subscriber] batch_size, 100 */
    uint32_t commit_batch_timeout_ms;    /* batch_timeout_ms, 10 */
    uint32_t commit_buffer_size;         /* buffer_size, 10000 */

    /* the history store (data_dir/history.db), with storage on */
    bool history_enabled;                   /* true */
    uint32_t history_retention_days;        /* 0: keep everything */
    uint32_t history_account_snapshot_secs; /* 0: at settlements only */

    /* auth */
    char admin_username[64];  /* "admin" */
    char admin_password[128]; /* "admin123": refused unless environment is development */
    char token_secret[256];   /* empty: the server picks a random one at each start */
    int64_t token_ttl_secs;   /* 86400 */
    bool open_mode;           /* no token needed; default true only in development */
    bool password_cost_fast;  /* argon2id at its minimum cost (tests), not "interactive" */

    /* DIFF */
    char diff_bid[64];    /* "qaexchange" */
    bool diff_strict_bid; /* false: req_login with another bid is accepted */

    /* notifications */
    uint32_t notify_batch_size;        /* 100 */
    uint32_t notify_batch_interval_ms; /* 100 */
    bool notify_auto_subscribe;        /* false: a /ws session gets notifications once it asks */
    double risk_ratio_warning;         /* 0.8: risk notifications from this ratio */

    /* the engine: [risk] thresholds, memory bounds, first trading day */
    engine_config engine;
    bool huge_pages; /* [engine] huge_pages, false: the pools ask for transparent huge pages */
    /* [engine] preallocate_orders, preallocate_trades, 0: records the pools are sized and faulted
     * in for at start (engine_preallocate) */
    uint32_t preallocate_orders, preallocate_trades;

    /* instruments registered at start-up, in file order (the defaults when none configured) */
    instrument_spec *instruments;
    bool *instrument_trading; /* per instrument: false registers it suspended (is_trading) */
    size_t instrument_count;
    bool instruments_from_file;

    /* non-fatal findings (unknown keys, risky settings), in order; warning_count may exceed
     * CONFIG_MAX_WARNINGS, the rest are counted but not kept */
    char warnings[CONFIG_MAX_WARNINGS][CONFIG_WARNING_LEN];
    size_t warning_count;

    bool show_help;    /* --help was given */
    bool show_version; /* --version was given */
} server_config;

/* The embedded defaults, with the default instruments. Returns 0, -1 when out of memory. */
int config_defaults(server_config *cfg);

/* Fills cfg from the layers above. cfg need not be initialised; call config_free afterwards
 * whatever the result. argv[0] is the program name. Returns CONFIG_RUN, CONFIG_EXIT or
 * CONFIG_ERROR (with the message in err). Reads the environment with getenv. */
int config_load(server_config *cfg, int argc, char **argv, char *err, size_t errlen);

/* The start-up banner: endpoints, storage, instruments, auth, warnings. */
void config_print_banner(const server_config *cfg, FILE *out);

/* The --help text. */
void config_usage(FILE *out);

/* "qaexchange-server 0.1.0" and a newline. */
void config_print_version(FILE *out);

/* Releases the instrument list; cfg may then be loaded again. */
void config_free(server_config *cfg);

#endif
