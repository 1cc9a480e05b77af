/* recovery_bench: what durability costs and how fast the exchange comes back.
 *
 * Everything happens in a fresh directory (mkdtemp under --dir, default /tmp), removed at the end
 * unless --keep. Four parts (--parts, default 1234):
 *
 *   1  throughput with durability: N commands (default 2,000,000) of a seeded workload over
 *      1,000 accounts and the 3 default instruments (account opens, deposits, resting limit
 *      orders, cancels, crossing orders) go through persistence_log + engine_apply on one thread,
 *      as the server's engine thread does: once without a journal (the engine alone), once with
 *      durability "sync", once "async". The stream is generated before anything is timed.
 *   2  recovery: the sync run's directory is closed without a snapshot and persistence_open
 *      replays the whole journal (timed; --recoveries times with a warm page cache, then once with
 *      the journal evicted from it). The recovered engine_state_hash must equal the original's
 *      (exit status 1 otherwise). The parts of the time: journal_open's scan, journal_replay's
 *      read + CRC, command_decode, engine_apply.
 *   3  snapshots: 10,000 accounts (--snap-accounts), each with positions in the 3 instruments,
 *      resting orders and a retained history of finished orders and trades, built through the
 *      journal. Times engine_snapshot_save, snapshot_write (temp file, fsync, rename),
 *      persistence_snapshot, engine_snapshot_load, and recovery from the snapshot plus a journal
 *      tail of --tail commands; sizes in bytes and MB.
 *   4  acknowledgement latency with durability sync: commands offered at --rate per second for
 *      --seconds (busy-wait pacing on the engine thread); for each command the time from
 *      persistence_log to journal_durable_seq >= its seq, stamped by the journal's notify callback.
 *
 * fdatasync(2) and write(2) are interposed by this file (the journal library is linked statically,
 * so its calls land here): every fdatasync is timed, which gives the disk's share of the latency,
 * and writes are counted (records per write(2)). */
#define _GNU_SOURCE
#include "engine/engine.h"
#include "journal/journal.h"
#include "server/persistence.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* ---- clock ---- */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double secs_between(uint64_t t0, uint64_t t1) {
    return (double)(t1 - t0) / 1e9;
}

/* ---- fdatasync, timed ---- */

#define MAX_SYNCS (1u << 21)
static uint64_t sync_dur[MAX_SYNCS];
static _Atomic uint64_t sync_calls;

int fdatasync(int fd) {
    uint64_t t = now_ns();
    int rc = (int)syscall(SYS_fdatasync, fd);
    uint64_t d = now_ns() - t;
    uint64_t n = atomic_fetch_add(&sync_calls, 1);
    if (n < MAX_SYNCS) sync_dur[n] = d;
    return rc;
}

/* write(2) calls, counted the same way: how many records each write carries */
static _Atomic uint64_t write_calls;

ssize_t write(int fd, const void *buf, size_t len) {
    atomic_fetch_add_explicit(&write_calls, 1, memory_order_relaxed);
    return (ssize_t)syscall(SYS_write, fd, buf, len);
}

/* ---- percentiles ---- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *sorted, size_t n, double q) {
    return sorted[(size_t)(q * (double)(n - 1))];
}

/* Sorts v (ns) in place and prints its distribution in microseconds. */
static void print_dist(const char *label, uint64_t *v, size_t n) {
    if (n == 0) {
        printf("%s: no samples\n", label);
        return;
    }
    qsort(v, n, sizeof *v, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    printf("%s (%zu): P50 %.0f us, P90 %.0f us, P99 %.0f us, P99.9 %.0f us, max %.0f us, "
           "mean %.0f us\n",
           label, n, (double)pct(v, n, 0.5) / 1e3, (double)pct(v, n, 0.9) / 1e3,
           (double)pct(v, n, 0.99) / 1e3, (double)pct(v, n, 0.999) / 1e3, (double)v[n - 1] / 1e3,
           sum / (double)n / 1e3);
}

/* The fdatasyncs [from, to) (indexes into sync_dur); call once the journal is closed, so that
 * every entry has been written. */
static void print_syncs(const char *label, uint64_t from, uint64_t to, double secs) {
    if (to > MAX_SYNCS) to = MAX_SYNCS;
    size_t n = to > from ? (size_t)(to - from) : 0;
    uint64_t *copy = malloc((n ? n : 1) * sizeof *copy);
    if (copy == NULL) return;
    memcpy(copy, sync_dur + from, n * sizeof *copy);
    char l[160];
    snprintf(l, sizeof l, "%s fdatasync duration, %.0f/s", label, secs > 0 ? (double)n / secs : 0);
    print_dist(l, copy, n);
    free(copy);
}

/* ---- files ---- */

static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            char sub[2048];
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            struct stat st;
            if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
                remove_tree(sub);
            else
                unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

/* Bytes and files in DIR/sub; evict: drop their pages from the page cache (they are synced). */
static uint64_t files_in(const char *dir, const char *sub, int *count, int evict) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    DIR *d = opendir(path);
    uint64_t total = 0;
    if (count) *count = 0;
    if (d == NULL) return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char f[2560];
        snprintf(f, sizeof f, "%s/%s", path, de->d_name);
        struct stat st;
        if (stat(f, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        total += (uint64_t)st.st_size;
        if (count) (*count)++;
        if (evict) {
            int fd = open(f, O_RDONLY);
            if (fd >= 0) {
                posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
                close(fd);
            }
        }
    }
    closedir(d);
    return total;
}

/* ---- the machine ---- */

/* "some avg10" of /proc/pressure/cpu: the share of time a runnable task waited for a CPU. */
static const char *cpu_pressure(void) {
    static char out[32];
    snprintf(out, sizeof out, "?");
    FILE *f = fopen("/proc/pressure/cpu", "r");
    if (f == NULL) return out;
    double avg10;
    if (fscanf(f, "some avg10=%lf", &avg10) == 1) snprintf(out, sizeof out, "%.1f%%", avg10);
    fclose(f);
    return out;
}

static void print_machine(const char *base) {
    char model[256] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    snprintf(model, sizeof model, "%s", c + 2);
                    model[strcspn(model, "\n")] = 0;
                }
                break;
            }
        }
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    double load[3] = {0, 0, 0};
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(f);
    }
    printf("machine: %ld CPUs, %s, %s %s, load average %.2f %.2f %.2f, CPU pressure %s; data "
           "under %s\n",
           sysconf(_SC_NPROCESSORS_ONLN), model, u.sysname, u.release, load[0], load[1], load[2],
           cpu_pressure(), base);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* ---- the workload ---- */

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

