/* The exchange engine: a single-threaded, deterministic state machine.
 *
 *     engine_apply(engine, command) -> result + events
 *
 * It does no I/O, reads no clock and starts no thread. Every input, including the time, arrives
 * inside a command, and every generated id comes from sequences that are part of the state, so
 * the same commands always produce the same state and the same events: the journal replays them
 * after a crash and a replica applies them to stay a hot standby.
 *
 * Queries read the state directly and must run on the thread that applies commands. */
#ifndef QAEX_ENGINE_H
#define QAEX_ENGINE_H

#include "engine/account.h"
#include "engine/instrument.h"
#include "engine/order.h"
#include "engine/types.h"
#include "engine/user.h"

#include <stddef.h>

typedef struct engine engine;

/* Thresholds of the [risk] config section and memory bounds. */
typedef struct engine_config {
    double max_position_ratio;    /* instrument margin over balance, 1002 */
    double max_order_value;       /* price * volume, 1003 */
    double risk_ratio_reject;     /* risk ratio after the order, 1004 */
    int64_t min_order_volume;     /* 1008 */
    int64_t max_order_volume;     /* 1008 */
    double force_close_threshold; /* settlement liquidates at this risk ratio */
    bool self_trade_prevention;   /* 1005 */
    /* Finished orders and trades each account keeps in memory; older ones live in the journal
     * and the history store. Live orders are always kept. */
    uint32_t finished_orders_per_account;
    uint32_t trades_per_account;
    uint32_t kline_history;          /* finished bars kept per instrument and period */
    uint32_t recent_trades;          /* matches kept per instrument for recent-trades */
    char trading_day[QAEX_DATE_LEN]; /* the first trading day, YYYY-MM-DD */
} engine_config;

void engine_config_default(engine_config *cfg);

/* The [risk] thresholds of engine_config, as CMD_RISK_CONFIG carries them: an operator changes
 * them through the journal, so a replay applies each order under the thresholds it met. */
typedef struct engine_risk_config {
    double max_position_ratio;    /* (0, 1] */
    double max_order_value;       /* (0, 1e15] */
    double risk_ratio_reject;     /* (0, 10] */
    double force_close_threshold; /* (0, 10] */
    int64_t min_order_volume;     /* 1 ..= max_order_volume */
    int64_t max_order_volume;     /* ..= 1e9 */
    bool self_trade_prevention;
} engine_risk_config;

void engine_risk_config_of(const engine_config *cfg, engine_risk_config *out);
void engine_config_set_risk(engine_config *cfg, const engine_risk_config *risk);
/* QAEX_OK, or ERR_CONFIG with msg naming the value out of bounds (what CMD_RISK_CONFIG checks). */
int engine_risk_config_check(const engine_risk_config *risk, char *msg, size_t cap);
bool engine_risk_config_equal(const engine_risk_config *a, const engine_risk_config *b);

typedef enum command_type {
    CMD_INSTRUMENT_ADD = 1,
    CMD_INSTRUMENT_UPDATE,
    CMD_INSTRUMENT_SUSPEND,
    CMD_INSTRUMENT_RESUME,
    CMD_INSTRUMENT_DELIST,
    CMD_ACCOUNT_OPEN,
    CMD_DEPOSIT,
    CMD_WITHDRAW,
    CMD_ACCOUNT_FREEZE,
    CMD_ACCOUNT_UNFREEZE,
    CMD_ORDER_INSERT,
    CMD_ORDER_CANCEL,
    CMD_AUCTION_OPEN,  /* the instrument enters the call auction */
    CMD_AUCTION_CLOSE, /* uncross at the equilibrium price, back to continuous trading */
    CMD_SETTLEMENT_SET_PRICE,
    CMD_SETTLEMENT_EXECUTE,
    /* the time passes: closes K-line bars whose period ended (nothing else) */
    CMD_CLOCK,
    CMD_USER_REGISTER,
    CMD_RISK_CONFIG, /* new [risk] thresholds (u.risk) */
    CMD_TYPE_COUNT
} command_type;

