/* JSON codecs of the REST API, the `type` WebSocket protocol and QIFI: every JSON shape the server
 * sends or reads about trading state lives here, so no handler formats JSON by hand.
 *
 * Conventions
 * - Encoders take `const engine *` (to resolve the instrument and account slots an order, trade or
 *   position refers to) and return a NEW jansson reference; NULL only when an allocation failed.
 *   They read engine state directly, so call them on the thread that applies commands.
 * - Field names follow SPEC 3 and the seed (QIFI Account, QA_Position, QAOrder, InstrumentInfo),
 *   plus the aliases the seed's REST examples use, so seed clients work unchanged.
 * - Times are epoch MILLISECONDS (SPEC 3: REST and the `type` protocol); the engine holds ns.
 * - Volumes are JSON integers; money and prices are JSON reals (non-finite values become null,
 *   -0.0 becomes 0.0). Values are not rounded: dump with JSON_REAL_PRECISION(15) or so if float
 *   noise such as 0.30000000000000004 matters to a reader.
 * - In every account-scoped object `user_id` is the ACCOUNT id, as in QIFI, where `user_id` is
 *   the account cookie; the owning login is `portfolio_cookie` (account and QIFI only). In the
 *   legacy flow (SPEC 3) the two are equal anyway.
 * - Decoders never allocate and never keep a reference to their input. They return 0, or an error
 *   code with a message in msg that names the field and what was received, e.g.
 *   `volume must be a number, got string "abc"`. */
#ifndef QAEX_PROTO_CODEC_H
#define QAEX_PROTO_CODEC_H

#include "engine/engine.h"
#include "proto/json_builder.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------------------------
 * Encoders: engine -> JSON
 * ------------------------------------------------------------------------------------------ */

/* The QIFI Account (seed 2.1) of /api/account/{id}, QIFI `accounts` and DIFF `accounts.CNY`:
 *   user_id (= account_id), account_id, portfolio_cookie (owner user_id), account_name,
 *   currency "CNY", pre_balance, deposit, withdraw, WithdrawQuota, static_balance, close_profit,
 *   commission, premium, position_profit, float_profit, balance, margin, frozen_margin,
 *   frozen_commission, frozen_premium, available, risk_ratio, risk_level ("Low".."Critical"),
 *   is_frozen (bool: the operator froze the account, no orders or withdrawals),
 * and the seed REST aliases: user_name (= account_name), frozen (NUMBER: frozen_margin +
 * frozen_commission + frozen_premium, as in the seed's /api/account and account_update
 * examples), profit (= balance - static_balance: today's net P&L), created_at (ms). */
json_t *codec_account(const engine *e, const account *acc);

/* One QA_Position (seed 2.6): user_id (= account_id), account_id, exchange_id, instrument_id,
 *   volume_long_today, volume_long_his, volume_long, volume_long_frozen_today,
 *   volume_long_frozen_his, volume_long_frozen, volume_long_yd (= yesterday's lots still held),
 *   the same for short, pos_long_his, pos_long_today, pos_short_his, pos_short_today,
 *   open_price_long/short, open_cost_long/short, position_price_long/short,
 *   position_cost_long/short, last_price, float_profit_long/short, float_profit,
 *   position_profit_long/short, position_profit, margin_long, margin_short, margin,
 *   frozen_margin (held by live open orders in this instrument),
 * and the seed REST aliases cost_long/cost_short (= open_price_*) and profit_long/profit_short
 * (= float_profit_*). */
json_t *codec_position(const engine *e, const position *pos);

/* One order (QIFI QAOrder plus the REST fields): order_id, exchange_order_id, seqno, account_id,
 * user_id (= account_id), instrument_id, exchange_id, direction, offset, price_type
 * ("LIMIT"|"ANY"), order_type ("LIMIT"|"MARKET", the REST spelling), limit_price, price
 * (= limit_price), volume_orign, volume (= volume_orign), volume_left, filled_volume,
 * time_condition, volume_condition, status ("Submitted"|"PartiallyFilled"|"Filled"|"Cancelled"|
 * "Rejected"), frozen_margin, frozen_commission, last_msg, insert_date_time, submit_time
 * (= insert_date_time), update_time (all three ms), towards. */
json_t *codec_order(const engine *e, const order *ord);

/* One trade: trade_id ("T" + 20 digits), order_id, exchange_order_id, exchange_trade_id
 * ("M" + 20 digits, shared by both sides of a match), account_id, user_id (= account_id),
 * instrument_id, exchange_id, direction, offset, price, volume, commission, close_profit,
 * trade_date_time (ms), timestamp (= trade_date_time, the `type` protocol name), is_taker,
 * is_liquidation, towards. */
json_t *codec_trade(const engine *e, const trade *trd);