#define T0_NS 1735783200000000000LL /* 2025-01-02 02:00 UTC, inside the trading day */

static engine_config bench_config(void) {
    engine_config cfg;
    engine_config_default(&cfg);
    /* the risk checks run but pass, as in engine_bench; history stays at the default (2,000) */
    cfg.max_order_value = 1e15;
    cfg.max_position_ratio = 1e6;
    return cfg;
}

/* A generator of commands over the current state of an engine (which it only reads: the caller
 * applies each command before asking for the next). */
typedef struct gen {
    const char *prefix;      /* account ids: prefix + 5 digits */
    uint32_t setup_accounts; /* opened one after another after the instruments */
    double init_cash;
    int64_t clock_ns;
    uint64_t next_order;
    uint32_t setup_done;
    /* what was generated */
    uint64_t opens, deposits, inserts, crossing, cancels;
} gen;

static command new_command(gen *g, command_type type) {
    command c;
    memset(&c, 0, sizeof c);
    c.type = type;
    c.ts_ns = (g->clock_ns += 1000);
    return c;
}

static void account_open_cmd(gen *g, command *c, uint32_t index) {
    *c = new_command(g, CMD_ACCOUNT_OPEN);
    snprintf(c->u.account_open.account_id, QAEX_ID_LEN, "%s%05u", g->prefix, index);
    snprintf(c->u.account_open.user_id, QAEX_ID_LEN, "user_%s%05u", g->prefix, index);
    snprintf(c->u.account_open.account_name, QAEX_NAME_LEN, "Bench account %u", index);
    c->u.account_open.init_cash = g->init_cash;
    g->opens++;
}

static int64_t center_tick(const instrument *ins) {
    return llround(ins->spec.pre_settlement / ins->spec.price_tick);
}

static void limit_order(gen *g, command *c, const account *a, const instrument *ins, direction side,
                        int64_t tick, int64_t volume) {
    *c = new_command(g, CMD_ORDER_INSERT);
    order_request *q = &c->u.order;
    memcpy(q->account_id, a->account_id, QAEX_ID_LEN);
    snprintf(q->order_id, QAEX_ID_LEN, "r%" PRIu64, ++g->next_order);
    snprintf(q->instrument_id, QAEX_INSTRUMENT_ID_LEN, "%s", ins->spec.instrument_id);
    q->direction = side;
    q->offset = OFFSET_OPEN;
    q->price_type = PRICE_LIMIT;
    q->time_condition = TC_GFD;
    q->volume_condition = VC_ANY;
    if (tick > ins->upper_tick) tick = ins->upper_tick;
    if (tick < ins->lower_tick) tick = ins->lower_tick;
    q->limit_price = (double)tick * ins->spec.price_tick;
    q->volume = volume;
    g->inserts++;
}

/* Closes instead of opening, a third of the time, when the account holds enough on the other
 * side. */
static void maybe_close(const engine *e, command *c, const account *a, const instrument *ins) {
    order_request *q = &c->u.order;
    const position *pos = engine_position_find(e, a, ins);
    if (pos != NULL && rnd(3) == 0 &&
        position_closable(pos, q->direction == DIR_BUY ? DIR_SELL : DIR_BUY, OFFSET_CLOSE) >=
            q->volume)
        q->offset = OFFSET_CLOSE;
}

/* The next command of the mixed stream. First the 3 default instruments, then setup_accounts
 * account opens, then per 1,000 commands about: 2 account opens, 10 deposits, 60 crossing
 * orders (limit GFD, IOC, market), 380-470 cancels of live orders (more when many are live), and
 * the rest limit orders resting at or a few ticks behind the touch. */
