/* One DIFF session (shinnytech/diff, SPEC 6) as the I/O thread keeps it: what the client asked
 * for and what it is owed.
 *
 * The owed data is a single merge patch: every change from the engine thread is folded into it
 * (RFC 7386 composition), and a peek_message takes it whole as one rtn_data. Many engine events
 * between two peeks therefore become one small message, and a client that never peeks costs at
 * most the size of the state it watches, not a queue of events. Notifies are kept apart because
 * DIFF clients drop any rtn_data element that carries a notify together with other data.
 *
 * The module parses client messages and composes rtn_data; it sends nothing itself. */
#ifndef QAEX_DIFF_SESSION_H
#define QAEX_DIFF_SESSION_H

#include "engine/engine.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define DIFF_MAX_QUOTES 64
#define DIFF_MAX_CHARTS 8

typedef struct diff_chart {
    char chart_id[QAEX_ID_LEN];
    char instrument_id[QAEX_INSTRUMENT_ID_LEN];
    kline_period period;
    int64_t view_width;
    int64_t left_id, right_id; /* the bars the client holds: -1 before the first */
} diff_chart;

typedef struct diff_session {
    json_t *owed;     /* merge patch not yet sent (an object) */
    json_t *notifies; /* notify.<id> not yet sent (an object) */
    /* deletions the client must apply before what is owed (a tree of nulls, sent first): a
     * trade.<key> it must drop, a member deleted and then set anew */
    json_t *forgotten;
    bool peek_waiting;
    /* login_pending: a req_login is being checked (password, token, the engine's ownership
     * check). Until the engine accepts it nothing of its account reaches the session, and the
     * current login (logged_in, user_key, account_id) stays as it is: a refused login changes
     * nothing. */
    bool login_pending, logged_in;
    char user_key[QAEX_ID_LEN]; /* the name the client logged in with: trade.<user_key> */
    char account_id[QAEX_ID_LEN];
    char pending_key[QAEX_ID_LEN], pending_account[QAEX_ID_LEN]; /* of the login being checked */
    char quotes[DIFF_MAX_QUOTES][QAEX_INSTRUMENT_ID_LEN];
    int n_quotes;
    diff_chart charts[DIFF_MAX_CHARTS];
    int n_charts;
    uint64_t notify_seq;
} diff_session;

int diff_session_init(diff_session *d);
void diff_session_free(diff_session *d);

/* Folds a patch of the DIFF tree into what is owed; its "notify" member goes to the notifies.
 * Returns -1 when out of memory (the session should then be closed: it can no longer
 * converge). */
int diff_session_merge(diff_session *d, const json_t *patch);

/* The client must drop trade.<user_key> (the session logged in to another account): the next
 * rtn_data deletes it first, and nothing still owed under it is sent. -1 when out of memory. */
int diff_session_forget_trade(diff_session *d, const char *user_key);
/* Folds a patch of one account's subtree, under trade.<user_key>. */
int diff_session_merge_trade(diff_session *d, const json_t *account_patch);
/* Folds klines.<ins>.<duration> members of a patch only for the periods this session charts,
 * and moves those charts' right_id (and left_id, once the window is full) with the newest bar. */
int diff_session_merge_klines(diff_session *d, const char *instrument_id, const json_t *patch);
/* Owes a notify: level "INFO" | "WARNING" | "ERROR", the SPEC code, the text. */
int diff_session_notify(diff_session *d, const char *level, int code, const char *content);

/* A peek is waiting and nothing is owed: a patch shared by many sessions can go out to this one
 * as it is (then clear peek_waiting), with no merge and no encoding of its own. */
bool diff_session_idle(const diff_session *d);

/* A peek is waiting and something is owed. */
bool diff_session_ready(const diff_session *d);
/* The rtn_data text of everything owed (malloc'ed; NULL when out of memory); clears what was
 * owed and the waiting peek. */
char *diff_session_take(diff_session *d, size_t *len);

/* True when the session watches an instrument's quotes / charts it. */
bool diff_session_quotes(const diff_session *d, const char *instrument_id);
bool diff_session_charts(const diff_session *d, const char *instrument_id);

/* ---- client messages ---- */

typedef enum diff_aid {
    DIFF_AID_BAD = 0, /* malformed: error_code and error say why */
    DIFF_AID_PEEK,
    DIFF_AID_LOGIN,
    DIFF_AID_SUBSCRIBE_QUOTE,
    DIFF_AID_SET_CHART,
    DIFF_AID_INSERT_ORDER,
    DIFF_AID_CANCEL_ORDER,
    DIFF_AID_TRANSFER,
    DIFF_AID_IGNORED, /* a known or unknown aid this server does not act on */
} diff_aid;

typedef struct diff_message {
    diff_aid aid;
    char aid_text[32];
    /* req_login */
    /* the password, or a login token standing for it (up to AUTH_TOKEN_MAX bytes) */
    char bid[QAEX_ID_LEN], user_name[QAEX_ID_LEN], password[2048];
    /* subscribe_quote: instrument ids, de-duplicated, in order */
    char ins[DIFF_MAX_QUOTES][QAEX_INSTRUMENT_ID_LEN];
    int n_ins;
    /* set_chart */
    diff_chart chart;
    /* insert_order (account_id left empty: the session's account acts), cancel_order;
     * order_id is also set for an insert_order refused after its order_id was read */
    order_request order;
    char order_id[QAEX_ID_LEN];
    /* req_transfer: positive is bank -> futures */
    double amount;
    int error_code;
    char error[QAEX_MSG_LEN];
} diff_message;

/* Parses one client frame. Never fails silently: DIFF_AID_BAD carries a message naming the
 * field and the value received. */
void diff_parse(const char *text, size_t len, diff_message *out);

#endif
