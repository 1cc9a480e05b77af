/* Orders and trades as the engine keeps them. Both live in pools owned by the engine and are
 * linked into lists by 32-bit slot numbers, so the hot path never allocates. Clients read them
 * through engine queries and events; only the engine writes them. */
#ifndef QAEX_ORDER_H
#define QAEX_ORDER_H

#include "engine/types.h"

#include <stddef.h>

#define SLOT_NONE UINT32_MAX

/* Room for a cancel or refusal reason ("IOC remainder of 5 lots cancelled"); longer text is cut. */
#define ORDER_MSG_LEN 48

/* Exactly four cache lines, and the pool starts on a line (engine_alloc_order), so an order
 * costs four misses at most. Fields are laid out by use: line 0 is what matching and the book
 * read, line 1 what a fill, a finish or an eviction changes, line 2 the rest of the record and
 * line 3 the client's id. The enums are stored in a byte each (their types' values all fit). */
typedef struct order {
    /* line 0 */
    uint64_t seq;       /* global sequence: unique, and time priority in the book */
    int64_t price_tick; /* limit_price in ticks: the book level */
    int64_t volume_left;
    double limit_price; /* as entered; ANY orders carry the limit price of the band edge */
    uint32_t account;
    uint32_t instrument;
    uint32_t position;               /* the account's position slot in the instrument */
    uint32_t level_prev, level_next; /* links in the price level, while resting */
    uint8_t direction;               /* direction */
    uint8_t offset;                  /* offset */
    uint8_t status;                  /* order_status */
    uint8_t price_type;              /* price_type */
    uint8_t time_condition;          /* time_condition */
    uint8_t volume_condition;        /* volume_condition */
    bool in_book;
    uint32_t id_namespace; /* of the order-id index key (below: its hash) */
    /* line 1. Still frozen for this order. Open orders freeze money; close orders freeze lots,
     * today's and yesterday's kept apart so fills and cancels give back exactly what was taken. */
    double frozen_margin;
    double frozen_commission;
    int64_t frozen_today;
    int64_t frozen_his;
    uint32_t account_prev, account_next; /* the account's live list, or finished (next only) */
    /* the order-id index key, kept so removal never rehashes or re-parses the id */
    uint64_t id_hash;
    uint64_t exchange_seq; /* per-instrument sequence: exchange_order_id */
    int64_t volume_orign;
    /* line 2 */
    int64_t insert_ns;
    int64_t update_ns;
    char last_msg[ORDER_MSG_LEN];
    /* line 3 */
    char order_id[QAEX_ID_LEN]; /* the client's id, or "O" + 20 digits of seq */
} order;

_Static_assert(sizeof(order) == 256, "an order is four cache lines");

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