/* InstrumentInfo (SPEC 3, seed 2.7): instrument_id, instrument_name, instrument_type
 * ("Future"|"Option"|"Stock"), exchange, contract_multiplier, price_tick, margin_rate,
 * commission_rate, commission_per_lot, limit_up_rate, limit_down_rate, list_date and expire_date
 * ("YYYY-MM-DD", null when not set), status ("Trading"|"Suspended"|"Delisted"), pre_settlement,
 * pre_close, plus upper_limit, lower_limit (today's band), last_price (the mark price: last
 * trade, else pre_settlement) and in_auction. */
json_t *codec_instrument(const engine *e, const instrument *ins);

/* The full QIFI slice of /api/account/detail/{id}: account_cookie (account_id), portfolio_cookie
 * and user_cookie (owner user_id), investor_name (account_name), broker and broker_name
 * "QAExchange", market_type "future", running_environment "sim", trading_day, updatetime
 * ("YYYY-MM-DD HH:MM:SS" China time, UTC+8: the latest event of the account - its opening, an
 * order change or a trade - so the slice stays a pure function of engine state), money
 * (= available), accounts (codec_account), positions {instrument_id -> codec_position},
 * orders {order_id -> codec_order} (live then retained finished orders), trades
 * {trade_id -> codec_trade} (retained trades), and empty objects banks, transfers, event,
 * settlement, frozen. */
json_t *codec_qifi(const engine *e, const account *acc);

/* A user as the auth API shows it: user_id, username, email, phone, role ("user"|"admin"),
 * roles (an array of it), created_at (ms) and, with_accounts, accounts (account ids it owns).
 * Never the password hash. */
json_t *codec_user(const engine *e, const user *u, bool with_accounts);

/* SettlementResult (SPEC 4): settlement_date, total_accounts, settled_accounts, failed_accounts,
 * force_closed_accounts (array of account ids), force_closed_count, total_commission,
 * total_profit, timestamp (ms). */
json_t *codec_settlement_result(const settlement_result *sr);

/* AccountSettlement (seed 2.8): user_id (= account_id), account_id, date, pre_balance (before),
 * balance (after), close_profit, position_profit, commission, risk_ratio, force_close. */
json_t *codec_account_settlement(const account_settlement *as);

/* ------------------------------------------------------------------------------------------
 * The HTTP envelope (SPEC 5) and status codes
 * ------------------------------------------------------------------------------------------ */

/* {"success":true,"data":data,"error":null}. STEALS data; on allocation failure data is
 * released and NULL returned. NULL data also gives NULL, so codec_envelope_ok(codec_order(e, o))
 * is safe when the inner encoder fails; pass json_null() for "data":null. */
json_t *codec_envelope_ok(json_t *data);

/* {"success":false,"data":null,"error":{"code":code,"message":message}}. */
json_t *codec_envelope_error(int code, const char *message);

/* Conditions only HTTP has, which SPEC 7 gives no code for. They extend the 9xxx protocol band
 * and travel in error.code like any other code. */
enum {
    CODEC_ERR_FORBIDDEN = 9006, /* authenticated, but not allowed (admin route, other's account) */
    CODEC_ERR_NOT_FOUND = 9007, /* no such route, or a resource SPEC 7 has no code for */
    CODEC_ERR_CONFLICT = 9008,  /* the target's state forbids the action */
    CODEC_ERR_TOO_LARGE = 9009, /* request body over the limit */
    CODEC_ERR_METHOD_NOT_ALLOWED = 9010, /* known path, wrong method */
};

// clang-format off
/* The HTTP status of an error code:
 *
 *   code                                                 status
 *   0                                                    200 OK
 *   1008 invalid order, 2003 deposit, 2004 withdraw,     400 Bad Request (the input itself is
 *   9003 bad message                                         wrong: type, range, tick, amount)
 *   9001 auth failed, 9002 not authenticated             401 Unauthorized
 *   9006 CODEC_ERR_FORBIDDEN                             403 Forbidden
 *   1006 account, 1007 instrument, 3001 order not        404 Not Found
 *   found, 9007 CODEC_ERR_NOT_FOUND
 *   9010 CODEC_ERR_METHOD_NOT_ALLOWED                    405 Method Not Allowed
 *   2001 account exists, 3002 not cancellable, 3003      409 Conflict (the request is fine, the
 *   submit failed (duplicate order id), 9008                 state it meets is not)
 *   CODEC_ERR_CONFLICT (e.g. delisting while held)
 *   9009 CODEC_ERR_TOO_LARGE                             413 Content Too Large
 *   1001 funds, 1002 position limit, 1003 order value,   422 Unprocessable (a well-formed request
 *   1004 risk ratio, 1005 self-trade, 2002 account           a business rule refuses)
 *   frozen, 2005 insufficient position, 6001
 *   settlement price missing
 *   9004 rate limited                                    429 Too Many Requests
 *   5000-5003, 6002, 6003, 9999 and any unknown code     500 Internal Server Error
 *   4001 no matching engine, 9005 unavailable            503 Service Unavailable
 *
 * 2004 is 400 although "withdraw more than available" is a rule: the engine uses the one code
 * for a non-positive amount as well, and the message tells them apart. */