static void gen_next(gen *g, const engine *e, command *c) {
    if (g->setup_done < 3) {
        instrument_spec specs[3];
        engine_default_instruments(specs, 3);
        *c = new_command(g, CMD_INSTRUMENT_ADD);
        c->u.instrument.spec = specs[g->setup_done++];
        return;
    }
    if (g->setup_done < 3 + g->setup_accounts) {
        account_open_cmd(g, c, g->setup_done++ - 3);
        return;
    }
    uint32_t n_accounts = engine_account_count(e);
    uint32_t n_ins = engine_instrument_count(e);
    uint32_t live = 0;
    for (uint32_t i = 0; i < n_ins; i++) {
        const instrument *ins = engine_instrument_at(e, i);
        live += ins->book.order_count[0] + ins->book.order_count[1];
    }
    uint32_t r = rnd(1000);
    const account *a = engine_account_at(e, rnd(n_accounts));
    if (r < 2) {
        account_open_cmd(g, c, n_accounts);
        return;
    }
    if (r < 12) {
        *c = new_command(g, CMD_DEPOSIT);
        memcpy(c->u.transfer.account_id, a->account_id, QAEX_ID_LEN);
        c->u.transfer.amount = 1000.0 * (1 + rnd(1000));
        g->deposits++;
        return;
    }
    uint32_t cancel_share = live > 12000 ? 470 : live > 6000 ? 440 : 380;
    if (r >= 72 && r < 72 + cancel_share) {
        const order *o = NULL;
        for (int attempt = 0; attempt < 16 && o == NULL; attempt++) {
            a = engine_account_at(e, rnd(n_accounts));
            if (a->live_count == 0) continue;
            uint32_t k = rnd(a->live_count);
            o = engine_order_first(e, a);
            while (k-- > 0)
                o = engine_order_next(e, o);
        }
        if (o != NULL) {
            *c = new_command(g, CMD_ORDER_CANCEL);
            memcpy(c->u.cancel.account_id, a->account_id, QAEX_ID_LEN);
            memcpy(c->u.cancel.order_id, o->order_id, QAEX_ID_LEN);
            g->cancels++;
            return;
        }
        r = 999; /* nothing live: a resting order instead */
    }
    /* IF2501 half of the orders, IC2501 and IH2501 a quarter each */
    uint32_t w = rnd(4);
    const instrument *ins = engine_instrument_at(e, w < 2 ? 0 : w - 1);
    const book *b = &ins->book;
    int64_t center = center_tick(ins);
    int32_t lb = book_best(b, DIR_BUY), la = book_best(b, DIR_SELL);
    int64_t bid = lb != BOOK_NO_LEVEL ? book_level_tick(b, lb) : center - 1;
    int64_t ask = la != BOOK_NO_LEVEL ? book_level_tick(b, la) : bid + 1;
    if (lb == BOOK_NO_LEVEL && la != BOOK_NO_LEVEL) bid = ask - 1;
    if (r >= 12 && r < 72) { /* crossing, leaning back towards the centre */
        double drift = (double)((bid + ask) / 2 - center) / 300.0;
        if (drift > 0.3) drift = 0.3;
        if (drift < -0.3) drift = -0.3;
        direction side = (double)rnd(1000) / 1000.0 < 0.5 - drift ? DIR_BUY : DIR_SELL;
        int64_t tick = side == DIR_BUY ? ask + rnd(2) : bid - rnd(2);
        limit_order(g, c, a, ins, side, tick, 1 + rnd(5));
        uint32_t kind = rnd(10);
        if (kind < 2) c->u.order.time_condition = TC_IOC;
        if (kind == 2) c->u.order.price_type = PRICE_ANY;
        g->crossing++;
    } else { /* passive, at or behind the touch */
        direction side = rnd(2) ? DIR_BUY : DIR_SELL;
        int64_t behind = rnd(4) == 0 ? 0 : 1 + rnd(8);
        int64_t tick = side == DIR_BUY ? bid - behind : ask + behind;
        if (side == DIR_BUY && tick >= ask) tick = ask - 1;
        if (side == DIR_SELL && tick <= bid) tick = bid + 1;
        limit_order(g, c, a, ins, side, tick, 1 + rnd(10));
    }
    maybe_close(e, c, a, ins);
}

/* ---- applying commands the way the engine thread does ---- */

typedef struct driver {
    engine *e;
    persistence *p; /* NULL: the engine alone */
    uint64_t rejected, trades;
} driver;

static void trade_sink(void *ctx, const engine_event *ev) {
    if (ev->type == EV_TRADE) ((driver *)ctx)->trades++;
}

static inline void drive(driver *d, const command *c) {
    engine_result res;
    if (d->p) {
        uint64_t seq;
        char err[512];
        if (persistence_log(d->p, c, &seq, err, sizeof err) != 0) {
            fprintf(stderr, "persistence_log: %s\n", err);
            exit(1);
        }
    }
    if (engine_apply(d->e, c, &res) != 0) d->rejected++;
    if (d->p) persistence_tick(d->p, d->e, 0);
}

static persistence *open_dir(const char *dir, bool async, engine **e, persistence_recovery *info,
                             journal_notify_fn notify, void *notify_ctx) {
    persistence_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = dir;
    o.async_durability = async;
    o.notify = notify;
    o.notify_ctx = notify_ctx;
    engine_config cfg = bench_config();
    char err[1024];
    persistence *p = persistence_open(&o, &cfg, e, info, err, sizeof err);
    if (p == NULL) {
        fprintf(stderr, "persistence_open %s: %s\n", dir, err);
        exit(1);
    }
    return p;
}

static void wait_durable(persistence *p, uint64_t seq) {
    while (persistence_durable_seq(p) < seq) {
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
    }
}

/* ---- part 1: throughput ---- */

typedef struct options {
    size_t commands;
    char base[512];
    bool keep;
    char parts[16];
    int recoveries;
    uint32_t snap_accounts, snap_trades, snap_cancelled, snap_resting;
    size_t tail;
    double rate, seconds;
    bool ack_async;
    bool pace_sleep; /* part 4: sleep to each due time instead of spinning */
    char modes[8];   /* part 1: n = engine alone, s = sync, a = async */
} options;

static int status = 0;