/* Fields CMD_INSTRUMENT_UPDATE changes: a mask over instrument_spec. */
enum {
    UPDATE_NAME = 1 << 0,
    UPDATE_MULTIPLIER = 1 << 1,
    UPDATE_PRICE_TICK = 1 << 2,
    UPDATE_MARGIN_RATE = 1 << 3,
    UPDATE_COMMISSION_RATE = 1 << 4,
    UPDATE_COMMISSION_PER_LOT = 1 << 5,
    UPDATE_LIMIT_UP_RATE = 1 << 6,
    UPDATE_LIMIT_DOWN_RATE = 1 << 7,
    UPDATE_EXPIRE_DATE = 1 << 8,
};

typedef struct order_request {
    char account_id[QAEX_ID_LEN];
    char order_id[QAEX_ID_LEN]; /* empty: the engine assigns "O" + sequence */
    char instrument_id[QAEX_INSTRUMENT_ID_LEN];
    direction direction;
    offset offset;
    price_type price_type;
    time_condition time_condition;
    volume_condition volume_condition;
    double limit_price; /* ignored for ANY */
    int64_t volume;
} order_request;

typedef struct command {
    command_type type;
    int64_t ts_ns; /* the time of the command, epoch nanoseconds, assigned by the gateway */
    union {
        struct {
            instrument_spec spec;
            uint32_t fields; /* UPDATE_* bits, for CMD_INSTRUMENT_UPDATE */
        } instrument;
        /* suspend, resume, delist, auction open/close */
        struct {
            char instrument_id[QAEX_INSTRUMENT_ID_LEN];
        } instrument_ref;
        struct {
            char account_id[QAEX_ID_LEN];
            char user_id[QAEX_ID_LEN];
            char account_name[QAEX_NAME_LEN];
            double init_cash;
        } account_open;
        /* deposit, withdraw */
        struct {
            char account_id[QAEX_ID_LEN];
            double amount;
        } transfer;
        /* freeze, unfreeze */
        struct {
            char account_id[QAEX_ID_LEN];
        } account_ref;
        order_request order;
        struct {
            char account_id[QAEX_ID_LEN];
            char order_id[QAEX_ID_LEN];
        } cancel;
        struct {
            char instrument_id[QAEX_INSTRUMENT_ID_LEN];
            double price;
        } settlement_price;
        user user; /* CMD_USER_REGISTER: created_ns is the command's time */
        engine_risk_config risk;
    } u;
} command;

/* What a command did: 0 or an error code with a message that names the offending value. */
typedef struct engine_result {
    int code;
    char message[QAEX_MSG_LEN];
    uint32_t order;   /* the order inserted or cancelled, else SLOT_NONE */
    uint32_t account; /* the account acted on, else SLOT_NONE */
    char txn_id[24];  /* deposit/withdraw: "TXN" + YYYYMMDD + 8 digits */
} engine_result;

/* One account's line of a daily settlement, kept for the last SETTLEMENT_DETAIL_DAYS days. */
typedef struct settlement_row {
    char account_id[QAEX_ID_LEN];
    double pre_balance, balance; /* before and after */
    double close_profit, position_profit, commission;
    double risk_ratio;
    bool force_close;
} settlement_row;

#define SETTLEMENT_DETAIL_DAYS 30
#define TRANSFER_LOG_SIZE 100000 /* capital transactions kept in memory, newest */

typedef struct settlement_result {
    char settlement_date[QAEX_DATE_LEN];
    uint32_t total_accounts;
    uint32_t settled_accounts;
    uint32_t failed_accounts;
    uint32_t force_closed_count;
    char (*force_closed_accounts)[QAEX_ID_LEN];
    double total_commission;
    double total_profit;
    int64_t ts_ns;
    settlement_row *rows; /* per account; NULL once the day is older than the detail window */
    uint32_t n_rows;
} settlement_result;

typedef struct account_settlement {
    const account *account;
    char date[QAEX_DATE_LEN];
    double pre_balance; /* before */
    double balance;     /* after */
    double close_profit;
    double position_profit;
    double commission;
    double risk_ratio;
    bool force_close;
} account_settlement;

