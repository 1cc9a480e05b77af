/* engine_bench: throughput and latency of engine_apply on one core.
 *
 * A seeded mixed workload over 1,000 accounts and one book (CFFEX.IF2501): limit orders resting
 * near the touch, cancels of live orders, and crossing orders (limit GFD, IOC and market) so that
 * about 6% of the commands trade. The whole stream (warm-up + measured part) is generated first,
 * against a generator engine that tells where the touch is and which orders are live, and is not
 * timed. Each measurement then starts from a fresh engine, applies the warm-up part untimed and
 * measures the rest.
 *
 *   engine_bench [--commands N] [--warmup W] [--seed S] [--cpu C]
 *       throughput: N commands back to back, once untimed per command (commands/s) and once
 *       with a timestamp around every engine_apply (latency percentiles)
 *   engine_bench --rate R [--commands N] ...
 *       offered load: command i is due at t0 + i/R (busy-wait); latency runs from the due time
 *       to completion, so queueing behind a slow command counts (no coordinated omission)
 *   engine_bench --rate R --null-service NS ...
 *       the same loop with a spin of NS nanoseconds in place of engine_apply: what the machine
 *       alone (its pauses) does to the latency of a perfectly steady engine
 *
 * Timestamps are rdtsc (invariant TSC) calibrated against CLOCK_MONOTONIC, or CLOCK_MONOTONIC
 * where there is no TSC. Allocations are counted by malloc/calloc/realloc interposers of this
 * file (dlsym(RTLD_NEXT)); they are off under sanitizers, which interpose malloc themselves. */
#define _GNU_SOURCE
#include "bench_clock.h"
#include "engine/engine.h"
#include "engine/pool_mem.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

/* ---- allocation counting ---- */

static volatile int alloc_counting;
static uint64_t alloc_count;

#ifndef SANITIZED
#define COUNT_ALLOCATIONS 1
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int resolving;
/* dlsym may allocate before the real functions are known: serve that from here */
static _Alignas(16) unsigned char boot_heap[8192];
static size_t boot_used;

static void *boot_alloc(size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (boot_used + n > sizeof boot_heap) return NULL;
    void *p = boot_heap + boot_used;
    boot_used += n;
    return p;
}

static int is_boot(const void *p) {
    return (const unsigned char *)p >= boot_heap &&
           (const unsigned char *)p < boot_heap + sizeof boot_heap;
}

static void resolve(void) {
    resolving = 1;
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    resolving = 0;
    if (!real_malloc || !real_calloc || !real_realloc || !real_free) abort();
}

void *malloc(size_t n) {
    if (real_malloc == NULL) {
        if (resolving) return boot_alloc(n);
        resolve();
    }
    if (alloc_counting) alloc_count++;
    return real_malloc(n);
}

void *calloc(size_t n, size_t size) {
    if (real_calloc == NULL) {
        if (resolving) {
            void *p = boot_alloc(n * size);
            if (p) memset(p, 0, n * size);
            return p;
        }
        resolve();
    }
    if (alloc_counting) alloc_count++;
    return real_calloc(n, size);
}

void *realloc(void *p, size_t n) {
    if (real_realloc == NULL) resolve();
    if (alloc_counting) alloc_count++;
    if (is_boot(p)) {
        void *q = real_malloc(n);
        if (q) memcpy(q, p, n < sizeof boot_heap ? n : sizeof boot_heap);
        return q;
    }
    return real_realloc(p, n);
}

void free(void *p) {
    if (p == NULL || is_boot(p)) return;
    if (real_free == NULL) resolve();
    real_free(p);
}
#endif

/* ---- clocks: bench_clock.h ---- */