static uint64_t run_throughput(const char *label, const char *dir, bool async, const command *cmds,
                               size_t n, uint64_t expect_hash) {
    driver d = {0};
    persistence_recovery info;
    if (dir) {
        d.p = open_dir(dir, async, &d.e, &info, NULL, NULL);
    } else {
        engine_config cfg = bench_config();
        d.e = engine_create(&cfg);
    }
    engine_set_event_sink(d.e, trade_sink, &d);
    uint64_t s0 = atomic_load(&sync_calls), w0 = atomic_load(&write_calls);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        drive(&d, &cmds[i]);
    uint64_t t1 = now_ns();
    uint64_t t2 = t1;
    if (d.p) {
        wait_durable(d.p, persistence_last_seq(d.p));
        t2 = now_ns();
    }
    double loop = secs_between(t0, t1), durable = secs_between(t0, t2);
    uint64_t h = engine_state_hash(d.e);
    printf("%s: %zu commands, engine thread %.3f s = %.0f commands/s (%.0f ns/command)", label, n,
           loop, (double)n / loop, loop * 1e9 / (double)n);
    if (d.p)
        printf("; all %s after %.3f s = %.0f commands/s", async ? "written" : "durable", durable,
               (double)n / durable);
    printf("; %" PRIu64 " trades, %" PRIu64 " rejected; state hash %016" PRIx64 " %s\n", d.trades,
           d.rejected, h, h == expect_hash ? "(= generator)" : "(DIFFERS from the generator)");
    if (h != expect_hash) status = 1;
    if (d.p == NULL) {
        /* what a periodic snapshot of this state would cost the engine thread */
        unsigned char *buf;
        size_t len;
        uint64_t a0 = now_ns();
        if (engine_snapshot_save(d.e, &buf, &len) == 0) {
            uint64_t a1 = now_ns();
            printf(
                "  a snapshot of this state: %zu bytes (%.1f MB), engine_snapshot_save %.0f ms\n",
                len, (double)len / 1048576.0, secs_between(a0, a1) * 1e3);
            free(buf);
        }
    }
    if (d.p) {
        uint64_t syncs = atomic_load(&sync_calls) - s0, writes = atomic_load(&write_calls) - w0;
        int segs;
        uint64_t bytes = files_in(dir, "journal", &segs, 0);
        printf("  journal: %" PRIu64 " bytes in %d segments (%.1f MB, %.1f bytes/command), "
               "%" PRIu64 " write(2)s (%.1f commands per write), %" PRIu64
               " fdatasyncs (%.1f commands per fdatasync)\n",
               bytes, segs, (double)bytes / 1048576.0, (double)bytes / (double)n, writes,
               writes ? (double)n / (double)writes : 0.0, syncs,
               syncs ? (double)n / (double)syncs : 0.0);
        uint64_t s1 = atomic_load(&sync_calls);
        persistence_close(d.p, NULL); /* no final snapshot: recovery replays the journal */
        print_syncs("  ", s0, s1, durable);
    }
    engine_destroy(d.e);
    return h;
}

/* ---- part 2: recovery by replay ---- */

static int count_record(void *ctx, uint64_t seq, const void *data, size_t len) {
    (void)seq;
    (void)data;
    (void)len;
    (*(uint64_t *)ctx)++;
    return 0;
}

static int decode_record(void *ctx, uint64_t seq, const void *data, size_t len) {
    (void)seq;
    command c;
    if (command_decode(data, len, &c) != 0) return 1;
    (*(uint64_t *)ctx) += (uint64_t)c.type;
    return 0;
}

static void time_recovery(const char *label, const char *dir, uint64_t expect_hash,
                          uint64_t expect_records) {
    engine *e;
    persistence_recovery info;
    uint64_t t0 = now_ns();
    persistence *p = open_dir(dir, false, &e, &info, NULL, NULL);
    uint64_t t1 = now_ns();
    uint64_t h = engine_state_hash(e);
    uint64_t t2 = now_ns();
    double s = secs_between(t0, t1);
    if (info.from_snapshot)
        printf("%s: persistence_open %.3f s (snapshot at seq %" PRIu64 " + %" PRIu64
               " commands replayed)",
               label, s, info.snapshot_seq, info.replayed);
    else
        printf("%s: persistence_open %.3f s, %" PRIu64 " commands replayed = %.0f commands/s",
               label, s, info.replayed, (double)info.replayed / s);
    printf("; recovered hash %016" PRIx64 ", original %016" PRIx64 ": %s (hashing %.3f s)%s%s\n", h,
           expect_hash, h == expect_hash ? "equal" : "DIFFERENT", secs_between(t1, t2),
           info.report[0] ? "; report: " : "", info.report);
    if (h != expect_hash || info.replayed != expect_records) {
        if (info.replayed != expect_records)
            printf("  expected %" PRIu64 " records replayed\n", expect_records);
        status = 1;
    }
    persistence_close(p, NULL);
    engine_destroy(e);
}

static void run_recovery(const options *opt, const char *dir, const command *cmds, size_t n,
                         uint64_t expect_hash) {
    int segs;
    uint64_t bytes = files_in(dir, "journal", &segs, 0);
    printf("recovery of %s: %" PRIu64 " journal bytes in %d segments, no snapshot\n", dir, bytes,
           segs);
    for (int r = 0; r < opt->recoveries; r++) {
        char label[64];
        snprintf(label, sizeof label, "  replay %d (page cache warm)", r + 1);
        time_recovery(label, dir, expect_hash, n);
    }
    files_in(dir, "journal", NULL, 1);
    time_recovery("  replay (journal evicted from the page cache)", dir, expect_hash, n);

    /* where the time goes */
    char err[1024];
    journal_options jo;
    journal_options_default(&jo);
    jo.schema_id = command_schema_id();
    journal_recovery_info ji;
    uint64_t t0 = now_ns();
    journal *j = journal_open(dir, &jo, &ji, err, sizeof err);
    uint64_t t1 = now_ns();
    if (j == NULL) {
        fprintf(stderr, "journal_open: %s\n", err);
        exit(1);
    }
    journal_close(j, err, sizeof err);
    uint64_t count = 0;
    uint64_t t2 = now_ns();
    int rc1 = journal_replay(dir, 0, count_record, &count, err, sizeof err);
    uint64_t t3 = now_ns();
    uint64_t sum = 0;
    int rc2 = journal_replay(dir, 0, decode_record, &sum, err, sizeof err);
    uint64_t t4 = now_ns();
    engine_config cfg = bench_config();
    engine *e = engine_create(&cfg);
    engine_result res;
    uint64_t t5 = now_ns();
    for (size_t i = 0; i < n; i++)
        engine_apply(e, &cmds[i], &res);
    uint64_t t6 = now_ns();
    engine_destroy(e);
    double scan = secs_between(t0, t1), read = secs_between(t2, t3),
           decode = secs_between(t3, t4) - read, apply = secs_between(t5, t6);
    printf("  parts (warm cache): journal_open scan %.3f s (%" PRIu64 " records); "
           "journal_replay read + CRC %.3f s%s; command_decode %.3f s%s; engine_apply from "
           "memory %.3f s (%.0f commands/s); sum %.3f s = %.0f commands/s\n",
           scan, ji.records, read, rc1 ? " (FAILED)" : "", decode, rc2 ? " (FAILED)" : "", apply,
           (double)n / apply, scan + read + decode + apply,
           (double)n / (scan + read + decode + apply));
    if (rc1 || rc2 || count != n) status = 1;
}

