/* qaexchange-server: configuration, the engine and its thread, the gateway, signals. */
#include "app/config.h"
#include "engine/engine.h"
#include "server/gateway.h"
#include "server/service.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static gateway *running_gateway;

static void on_signal(int sig) {
    (void)sig;
    if (running_gateway) gateway_stop(running_gateway);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Registers the configured instruments (those marked not trading start suspended). */
static int register_instruments(engine *e, const server_config *cfg) {
    for (size_t i = 0; i < cfg->instrument_count; i++) {
        command c;
        memset(&c, 0, sizeof c);
        c.type = CMD_INSTRUMENT_ADD;
        c.ts_ns = now_ns();
        c.u.instrument.spec = cfg->instruments[i];
        engine_result r;
        if (engine_apply(e, &c, &r) != QAEX_OK) {
            fprintf(stderr, "qaexchange-server: instrument %s: %s\n",
                    cfg->instruments[i].instrument_id, r.message);
            return -1;
        }
        if (cfg->instrument_trading && !cfg->instrument_trading[i]) {
            memset(&c, 0, sizeof c);
            c.type = CMD_INSTRUMENT_SUSPEND;
            c.ts_ns = now_ns();
            snprintf(c.u.instrument_ref.instrument_id, sizeof c.u.instrument_ref.instrument_id,
                     "%s", cfg->instruments[i].instrument_id);
            engine_apply(e, &c, &r);
        }
    }
    return 0;
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

    engine *e = engine_create(&cfg.engine);
    if (e == NULL || register_instruments(e, &cfg) != 0) {
        fprintf(stderr, "qaexchange-server: could not create the engine\n");
        engine_destroy(e);
        config_free(&cfg);
        return 1;
    }

    gateway_config gc = {
        .http_host = cfg.http.host,
        .http_port = cfg.http.port,
        .ws_host = cfg.ws.host,
        .ws_port = cfg.ws.enabled ? cfg.ws.port : -1,
        .max_body_bytes = cfg.http_max_body,
        .ws_ping_secs = (int)((cfg.ws_ping_interval_ms + 999) / 1000),
        .ws_idle_secs = (int)((cfg.ws_idle_timeout_ms + 999) / 1000),
        .open_mode = cfg.open_mode,
    };
    /* the service needs the gateway to wake, and the gateway the service: create the service
     * without a wake first, then connect them */
    service *svc = service_create(e, 16384, NULL, NULL);
    gateway *g = svc ? gateway_create(&gc, svc) : NULL;
    if (g == NULL) {
        fprintf(stderr, "qaexchange-server: cannot listen on %s:%u (in use, or no permission)\n",
                cfg.http.host, cfg.http.port);
        service_destroy(svc);
        engine_destroy(e);
        config_free(&cfg);
        return 1;
    }
    service_set_wake(svc, gateway_wake, g);
    if (service_start(svc) != 0) {
        fprintf(stderr, "qaexchange-server: cannot start the engine thread\n");
        gateway_destroy(g);
        service_destroy(svc);
        engine_destroy(e);
        config_free(&cfg);
        return 1;
    }

    config_print_banner(&cfg, stdout);
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
    /* the engine thread finishes what is queued before the gateway goes */
    service_destroy(svc);
    gateway_destroy(g);
    engine_destroy(e);
    config_free(&cfg);
    return rc == 0 ? 0 : 1;
}
