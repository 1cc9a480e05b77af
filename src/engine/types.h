/* Enumerations, error codes and fixed sizes shared by every part of the engine and its clients.
 * Parsing is case-insensitive and accepts the spellings of the seed's several APIs
 * ("BUY"/"Buy", "CLOSETODAY"/"CLOSE_TODAY", "MARKET"/"ANY"), so the protocol codecs need no tables
 * of their own. */
#ifndef QAEX_TYPES_H
#define QAEX_TYPES_H

#include <stdbool.h>
#include <stdint.h>

/* Identifier buffers, including the terminating NUL. Longer input is refused with 1008. */
#define QAEX_ID_LEN 64
#define QAEX_INSTRUMENT_ID_LEN 32
#define QAEX_NAME_LEN 64
#define QAEX_DATE_LEN 11 /* YYYY-MM-DD */
#define QAEX_MSG_LEN 256

/* Error codes of SPEC section 7. */
typedef enum qaex_error {
    QAEX_OK = 0,
    ERR_INSUFFICIENT_FUNDS = 1001,
    ERR_POSITION_LIMIT = 1002,
    ERR_ORDER_VALUE = 1003,
    ERR_RISK_RATIO = 1004,
    ERR_SELF_TRADE = 1005,
    ERR_ACCOUNT_NOT_FOUND = 1006,
    ERR_INSTRUMENT_NOT_FOUND = 1007,
    ERR_INVALID_ORDER = 1008,
    ERR_ACCOUNT_EXISTS = 2001,
    ERR_ACCOUNT_FROZEN = 2002,
    ERR_DEPOSIT = 2003,
    ERR_WITHDRAW = 2004,
    ERR_INSUFFICIENT_POSITION = 2005,
    ERR_ORDER_NOT_FOUND = 3001,
    ERR_ORDER_NOT_CANCELLABLE = 3002,
    ERR_SUBMIT_FAILED = 3003,
    ERR_NO_MATCHING_ENGINE = 4001,
    ERR_INTERNAL = 5000,
    ERR_CONFIG = 5001,
    ERR_STORAGE = 5002,
    ERR_SERIALIZATION = 5003,
    ERR_SETTLEMENT_PRICE_MISSING = 6001,
    ERR_SETTLEMENT_FAILED = 6002,
    ERR_LIQUIDATION_FAILED = 6003,
    ERR_AUTH_FAILED = 9001,
    ERR_NOT_AUTHENTICATED = 9002,
    ERR_BAD_MESSAGE = 9003,
    ERR_RATE_LIMITED = 9004,
    ERR_UNAVAILABLE = 9005,
    ERR_UNKNOWN = 9999,
} qaex_error;

/* A short English name of the error class ("insufficient funds"). */
const char *qaex_error_name(int code);

/* A calendar date written YYYY-MM-DD (2024-02-29 yes, 2025-02-29 and 2025-1-5 no): the form
 * every date of the API and the configuration takes, and the one filters compare as text. */
bool qaex_date_valid(const char *s);

typedef enum direction { DIR_BUY = 0, DIR_SELL = 1 } direction;

typedef enum offset {
    OFFSET_OPEN = 0,
    OFFSET_CLOSE = 1,          /* closes today's lots first, then yesterday's */
    OFFSET_CLOSETODAY = 2,     /* only today's lots (SHFE) */
    OFFSET_CLOSEYESTERDAY = 3, /* only yesterday's lots */
} offset;

/* MARKET is an alias of ANY: it trades at any price inside the limit band. */
typedef enum price_type { PRICE_LIMIT = 0, PRICE_ANY = 1 } price_type;

typedef enum time_condition { TC_GFD = 0, TC_IOC = 1, TC_GTC = 2 } time_condition;

/* ALL makes an IOC order fill-or-kill. */
typedef enum volume_condition { VC_ANY = 0, VC_ALL = 1 } volume_condition;

typedef enum order_status {
    ORDER_SUBMITTED = 0,
    ORDER_PARTIALLY_FILLED = 1,
    ORDER_FILLED = 2,
    ORDER_CANCELLED = 3,
    ORDER_REJECTED = 4,
} order_status;

typedef enum instrument_type {
    INSTRUMENT_FUTURE = 0,
    INSTRUMENT_OPTION = 1,
    INSTRUMENT_STOCK = 2
} instrument_type;

typedef enum instrument_status {
    INSTRUMENT_TRADING = 0,
    INSTRUMENT_SUSPENDED = 1,
    INSTRUMENT_DELISTED = 2,
} instrument_status;

typedef enum risk_level { RISK_LOW = 0, RISK_MEDIUM, RISK_HIGH, RISK_CRITICAL } risk_level;

const char *direction_name(direction d);
const char *offset_name(offset o);
const char *price_type_name(price_type p);
const char *time_condition_name(time_condition t);
const char *volume_condition_name(volume_condition v);
const char *order_status_name(order_status s); /* "Submitted", "PartiallyFilled", ... */
bool order_status_alive(order_status s);       /* DIFF "ALIVE" versus "FINISHED" */
const char *instrument_type_name(instrument_type t);
const char *instrument_status_name(instrument_status s);
const char *risk_level_name(risk_level r);
risk_level risk_level_of(double risk_ratio);

/* Each parser returns 0 and sets *out, or -1 when the text names no known value. */
int direction_parse(const char *text, direction *out);
int offset_parse(const char *text, offset *out);
int price_type_parse(const char *text, price_type *out);
int time_condition_parse(const char *text, time_condition *out);
int volume_condition_parse(const char *text, volume_condition *out);
int instrument_type_parse(const char *text, instrument_type *out);

/* The qars "towards" code of a direction and offset (QIFI output only). */
int towards_of(direction d, offset o);

#endif
