/* Accounts and positions in QIFI terms.
 *
 * An account stores only what changes by events (deposits, fees, realised profit, frozen sums);
 * everything that moves with prices (position profit, balance, available, risk ratio) is derived
 * on demand from its positions and the instruments' mark prices, so a trade never has to touch
 * every holder of the instrument. */
#ifndef QAEX_ACCOUNT_H
#define QAEX_ACCOUNT_H

#include "engine/instrument.h"
#include "engine/types.h"

typedef struct position {
    uint32_t account;
    uint32_t instrument;
    int64_t volume_long_today, volume_long_his;
    int64_t volume_long_frozen_today, volume_long_frozen_his;
    int64_t volume_short_today, volume_short_his;
    int64_t volume_short_frozen_today, volume_short_frozen_his;
    /* open cost: open price * lots * multiplier (float profit is measured from it);
     * position cost: the same at the position price, which settlement resets to the settlement
     * price (position profit is measured from it) */
    double open_cost_long, open_cost_short;
    double position_cost_long, position_cost_short;
    double margin_long, margin_short;
    double frozen_margin; /* money frozen by this account's live open orders in the instrument */
    /* live orders resting on each side: the self-trade check scans the book only when the
     * account has an order on the side an incoming order would hit */
    uint32_t live_orders[2];
} position;

/* The QA_Position figures that follow from a position and a mark price. */
typedef struct position_view {
    int64_t volume_long, volume_short;
    double open_price_long, open_price_short;
    double position_price_long, position_price_short;
    double last_price;
    double float_profit_long, float_profit_short, float_profit;
    double position_profit_long, position_profit_short, position_profit;
    double margin;
} position_view;

/* Six cache lines, and the pool starts on a line (engine_reserve_accounts): a lookup reads line
 * 0 (the id), an order or a fill lines 1 and 2 (the money and the lists); the rest is cold. */
typedef struct account {
    /* line 0 */
    char account_id[QAEX_ID_LEN];
    /* lines 1 and 2 */
    double pre_balance;
    double deposit, withdraw;
    double close_profit, commission, premium;
    double frozen_margin, frozen_commission, frozen_premium;
    /* positions: slots in the engine's position pool, in the order they were opened */
    uint32_t *positions;
    uint32_t n_positions, cap_positions;
    /* orders: live ones by entry order, finished ones by finish order (a bounded history) */
    uint32_t live_head, live_tail, live_count;
    uint32_t finished_head, finished_tail, finished_count;
    /* trades retained in memory, oldest first */
    uint32_t trades_head, trades_tail, trades_count;
    bool frozen; /* operator freeze: no new orders, no withdrawals */
    /* lines 3 to 5 */
    char user_id[QAEX_ID_LEN]; /* the owner: portfolio_cookie */
    char account_name[QAEX_NAME_LEN];
    int64_t created_ns;
    char pad_to_a_line_[56];
} account;

_Static_assert(sizeof(account) % 64 == 0, "an account is whole cache lines");

/* The QIFI account figures derived from stored fields and positions. */
typedef struct account_view {
    double static_balance;
    double position_profit, float_profit;
    double margin;
    double balance;
    double available;
    double risk_ratio;
    double withdraw_quota;
} account_view;

int64_t position_volume_long(const position *p);
int64_t position_volume_short(const position *p);
bool position_is_empty(const position *p);

/* Lots that can still be closed on one side (long for a SELL close, short for a BUY close). */
int64_t position_closable(const position *p, direction side_held, offset o);

/* A fill that opens lots at a price. */
void position_open(position *p, const instrument *ins, direction side, double price,
                   int64_t volume);

/* A fill that closes lots of the held side (today's then yesterday's as given); returns the
 * realised profit against the position price. */
double position_close(position *p, const instrument *ins, direction side_held, int64_t volume_today,
                      int64_t volume_his, double price);

/* Marks at the settlement price: position costs re-based to it, margin re-computed,
 * today's lots become yesterday's. Returns the position profit realised into the balance. */
double position_settle(position *p, const instrument *ins, double settlement_price);

void position_view_of(const position *p, const instrument *ins, position_view *v);

/* Combines the stored fields with summed position figures. */
void account_view_finish(const account *a, double position_profit, double float_profit,
                         double margin, account_view *v);

#endif
