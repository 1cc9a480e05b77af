#include "engine/types.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

const char *qaex_error_name(int code) {
    switch (code) {
        case QAEX_OK:
            return "ok";
        case ERR_INSUFFICIENT_FUNDS:
            return "insufficient funds";
        case ERR_POSITION_LIMIT:
            return "position limit exceeded";
        case ERR_ORDER_VALUE:
            return "order value too large";
        case ERR_RISK_RATIO:
            return "risk ratio too high";
        case ERR_SELF_TRADE:
            return "self-trade";
        case ERR_ACCOUNT_NOT_FOUND:
            return "account not found";
        case ERR_INSTRUMENT_NOT_FOUND:
            return "instrument not found";
        case ERR_INVALID_ORDER:
            return "invalid order";
        case ERR_ACCOUNT_EXISTS:
            return "account exists";
        case ERR_ACCOUNT_FROZEN:
            return "account frozen";
        case ERR_DEPOSIT:
            return "deposit failed";
        case ERR_WITHDRAW:
            return "withdraw failed";
        case ERR_INSUFFICIENT_POSITION:
            return "insufficient position";
        case ERR_ORDER_NOT_FOUND:
            return "order not found";
        case ERR_ORDER_NOT_CANCELLABLE:
            return "order not cancellable";
        case ERR_SUBMIT_FAILED:
            return "submit failed";
        case ERR_NO_MATCHING_ENGINE:
            return "no matching engine";
        case ERR_INTERNAL:
            return "internal error";
        case ERR_CONFIG:
            return "configuration error";
        case ERR_STORAGE:
            return "storage error";
        case ERR_SERIALIZATION:
            return "serialization error";
        case ERR_SETTLEMENT_PRICE_MISSING:
            return "settlement price missing";
        case ERR_SETTLEMENT_FAILED:
            return "settlement failed";
        case ERR_LIQUIDATION_FAILED:
            return "liquidation failed";
        case ERR_AUTH_FAILED:
            return "authentication failed";
        case ERR_NOT_AUTHENTICATED:
            return "not authenticated";
        case ERR_BAD_MESSAGE:
            return "bad message";
        case ERR_RATE_LIMITED:
            return "rate limited";
        case ERR_UNAVAILABLE:
            return "service unavailable";
        default:
            return "unknown error";
    }
}

/* Compares ignoring case and the underscores some clients put inside enum names. */
static bool name_equal(const char *text, const char *name) {
    if (text == NULL) return false;
    for (;;) {
        while (*text == '_')
            text++;
        while (*name == '_')
            name++;
        if (*text == '\0' || *name == '\0') return *text == *name;
        if (toupper((unsigned char)*text) != toupper((unsigned char)*name)) return false;
        text++;
        name++;
    }
}

typedef struct name_value {
    const char *name;
    int value;
} name_value;

static int parse_table(const char *text, const name_value *table, int n, int *out) {
    for (int i = 0; i < n; i++) {
        if (name_equal(text, table[i].name)) {
            *out = table[i].value;
            return 0;
        }
    }
    return -1;
}

/* Defines a parser for one enum from a list of {spelling, value} pairs. */
#define ENUM_PARSER(fn, type, ...)                                                                 \
    int fn(const char *text, type *out) {                                                          \
        static const name_value table[] = {__VA_ARGS__};                                           \
        int v;                                                                                     \
        if (parse_table(text, table, (int)(sizeof table / sizeof table[0]), &v) != 0) return -1;   \
        *out = (type)v;                                                                            \
        return 0;                                                                                  \
    }

ENUM_PARSER(direction_parse, direction, {"BUY", DIR_BUY}, {"SELL", DIR_SELL})
ENUM_PARSER(offset_parse, offset, {"OPEN", OFFSET_OPEN}, {"CLOSE", OFFSET_CLOSE},
            {"CLOSETODAY", OFFSET_CLOSETODAY}, {"CLOSEYESTERDAY", OFFSET_CLOSEYESTERDAY})
ENUM_PARSER(price_type_parse, price_type, {"LIMIT", PRICE_LIMIT}, {"ANY", PRICE_ANY},
            {"MARKET", PRICE_ANY})
ENUM_PARSER(time_condition_parse, time_condition, {"GFD", TC_GFD}, {"IOC", TC_IOC}, {"GTC", TC_GTC})
ENUM_PARSER(volume_condition_parse, volume_condition, {"ANY", VC_ANY}, {"ALL", VC_ALL})
ENUM_PARSER(instrument_type_parse, instrument_type, {"Future", INSTRUMENT_FUTURE},
            {"Futures", INSTRUMENT_FUTURE}, {"Option", INSTRUMENT_OPTION},
            {"Stock", INSTRUMENT_STOCK})

const char *direction_name(direction d) {
    return d == DIR_BUY ? "BUY" : "SELL";
}

const char *offset_name(offset o) {
    static const char *const names[] = {"OPEN", "CLOSE", "CLOSETODAY", "CLOSEYESTERDAY"};
    return (unsigned)o < 4 ? names[o] : "OPEN";
}

const char *price_type_name(price_type p) {
    return p == PRICE_ANY ? "ANY" : "LIMIT";
}

const char *time_condition_name(time_condition t) {
    static const char *const names[] = {"GFD", "IOC", "GTC"};
    return (unsigned)t < 3 ? names[t] : "GFD";
}

const char *volume_condition_name(volume_condition v) {
    return v == VC_ALL ? "ALL" : "ANY";
}

const char *order_status_name(order_status s) {
    static const char *const names[] = {"Submitted", "PartiallyFilled", "Filled", "Cancelled",
                                        "Rejected"};
    return (unsigned)s < 5 ? names[s] : "Rejected";
}

bool order_status_alive(order_status s) {
    return s == ORDER_SUBMITTED || s == ORDER_PARTIALLY_FILLED;
}

const char *instrument_type_name(instrument_type t) {
    static const char *const names[] = {"Future", "Option", "Stock"};
    return (unsigned)t < 3 ? names[t] : "Future";
}

const char *instrument_status_name(instrument_status s) {
    static const char *const names[] = {"Trading", "Suspended", "Delisted"};
    return (unsigned)s < 3 ? names[s] : "Trading";
}

const char *risk_level_name(risk_level r) {
    static const char *const names[] = {"Low", "Medium", "High", "Critical"};
    return (unsigned)r < 4 ? names[r] : "Critical";
}

risk_level risk_level_of(double risk_ratio) {
    if (risk_ratio < 0.6) return RISK_LOW;
    if (risk_ratio < 0.8) return RISK_MEDIUM;
    if (risk_ratio < 0.95) return RISK_HIGH;
    return RISK_CRITICAL;
}

int towards_of(direction d, offset o) {
    if (d == DIR_BUY) {
        switch (o) {
            case OFFSET_OPEN:
                return 1;
            case OFFSET_CLOSE:
                return 3;
            case OFFSET_CLOSETODAY:
                return 4;
            case OFFSET_CLOSEYESTERDAY:
                return 3;
        }
    } else {
        switch (o) {
            case OFFSET_OPEN:
                return -2;
            case OFFSET_CLOSE:
                return -3;
            case OFFSET_CLOSETODAY:
                return -4;
            case OFFSET_CLOSEYESTERDAY:
                return -1;
        }
    }
    return 0;
}

bool qaex_date_valid(const char *s) {
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-') return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !isdigit((unsigned char)s[i])) return false;
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    if (m < 1 || m > 12 || d < 1) return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap);
}