/* ---- part 3: snapshots ---- */

static void snapshot_stats(const engine *e) {
    uint64_t positions = 0, live = 0, finished = 0, trades = 0;
    uint32_t n = engine_account_count(e);
    for (uint32_t i = 0; i < n; i++) {
        const account *a = engine_account_at(e, i);
        positions += a->n_positions;
        live += a->live_count;
        finished += a->finished_count;
        trades += a->trades_count;
    }
    printf("state: %u accounts, %" PRIu64 " positions, %" PRIu64 " resting orders, %" PRIu64
           " finished orders and %" PRIu64 " trades retained (per account: %.1f, %.1f, %.1f, "
           "%.1f)\n",
           n, positions, live, finished, trades, (double)positions / n, (double)live / n,
           (double)finished / n, (double)trades / n);
}

/* Builds the snapshot state through the journal: accounts, matched pairs of orders (every match
 * fills both completely, so the books are empty between pairs), cancelled orders, then resting
 * orders that cannot cross (buys below the centre, sells above). */
static void build_snapshot_state(const options *opt, driver *d, gen *g) {
    engine *e = d->e;
    command c;
    for (uint32_t i = 0; i < 3 + opt->snap_accounts; i++) {
        gen_next(g, e, &c);
        drive(d, &c);
    }
    uint32_t n = opt->snap_accounts;
    uint32_t *perm = malloc(n * sizeof *perm);
    if (perm == NULL) exit(1);
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    for (uint32_t t = 0; t < opt->snap_trades; t++) {
        for (uint32_t i = n - 1; i > 0; i--) {
            uint32_t k = rnd(i + 1), x = perm[i];
            perm[i] = perm[k];
            perm[k] = x;
        }
        for (uint32_t k = 0; k + 1 < n; k += 2) {
            const account *buyer = engine_account_at(e, perm[k]);
            const account *seller = engine_account_at(e, perm[k + 1]);
            const instrument *ins = engine_instrument_at(e, rnd(3));
            int64_t center = center_tick(ins), span = center / 100; /* within 1% */
            int64_t tick = center - span + rnd((uint32_t)(2 * span + 1));
            int64_t vol = 1 + rnd(3);
            command buy, sell;
            limit_order(g, &buy, buyer, ins, DIR_BUY, tick, vol);
            maybe_close(e, &buy, buyer, ins);
            limit_order(g, &sell, seller, ins, DIR_SELL, tick, vol);
            maybe_close(e, &sell, seller, ins);
            if (rnd(2)) {
                drive(d, &buy);
                sell.ts_ns = buy.ts_ns + 500;
                drive(d, &sell);
            } else {
                buy.ts_ns = sell.ts_ns + 500;
                drive(d, &sell);
                drive(d, &buy);
            }
        }
    }
    for (uint32_t t = 0; t < opt->snap_cancelled; t++) {
        for (uint32_t i = 0; i < n; i++) {
            const account *a = engine_account_at(e, i);
            const instrument *ins = engine_instrument_at(e, rnd(3));
            int64_t center = center_tick(ins);
            direction side = rnd(2) ? DIR_BUY : DIR_SELL;
            int64_t off = center / 50 + rnd((uint32_t)(center / 50));
            limit_order(g, &c, a, ins, side, side == DIR_BUY ? center - off : center + off,
                        1 + rnd(5));
            drive(d, &c);
            command x = new_command(g, CMD_ORDER_CANCEL);
            memcpy(x.u.cancel.account_id, a->account_id, QAEX_ID_LEN);
            memcpy(x.u.cancel.order_id, c.u.order.order_id, QAEX_ID_LEN);
            drive(d, &x);
        }
    }
    for (uint32_t t = 0; t < opt->snap_resting; t++) {
        for (uint32_t i = 0; i < n; i++) {
            const account *a = engine_account_at(e, i);
            const instrument *ins = engine_instrument_at(e, (i + t) % 3);
            int64_t center = center_tick(ins);
            direction side = (i + t) % 2 ? DIR_BUY : DIR_SELL;
            int64_t off = center / 100 + rnd((uint32_t)(center / 50));
            limit_order(g, &c, a, ins, side, side == DIR_BUY ? center - off : center + off,
                        1 + rnd(10));
            drive(d, &c);
        }
    }
    free(perm);
}

