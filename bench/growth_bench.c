/* growth_bench: the engine thread's stalls while its pools and id maps grow.
 *
 * A fresh engine (default config, the 3 default instruments, 1,000 accounts) takes N order
 * inserts like the server benchmarks' flow (two in five rest a tick from the touch, three are IOC
 * orders through it, so nearly every resting order trades). Every engine_apply is timed and each
 * one longer than --threshold-us is printed with its command number: growth by doubling shows as
 * stalls at regular ratios of the command count until the retained orders reach their bound
 * (finished_orders_per_account per account).
 *
 *   growth_bench [--commands N] [--threshold-us T] [--huge-pages] [--preallocate R]
 *   (3,000,000 and 1,000; no preallocation)
 *
 * --huge-pages: the pools ask for transparent huge pages (pool_mem.h).
 * --preallocate R: engine_preallocate(R orders, R trades) before the first insert, as the server's
 * [engine] preallocate_orders and preallocate_trades do; its time is printed apart.
 */
#include "engine/engine.h"
#include "engine/pool_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void apply_or_die(engine *e, const command *c) {
    engine_result r;
    if (engine_apply(e, c, &r) != QAEX_OK) {
        fprintf(stderr, "setup command %d refused: %s\n", (int)c->type, r.message);
        exit(1);
    }
}

int main(int argc, char **argv) {
    long commands = 3000000, threshold_us = 1000, preallocate = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--commands") == 0 && i + 1 < argc)
            commands = atol(argv[++i]);
        else if (strcmp(argv[i], "--threshold-us") == 0 && i + 1 < argc)
            threshold_us = atol(argv[++i]);
        else if (strcmp(argv[i], "--preallocate") == 0 && i + 1 < argc)
            preallocate = atol(argv[++i]);
        else if (strcmp(argv[i], "--huge-pages") == 0)
            pool_mem_set_huge_pages(true);
        else {
            fprintf(stderr, "usage: growth_bench [--commands N] [--threshold-us T] [--huge-pages] "
                            "[--preallocate R]\n");
            return 2;
        }
    }
    engine_config cfg;
    engine_config_default(&cfg);
    engine *e = engine_create(&cfg);
    if (e == NULL) return 1;
    const int64_t t0 = 1735783200000000000LL;
    instrument_spec specs[3];
    size_t n = engine_default_instruments(specs, 3);
    for (size_t i = 0; i < n; i++) {
        command c;
        memset(&c, 0, sizeof c);
        c.type = CMD_INSTRUMENT_ADD;
        c.ts_ns = t0;
        c.u.instrument.spec = specs[i];
        apply_or_die(e, &c);
    }
    for (int a = 0; a < 1000; a++) {
        command c;
        memset(&c, 0, sizeof c);
        c.type = CMD_ACCOUNT_OPEN;
        c.ts_ns = t0;
        snprintf(c.u.account_open.account_id, sizeof c.u.account_open.account_id, "G%d", a);
        c.u.account_open.init_cash = 1e12;
        apply_or_die(e, &c);
    }
    if (preallocate > 0) {
        int64_t p0 = now_ns();
        if (engine_preallocate(e, (uint32_t)preallocate, (uint32_t)preallocate) != 0) {
            fprintf(stderr, "could not preallocate %ld orders and trades\n", preallocate);
            return 1;
        }
        engine_memory m;
        engine_get_memory(e, &m);
        printf("preallocated %u orders, %u trades, %u index buckets in %.1f ms\n",
               m.orders_capacity, m.trades_capacity, m.order_index_capacity,
               (double)(now_ns() - p0) / 1e6);
    }
    long stalls = 0;
    int64_t stalled_ns = 0, worst = 0, started = now_ns();
    for (long i = 0; i < commands; i++) {
        command c;
        memset(&c, 0, sizeof c);
        c.type = CMD_ORDER_INSERT;
        c.ts_ns = t0 + (int64_t)i * 1000;
        order_request *o = &c.u.order;
        int a = (int)(i % 1000);
        bool rests = i % 5 < 2, sell = a & 1;
        snprintf(o->account_id, sizeof o->account_id, "G%d", a);
        snprintf(o->instrument_id, sizeof o->instrument_id, "CFFEX.IF2501");
        o->direction = sell ? DIR_SELL : DIR_BUY;
        o->offset = OFFSET_OPEN;
        o->volume = 1;
        o->price_type = PRICE_LIMIT;
        o->time_condition = rests ? TC_GFD : TC_IOC;
        o->volume_condition = VC_ANY;
        o->limit_price = sell ? (rests ? 3800.2 : 3798.0) : (rests ? 3800.0 : 3802.0);
        engine_result r;
        int64_t a0 = now_ns();
        engine_apply(e, &c, &r);
        int64_t took = now_ns() - a0;
        if (took > threshold_us * 1000) {
            printf("command %ld: %.2f ms\n", i, (double)took / 1e6);
            stalls++;
            stalled_ns += took;
        }
        if (took > worst) worst = took;
    }
    double secs = (double)(now_ns() - started) / 1e9;
    printf("%ld commands in %.2f s (%.0f/s); %ld stalls over %ld us, %.1f ms in them; longest "
           "%.2f ms\n",
           commands, secs, (double)commands / secs, stalls, threshold_us, (double)stalled_ns / 1e6,
           (double)worst / 1e6);
    engine_memory m;
    engine_get_memory(e, &m);
    printf("at the end: %u of %u order slots and %u of %u trade slots in use, %u index buckets\n",
           m.orders_in_use, m.orders_capacity, m.trades_in_use, m.trades_capacity,
           m.order_index_capacity);
    engine_destroy(e);
    return 0;
}
