/* The history feed (see history_feed.h): a replica engine on its own thread, fed by journaled
 * commands, whose events become history records. */
#define _GNU_SOURCE /* SCHED_IDLE */
#include "server/history_feed.h"

#include "server/spsc.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define FEED_RING_DEFAULT 16384
#define DURABLE_WAIT_STOP_NS (5 * 1000000000LL) /* at stop: how long to wait for the journal */
#define RETENTION_EVERY_NS (3600 * 1000000000LL)
/* The feed and the SQLite writer run at a lower priority than the engine thread: when the cores
 * are all busy the engine keeps trading at full speed and the history catches up in the pauses
 * (the journal holds whatever the ring could not). */
#define HISTORY_NICE 10

/* An account settled by the command being applied. */
typedef struct settled_account {
    uint32_t slot;
    account_settlement st;
} settled_account;

typedef struct feed_item {
    uint64_t seq;
    command cmd;
} feed_item;

struct history_feed {
    char dir[1024];
    char db_path[1100];
    engine_config engine_cfg;
    persistence *p;
    uint32_t retention_days;
    int64_t snapshot_interval_ns; /* account snapshots by command time; 0: none */
    history_store *h;
    spsc ring;
    pthread_t thread;
    bool started;
    atomic_bool stop;

    /* the feed thread's own */
    engine *replica;
    uint64_t applied;   /* the last command applied to the replica */
    uint64_t skip_upto; /* records of commands up to this are in the file already */
    uint64_t cur_seq;   /* the command being applied */
    int64_t cur_ts_ns;  /* its time */
    int64_t next_interval_ns;
    uint64_t catch_upto; /* journal replay: stop after this */
    uint64_t seen_dropped;
    int64_t next_retention_ns;
    bool gap_warned;
    int64_t next_gap_retry_ns;
    settled_account *settled;
    size_t n_settled, cap_settled;

    /* shared */
    _Atomic uint64_t dropped;       /* pushes refused by a full ring (engine thread) */
    _Atomic uint64_t applied_pub;   /* applied, for other threads */
    _Atomic uint64_t committed_pub; /* history_last_seq, cached */
    _Atomic uint64_t from_ring, from_journal, catch_ups, gaps, gap_commands, submit_waits,
        submit_failures;
    _Atomic uint64_t bootstrap_seq;
    _Atomic bool bootstrapped;
    _Atomic bool bootstrap_from_snapshot;
    pthread_mutex_t msg_mu;
    char last_warning[600];
};

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void warn(history_feed *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(history_feed *f, const char *fmt, ...) {
    char msg[sizeof f->last_warning];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "qaexchange-server: warning: history: %s\n", msg);
    pthread_mutex_lock(&f->msg_mu);
    memcpy(f->last_warning, msg, sizeof msg);
    pthread_mutex_unlock(&f->msg_mu);
}