typedef struct capital_transfer {
    char txn_id[24];
    const account *account;
    bool is_deposit;
    double amount;
    double balance_before;
    double balance_after;
    int64_t ts_ns;
} capital_transfer;

/* A capital transaction as the engine keeps it (account by slot: the log outlives pointers). */
typedef struct transfer_record {
    char txn_id[24];
    uint32_t account;
    bool is_deposit;
    double amount, balance_before, balance_after;
    int64_t ts_ns;
} transfer_record;

typedef enum event_type {
    EV_ORDER = 1,       /* an order was accepted or changed: .order */
    EV_TRADE,           /* one side of a match: .trade */
    EV_POSITION,        /* .position changed */
    EV_ACCOUNT,         /* .account changed (once per command and account) */
    EV_BOOK,            /* the depth of .instrument changed */
    EV_TICK,            /* .instrument traded: last price and volume moved */
    EV_INSTRUMENT,      /* .instrument was added, changed or changed status */
    EV_TRANSFER,        /* .transfer: a deposit or withdrawal */
    EV_ACCOUNT_SETTLED, /* .settlement: one account's daily settlement */
    EV_SETTLEMENT,      /* .settlement_result: the day was settled */
    EV_KLINE,           /* a bar of .instrument closed: .kline of .kline_period */
} event_type;

typedef struct engine_event {
    event_type type;
    kline_period kline_period; /* EV_KLINE */
    const instrument *instrument;
    /* One event carries one record besides its instrument: a union keeps the event three words,
     * built with a few stores (a struct of every pointer took a `rep stos` per event). */
    union {
        const order *order;
        const trade *trade;
        const position *position;
        const account *account;
        const capital_transfer *transfer;
        const account_settlement *settlement;
        const settlement_result *settlement_result;
        const kline *kline;
    };
} engine_event;

/* Receives every event while the command is applied; pointers are valid only during the call. */
typedef void (*engine_event_fn)(void *ctx, const engine_event *ev);

engine *engine_create(const engine_config *cfg);
void engine_destroy(engine *e);
void engine_set_event_sink(engine *e, engine_event_fn fn, void *ctx);
const engine_config *engine_get_config(const engine *e);

/* Sizes the order and trade pools and the order index for this many records and faults their
 * memory in now, so that trading up to that size never grows a pool (a growth doubles it, a
 * stall of milliseconds on a guest) nor takes a page fault. Only capacity changes, never which
 * slot a record gets: state and events are those of an engine without it. 0, or -1 when the
 * memory is not to be had (the engine keeps what it had and works as before). */
int engine_preallocate(engine *e, uint32_t orders, uint32_t trades);

/* The record pools' use and capacity (operators: /monitoring/system). */
typedef struct engine_memory {
    uint32_t orders_in_use, orders_capacity; /* live and retained finished orders */
    uint32_t trades_in_use, trades_capacity;
    uint32_t order_index_capacity; /* buckets of the order id index */
} engine_memory;
void engine_get_memory(const engine *e, engine_memory *m);

/* Applies one command. Returns result->code. A rejected command changes nothing. */
int engine_apply(engine *e, const command *cmd, engine_result *result);

/* The default instruments of SPEC 2 (CFFEX.IF2501, IC2501, IH2501). */
size_t engine_default_instruments(instrument_spec *out, size_t max);

/* ---- queries ---- */
const char *engine_trading_day(const engine *e);
uint64_t engine_commands_applied(const engine *e);
/* The command clock: the latest time of an accepted command, epoch milliseconds. */
int64_t engine_clock_ms(const engine *e);
/* When the next K-line bar ends (epoch ms), INT64_MAX when no bar is open: a CMD_CLOCK at or
 * after it closes the bar even if no trade comes. */
int64_t engine_next_bar_close_ms(const engine *e);

uint32_t engine_instrument_count(const engine *e);
const instrument *engine_instrument_at(const engine *e, uint32_t slot);
/* By full id or alias ("CFFEX.IF2501" or "IF2501"); NULL when unknown. */
const instrument *engine_instrument_find(const engine *e, const char *id);