/* Percentiles of samples in ticks, printed in ns; the array is sorted in place. */
static void print_percentiles(const char *label, uint32_t *lat, size_t n) {
    qsort(lat, n, sizeof *lat, cmp_u32);
    double p50 = lat[(size_t)(0.50 * (double)(n - 1))] * ns_per_tick;
    double p99 = lat[(size_t)(0.99 * (double)(n - 1))] * ns_per_tick;
    double p999 = lat[(size_t)(0.999 * (double)(n - 1))] * ns_per_tick;
    double max = lat[n - 1] * ns_per_tick;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += lat[i];
    printf("%s: P50 %.2f us, P99 %.2f us, P99.9 %.2f us, max %.1f us, mean %.2f us\n", label,
           p50 / 1000.0, p99 / 1000.0, p999 / 1000.0, max / 1000.0,
           sum / (double)n * ns_per_tick / 1000.0);
}

/* What an offered rate would see if the only delays were these service times: commands due
 * every 1/rate, served one at a time in order (Lindley's recursion), no other pauses. */
static void queue_model(const uint32_t *service, size_t n, double rate) {
    uint32_t *lat = malloc(n * sizeof *lat);
    if (lat == NULL) return;
    double gap = 1e9 / rate / ns_per_tick, free_at = 0;
    for (size_t i = 0; i < n; i++) {
        double due = (double)i * gap;
        double start = free_at > due ? free_at : due;
        free_at = start + service[i];
        double l = free_at - due;
        lat[i] = l > UINT32_MAX ? UINT32_MAX : (uint32_t)l;
    }
    char label[96];
    snprintf(label, sizeof label, "  queueing model at %.0f/s", rate);
    print_percentiles(label, lat, n);
    free(lat);
}

/* The cost of the timestamps themselves: two back-to-back reads. */
static void timer_overhead(double *median_ns) {
    enum { N = 200000 };
    static uint32_t d[N];
    for (int i = 0; i < N; i++) {
        uint64_t a = ticks();
        uint64_t b = ticks();
        d[i] = (uint32_t)(b - a);
    }
    qsort(d, N, sizeof d[0], cmp_u32);
    *median_ns = d[N / 2] * ns_per_tick;
}

/* How much the machine itself pauses a spinning thread (interrupts, the hypervisor, other
 * tasks): gaps between consecutive clock reads over one second. */
static void platform_pauses(void) {
    uint64_t start = ticks(), prev = start;
    uint64_t end = start + (uint64_t)(1e9 / ns_per_tick);
    uint64_t over5 = 0, over50 = 0, over1000 = 0, max = 0, lost = 0;
    uint64_t t5 = (uint64_t)(5000 / ns_per_tick), t50 = (uint64_t)(50000 / ns_per_tick),
             t1000 = (uint64_t)(1000000 / ns_per_tick);
    while (prev < end) {
        uint64_t now = ticks(), d = now - prev;
        if (d > t5) {
            over5++;
            lost += d;
        }
        over50 += d > t50;
        over1000 += d > t1000;
        if (d > max) max = d;
        prev = now;
    }
    printf("platform pauses in 1 s of spinning: %" PRIu64 " over 5 us, %" PRIu64 " over 50 us, "
           "%" PRIu64 " over 1 ms; longest %.1f us; %.2f%% of the time lost\n",
           over5, over50, over1000, (double)max * ns_per_tick / 1000.0,
           100.0 * (double)lost * ns_per_tick / 1e9);
}

static int cmp_double_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

static double rss_mb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

static long minor_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* ---- the workload ---- */

