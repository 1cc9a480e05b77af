/* The engine's private state, shared by its source files (engine.c, matching.c, settlement.c,
 * snapshot.c) and by nothing else. */
#ifndef QAEX_ENGINE_INTERNAL_H
#define QAEX_ENGINE_INTERNAL_H

#include "engine/engine.h"
#include "engine/idmap.h"
#include "engine/pool_mem.h"

/* Namespace of server-assigned order ids in the order map: they are unique across accounts. */
#define ORDER_NS_SERVER 0xFFFFFFFFu

struct engine {
    engine_config cfg;
    engine_event_fn sink;
    void *sink_ctx;

    char trading_day[QAEX_DATE_LEN];
    uint64_t order_seq; /* last order sequence issued */
    uint64_t trade_seq;
    uint64_t match_seq;
    uint64_t txn_seq; /* capital transactions of the trading day */
    uint64_t commands_applied;
    int64_t clock_ms;      /* the time of the latest accepted command */
    int64_t next_close_ms; /* the earliest end of an open K-line bar, INT64_MAX when none */

    instrument *instruments;
    uint32_t n_instruments, cap_instruments;
    idmap instrument_map;       /* full id and alias, both */
    uint32_t recent_instrument; /* the last one an order named: most orders name it again */

    account *accounts; /* in accounts_mem */
    pool_mem accounts_mem;
    uint32_t n_accounts, cap_accounts;
    idmap account_map;

    position *positions;
    uint32_t n_positions, cap_positions;
    idmap position_map; /* key: account << 32 | instrument */

    order *orders; /* in orders_mem */
    pool_mem orders_mem;
    uint32_t cap_orders, orders_in_use;
    uint32_t order_free;  /* released slots: a list through account_next */
    uint32_t order_fresh; /* slots from here to cap_orders were never used (nor touched) */
    idmap order_map;      /* (namespace, order_id): namespace is the account or ORDER_NS_SERVER */

    trade *trades; /* in trades_mem */
    pool_mem trades_mem;
    uint32_t cap_trades, trades_in_use;
    uint32_t trade_free;  /* released slots: a list through account_next */
    uint32_t trade_fresh; /* slots from here to cap_trades were never used (nor touched) */

    user *users;
    uint32_t n_users, cap_users;
    idmap user_map; /* namespace 1: user_id, namespace 2: username */

    transfer_record *transfers; /* a ring of the newest TRANSFER_LOG_SIZE */
    uint32_t transfers_cap, transfers_start, transfers_count;

    settlement_result *settlements;
    uint32_t n_settlements, cap_settlements;

    /* Per-command scratch: what changed, so each gets one event at the end of the command. */
    uint64_t epoch;
    uint64_t *account_epoch;  /* parallel to accounts */
    uint64_t *position_epoch; /* parallel to positions */
    uint32_t *touched_accounts, n_touched_accounts;
    uint32_t *touched_positions, n_touched_positions;
    uint32_t touched_instrument; /* the one instrument a command trades, or SLOT_NONE */
    bool book_changed, ticked;
};

/* Cache-line hints: a command asks for the records it is about to touch as soon as it knows
 * them, so that their misses overlap instead of following one another. Hints only: nothing
 * depends on them, and the state is the same without them. */
static inline void engine_prefetch_bytes(const void *p, size_t n) {
    const char *c = p;
    for (size_t off = 0; off < n; off += 64)
        __builtin_prefetch(c + off, 1, 3);
    __builtin_prefetch(c + n - 1, 1, 3); /* the last line of a record that straddles one more */
}
/* An account's money and lists (line 0, its id, is read by the lookup). */
void engine_prefetch_account(const engine *e, uint32_t slot);
/* What finishing an order of this account will touch: its position, the finished list's tail
 * (linked to) and head (evicted when the list is full). */
void engine_prefetch_finish(const engine *e, uint32_t order_slot);

/* engine.c */
void engine_emit(engine *e, const engine_event *ev);
void engine_emit_order(engine *e, const order *o);
void engine_touch_account(engine *e, uint32_t account_slot);
void engine_touch_position(engine *e, uint32_t position_slot);
/* The book of the instrument changed; `traded` when a trade printed. */
void engine_touch_instrument(engine *e, uint32_t instrument_slot, bool traded);
uint32_t engine_find_account_slot(const engine *e, const char *account_id);
uint32_t engine_find_instrument_slot(const engine *e, const char *id);
bool engine_is_server_order_id(const char *id);
int engine_fail(engine_result *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint32_t engine_find_position_slot(const engine *e, uint32_t account_slot,
                                   uint32_t instrument_slot);
/* Finds or creates; SLOT_NONE when out of memory. */
uint32_t engine_get_position_slot(engine *e, uint32_t account_slot, uint32_t instrument_slot);
uint32_t engine_find_order_slot(const engine *e, uint32_t account_slot, const char *order_id);
uint32_t engine_alloc_order(engine *e);
uint32_t engine_alloc_trade(engine *e);
void engine_account_append_trade(engine *e, uint32_t trade_slot);
/* The order is finished: off the live list, remaining freezes released, into the history. */
void engine_finish_order(engine *e, uint32_t slot);
int engine_register_order(engine *e, uint32_t slot);
/* Drops a finished order or a trade from memory altogether (the caller has unlinked it). */
void engine_forget_order(engine *e, uint32_t slot);
void engine_forget_trade(engine *e, uint32_t slot);
void engine_view_of(const engine *e, const account *a, account_view *v);
int engine_add_instrument(engine *e, const instrument_spec *spec, engine_result *r);
int engine_reserve_accounts(engine *e, uint32_t n);
int engine_reserve_positions(engine *e, uint32_t n);
int engine_add_settlement(engine *e, const settlement_result *sr);
int engine_log_transfer(engine *e, const transfer_record *t);

/* The bars an instrument has open may end earlier than the engine's next close. */
void engine_note_bars(engine *e, const instrument *ins);
/* Folds a match into the instrument's K-lines and recent trades (after its day statistics). */
void engine_record_market_trade(engine *e, instrument *ins, const market_trade *mt, double amount,
                                int64_t oi_before);
/* Closes the bars that ended by the command clock. */
void engine_close_due_bars(engine *e);

/* users.c */
int users_register(engine *e, const command *cmd, engine_result *r);
int users_add(engine *e, const user *u); /* snapshot loading: 0, -1 out of memory */
int grow_array(void **array, uint32_t *cap, uint32_t need, size_t elem);

/* matching.c */
int matching_insert(engine *e, const command *cmd, engine_result *r);
int matching_cancel(engine *e, const command *cmd, engine_result *r);
/* Cancels a live order for the engine's own reasons (day end, delisting). */
void matching_cancel_slot(engine *e, uint32_t slot, int64_t ts_ns, const char *why);
int matching_auction_open(engine *e, const command *cmd, engine_result *r);
int matching_auction_close(engine *e, const command *cmd, engine_result *r);
/* Closes lots of a position at a price outside the book (forced liquidation). */
void matching_liquidate(engine *e, uint32_t position_slot, double price, int64_t ts_ns);

/* settlement.c */
int settlement_set_price(engine *e, const command *cmd, engine_result *r);
int settlement_execute(engine *e, const command *cmd, engine_result *r);

#endif
