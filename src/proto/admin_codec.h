/* JSON of the operator's side (SPEC 5 admin and monitoring routes; seed 6080-6743 and
 * 14890-15304): settlement history and detail, risk views, capital transactions and the
 * monitoring summaries. Pure functions of engine state, read on the engine thread; each returns
 * a new reference or NULL when out of memory. Times are epoch ms, dates YYYY-MM-DD. */
#ifndef QAEX_PROTO_ADMIN_CODEC_H
#define QAEX_PROTO_ADMIN_CODEC_H

#include "engine/engine.h"

#include <jansson.h>

/* codec_settlement_result plus, with_rows, "accounts": the per-account lines (account_id,
 * user_id, pre_balance, balance, close_profit, position_profit, commission, risk_ratio,
 * force_close) while the day is inside the detail window. */
json_t *admin_settlement(const settlement_result *sr, bool with_rows);
/* Settlements with from <= date <= to (empty = open), oldest first. */
json_t *admin_settlement_history(const engine *e, const char *from, const char *to);

/* Accounts with their risk: user_id (owner), account_id, user_name, balance, margin, available,
 * risk_ratio, level ("low"|"medium"|"high"|"critical"). Filtered by level and by owner or
 * account id (empty = all); riskiest first. */
json_t *admin_risk_accounts(const engine *e, const char *level, const char *owner);
/* total_accounts, total_balance, total_margin_used, total_available, average_risk_ratio,
 * medium_risk_count, high_risk_count, critical_risk_count, liquidation_count. */
json_t *admin_margin_summary(const engine *e);
/* Forced liquidations from the settlement lines: account_id, user_id, liquidation_date,
 * pre_balance, post_balance, loss (= pre - post), risk_ratio. */
json_t *admin_liquidations(const engine *e, const char *from, const char *to);

/* Capital transactions, newest first: transaction_id, account_id, user_id, transaction_type
 * ("deposit"|"withdraw"), amount, balance_before, balance_after, status "completed",
 * created_at (ms). Filters: account or owner id (empty = all), type (empty = both), trading
 * dates of the China-time timestamp, at most limit. */
json_t *admin_transactions(const engine *e, const char *who, const char *type, const char *from,
                           const char *to, int64_t limit);

/* Monitoring: accounts (total_accounts, active_accounts (with a position or a live order),
 * frozen_accounts, total_balance, total_margin, total_available), orders (live and retained
 * orders by status and side), trades (retained trades, volume, turnover per instrument). */
json_t *monitor_accounts(const engine *e);
json_t *monitor_orders(const engine *e);
json_t *monitor_trades(const engine *e);

#endif
