/* qaexchange-server: configuration, the engine and its thread, the gateway, signals. */
#include "app/config.h"
#include "engine/engine.h"
#include "engine/pool_mem.h"
#include "server/auth.h"
#include "server/gateway.h"
#include "server/history_feed.h"
#include "server/persistence.h"
#include "server/query_worker.h"
#include "server/service.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static gateway *running_gateway;
static _Atomic(gateway *) wake_target;

/* The journal's thread reports a newer durable position: held replies may go. */
static void on_durable(void *ctx, uint64_t durable_seq) {
    (void)ctx;
    (void)durable_seq;
    gateway *g = atomic_load(&wake_target);
    if (g) gateway_wake(g);
}

/* The query thread has answers: same wake-up. */
static void wake_gateway(void *ctx) {
    on_durable(ctx, 0);
}

static void on_signal(int sig) {
    (void)sig;
    if (running_gateway) gateway_stop(running_gateway);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Registers the configured instruments the engine does not know yet (after a restart the
 * recovered engine has them), through the journal like any other command. */
static int register_instruments(engine *e, persistence *p, const server_config *cfg) {
    for (size_t i = 0; i < cfg->instrument_count; i++) {
        if (engine_instrument_find(e, cfg->instruments[i].instrument_id)) continue;
        command c[2];
        memset(c, 0, sizeof c);
        c[0].type = CMD_INSTRUMENT_ADD;
        c[0].ts_ns = now_ns();
        c[0].u.instrument.spec = cfg->instruments[i];
        int n = 1;
        if (cfg->instrument_trading && !cfg->instrument_trading[i]) {
            c[1].type = CMD_INSTRUMENT_SUSPEND;
            c[1].ts_ns = now_ns();
            snprintf(c[1].u.instrument_ref.instrument_id,
                     sizeof c[1].u.instrument_ref.instrument_id, "%s",
                     cfg->instruments[i].instrument_id);
            n = 2;
        }
        for (int k = 0; k < n; k++) {
            engine_result r;
            uint64_t seq;
            if (p && persistence_log(p, &c[k], &seq, r.message, sizeof r.message) != 0) {
                fprintf(stderr, "qaexchange-server: %s\n", r.message);
                return -1;
            }
            if (engine_apply(e, &c[k], &r) != QAEX_OK) {
                fprintf(stderr, "qaexchange-server: instrument %s: %s\n",
                        cfg->instruments[i].instrument_id, r.message);
                return -1;
            }
        }
    }
    return 0;
}

/* The [risk] section applies to a recovered engine too: the snapshot holds the thresholds of
 * the run that wrote it, so a changed section goes through the journal as CMD_RISK_CONFIG (a
 * replay then applies every order under the thresholds it met). */
static int apply_risk_config(engine *e, persistence *p, const server_config *cfg) {
    command c;
    memset(&c, 0, sizeof c);
    engine_risk_config_of(&cfg->engine, &c.u.risk);
    engine_risk_config current;
    engine_risk_config_of(engine_get_config(e), &current);
    if (engine_risk_config_equal(&current, &c.u.risk)) return 0;
    c.type = CMD_RISK_CONFIG;
    c.ts_ns = now_ns();
    engine_result r;
    uint64_t seq;
    /* checked first: a refused command would stay in the journal */
    if (engine_risk_config_check(&c.u.risk, r.message, sizeof r.message) != QAEX_OK ||
        (p && persistence_log(p, &c, &seq, r.message, sizeof r.message) != 0) ||
        engine_apply(e, &c, &r) != QAEX_OK) {
        fprintf(stderr, "qaexchange-server: [risk]: %s\n", r.message);
        return -1;
    }
    printf("⚖️  Risk thresholds changed since the last run: the [risk] section now applies\n");
    return 0;
}

/* The operator's account from [auth]: registered once, through the journal like any command
 * (the engine keeps only the password's hash). */
static int register_admin(engine *e, persistence *p, const server_config *cfg) {
    if (cfg->admin_username[0] == '\0' || engine_user_find_by_name(e, cfg->admin_username))
        return 0;
    command c;
    memset(&c, 0, sizeof c);
    c.type = CMD_USER_REGISTER;
    c.ts_ns = now_ns();
    user *u = &c.u.user;
    char err[256];
    auth_pwhash_cost cost;
    if (cfg->password_cost_fast)
        auth_pwhash_cost_fast(&cost);
    else
        auth_pwhash_cost_interactive(&cost);
    if (!auth_uuid4(u->user_id) || auth_password_hash(&cost, cfg->admin_password, u->password_hash,
                                                      err, sizeof err) != AUTH_OK) {
        fprintf(stderr, "qaexchange-server: admin user: %s\n", err);
        return -1;
    }
    snprintf(u->username, sizeof u->username, "%s", cfg->admin_username);
    u->role = ROLE_ADMIN;
    engine_result r;
    uint64_t seq;
    int rc = 0;
    if (p && persistence_log(p, &c, &seq, r.message, sizeof r.message) != 0) rc = -1;
    if (rc == 0 && engine_apply(e, &c, &r) != QAEX_OK) rc = -1;
    if (rc != 0) fprintf(stderr, "qaexchange-server: admin user: %s\n", r.message);
    sodium_memzero(&c, sizeof c);
    return rc;
}

/* Pools sized for [engine] preallocate_*: after recovery, which builds them anew. */
static int preallocate(engine *e, const server_config *cfg) {
    if (cfg->preallocate_orders == 0 && cfg->preallocate_trades == 0) return 0;
    if (engine_preallocate(e, cfg->preallocate_orders, cfg->preallocate_trades) == 0) return 0;
    fprintf(stderr,
            "qaexchange-server: [engine] preallocate_orders = %u, preallocate_trades = %u: not "
            "enough memory for them\n",
            cfg->preallocate_orders, cfg->preallocate_trades);
    return -1;
}

int main(int argc, char **argv) {
    static server_config cfg;
    char err[1024];
    int rc = config_load(&cfg, argc, argv, err, sizeof err);
    if (rc == CONFIG_ERROR) {
        fprintf(stderr, "qaexchange-server: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    if (rc == CONFIG_EXIT) {
        if (cfg.show_version)
            config_print_version(stdout);
        else
            config_usage(stdout);
        config_free(&cfg);
        return 0;
    }

    /* every connection is a descriptor: allow as many as the hard limit, before the gateway
     * sizes its tables from it */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }

    static server_metrics metrics;
    if (!server_metrics_init(&metrics, err, sizeof err)) {
        fprintf(stderr, "qaexchange-server: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    engine *e = NULL;
    persistence *p = NULL;
    persistence_recovery recovery;
    memset(&recovery, 0, sizeof recovery);
    /* A journal starts from the default thresholds and carries every change of [risk] as
     * CMD_RISK_CONFIG (apply_risk_config), so an engine rebuilt from it starts from the defaults,
     * as qaexchange-replay's does: the configured thresholds must not judge old orders again. */
    pool_mem_set_huge_pages(cfg.huge_pages); /* before the engine's pools exist */
    engine_config journal_cfg = cfg.engine;
    engine_config defaults;
    engine_config_default(&defaults);
    engine_risk_config default_risk;
    engine_risk_config_of(&defaults, &default_risk);
    engine_config_set_risk(&journal_cfg, &default_risk);
    if (cfg.storage_enabled) {
        persistence_options po = {
            .data_dir = cfg.data_dir,
            .async_durability = cfg.durability == DURABILITY_ASYNC,
            .segment_size = cfg.journal_segment_size,
            .snapshot_every_commands = cfg.snapshot_interval_commands,
            .snapshot_every_secs = cfg.snapshot_interval_secs,
            .recover_to_corruption = cfg.recover_to_corruption,
            .notify = on_durable,
            .fsync_seconds = metrics.journal_fsync,
        };
        p = persistence_open(&po, &journal_cfg, &e, &recovery, err, sizeof err);
        if (p == NULL) {
            fprintf(stderr, "qaexchange-server: storage in %s: %s\n", cfg.data_dir, err);
            config_free(&cfg);
            return 1;
        }
    } else {
        e = engine_create(&cfg.engine);
    }
    /* the history store follows the journal on its own thread; queries run on another */
    history_feed *feed = NULL;
    query_worker *queries = NULL;
    if (p && e && cfg.history_enabled) {
        history_feed_options ho = {
            .data_dir = cfg.data_dir,
            .engine_cfg = &journal_cfg,
            .p = p,
            .retention_days = cfg.history_retention_days,
            .account_snapshot_secs = cfg.history_account_snapshot_secs,
        };
        feed = history_feed_start(&ho, err, sizeof err);
        if (feed == NULL)
            fprintf(stderr, "qaexchange-server: warning: history store off: %s\n", err);
        queries = feed ? query_worker_start(feed, wake_gateway, NULL) : NULL;
    }
    if (e == NULL || register_instruments(e, p, &cfg) != 0 || apply_risk_config(e, p, &cfg) != 0 ||
        register_admin(e, p, &cfg) != 0 || preallocate(e, &cfg) != 0) {
        fprintf(stderr, "qaexchange-server: could not create the engine\n");
        query_worker_stop(queries);
        history_feed_stop(feed);
        persistence_close(p, NULL);
        engine_destroy(e);
        config_free(&cfg);
        return 1;
    }

    gateway_config gc = {
        .metrics = &metrics,
        .http_host = cfg.http.host,
        .http_port = cfg.http.port,
        .ws_host = cfg.ws.host,
        .ws_port = cfg.ws.enabled ? cfg.ws.port : -1,
        .max_body_bytes = cfg.http_max_body,
        .ws_max_message = cfg.ws_max_message,
        .ws_ping_ms = (int)cfg.ws_ping_interval_ms,
        .notify_batch_size = cfg.notify_batch_size,
        .notify_batch_interval_ms = cfg.notify_batch_interval_ms,
        .notify_auto_subscribe = cfg.notify_auto_subscribe,
        .ws_idle_ms = (int)cfg.ws_idle_timeout_ms,
        .open_mode = cfg.open_mode,
        .diff_bid = cfg.diff_bid,
        .token_secret = cfg.token_secret,
        .token_ttl_secs = cfg.token_ttl_secs,
        .password_cost_fast = cfg.password_cost_fast,
        .diff_strict_bid = cfg.diff_strict_bid,
        .max_connections = cfg.max_connections,
        .queries = queries,
    };
    /* the service needs the gateway to wake, and the gateway the service: create the service
     * without a wake first, then connect them */
    service *svc = service_create(e, p, 16384, NULL, NULL);
    if (svc) service_set_metrics(svc, &metrics);
    if (svc) service_set_risk_warning(svc, cfg.risk_ratio_warning);
    gateway *g = svc ? gateway_create(&gc, svc) : NULL;
    if (g == NULL) {
        fprintf(stderr, "qaexchange-server: cannot listen on %s:%u (in use, or no permission)\n",
                cfg.http.host, cfg.http.port);
        service_destroy(svc);
        query_worker_stop(queries);
        history_feed_stop(feed);
        persistence_close(p, e);
        engine_destroy(e);
        config_free(&cfg);
        return 1;
    }
    service_set_wake(svc, gateway_wake, g);
    atomic_store(&wake_target, g);
    /* every operator action, one JSON line each, beside the journal */
    FILE *audit = NULL;
    if (cfg.storage_enabled) {
        char path[CONFIG_PATH_LEN + 16];
        snprintf(path, sizeof path, "%s/audit.log", cfg.data_dir);
        audit = fopen(path, "a");
        if (audit == NULL)
            fprintf(stderr, "qaexchange-server: warning: cannot open %s: %s\n", path,
                    strerror(errno));
        service_set_audit_file(svc, audit);
    }
    if (service_start(svc) != 0) {
        fprintf(stderr, "qaexchange-server: cannot start the engine thread\n");
        gateway_destroy(g);
        service_destroy(svc);
        query_worker_stop(queries);
        history_feed_stop(feed);
        persistence_close(p, e);
        engine_destroy(e);
        config_free(&cfg);
        return 1;
    }

    config_print_banner(&cfg, stdout);
    if (p)
        printf("Recovered: %s%llu journal records replayed, last command %llu%s%s\n",
               recovery.from_snapshot ? "snapshot + " : "", (unsigned long long)recovery.replayed,
               (unsigned long long)recovery.last_seq, recovery.report[0] ? "; " : "",
               recovery.report);
    fflush(stdout);
    running_gateway = g;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = gateway_run(g);
    running_gateway = NULL;
    printf("qaexchange-server: shutting down\n");
    /* the engine thread finishes what is queued, the journal is flushed and a final snapshot
     * written, then the gateway goes */
    service_destroy(svc);
    if (audit) fclose(audit);
    /* queries stop, the history takes what the journal holds, then the journal closes */
    query_worker_stop(queries);
    history_feed_stop(feed);
    atomic_store(&wake_target, NULL);
    persistence_close(p, e);
    gateway_destroy(g);
    engine_destroy(e);
    server_metrics_free(&metrics);
    config_free(&cfg);
    return rc == 0 ? 0 : 1;
}