static void run_snapshots(const options *opt, const char *base) {
    char dir[700], scratch[700];
    snprintf(dir, sizeof dir, "%s/snap", base);
    snprintf(scratch, sizeof scratch, "%s/snapwrite", base);
    gen g = {.prefix = "snap",
             .setup_accounts = opt->snap_accounts,
             .init_cash = 1e9,
             .clock_ns = T0_NS + 500000000000LL};
    driver d = {0};
    persistence_recovery info;
    d.p = open_dir(dir, false, &d.e, &info, NULL, NULL);
    engine_set_event_sink(d.e, trade_sink, &d);
    uint64_t t0 = now_ns();
    build_snapshot_state(opt, &d, &g);
    uint64_t built_seq = persistence_last_seq(d.p);
    wait_durable(d.p, built_seq);
    uint64_t t1 = now_ns();
    printf("snapshot state: built with %" PRIu64 " commands through the journal (sync) in %.1f s, "
           "%" PRIu64 " trades, %" PRIu64 " rejected\n",
           built_seq, secs_between(t0, t1), d.trades, d.rejected);
    snapshot_stats(d.e);
    if (d.rejected) status = 1;

    uint64_t th0 = now_ns();
    uint64_t hash = engine_state_hash(d.e);
    uint64_t th1 = now_ns();
    printf("engine_state_hash %016" PRIx64 " in %.1f ms\n", hash, secs_between(th0, th1) * 1e3);

    unsigned char *buf = NULL;
    size_t len = 0;
    for (int r = 0; r < 3; r++) {
        free(buf);
        uint64_t a0 = now_ns();
        if (engine_snapshot_save(d.e, &buf, &len) != 0) {
            fprintf(stderr, "engine_snapshot_save failed\n");
            exit(1);
        }
        uint64_t a1 = now_ns();
        printf("  encode (engine_snapshot_save) %d: %.1f ms, %zu bytes = %.2f MB (%.0f bytes per "
               "account)\n",
               r + 1, secs_between(a0, a1) * 1e3, len, (double)len / 1048576.0,
               (double)len / opt->snap_accounts);
    }
    for (int r = 0; r < 3; r++) {
        char err[1024];
        uint64_t a0 = now_ns();
        int rc = snapshot_write(scratch, (uint64_t)r + 1, buf, len, err, sizeof err);
        uint64_t a1 = now_ns();
        if (rc != 0) {
            fprintf(stderr, "snapshot_write: %s\n", err);
            exit(1);
        }
        printf("  file write (snapshot_write: temp file, write, fsync, rename, fsync dir) %d: "
               "%.1f ms (%.0f MB/s)\n",
               r + 1, secs_between(a0, a1) * 1e3, (double)len / 1048576.0 / secs_between(a0, a1));
    }
    int nsnap;
    uint64_t sbytes = files_in(scratch, "snapshots", &nsnap, 0);
    printf("  snapshot file: %.0f bytes each (%.2f MB, body %zu + %d header)\n",
           (double)sbytes / (nsnap ? nsnap : 1), (double)sbytes / (nsnap ? nsnap : 1) / 1048576.0,
           len, SNAPSHOT_HEADER_SIZE);
    for (int r = 0; r < 3; r++) {
        char err[1024];
        uint64_t a0 = now_ns();
        engine *l = engine_snapshot_load(buf, len, err, sizeof err);
        uint64_t a1 = now_ns();
        if (l == NULL) {
            fprintf(stderr, "engine_snapshot_load: %s\n", err);
            exit(1);
        }
        uint64_t lh = engine_state_hash(l);
        printf("  decode (engine_snapshot_load) %d: %.1f ms; hash %016" PRIx64 " %s\n", r + 1,
               secs_between(a0, a1) * 1e3, lh, lh == hash ? "equal" : "DIFFERENT");
        if (lh != hash) status = 1;
        engine_destroy(l);
    }
    free(buf);
    for (int r = 0; r < 2; r++) {
        char err[1024];
        /* one command between, so each snapshot has its own sequence number */
        command c;
        gen_next(&g, d.e, &c);
        drive(&d, &c);
        uint64_t a0 = now_ns();
        int rc = persistence_snapshot(d.p, d.e, err, sizeof err);
        uint64_t a1 = now_ns();
        if (rc != 0) {
            fprintf(stderr, "persistence_snapshot: %s\n", err);
            exit(1);
        }
        printf("  persistence_snapshot %d (encode + hand-off + durable file; the engine thread "
               "waits): %.1f ms\n",
               r + 1, secs_between(a0, a1) * 1e3);
    }
    /* the periodic snapshot: a forked child encodes, the engine thread pays the fork */
    for (int r = 0; r < 3; r++) {
        command c;
        gen_next(&g, d.e, &c);
        drive(&d, &c);
        uint64_t a0 = now_ns();
        int rc = persistence_snapshot_start(d.p, d.e);
        uint64_t a1 = now_ns();
        bool ok = rc == 0 && persistence_snapshot_wait(d.p);
        uint64_t a2 = now_ns();
        if (!ok) {
            fprintf(stderr, "persistence_snapshot_start: failed\n");
            exit(1);
        }
        printf("  forked snapshot %d: the engine thread waits %.2f ms (fork); on disk after "
               "%.1f ms\n",
               r + 1, secs_between(a0, a1) * 1e3, secs_between(a0, a2) * 1e3);
    }
    /* the tail: the mixed stream over these accounts */
    uint64_t snap_seq = persistence_last_seq(d.p);
    for (size_t i = 0; i < opt->tail; i++) {
        command c;
        gen_next(&g, d.e, &c);
        drive(&d, &c);
    }
    wait_durable(d.p, persistence_last_seq(d.p));
    uint64_t final_hash = engine_state_hash(d.e);
    uint64_t last = persistence_last_seq(d.p);
    persistence_close(d.p, NULL);
    engine_destroy(d.e);
    printf("recovery from the snapshot at seq %" PRIu64 " plus %" PRIu64 " journal records:\n",
           snap_seq, last - snap_seq);
    for (int r = 0; r < opt->recoveries; r++) {
        char label[64];
        snprintf(label, sizeof label, "  snapshot + tail %d", r + 1);
        time_recovery(label, dir, final_hash, last - snap_seq);
    }
    files_in(dir, "journal", NULL, 1);
    files_in(dir, "snapshots", NULL, 1);
    time_recovery("  snapshot + tail (files evicted from the page cache)", dir, final_hash,
                  last - snap_seq);

    /* the same state from the whole journal, with the snapshots set aside */
    char snaps[800], aside[800], err[1024];
    snprintf(snaps, sizeof snaps, "%s/snapshots", dir);
    snprintf(aside, sizeof aside, "%s/snapshots.aside", dir);
    uint64_t records = 0;
    if (journal_replay(dir, 0, count_record, &records, err, sizeof err) != 0 || records != last) {
        printf("  (no replay without the snapshot: the journal does not start at 1)\n");
        return;
    }
    if (rename(snaps, aside) != 0) {
        printf("  (cannot set the snapshots aside: %s)\n", strerror(errno));
        return;
    }
    for (int r = 0; r < opt->recoveries; r++) {
        char label[64];
        snprintf(label, sizeof label, "  whole journal, no snapshot %d", r + 1);
        time_recovery(label, dir, final_hash, last);
    }
    rename(aside, snaps);
}

/* ---- part 4: acknowledgement latency ---- */