// clang-format on
int codec_http_status(int error_code);

/* The status of an engine result for the command that produced it. Identical to
 * codec_http_status(code), except that the engine reports state conflicts of the instrument
 * lifecycle (suspend twice, resume a trading one, delist while accounts hold positions, touch a
 * delisted one) as 1008, which this turns into 409. */
int codec_command_http_status(command_type type, int code);

/* ------------------------------------------------------------------------------------------
 * The `type` WebSocket protocol (seed lines 6744-7579): server messages
 * ------------------------------------------------------------------------------------------ */

/* {"type":"error","code":code,"message":message} */
json_t *codec_ws_error(int code, const char *message);

/* {"type":"order_response","success":true,"order_id":id,"error_code":null,"error_message":null},
 * or success false with order_id null and the code and message when code != 0. */
json_t *codec_ws_order_response(int code, const char *order_id, const char *message);

/* {"type":"order_status","order_id","status","filled_volume","remaining_volume","timestamp"}
 * with timestamp = the order's update time (ms). */
json_t *codec_ws_order_status(const engine *e, const order *ord);

/* codec_trade with "type":"trade". */
json_t *codec_ws_trade(const engine *e, const trade *trd);

/* codec_account with "type":"account_update" and "timestamp" (ms, given by the caller: the time
 * of the command that changed the account). */
json_t *codec_ws_account_update(const engine *e, const account *acc, int64_t timestamp_ms);

/* ------------------------------------------------------------------------------------------
 * The hot messages written straight to JSON text (json_builder.h: jb_text)
 * ------------------------------------------------------------------------------------------
 * Each appends to t exactly the bytes json_dumps(JSON_COMPACT | JSON_REAL_PRECISION(15)) gives
 * for the jansson encoder of the same name (the field lists are shared), without building the
 * tree; false when t has failed (out of memory). */

bool codec_order_text(json_text *t, const engine *e, const order *ord);
bool codec_ws_order_status_text(json_text *t, const engine *e, const order *ord);
bool codec_ws_trade_text(json_text *t, const engine *e, const trade *trd);
bool codec_ws_account_update_text(json_text *t, const engine *e, const account *acc,
                                  int64_t timestamp_ms);
/* The members of codec_ws_order_response into any builder, so a caller can add its own. */
void codec_put_ws_order_response(json_builder *b, int code, const char *order_id,
                                 const char *message);
/* codec_envelope_ok as text: `{"success":true,"data":` before the data, `,"error":null}` after. */
void codec_envelope_ok_open(json_text *t);
bool codec_envelope_ok_close(json_text *t);

/* ------------------------------------------------------------------------------------------
 * Decoders: JSON -> engine commands (SPEC 5 leniency)
 * ------------------------------------------------------------------------------------------
 * - Enums are case-insensitive and ignore underscores ("Buy", "close_today", "market").
 * - Numbers may be JSON integers, reals, or strings holding a finite number ("10", "3850.2").
 * - A member that is absent or JSON null is "absent": an optional field takes its default, a
 *   required one is an error. An optional string that is "" is absent too.
 * - Strings must fit their engine buffer (the message names the field and the limit) and must
 *   not contain U+0000.
 * - Error codes: the body is not a JSON object -> 9003; a field of an order or cancel -> 1008;
 *   a field of any other request -> 9003. Rules on values (volume range, price tick, amount > 0)
 *   are the engine's, which names the value in its own message. */

/* json_loadb(text, len, 0, err), read without jansson's lexer for what requests nearly always
 * are: one flat object of printable-ASCII strings without escapes, integers of up to 18 digits,
 * plain decimals, true, false and null (jansson's parser was the largest cost of reading an
 * order). Any other text (nesting, escapes, non-ASCII, exponents, syntax errors) goes to
 * json_loadb, so the value, and any error, are always what jansson gives. */
json_t *codec_load(const char *text, size_t len, json_error_t *err);

/* Outcome of one field read (the codec_get_* helpers). */
enum {
    CODEC_FIELD_ERROR = -1, /* wrong type, malformed, too long, or required and absent: see msg */
    CODEC_FIELD_ABSENT = 0, /* optional and absent: *out is untouched (strings: set to "") */
    CODEC_FIELD_OK = 1,
};

