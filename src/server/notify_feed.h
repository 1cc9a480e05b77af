/* The producer side of the notification system (seed 004, SPEC 6 "Notifications"): turns the
 * engine's events into typed notifications on the engine thread, which alone can read the state
 * they describe. The broker (notify.h) then routes them on the I/O thread.
 *
 * Which event becomes which notification:
 *   EV_ORDER    status Submitted -> order_accepted, PartiallyFilled -> order_partially_filled,
 *               Filled -> order_filled, Cancelled -> order_canceled, Rejected -> order_rejected
 *   EV_TRADE    -> trade_executed (the seed's TradeExecutedNotify fields; fill_type FULL when the
 *               fill finished its order, else PARTIAL)
 *   EV_POSITION -> position_update;  EV_ACCOUNT -> account_update, and when the account's risk
 *               ratio rises into a higher band: margin_call at >= risk_ratio_warning (0.8),
 *               risk_alert at >= the engine's risk_ratio_reject (0.95)
 *               (also checked for every holder by notify_feed_risk_scan after price moves)
 *   EV_ACCOUNT_SETTLED with a forced close -> risk_alert
 *   EV_INSTRUMENT -> market_halt when suspended, system_notice otherwise (to everybody)
 *   EV_SETTLEMENT -> trading_session_end (to everybody)
 * plus notify_feed_rejected for an order the engine refused (no event exists for it).
 *
 * Payloads are written straight to JSON text (jb_text, no tree): the feed runs once per event on
 * the engine thread, so it must be cheap. The feed keeps one byte of state per account (the risk
 * band last reported), which grows with the accounts; it allocates nothing else per event beyond
 * the payload handed to the sink. */
#ifndef QAEX_SERVER_NOTIFY_FEED_H
#define QAEX_SERVER_NOTIFY_FEED_H

#include "engine/engine.h"
#include "server/notify.h"

#include <stddef.h>
#include <stdint.h>

typedef struct notify_note {
    notify_type type;
    const char *topic; /* the account id, or "" for a notification to every session */
    int64_t event_ns;  /* the time of the command that caused it */
    char *payload;     /* malloc'ed JSON object text: the sink takes it */
    size_t len;
} notify_note;

/* Receives each notification; owns note->payload from then on. */
typedef void (*notify_sink_fn)(void *ctx, notify_note *note);

typedef struct notify_feed notify_feed;

/* NULL when out of memory. */
notify_feed *notify_feed_new(notify_sink_fn sink, void *ctx);
void notify_feed_free(notify_feed *f);

/* Only notifications of these channels (NOTIFY_CHANNEL_BIT set) are produced: the union of what
 * the sessions want. 0 produces nothing. */
void notify_feed_set_channels(notify_feed *f, uint32_t channel_mask);

/* margin_call fires when an account's risk ratio climbs to this ([risk] risk_ratio_warning,
 * 0.8 by default); risk_alert at the engine's risk_ratio_reject. */
void notify_feed_set_warning_ratio(notify_feed *f, double ratio);

/* One engine event; now_ns is the command's time. */
void notify_feed_event(notify_feed *f, const engine *e, const engine_event *ev, int64_t now_ns);

/* Prices move the risk of accounts that did nothing: checks every account holding positions and
 * raises margin_call / risk_alert for those that climbed into a higher band. The service calls
 * it at most every 100 ms after trades (a scan walks every account with positions). */
void notify_feed_risk_scan(notify_feed *f, const engine *e, int64_t now_ns);

/* An order the engine refused with `code` (never a journal refusal: that order never existed). */
void notify_feed_rejected(notify_feed *f, const order_request *o, int code, const char *message,
                          int64_t now_ns);

#endif