typedef struct ack_run {
    uint64_t first_seq, count;
    uint64_t *logged;  /* per command: just before persistence_log */
    uint64_t *due;     /* per command: its scheduled time */
    uint64_t *durable; /* per command: when the notify callback saw it durable */
    uint64_t *served;  /* per command: persistence_log + engine_apply returned */
    _Atomic uint64_t done;
} ack_run;

static ack_run *_Atomic ack_current;

static void on_durable(void *ctx, uint64_t durable_seq) {
    (void)ctx;
    ack_run *r = atomic_load(&ack_current);
    if (r == NULL || durable_seq < r->first_seq) return;
    uint64_t t = now_ns();
    uint64_t upto = durable_seq - r->first_seq + 1, done = atomic_load(&r->done);
    if (upto > r->count) upto = r->count;
    for (uint64_t i = done; i < upto; i++)
        r->durable[i] = t;
    if (upto > done) atomic_store(&r->done, upto);
}

static void run_ack_latency(const options *opt, const char *base, const command *cmds, size_t n) {
    char dir[700];
    snprintf(dir, sizeof dir, "%s/ack", base);
    size_t count = (size_t)(opt->rate * opt->seconds);
    if (count > n) count = n;
    ack_run r;
    memset(&r, 0, sizeof r);
    r.count = count;
    r.logged = calloc(count, sizeof *r.logged);
    r.due = calloc(count, sizeof *r.due);
    r.durable = calloc(count, sizeof *r.durable);
    r.served = calloc(count, sizeof *r.served);
    if (!r.logged || !r.due || !r.durable || !r.served) exit(1);
    driver d = {0};
    persistence_recovery info;
    d.p = open_dir(dir, opt->ack_async, &d.e, &info, on_durable, NULL);
    r.first_seq = persistence_last_seq(d.p) + 1;
    atomic_store(&ack_current, &r);
    char psi_before[32];
    snprintf(psi_before, sizeof psi_before, "%s", cpu_pressure());
    double gap = 1e9 / opt->rate;
    uint64_t late = 0;
    uint64_t s0 = atomic_load(&sync_calls);
    uint64_t start = now_ns() + 1000000;
    for (size_t i = 0; i < count; i++) {
        uint64_t due = start + (uint64_t)((double)i * gap);
        uint64_t t = now_ns();
        if (t > due + 10000) late++;
        if (opt->pace_sleep && t < due) {
            struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
            }
            t = now_ns();
        }
        while (t < due)
            t = now_ns();
        r.due[i] = due;
        r.logged[i] = t;
        drive(&d, &cmds[i]);
        r.served[i] = now_ns();
    }
    uint64_t end = now_ns();
    wait_durable(d.p, persistence_last_seq(d.p));
    while (atomic_load(&r.done) < count) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    double secs = secs_between(start, end);
    atomic_store(&ack_current, NULL);
    printf("ack latency, durability %s, pacing %s: offered %.0f commands/s for %.1f s, achieved "
           "%.0f/s, %.2f%% logged more than 10 us late; CPU pressure (some, avg10) %s before, "
           "%s after\n",
           opt->ack_async ? "async" : "sync", opt->pace_sleep ? "sleep" : "busy-wait", opt->rate,
           opt->seconds, (double)count / secs, 100.0 * (double)late / (double)count, psi_before,
           cpu_pressure());
    uint64_t *lat = malloc(count * sizeof *lat);
    if (lat == NULL) exit(1);
    /* second by second, to show when the tail happened */
    size_t per_sec = (size_t)opt->rate;
    for (size_t from = 0; from < count; from += per_sec) {
        size_t m = count - from < per_sec ? count - from : per_sec;
        for (size_t i = 0; i < m; i++)
            lat[i] = r.durable[from + i] - r.logged[from + i];
        char label[64];
        snprintf(label, sizeof label, "  second %zu: persistence_log -> durable",
                 from / per_sec + 1);
        print_dist(label, lat, m);
    }
    for (size_t i = 0; i < count; i++)
        lat[i] = r.durable[i] - r.logged[i];
    print_dist("  persistence_log -> durable", lat, count);
    for (size_t i = 0; i < count; i++)
        lat[i] = r.durable[i] - r.due[i];
    print_dist("  due time -> durable      ", lat, count);
    for (size_t i = 0; i < count; i++)
        lat[i] = r.served[i] - r.logged[i];
    print_dist("  engine thread: persistence_log + engine_apply", lat, count);
    uint64_t syncs = atomic_load(&sync_calls) - s0;
    printf("  %" PRIu64 " fdatasyncs, %.1f commands per fdatasync\n", syncs,
           syncs ? (double)count / (double)syncs : 0.0);
    uint64_t s1 = atomic_load(&sync_calls);
    persistence_close(d.p, NULL);
    print_syncs("  ", s0, s1, secs);
    free(lat);
    engine_destroy(d.e);
    free(r.logged);
    free(r.due);
    free(r.durable);
    free(r.served);
}

/* ---- main ---- */

static void usage(void) {
    fprintf(stderr,
            "usage: recovery_bench [--parts 1234] [--commands N] [--seed S] [--dir BASE] [--keep]\n"
            "         [--recoveries R] [--snap-accounts A] [--snap-trades T] [--snap-cancelled C]\n"
            "         [--snap-resting O] [--tail K] [--rate R] [--seconds S] [--ack-async]\n"
            "         [--pace-sleep] [--modes nsa]\n");
    exit(2);
}