uint32_t engine_account_count(const engine *e);
const account *engine_account_at(const engine *e, uint32_t slot);
const account *engine_account_find(const engine *e, const char *account_id);
void engine_account_view(const engine *e, const account *a, account_view *v);

/* Positions of an account in opening order; NULL past the end. */
const position *engine_account_position(const engine *e, const account *a, uint32_t i);
const position *engine_position_find(const engine *e, const account *a, const instrument *ins);
void engine_position_view(const engine *e, const position *p, position_view *v);

const instrument *engine_instrument_of(const engine *e, uint32_t slot);
const account *engine_account_of(const engine *e, uint32_t slot);

/* Orders: by the account's id for it (client or server id); iteration live then finished. */
const order *engine_order_find(const engine *e, const account *a, const char *order_id);
/* A server-assigned id ("O" + 20 digits) names one order across all accounts. */
const order *engine_order_find_any(const engine *e, const char *order_id);
const order *engine_order_at(const engine *e, uint32_t slot);
const order *engine_order_first(const engine *e, const account *a);
const order *engine_order_next(const engine *e, const order *o);

/* Retained trades of an account, oldest first. */
const trade *engine_trade_first(const engine *e, const account *a);
const trade *engine_trade_next(const engine *e, const trade *t);

/* Users: by id or by username; NULL when unknown. */
uint32_t engine_user_count(const engine *e);
const user *engine_user_at(const engine *e, uint32_t i);
const user *engine_user_find(const engine *e, const char *user_id);
const user *engine_user_find_by_name(const engine *e, const char *username);

/* Capital transactions kept, oldest first (the last TRANSFER_LOG_SIZE). */
uint32_t engine_transfer_count(const engine *e);
const transfer_record *engine_transfer_at(const engine *e, uint32_t i);

uint32_t engine_settlement_count(const engine *e);
const settlement_result *engine_settlement_at(const engine *e, uint32_t i);
const settlement_result *engine_settlement_find(const engine *e, const char *date);

/* The seed's 35-field MarketSnapshot as plain numbers, read straight from the book and the day's
 * statistics: what every market-data encoder starts from, cheap enough to take after each trade.
 * Prices of empty levels are 0 with volume 0; change is against pre_close, and so is the last
 * price until the day's first trade. */
#define MARKET_SNAPSHOT_DEPTH 10
typedef struct market_snapshot {
    int depth_bid, depth_ask; /* levels filled */
    double bid_price[MARKET_SNAPSHOT_DEPTH], ask_price[MARKET_SNAPSHOT_DEPTH];
    int64_t bid_volume[MARKET_SNAPSHOT_DEPTH], ask_volume[MARKET_SNAPSHOT_DEPTH];
    double last_price, pre_close, pre_settlement, change_amount, change_percent;
    bool has_trade; /* open, high, low and average exist */
    double open, high, low, average;
    int64_t volume, open_interest, pre_open_interest;
    double turnover; /* price * volume * multiplier */
    double upper_limit, lower_limit;
    bool has_settlement;
    double settlement;
} market_snapshot;

/* Fills out with up to `depth` (<= MARKET_SNAPSHOT_DEPTH) levels a side. */
void engine_market_snapshot(const instrument *ins, int depth, market_snapshot *out);

/* Public ids of orders and trades. */
void engine_order_exchange_id(const engine *e, const order *o, char *out, size_t outlen);
/* The exchange order id of the order a trade filled (it carries the order's sequence). */
void engine_trade_exchange_order_id(const engine *e, const trade *t, char *out, size_t outlen);

/* A 64-bit digest of the whole state in a canonical order: equal digests mean equal state. */
uint64_t engine_state_hash(const engine *e);

/* Snapshots: the whole state as bytes, and an engine rebuilt from them. */
/* The same bytes written to fd through a stack buffer, allocating nothing: safe in a child
 * forked from a threaded process (whose allocator locks another thread may have held). */
int engine_snapshot_write_fd(const engine *e, int fd);
int engine_snapshot_save(const engine *e, unsigned char **out, size_t *outlen);
engine *engine_snapshot_load(const unsigned char *data, size_t len, char *err, size_t errlen);

#endif