#define N_ACCOUNTS 1000
#define INSTRUMENT "CFFEX.IF2501"
#define CENTER_TICK 19000 /* 3800.0 / 0.2 */

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static uint64_t rng_next(void) {
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint32_t rnd(uint32_t n) {
    return (uint32_t)((rng_next() >> 32) % n);
}

/* Finished orders and trades each account keeps in memory: once every account holds this many,
 * memory stops growing (--history). */
static uint32_t history = 32;

static engine *new_engine(void) {
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.max_order_value = 1e15;
    cfg.max_position_ratio = 1e6;
    cfg.finished_orders_per_account = history;
    cfg.trades_per_account = history;
    return engine_create(&cfg);
}

#define T0_NS 1735783200000000000LL
static int64_t clock_ns = T0_NS + 1000000000LL; /* the stream; setup uses the second before */

static command base_command(command_type type) {
    command c;
    memset(&c, 0, sizeof c);
    c.type = type;
    c.ts_ns = (clock_ns += 1000);
    return c;
}

static command setup_command(command_type type, int i) {
    command c;
    memset(&c, 0, sizeof c);
    c.type = type;
    c.ts_ns = T0_NS + i;
    return c;
}

static void setup(engine *e) {
    instrument_spec specs[3];
    engine_default_instruments(specs, 3);
    command c = setup_command(CMD_INSTRUMENT_ADD, 0);
    c.u.instrument.spec = specs[0];
    engine_result r;
    if (engine_apply(e, &c, &r) != 0) {
        fprintf(stderr, "instrument add failed: %s\n", r.message);
        exit(1);
    }
    for (int i = 0; i < N_ACCOUNTS; i++) {
        c = setup_command(CMD_ACCOUNT_OPEN, i + 1);
        snprintf(c.u.account_open.account_id, QAEX_ID_LEN, "acct%04d", i);
        c.u.account_open.init_cash = 1e10;
        if (engine_apply(e, &c, &r) != 0) {
            fprintf(stderr, "account open failed: %s\n", r.message);
            exit(1);
        }
    }
}

typedef struct gen_stats {
    uint64_t inserts, crossing, cancels, trading_commands, rejected;
    int traded; /* set by the sink during one command */
} gen_stats;

static void gen_sink(void *ctx, const engine_event *ev) {
    if (ev->type == EV_TRADE) ((gen_stats *)ctx)->traded = 1;
}

/* Generates n commands into out[], applying them to a generator engine as it goes. Returns the
 * generator's final state hash. */
static uint64_t generate(command *out, size_t n, gen_stats *st) {
    engine *g = new_engine();
    setup(g);
    engine_set_event_sink(g, gen_sink, st);
    const instrument *ins = engine_instrument_find(g, INSTRUMENT);
    const book *b = &ins->book;
    uint64_t next_id = 0;
    for (size_t i = 0; i < n; i++) {
        command *c = &out[i];
        int32_t lb = book_best(b, DIR_BUY), la = book_best(b, DIR_SELL);
        int64_t bid = lb != BOOK_NO_LEVEL ? book_level_tick(b, lb) : CENTER_TICK - 1;
        int64_t ask = la != BOOK_NO_LEVEL ? book_level_tick(b, la) : bid + 1;
        if (lb == BOOK_NO_LEVEL && la != BOOK_NO_LEVEL) bid = ask - 1;
        uint32_t live = b->order_count[0] + b->order_count[1];
        uint32_t r = rnd(1000);
        uint32_t cancel_share = live > 4000 ? 470 : live > 2000 ? 440 : 380;
        uint32_t acc = rnd(N_ACCOUNTS);
        const account *a = engine_account_at(g, acc);
        if (r >= 60 && r < 60 + cancel_share) {
            /* cancel a live order of some account */
            const order *o = NULL;
            for (int attempt = 0; attempt < 16 && o == NULL; attempt++) {
                a = engine_account_at(g, rnd(N_ACCOUNTS));
                if (a->live_count == 0) continue;
                uint32_t k = rnd(a->live_count);
                o = engine_order_first(g, a);
                while (k-- > 0)
                    o = engine_order_next(g, o);
            }
            if (o != NULL) {
                *c = base_command(CMD_ORDER_CANCEL);
                memcpy(c->u.cancel.account_id, a->account_id, QAEX_ID_LEN);
                memcpy(c->u.cancel.order_id, o->order_id, QAEX_ID_LEN);
                st->cancels++;
                goto apply;
            }
            r = 999; /* nothing live: insert instead */
        }
        *c = base_command(CMD_ORDER_INSERT);
        order_request *q = &c->u.order;
        memcpy(q->account_id, a->account_id, QAEX_ID_LEN);
        snprintf(q->order_id, QAEX_ID_LEN, "b%" PRIu64, ++next_id);
        memcpy(q->instrument_id, INSTRUMENT, sizeof INSTRUMENT);
        q->price_type = PRICE_LIMIT;
        q->time_condition = TC_GFD;
        q->volume_condition = VC_ANY;
        int64_t tick;
        if (r < 60) { /* crossing, leaning back towards the centre */
            double drift = (double)((bid + ask) / 2 - CENTER_TICK) / 300.0;
            if (drift > 0.3) drift = 0.3;
            if (drift < -0.3) drift = -0.3;
            q->direction = (double)rnd(1000) / 1000.0 < 0.5 - drift ? DIR_BUY : DIR_SELL;
            tick = q->direction == DIR_BUY ? ask + rnd(2) : bid - rnd(2);
            q->volume = 1 + rnd(5);
            uint32_t kind = rnd(10);
            if (kind < 2) q->time_condition = TC_IOC;
            if (kind == 2) q->price_type = PRICE_ANY;
            st->crossing++;
        } else { /* passive, at or behind the touch */
            q->direction = rnd(2) ? DIR_BUY : DIR_SELL;
            int64_t behind = rnd(4) == 0 ? 0 : 1 + rnd(8);
            tick = q->direction == DIR_BUY ? bid - behind : ask + behind;
            if (q->direction == DIR_BUY && tick >= ask) tick = ask - 1;
            if (q->direction == DIR_SELL && tick <= bid) tick = bid + 1;
            q->volume = 1 + rnd(10);
        }
        if (tick > ins->upper_tick) tick = ins->upper_tick;
        if (tick < ins->lower_tick) tick = ins->lower_tick;
        q->limit_price = (double)tick * ins->spec.price_tick;
        /* close what the account holds on the other side, a third of the time */
        q->offset = OFFSET_OPEN;
        const position *p = engine_position_find(g, a, ins);
        if (p != NULL && rnd(3) == 0 &&
            position_closable(p, q->direction == DIR_BUY ? DIR_SELL : DIR_BUY, OFFSET_CLOSE) >=
                q->volume)
            q->offset = OFFSET_CLOSE;
        st->inserts++;
    apply:;
        engine_result res;
        st->traded = 0;
        if (engine_apply(g, c, &res) != 0) st->rejected++;
        st->trading_commands += (uint64_t)st->traded;
    }
    uint64_t h = engine_state_hash(g);
    engine_destroy(g);
    return h;
}

/* ---- measurement ---- */

typedef struct sink_counts {
    uint64_t events, trades;
} sink_counts;

static void count_sink(void *ctx, const engine_event *ev) {
    sink_counts *s = ctx;
    s->events++;
    s->trades += ev->type == EV_TRADE;
}

typedef struct run {
    engine *e;
    sink_counts counts;
    uint64_t rejected;
} run;

/* --preallocate R: the measured engine's pools sized for R orders and R trades before the
 * warm-up, as the server's [engine] preallocate_* does */
static uint32_t preallocate;

static void run_start(run *r, const command *cmds, size_t warmup) {
    memset(r, 0, sizeof *r);
    r->e = new_engine();
    if (r->e && preallocate && engine_preallocate(r->e, preallocate, preallocate) != 0) {
        fprintf(stderr, "could not preallocate %u orders and trades\n", preallocate);
        exit(1);
    }
    setup(r->e);
    engine_set_event_sink(r->e, count_sink, &r->counts);
    engine_result res;
    for (size_t i = 0; i < warmup; i++)
        engine_apply(r->e, &cmds[i], &res);
}

/* The measured loop of throughput mode, on its own so that a profiler can be told to count it
 * alone (valgrind --tool=callgrind --toggle-collect=apply_all). */
__attribute__((noinline)) static void apply_all(engine *e, const command *cmds, size_t n) {
    engine_result res;
    for (size_t i = 0; i < n; i++)
        engine_apply(e, &cmds[i], &res);
}

static uint64_t run_finish(run *r) {
    uint64_t h = engine_state_hash(r->e);
    engine_destroy(r->e);
    return h;
}

static void report_allocations(uint64_t n) {
#ifdef COUNT_ALLOCATIONS
    printf("allocations during measured run: %" PRIu64 "\n", n);
#else
    (void)n;
    printf("allocations during measured run: not counted (sanitizer build)\n");
#endif
}

static void usage(void) {
    fprintf(stderr, "usage: engine_bench [--commands N] [--warmup W] [--rate R] [--seed S] "
                    "[--cpu C] [--history H] [--no-latency] [--repeat K] [--huge-pages] "
                    "[--preallocate R] [--null-service NS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    size_t n = 5000000, warmup = 1000000;
    double rate = 0;
    int cpu = -1, no_latency = 0;
    int repeat = 1; /* throughput runs, each from a fresh engine: the host varies between them */
    double null_service_ns = -1; /* >= 0: a spin of this long replaces engine_apply */
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "--no-latency") == 0) {
            no_latency = 1;
            continue;
        }
        if (strcmp(flag, "--huge-pages") == 0) {
            pool_mem_set_huge_pages(true);
            continue;
        }
        if (i + 1 >= argc) usage();
        const char *value = argv[++i];
        if (strcmp(flag, "--commands") == 0)
            n = strtoull(value, NULL, 10);
        else if (strcmp(flag, "--warmup") == 0)
            warmup = strtoull(value, NULL, 10);
        else if (strcmp(flag, "--rate") == 0)
            rate = strtod(value, NULL);
        else if (strcmp(flag, "--seed") == 0)
            rng_state = strtoull(value, NULL, 0) | 1;
        else if (strcmp(flag, "--null-service") == 0)
            null_service_ns = strtod(value, NULL);
        else if (strcmp(flag, "--cpu") == 0)
            cpu = atoi(value);
        else if (strcmp(flag, "--repeat") == 0)
            repeat = atoi(value);
        else if (strcmp(flag, "--history") == 0)
            history = (uint32_t)strtoul(value, NULL, 10);
        else if (strcmp(flag, "--preallocate") == 0)
            preallocate = (uint32_t)strtoul(value, NULL, 10);
        else
            usage();
    }
    if (n == 0 || repeat < 1) usage();
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) perror("sched_setaffinity");
    }
    calibrate();
    double overhead_ns;
    timer_overhead(&overhead_ns);

    size_t total = warmup + n;
    command *cmds = malloc(total * sizeof *cmds);
    uint32_t *lat = malloc(n * sizeof *lat);
    /* per-command kind in throughput mode, per-command service time in rate mode */
    uint32_t *kind_wide = malloc(n * sizeof *kind_wide);
    uint8_t *kind = (uint8_t *)kind_wide;
    if (cmds == NULL || lat == NULL || kind == NULL) {
        fprintf(stderr, "out of memory for %zu commands\n", total);
        return 1;
    }
    /* touched now, so the measured loops take no page faults on them (here a fault costs about
     * 25 us). Not with zeros: the compiler turns malloc + memset(0) into calloc, which leaves
     * fresh pages untouched. */
    memset(lat, 0xff, n * sizeof *lat);
    memset(kind_wide, 0xff, n * sizeof *kind_wide);
    gen_stats st;
    memset(&st, 0, sizeof st);
    int64_t g0 = mono_ns();
    uint64_t gen_hash = generate(cmds, total, &st);
    int64_t g1 = mono_ns();
    printf("workload: %d accounts, %s, %zu warm-up + %zu measured commands generated in %.1f s "
           "(%.0f MB); %.1f%% inserts (%.1f%% crossing), %.1f%% cancels; %.2f%% of commands "
           "trade; %.2f%% rejected\n",
           N_ACCOUNTS, INSTRUMENT, warmup, n, (double)(g1 - g0) / 1e9,
           (double)(total * sizeof *cmds) / 1048576.0, 100.0 * (double)st.inserts / (double)total,
           100.0 * (double)st.crossing / (double)total, 100.0 * (double)st.cancels / (double)total,
           100.0 * (double)st.trading_commands / (double)total,
           100.0 * (double)st.rejected / (double)total);
    printf("clock: %s, %.4f ns per tick; timestamp pair overhead (median) %.1f ns\n",
#ifdef HAVE_TSC
           "rdtsc calibrated against CLOCK_MONOTONIC",
#else
           "CLOCK_MONOTONIC",
#endif
           ns_per_tick, overhead_ns);

    const command *measured = cmds + warmup;
    engine_result res;
    run r;
    if (rate <= 0) {
        /* 1. back to back, no per-command timestamps; with --repeat, the best and the median of
         *    several runs, since a busy host slows single runs by up to a half */
        double *rates = malloc((size_t)repeat * sizeof *rates);
        if (rates == NULL) return 1;
        for (int k = 0; k < repeat; k++) {
            run_start(&r, cmds, warmup);
            double rss_warm = rss_mb();
            alloc_count = 0;
            alloc_counting = 1;
            int64_t t0 = mono_ns();
            apply_all(r.e, measured, n);
            int64_t t1 = mono_ns();
            alloc_counting = 0;
            uint64_t allocs = alloc_count;
            double secs = (double)(t1 - t0) / 1e9;
            double rss_end = rss_mb();
            uint64_t h = run_finish(&r);
            rates[k] = (double)n / secs;
            printf("throughput: %zu commands in %.3f s = %.0f commands/s (%.0f ns/command), "
                   "%" PRIu64 " trade events\n",
                   n, secs, rates[k], secs * 1e9 / (double)n, r.counts.trades);
            report_allocations(allocs);
            printf("RSS after warm-up %.1f MB, after the run %.1f MB\n", rss_warm, rss_end);
            printf("state hash equals the generator's: %s\n", h == gen_hash ? "yes" : "NO");
        }
        if (repeat > 1) {
            qsort(rates, (size_t)repeat, sizeof *rates, cmp_double_desc);
            printf("throughput over %d runs: best %.0f commands/s, median %.0f, worst %.0f\n",
                   repeat, rates[0], rates[repeat / 2], rates[repeat - 1]);
        }
        free(rates);
        if (no_latency) goto done;

        /* 2. the same, with a timestamp around every engine_apply */
        run_start(&r, cmds, warmup);
        alloc_count = 0;
        alloc_counting = 1;
        int64_t t0 = mono_ns();
        uint64_t prev = ticks();
        for (size_t i = 0; i < n; i++) {
            uint64_t trades_before = r.counts.trades;
            engine_apply(r.e, &measured[i], &res);
            uint64_t now = ticks();
            lat[i] = (uint32_t)(now - prev > UINT32_MAX ? UINT32_MAX : now - prev);
            kind[i] = r.counts.trades != trades_before;
            prev = now;
        }
        int64_t t1 = mono_ns();
        alloc_counting = 0;
        uint64_t allocs = alloc_count;
        double secs = (double)(t1 - t0) / 1e9;
        run_finish(&r);
        printf("timed run: %.0f commands/s with one timestamp per command\n", (double)n / secs);
        /* by kind of command: cancels, inserts that rest or are refused, inserts that trade */
        uint32_t *part = malloc(n * sizeof *part);
        static const char *const kinds[] = {"  cancels", "  inserts without a trade",
                                            "  inserts that trade"};
        for (int k = 0; k < 3 && part; k++) {
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                int ki = measured[i].type == CMD_ORDER_CANCEL ? 0 : 1 + kind[i];
                if (ki == k) part[m++] = lat[i];
            }
            char label[96];
            snprintf(label, sizeof label, "%s (%.1f%%)", kinds[k], 100.0 * (double)m / (double)n);
            if (m > 0) print_percentiles(label, part, m);
        }
        free(part);
        queue_model(lat, n, 500000);
        queue_model(lat, n, 1000000);
        print_percentiles("per-command latency, all (includes one timestamp)", lat, n);
        report_allocations(allocs);
    } else {
        platform_pauses();
        run_start(&r, cmds, warmup);
        double tpc = 1e9 / rate / ns_per_tick; /* ticks between due times */
        size_t late = 0;
        uint64_t pause_5us = (uint64_t)(5000 / ns_per_tick), waits_paused = 0, wait_lost = 0,
                 wait_longest = 0;
        uint32_t *service = (uint32_t *)kind_wide;
        uint64_t null_ticks =
            null_service_ns >= 0 ? 1 + (uint64_t)(null_service_ns / ns_per_tick) : 0;
        if (null_ticks) printf("null engine: a spin of %.0f ns per command\n", null_service_ns);
        long faults_before = minor_faults();
        alloc_count = 0;
        alloc_counting = 1;
        uint64_t start = ticks() + (uint64_t)(1e6 / ns_per_tick); /* 1 ms from now */
        int64_t t0 = mono_ns();
        for (size_t i = 0; i < n; i++) {
            uint64_t due = start + (uint64_t)((double)i * tpc);
            uint64_t now = ticks();
            if (now > due + (uint64_t)(1000 / ns_per_tick)) late++;
            while (now < due) {
                /* a gap between two reads while spinning is the machine pausing us */
                uint64_t next = ticks();
                if (next - now > pause_5us) {
                    waits_paused++;
                    wait_lost += next - now;
                    if (next - now > wait_longest) wait_longest = next - now;
                }
                now = next;
            }
            if (null_ticks == 0) {
                engine_apply(r.e, &measured[i], &res);
            } else {
                uint64_t until = now + null_ticks;
                while (ticks() < until) {
                }
            }
            uint64_t done = ticks();
            lat[i] = (uint32_t)(done - due > UINT32_MAX ? UINT32_MAX : done - due);
            service[i] = (uint32_t)(done - now > UINT32_MAX ? UINT32_MAX : done - now);
        }
        int64_t t1 = mono_ns();
        alloc_counting = 0;
        uint64_t allocs = alloc_count;
        long faults = minor_faults() - faults_before;
        run_finish(&r);
        double secs = (double)(t1 - t0) / 1e9;
        printf("offered %.0f commands/s for %zu commands: achieved %.0f commands/s, %.2f%% "
               "started more than 1 us after their due time\n",
               rate, n, (double)n / secs, 100.0 * (double)late / (double)n);
        if (getenv("ENGINE_BENCH_DUMP")) {
            FILE *df = fopen(getenv("ENGINE_BENCH_DUMP"), "w");
            for (size_t i = 0; df && i < n; i++)
                fprintf(df, "%u %u\n", lat[i], service[i]);
            if (df) fclose(df);
        }
        size_t over_5us = 0;
        for (size_t i = 0; i < n; i++)
            over_5us += lat[i] > pause_5us;
        print_percentiles("latency from due time to completion", lat, n);
        printf("  %.3f%% of the commands completed more than 5 us after their due time\n",
               100.0 * (double)over_5us / (double)n);
        /* where the tail comes from: the service times of this run (pauses that hit a command
         * while it ran are in them) queued again without the pauses that hit the idle wait */
        queue_model(service, n, rate);
        print_percentiles("  service time per command in this run", service, n);
        printf("  page faults during the measured run: %ld\n", faults);
        printf("pauses while idle-spinning during the run: %" PRIu64 " over 5 us, %.1f ms lost in "
               "them, longest %.1f us\n",
               waits_paused, (double)wait_lost * ns_per_tick / 1e6,
               (double)wait_longest * ns_per_tick / 1000.0);
        report_allocations(allocs);
    }
done:
    printf("peak RSS %.1f MB (includes the %.0f MB command array)\n", peak_rss_mb(),
           (double)(total * sizeof *cmds) / 1048576.0);
    free(kind_wide);
    free(lat);
    free(cmds);
    return 0;
}