static void copy(char *dst, size_t cap, const char *src) {
    size_t n = src ? strnlen(src, cap - 1) : 0;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- events -> records ---- */

/* Each submit waits for room in the writer's queue: back-pressure on this thread only. */
/* A full queue is waited out; any other refusal loses the record, which is counted and said
 * (the store is closing, or out of memory) rather than dropped silently. */
#define SUBMIT(fn, f, rec)                                                                         \
    do {                                                                                           \
        int submit_rc_;                                                                            \
        while ((submit_rc_ = fn((f)->h, (rec))) == HISTORY_EFULL)                                  \
            atomic_fetch_add(&(f)->submit_waits, 1);                                               \
        if (submit_rc_ != HISTORY_OK) submit_failed(f, #fn, submit_rc_);                           \
    } while (0)

static void submit_failed(history_feed *f, const char *what, int rc) {
    if (atomic_fetch_add(&f->submit_failures, 1) == 0)
        warn(f, "%s failed (%s) at command %llu: the record is not in the history", what,
             rc == HISTORY_ECLOSED  ? "the store is closing"
             : rc == HISTORY_ENOMEM ? "out of memory"
                                    : "error",
             (unsigned long long)f->cur_seq);
}

static void put_account(history_feed *f, const account *a, int64_t ts_ns, const char *day,
                        const char *reason, const account_settlement *st) {
    account_view v;
    engine_account_view(f->replica, a, &v);
    history_account_rec r;
    memset(&r, 0, sizeof r);
    copy(r.account_id, sizeof r.account_id, a->account_id);
    r.ts_ns = ts_ns;
    copy(r.trading_day, sizeof r.trading_day, day);
    r.balance = st ? st->balance : v.balance;
    r.available = v.available;
    r.margin = v.margin;
    r.position_profit = st ? st->position_profit : v.position_profit;
    r.close_profit = st ? st->close_profit : a->close_profit;
    r.commission = st ? st->commission : a->commission;
    r.risk_ratio = st ? st->risk_ratio : v.risk_ratio;
    copy(r.reason, sizeof r.reason, reason);
    r.journal_seq = f->cur_seq;
    SUBMIT(history_submit_account, f, &r);
}

static void on_event(void *ctx, const engine_event *ev) {
    history_feed *f = ctx;
    if (f->cur_seq <= f->skip_upto) return; /* in the file already */
    const engine *e = f->replica;
    switch (ev->type) {
        case EV_ORDER: {
            const order *o = ev->order;
            history_order_rec r;
            memset(&r, 0, sizeof r);
            copy(r.order_id, sizeof r.order_id, o->order_id);
            copy(r.account_id, sizeof r.account_id, engine_account_of(e, o->account)->account_id);
            copy(r.instrument_id, sizeof r.instrument_id,
                 engine_instrument_of(e, o->instrument)->spec.instrument_id);
            copy(r.direction, sizeof r.direction, direction_name(o->direction));
            copy(r.offset, sizeof r.offset, offset_name(o->offset));
            copy(r.price_type, sizeof r.price_type, price_type_name(o->price_type));
            r.limit_price = o->limit_price;
            r.volume_orign = o->volume_orign;
            r.volume_left = o->volume_left;
            copy(r.status, sizeof r.status, order_status_name(o->status));
            r.ts_ns = o->update_ns ? o->update_ns : f->cur_ts_ns;
            r.journal_seq = f->cur_seq;
            SUBMIT(history_submit_order, f, &r);
            break;
        }
        case EV_TRADE: {
            const trade *t = ev->trade;
            history_trade_rec r;
            memset(&r, 0, sizeof r);
            order_format_seq('T', t->seq, r.trade_id, sizeof r.trade_id);
            copy(r.order_id, sizeof r.order_id, t->order_id);
            order_format_seq('M', t->match_seq, r.exchange_trade_id, sizeof r.exchange_trade_id);
            copy(r.account_id, sizeof r.account_id, engine_account_of(e, t->account)->account_id);
            copy(r.instrument_id, sizeof r.instrument_id,
                 engine_instrument_of(e, t->instrument)->spec.instrument_id);
            copy(r.direction, sizeof r.direction, direction_name(t->direction));
            copy(r.offset, sizeof r.offset, offset_name(t->offset));
            r.price = t->price;
            r.volume = t->volume;
            r.commission = t->commission;
            r.close_profit = t->close_profit;
            r.is_taker = t->is_taker;
            r.is_liquidation = t->is_liquidation;
            engine_trade_exchange_order_id(e, t, r.exchange_order_id, sizeof r.exchange_order_id);
            r.ts_ns = t->trade_ns;
            copy(r.trading_day, sizeof r.trading_day, engine_trading_day(e));
            r.journal_seq = f->cur_seq;
            SUBMIT(history_submit_trade, f, &r);
            break;
        }
        case EV_ACCOUNT_SETTLED: {
            /* taken once the command is done: the account is re-margined after this event */
            if (f->n_settled == f->cap_settled) {
                size_t cap = f->cap_settled ? f->cap_settled * 2 : 64;
                settled_account *p = realloc(f->settled, cap * sizeof *p);
                if (p == NULL) break;
                f->settled = p;
                f->cap_settled = cap;
            }
            settled_account *sa = &f->settled[f->n_settled++];
            sa->slot = (uint32_t)(ev->settlement->account - engine_account_at(e, 0));
            sa->st = *ev->settlement;
            sa->st.account = NULL;
            break;
        }
        case EV_SETTLEMENT: {
            const settlement_result *sr = ev->settlement_result;
            json_t *list = json_array();
            for (uint32_t i = 0; list && i < sr->force_closed_count; i++)
                json_array_append_new(list, json_string(sr->force_closed_accounts[i]));
            char *text = list ? json_dumps(list, JSON_COMPACT) : NULL;
            json_decref(list);
            history_settlement_rec r;
            memset(&r, 0, sizeof r);
            copy(r.settlement_date, sizeof r.settlement_date, sr->settlement_date);
            r.ts_ns = sr->ts_ns ? sr->ts_ns : f->cur_ts_ns;
            r.total_accounts = sr->total_accounts;
            r.settled_accounts = sr->settled_accounts;
            r.failed_accounts = sr->failed_accounts;
            r.force_closed_accounts = text;
            r.total_commission = sr->total_commission;
            r.total_profit = sr->total_profit;
            r.journal_seq = f->cur_seq;
            SUBMIT(history_submit_settlement, f, &r);
            free(text);
            break;
        }
        case EV_TRANSFER: {
            const capital_transfer *t = ev->transfer;
            history_transfer_rec r;
            memset(&r, 0, sizeof r);
            copy(r.txn_id, sizeof r.txn_id, t->txn_id);
            copy(r.account_id, sizeof r.account_id, t->account->account_id);
            copy(r.kind, sizeof r.kind, t->is_deposit ? "deposit" : "withdraw");
            r.amount = t->amount;
            r.balance_before = t->balance_before;
            r.balance_after = t->balance_after;
            copy(r.status, sizeof r.status, "completed");
            copy(r.method, sizeof r.method, "bank");
            r.ts_ns = t->ts_ns ? t->ts_ns : f->cur_ts_ns;
            copy(r.trading_day, sizeof r.trading_day, engine_trading_day(e));
            r.journal_seq = f->cur_seq;
            SUBMIT(history_submit_transfer, f, &r);
            break;
        }
        case EV_TICK: {
            const instrument *ins = ev->instrument;
            history_tick_rec r;
            memset(&r, 0, sizeof r);
            copy(r.instrument_id, sizeof r.instrument_id, ins->spec.instrument_id);
            r.ts_ns = f->cur_ts_ns;
            r.price = ins->stats.last_price;
            r.volume = ins->stats.volume;
            r.open_interest = ins->stats.open_interest;
            r.journal_seq = f->cur_seq;
            SUBMIT(history_submit_tick, f, &r);
            break;
        }
        case EV_KLINE: {
            const kline *k = ev->kline;
            history_kline_rec r;
            memset(&r, 0, sizeof r);
            copy(r.instrument_id, sizeof r.instrument_id, ev->instrument->spec.instrument_id);
            r.period_s = kline_period_seconds(ev->kline_period);
            r.start_ms = k->start_ms;
            r.open = k->open;
            r.high = k->high;
            r.low = k->low;
            r.close = k->close;
            r.volume = k->volume;
            r.amount = k->amount;
            r.open_oi = k->open_oi;
            r.close_oi = k->close_oi;
            r.journal_seq = f->cur_seq;
            SUBMIT(history_submit_kline, f, &r);
            break;
        }
        default:
            break;
    }
}

/* ---- the replica ---- */

static void interval_reset(history_feed *f) {
    if (f->snapshot_interval_ns <= 0) return;
    int64_t clock_ns = engine_clock_ms(f->replica) * 1000000LL;
    f->next_interval_ns = (clock_ns / f->snapshot_interval_ns + 1) * f->snapshot_interval_ns;
}

/* Account snapshots at every interval boundary the command clock passed: decided by command
 * times alone, so a replay after a crash takes the same ones. */
static void interval_snapshots(history_feed *f, int64_t ts_ns) {
    if (f->snapshot_interval_ns <= 0 || ts_ns < f->next_interval_ns) return;
    int64_t at = ts_ns / f->snapshot_interval_ns * f->snapshot_interval_ns;
    f->next_interval_ns = at + f->snapshot_interval_ns;
    if (f->cur_seq <= f->skip_upto) return;
    const engine *e = f->replica;
    for (uint32_t i = 0; i < engine_account_count(e); i++)
        put_account(f, engine_account_at(e, i), at, engine_trading_day(e), "interval", NULL);
}

static void apply(history_feed *f, uint64_t seq, const command *cmd) {
    f->cur_seq = seq;
    f->cur_ts_ns = cmd->ts_ns;
    engine_result res;
    f->n_settled = 0;
    engine_apply(f->replica, cmd, &res); /* a rejection is replayed as the same rejection */
    for (size_t i = 0; i < f->n_settled; i++) {
        const settled_account *sa = &f->settled[i];
        put_account(f, engine_account_at(f->replica, sa->slot), f->cur_ts_ns, sa->st.date,
                    "settlement", &sa->st);
    }
    f->n_settled = 0;
    interval_snapshots(f, cmd->ts_ns);
    if (seq > f->skip_upto)
        while (history_submit_mark(f->h, seq) == HISTORY_EFULL)
            atomic_fetch_add(&f->submit_waits, 1);
    f->applied = seq;
    atomic_store(&f->applied_pub, seq);
}

static void set_replica(history_feed *f, engine *e, uint64_t seq) {
    engine_destroy(f->replica);
    f->replica = e;
    engine_set_event_sink(e, on_event, f);
    f->applied = seq;
    atomic_store(&f->applied_pub, seq);
    interval_reset(f);
}

static int replay_one(void *ctx, uint64_t seq, const void *data, size_t len) {
    history_feed *f = ctx;
    if (seq <= f->applied) return 0;
    if (seq > f->catch_upto) return 2;
    if (seq != f->applied + 1) return 3;
    command cmd;
    if (command_decode(data, len, &cmd) != 0) return 4;
    apply(f, seq, &cmd);
    atomic_fetch_add(&f->from_journal, 1);
    return 0;
}

/* The journal no longer reaches back to the replica's position: start again from the newest
 * snapshot, counting the commands in between as a gap. */
static bool rebase_on_latest_snapshot(history_feed *f, const char *why) {
    uint64_t seq = 0;
    unsigned char *bytes = NULL;
    size_t len = 0;
    char err[1024] = "";
    engine *e = NULL;
    if (snapshot_load_latest(f->dir, &seq, &bytes, &len, err, sizeof err) == 1 && seq > f->applied)
        e = engine_snapshot_load(bytes, len, err, sizeof err);
    free(bytes);
    if (e == NULL) {
        if (!f->gap_warned)
            warn(f,
                 "the journal no longer holds the commands after %llu (%s) and no newer snapshot "
                 "can take their place: the history stops there until they are found",
                 (unsigned long long)f->applied, why);
        f->gap_warned = true;
        return false;
    }
    warn(f,
         "the journal no longer holds commands %llu..%llu (%s): their records are missing from "
         "the history, which continues from the snapshot at %llu",
         (unsigned long long)f->applied + 1, (unsigned long long)seq, why, (unsigned long long)seq);
    atomic_fetch_add(&f->gaps, 1);
    atomic_fetch_add(&f->gap_commands, seq - f->applied);
    if (seq > f->skip_upto) {
        /* the commands skipped leave no records; the writer may move past them */
        while (history_submit_mark(f->h, seq) == HISTORY_EFULL)
            atomic_fetch_add(&f->submit_waits, 1);
    }
    set_replica(f, e, seq);
    return true;
}

/* Applies the journal's commands after the replica's position, up to upto (durable). */
static bool catch_up(history_feed *f, uint64_t upto) {
    if (upto <= f->applied) return true;
    atomic_fetch_add(&f->catch_ups, 1);
    for (int attempt = 0; attempt < 3; attempt++) {
        char err[1024] = "";
        f->catch_upto = upto;
        int rc = journal_replay(f->dir, f->applied, replay_one, f, err, sizeof err);
        if (f->applied >= upto) {
            f->gap_warned = false;
            return true;
        }
        if (rc == 4) {
            warn(f, "journal record %llu does not decode", (unsigned long long)f->applied + 1);
            return false;
        }
        if (attempt == 0) { /* perhaps a segment being rotated: look once more */
            sleep_us(10000);
            continue;
        }
        if (attempt == 1 && !rebase_on_latest_snapshot(f, err[0] ? err : "journal replay stopped"))
            return false;
    }
    return f->applied >= upto;
}

static void bootstrap(history_feed *f) {
    uint64_t h = history_last_seq(f->h);
    f->skip_upto = h;
    engine *e = NULL;
    uint64_t seq = 0;
    if (h > 0) {
        unsigned char *bytes = NULL;
        size_t len = 0;
        char err[1024] = "";
        int found =
            persistence_snapshot_load_at_most(f->dir, h, &seq, &bytes, &len, err, sizeof err);
        if (found == 1) e = engine_snapshot_load(bytes, len, err, sizeof err);
        free(bytes);
        if (found < 0 || (found == 1 && e == NULL))
            warn(f, "snapshot for the history's position %llu unusable: %s", (unsigned long long)h,
                 err);
        if (e == NULL) seq = 0;
    }
    if (e == NULL) e = engine_create(&f->engine_cfg);
    if (e == NULL) {
        warn(f, "out of memory creating the replica engine");
        return;
    }
    atomic_store(&f->bootstrap_seq, seq);
    atomic_store(&f->bootstrap_from_snapshot, seq > 0);
    set_replica(f, e, seq);
    catch_up(f, persistence_durable_seq(f->p));
    atomic_store(&f->bootstrapped, true);
}

/* Waits until the journal holds seq durably; false when stopping took too long. */
static bool wait_durable(history_feed *f, uint64_t seq) {
    int64_t stop_deadline = 0;
    long pause = 20;
    while (persistence_durable_seq(f->p) < seq) {
        if (atomic_load(&f->stop)) {
            if (stop_deadline == 0) stop_deadline = mono_ns() + DURABLE_WAIT_STOP_NS;
            if (mono_ns() > stop_deadline) return false;
        }
        sleep_us(pause);
        if (pause < 500) pause *= 2;
    }
    return true;
}

static void maintenance(history_feed *f) {
    if (f->retention_days == 0) return;
    int64_t now = mono_ns();
    if (now < f->next_retention_ns) return;
    f->next_retention_ns = now + RETENTION_EVERY_NS;
    int64_t before = wall_ns() - (int64_t)f->retention_days * 86400LL * 1000000000LL;
    int64_t n = history_prune(f->h, before);
    if (n > 0) history_checkpoint(f->h, HISTORY_VACUUM_INCREMENTAL);
}

static void lower_priority(void) {
    /* Linux: SCHED_IDLE runs the thread only on a core nothing else wants; the policy and the
     * nice value belong to the thread, and threads it creates inherit them */
    const char *mode = getenv("QAEX_HISTORY_SCHED");
    if (mode == NULL || strcmp(mode, "nice") != 0) {
        struct sched_param sp = {0};
        if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) == 0) return;
    }
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), HISTORY_NICE) != 0) {
        /* not fatal: the history then competes with the engine as an equal */
    }
}

