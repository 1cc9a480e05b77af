/* Orders and trades as the engine keeps them. Both live in pools owned by the engine and are
 * linked into lists by 32-bit slot numbers, so the hot path never allocates. Clients read them
 * through engine queries and events; only the engine writes them. */
#ifndef QAEX_ORDER_H
#define QAEX_ORDER_H

#include "engine/types.h"

#include <stddef.h>

#define SLOT_NONE UINT32_MAX

/* Fields are laid out by use: the first cache line holds what matching reads for a resting
 * order, the second what a fill or a finish changes; ids and text come last. */
typedef struct order {
    uint64_t seq;       /* global sequence: unique, and time priority in the book */
    int64_t price_tick; /* limit_price in ticks: the book level */
    int64_t volume_left;
    double limit_price; /* as entered; ANY orders carry the limit price of the band edge */
    uint32_t account;
    uint32_t instrument;
    uint32_t position;               /* the account's position slot in the instrument */
    uint32_t level_prev, level_next; /* links in the price level, while resting */
    direction direction;
    offset offset;
    order_status status;
    /* Still frozen for this order. Open orders freeze money; close orders freeze lots, today's
     * and yesterday's kept apart so fills and cancels give back exactly what was taken. */
    double frozen_margin;
    double frozen_commission;
    int64_t frozen_today;
    int64_t frozen_his;
    uint32_t account_prev, account_next; /* the account's live or finished list */
    price_type price_type;
    time_condition time_condition;
    volume_condition volume_condition;
    bool in_book;
    /* the order-id index key, kept so removal never rehashes or re-parses the id */
    uint32_t id_namespace;
    uint64_t id_hash;
    uint64_t exchange_seq; /* per-instrument sequence: exchange_order_id */
    int64_t volume_orign;
    int64_t insert_ns;
    int64_t update_ns;
    char order_id[QAEX_ID_LEN]; /* the client's id, or "O" + 20 digits of seq */
    char last_msg[QAEX_NAME_LEN];
} order;

typedef struct trade {
    uint64_t seq;       /* trade_id: "T" + 20 digits */
    uint64_t match_seq; /* exchange_trade_id, shared by the two sides of one match */
    uint64_t order_seq;
    uint64_t exchange_seq;
    char order_id[QAEX_ID_LEN];
    uint32_t account;
    uint32_t instrument;
    direction direction;
    offset offset;
    double price;
    int64_t volume;
    double commission;
    double close_profit;
    int64_t trade_ns;
    bool is_taker;
    bool is_liquidation;   /* forced close at settlement */
    uint32_t account_next; /* the account's list of retained trades, oldest first */
} trade;

/* Formats the public ids: "O00000000000000000042", "T…", "M…", exchange order "X…". */
void order_format_seq(char prefix, uint64_t seq, char *out, size_t outlen);

#endif