int main(int argc, char **argv) {
    options opt = {.commands = 2000000,
                   .base = "/tmp",
                   .parts = "1234",
                   .recoveries = 3,
                   .snap_accounts = 10000,
                   .snap_trades = 50,
                   .snap_cancelled = 10,
                   .snap_resting = 4,
                   .tail = 10000,
                   .rate = 50000,
                   .seconds = 5,
                   .modes = "nsa"};
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "--keep") == 0) {
            opt.keep = true;
            continue;
        }
        if (strcmp(flag, "--ack-async") == 0) {
            opt.ack_async = true;
            continue;
        }
        if (strcmp(flag, "--pace-sleep") == 0) {
            opt.pace_sleep = true;
            continue;
        }
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (strcmp(flag, "--commands") == 0)
            opt.commands = strtoull(v, NULL, 10);
        else if (strcmp(flag, "--seed") == 0)
            rng_state = strtoull(v, NULL, 0) | 1;
        else if (strcmp(flag, "--dir") == 0)
            snprintf(opt.base, sizeof opt.base, "%s", v);
        else if (strcmp(flag, "--modes") == 0)
            snprintf(opt.modes, sizeof opt.modes, "%s", v);
        else if (strcmp(flag, "--parts") == 0)
            snprintf(opt.parts, sizeof opt.parts, "%s", v);
        else if (strcmp(flag, "--recoveries") == 0)
            opt.recoveries = atoi(v);
        else if (strcmp(flag, "--snap-accounts") == 0)
            opt.snap_accounts = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(flag, "--snap-trades") == 0)
            opt.snap_trades = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(flag, "--snap-cancelled") == 0)
            opt.snap_cancelled = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(flag, "--snap-resting") == 0)
            opt.snap_resting = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(flag, "--tail") == 0)
            opt.tail = strtoull(v, NULL, 10);
        else if (strcmp(flag, "--rate") == 0)
            opt.rate = strtod(v, NULL);
        else if (strcmp(flag, "--seconds") == 0)
            opt.seconds = strtod(v, NULL);
        else
            usage();
    }
    if (opt.commands < 2000 || opt.rate <= 0 || opt.seconds <= 0 || opt.snap_accounts < 2 ||
        opt.recoveries < 0)
        usage();
    bool p1 = strchr(opt.parts, '1') != NULL, p2 = strchr(opt.parts, '2') != NULL,
         p3 = strchr(opt.parts, '3') != NULL, p4 = strchr(opt.parts, '4') != NULL;

    char base[600];
    snprintf(base, sizeof base, "%s/recovery_bench.XXXXXX", opt.base);
    if (mkdtemp(base) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", base, strerror(errno));
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    print_machine(base);

    size_t n = opt.commands;
    size_t ack_n = (size_t)(opt.rate * opt.seconds);
    size_t total = n > ack_n ? n : ack_n;
    command *cmds = NULL;
    uint64_t gen_hash = 0;
    if (p1 || p2 || p4) {
        cmds = malloc(total * sizeof *cmds);
        if (cmds == NULL) {
            fprintf(stderr, "out of memory for %zu commands\n", total);
            return 1;
        }
        gen g = {.prefix = "acct", .setup_accounts = 1000, .init_cash = 1e10, .clock_ns = T0_NS};
        engine_config cfg = bench_config();
        driver d = {.e = engine_create(&cfg)};
        engine_set_event_sink(d.e, trade_sink, &d);
        uint64_t g0 = now_ns();
        uint64_t hash_at_n = 0;
        for (size_t i = 0; i < total; i++) {
            gen_next(&g, d.e, &cmds[i]);
            drive(&d, &cmds[i]);
            if (i + 1 == n) hash_at_n = engine_state_hash(d.e);
        }
        uint64_t g1 = now_ns();
        gen_hash = hash_at_n;
        uint64_t bytes = 0;
        unsigned char enc[2 * sizeof(command) + 16];
        uint64_t e0 = now_ns();
        for (size_t i = 0; i < total; i++)
            bytes += command_encode(&cmds[i], enc, sizeof enc);
        uint64_t e1 = now_ns();
        printf("workload: %zu commands generated in %.1f s (%zu bytes each in memory, %.1f "
               "encoded on average, command_encode %.0f ns each): 3 instruments, %" PRIu64
               " account opens (1,000 first), "
               "%" PRIu64 " deposits, %" PRIu64 " order inserts (%" PRIu64 " crossing), "
               "%" PRIu64 " cancels; %" PRIu64 " trades; %" PRIu64 " rejected; %u accounts at "
               "the end\n",
               total, secs_between(g0, g1), sizeof(command), (double)bytes / (double)total,
               (double)(e1 - e0) / (double)total, g.opens, g.deposits, g.inserts, g.crossing,
               g.cancels, d.trades, d.rejected, engine_account_count(d.e));
        engine_destroy(d.e);
    }

    if (p1 || p2) {
        char sync_dir[700], async_dir[700];
        snprintf(sync_dir, sizeof sync_dir, "%s/sync", base);
        snprintf(async_dir, sizeof async_dir, "%s/async", base);
        printf("\n== 1. throughput: persistence_log + engine_apply on one thread ==\n");
        if (strchr(opt.modes, 'n'))
            run_throughput("engine alone (no journal)", NULL, false, cmds, n, gen_hash);
        uint64_t h = 0;
        if (strchr(opt.modes, 's') || p2)
            h = run_throughput("durability sync ", sync_dir, false, cmds, n, gen_hash);
        if (p1 && strchr(opt.modes, 'a')) {
            run_throughput("durability async", async_dir, true, cmds, n, gen_hash);
            remove_tree(async_dir);
        }
        if (p2) {
            printf("\n== 2. recovery: persistence_open replays the whole journal ==\n");
            run_recovery(&opt, sync_dir, cmds, n, h);
        }
        if (!opt.keep) remove_tree(sync_dir);
    }
    if (p3) {
        printf("\n== 3. snapshots: %u accounts ==\n", opt.snap_accounts);
        run_snapshots(&opt, base);
    }
    if (p4) {
        printf("\n== 4. acknowledgement latency added by durability ==\n");
        run_ack_latency(&opt, base, cmds, total);
    }
    free(cmds);
    printf("\npeak RSS %.0f MB\n", peak_rss_mb());
    if (opt.keep)
        printf("kept %s\n", base);
    else
        remove_tree(base);
    if (status) printf("FAILED: a state hash or a replay count did not match\n");
    return status;
}