typedef struct open_call {
    const char *path;
    const history_options *opts;
    char *err;
    size_t errlen;
    history_store *h;
} open_call;

/* history_open on a thread of lower priority, so the writer thread it starts inherits it. */
static void *open_store(void *arg) {
    open_call *c = arg;
    lower_priority();
    c->h = history_open(c->path, c->opts, c->err, c->errlen);
    return NULL;
}

static void *feed_main(void *arg) {
    history_feed *f = arg;
    lower_priority();
    bootstrap(f);
    if (f->replica == NULL) return NULL;
    feed_item *it = malloc(sizeof *it);
    if (it == NULL) return NULL;
    int idle = 0;
    for (;;) {
        atomic_store(&f->committed_pub, history_last_seq(f->h));
        if (spsc_pop(&f->ring, it)) {
            idle = 0;
            if (it->seq <= f->applied) continue; /* caught up from the journal already */
            if (it->seq != f->applied + 1) {
                /* commands the ring dropped: read everything durable back from the journal in
                 * one pass (a replay scans from the start of a segment: one per gap would cost
                 * quadratic time while the ring keeps overflowing) */
                if (!wait_durable(f, it->seq - 1)) break;
                if (!catch_up(f, persistence_durable_seq(f->p))) continue;
            }
            if (it->seq != f->applied + 1) continue;
            if (!wait_durable(f, it->seq)) break;
            apply(f, it->seq, &it->cmd);
            atomic_fetch_add(&f->from_ring, 1);
            continue;
        }
        /* the ring is empty: commands it dropped are read back from the journal */
        uint64_t dropped = atomic_load(&f->dropped);
        if (dropped != f->seen_dropped || (f->gap_warned && mono_ns() > f->next_gap_retry_ns)) {
            f->next_gap_retry_ns = mono_ns() + 1000000000LL;
            f->seen_dropped = dropped;
            catch_up(f, persistence_durable_seq(f->p));
        }
        if (atomic_load(&f->stop)) {
            if (spsc_size(&f->ring) == 0) {
                catch_up(f, persistence_durable_seq(f->p));
                break;
            }
            continue;
        }
        maintenance(f);
        idle++;
        sleep_us(idle < 200 ? 50 : idle < 2000 ? 200 : 1000);
    }
    free(it);
    atomic_store(&f->committed_pub, history_last_seq(f->h));
    return NULL;
}