/* What the client sent, for error messages that name the offending value: `string "abc"` (cut
 * at a character boundary after 40 bytes, marked "..."), `number 3.5`, `true`, `object`. */
void codec_describe(const json_t *v, char *out, size_t outlen);

/* A string member into out[cap]. Required and absent -> "<field> is required"; required and ""
 * -> "<field> must not be empty"; too long -> "<field> is too long: N bytes, at most cap-1". */
int codec_get_string(const json_t *obj, const char *field, char *out, size_t cap, bool required,
                     char *msg, size_t msglen);

/* A finite number member (integer, real or numeric string). */
int codec_get_number(const json_t *obj, const char *field, double *out, bool required, char *msg,
                     size_t msglen);

/* A whole number member: 3 and 3.0 are fine, 3.5 is "<field> must be a whole number, got 3.5";
 * magnitudes beyond 2^53 are refused as out of range. */
int codec_get_whole(const json_t *obj, const char *field, int64_t *out, bool required, char *msg,
                    size_t msglen);

/* A boolean member (true/false only). */
int codec_get_bool(const json_t *obj, const char *field, bool *out, bool required, char *msg,
                   size_t msglen);

/* An enumeration member: a string that parse accepts. allowed lists the canonical spellings for
 * the message: `direction must be one of BUY, SELL; got "UP"`. */
typedef int (*codec_enum_parser)(const char *text, int *value);
int codec_get_enum(const json_t *obj, const char *field, codec_enum_parser parse,
                   const char *allowed, int *out, bool required, char *msg, size_t msglen);

/* Parsers for codec_get_enum over the parsers of types.h. */
int codec_parse_direction(const char *text, int *value);
int codec_parse_offset(const char *text, int *value);
int codec_parse_price_type(const char *text, int *value);
int codec_parse_time_condition(const char *text, int *value);
int codec_parse_volume_condition(const char *text, int *value);

/* POST /api/order/submit, `type` submit_order:
 *   account_id (else user_id: the legacy account named by its owner id; the caller checks that the
 *   user may trade it), user_id (optional, type-checked), instrument_id, direction, offset (OPEN),
 *   volume (whole), price or limit_price (required for LIMIT, ignored for MARKET/ANY),
 *   order_type or price_type (LIMIT; MARKET = ANY), time_condition (GFD; IOC; GTC),
 *   volume_condition (ANY; ALL), order_id (optional client id).
 * Fills *out completely (zeroing it first). */
int codec_parse_order(const json_t *body, order_request *out, char *msg, size_t msglen);

/* POST /api/order/cancel, `type` cancel_order: account_id (else user_id) and order_id.
 * Sets out->type = CMD_ORDER_CANCEL and out->u.cancel; out->ts_ns is left to the gateway. */
int codec_parse_cancel(const json_t *body, command *out, char *msg, size_t msglen);

/* POST /api/account/open, /api/user/{id}/account/create: user_id, account_id, account_name
 * (else user_name), init_cash (else init_balance; default 0), all optional here. Sets
 * out->type = CMD_ACCOUNT_OPEN and out->u.account_open. The caller completes the ids: from the
 * path, the legacy rule (account_id = user_id when user_id is no registered user) or a generated
 * ACC_ id; the engine refuses an empty account_id. */
int codec_parse_open_account(const json_t *body, command *out, char *msg, size_t msglen);

/* A new account's id: 1-63 of A-Z a-z 0-9 _ . - @ :, not "." or "..", and not a word the
 * /api/account/{id} routes take for themselves (list, open, deposit, withdraw, detail), so that
 * every account can be named in a URL. 0, or ERR_BAD_MESSAGE with msg naming the id. */
int codec_check_account_id(const char *id, char *msg, size_t msglen);

/* POST /api/account/deposit|withdraw: account_id (else user_id) and amount (a number; the engine
 * refuses amount <= 0 with 2003/2004). type is CMD_DEPOSIT or CMD_WITHDRAW. */
int codec_parse_transfer(const json_t *body, command_type type, command *out, char *msg,
                         size_t msglen);

/* POST /admin/instrument/create, PUT /admin/instrument/{id}/update: instrument_id, instrument_name
 * (or name), instrument_type (Future|Option|Stock), exchange (or exchange_id),
 * contract_multiplier (or multiplier, volume_multiple), price_tick, margin_rate,
 * commission_rate, commission_per_lot, limit_up_rate, limit_down_rate, list_date, expire_date,
 * pre_settlement (or init_price), pre_close. *fields receives the UPDATE_* bits of the members
 * present. Creation defaults: Future, margin 0.1, limits 0.1, no commission, pre_close =
 * pre_settlement. Errors -> 9003 naming the field. */
int codec_parse_instrument(const json_t *body, instrument_spec *out, uint32_t *fields, char *msg,
                           size_t msglen);

#endif