/* ---- the interface ---- */

static void log_hook(void *ctx, uint64_t seq, const command *cmd) {
    history_feed_push(ctx, seq, cmd);
}

static uint64_t prune_guard(void *ctx) {
    return history_feed_committed_seq(ctx);
}

history_feed *history_feed_start(const history_feed_options *o, char *err, size_t errlen) {
    history_feed *f = calloc(1, sizeof *f);
    if (f == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(f->dir, sizeof f->dir, "%s", o->data_dir);
    snprintf(f->db_path, sizeof f->db_path, "%s/history.db", o->data_dir);
    f->engine_cfg = *o->engine_cfg;
    f->p = o->p;
    f->retention_days = o->retention_days;
    f->snapshot_interval_ns = (int64_t)o->account_snapshot_secs * 1000000000LL;
    pthread_mutex_init(&f->msg_mu, NULL);
    size_t cap = o->ring_capacity ? o->ring_capacity : FEED_RING_DEFAULT;
    if (spsc_init(&f->ring, cap, sizeof(feed_item)) != 0) {
        snprintf(err, errlen, "out of memory for the history ring");
        pthread_mutex_destroy(&f->msg_mu);
        free(f);
        return NULL;
    }
    /* the history may not run ahead of the journal it is rebuilt from */
    history_options so;
    if (o->store_opts)
        so = *o->store_opts;
    else
        memset(&so, 0, sizeof so);
    so.rewind = true;
    so.rewind_to = persistence_last_seq(f->p);
    open_call oc = {f->db_path, &so, err, errlen, NULL};
    pthread_t opener;
    if (pthread_create(&opener, NULL, open_store, &oc) == 0)
        pthread_join(opener, NULL);
    else
        open_store(&oc);
    f->h = oc.h;
    if (f->h == NULL) {
        spsc_free(&f->ring);
        pthread_mutex_destroy(&f->msg_mu);
        free(f);
        return NULL;
    }
    atomic_store(&f->committed_pub, history_last_seq(f->h));
    if (history_rewound_from(f->h))
        warn(f,
             "the history held commands %llu..%llu, after the end of the journal: their records "
             "are removed (the journal was cut, or lost an unsynced tail)",
             (unsigned long long)so.rewind_to + 1, (unsigned long long)history_rewound_from(f->h));
    if (pthread_create(&f->thread, NULL, feed_main, f) != 0) {
        snprintf(err, errlen, "cannot start the history thread");
        history_close(f->h);
        spsc_free(&f->ring);
        pthread_mutex_destroy(&f->msg_mu);
        free(f);
        return NULL;
    }
    f->started = true;
    persistence_set_log_hook(f->p, log_hook, f);
    persistence_set_prune_guard(f->p, prune_guard, f);
    return f;
}

void history_feed_stop(history_feed *f) {
    if (f == NULL) return;
    persistence_set_log_hook(f->p, NULL, NULL);
    persistence_set_prune_guard(f->p, NULL, NULL);
    atomic_store(&f->stop, true);
    if (f->started) pthread_join(f->thread, NULL);
    size_t lost = history_close(f->h);
    if (lost)
        fprintf(stderr, "qaexchange-server: warning: history: %zu records not committed at close\n",
                lost);
    engine_destroy(f->replica);
    free(f->settled);
    spsc_free(&f->ring);
    pthread_mutex_destroy(&f->msg_mu);
    free(f);
}

void history_feed_push(history_feed *f, uint64_t seq, const command *cmd) {
    feed_item it;
    it.seq = seq;
    memcpy(&it.cmd, cmd, sizeof it.cmd);
    if (!spsc_push(&f->ring, &it)) atomic_fetch_add_explicit(&f->dropped, 1, memory_order_relaxed);
}

bool history_feed_wait(history_feed *f, uint64_t seq, int timeout_ms) {
    int64_t deadline = mono_ns() + (int64_t)timeout_ms * 1000000LL;
    while (history_last_seq(f->h) < seq) {
        int64_t left = deadline - mono_ns();
        if (left <= 0) return false;
        if (atomic_load(&f->applied_pub) >= seq) {
            /* submitted: make the writer commit now instead of lingering for a fuller batch */
            history_flush(f->h, (int)(left / 1000000) + 1);
        } else {
            sleep_us(100);
        }
    }
    return true;
}

uint64_t history_feed_committed_seq(const history_feed *f) {
    return atomic_load(&((history_feed *)f)->committed_pub);
}

const char *history_feed_db_path(const history_feed *f) {
    return f->db_path;
}

char *history_feed_stats_json(history_feed *f) {
    history_storage_stats st;
    memset(&st, 0, sizeof st);
    history_stats(f->h, &st);
    char *text = history_stats_json(&st);
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (j == NULL) j = json_object();
    char warning[sizeof f->last_warning];
    pthread_mutex_lock(&f->msg_mu);
    memcpy(warning, f->last_warning, sizeof warning);
    pthread_mutex_unlock(&f->msg_mu);
    json_object_set_new(
        j, "feed",
        json_pack("{s:b, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}",
                  "bootstrapped", atomic_load(&f->bootstrapped), "bootstrap_seq",
                  (json_int_t)atomic_load(&f->bootstrap_seq), "bootstrap_from_snapshot",
                  atomic_load(&f->bootstrap_from_snapshot), "applied_seq",
                  (json_int_t)atomic_load(&f->applied_pub), "journal_durable_seq",
                  (json_int_t)persistence_durable_seq(f->p), "from_ring",
                  (json_int_t)atomic_load(&f->from_ring), "from_journal",
                  (json_int_t)atomic_load(&f->from_journal), "ring_dropped",
                  (json_int_t)atomic_load(&f->dropped), "catch_ups",
                  (json_int_t)atomic_load(&f->catch_ups), "gaps", (json_int_t)atomic_load(&f->gaps),
                  "gap_commands", (json_int_t)atomic_load(&f->gap_commands), "submit_failures",
                  (json_int_t)atomic_load(&f->submit_failures), "last_warning", warning));
    char *out = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(j);
    return out;
}
