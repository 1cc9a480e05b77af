/* ws_bench: WebSocket load generator for qaexchange-server.
 *
 * A single-threaded epoll client with its own minimal RFC 6455 framing (masked text frames out;
 * text, continuation, ping, pong and close frames in; a ping is answered with a pong carrying
 * the same payload). The handshake checks for "101" only; Sec-WebSocket-Accept is not verified.
 *
 * Orders mode (default): N connections (default 16), connection i authenticated as account
 * PREFIX<i> through /ws?user_id=PREFIX<i> (the accounts are opened first over REST unless
 * --no-open), each sending submit_order messages with a request_id and timing
 * submit -> order_response (matched by the request_id the server echoes back).
 *   full speed:  each connection keeps --window orders in flight (closed loop); latency runs from
 *                the send.
 *   --rate R:    R orders/s in total, order k due at t0 + k/R on connection k mod N (open loop);
 *                latency runs from the due time, so a late send or a stalled server counts.
 * Even connections only BUY, odd ones only SELL (no self-trade); on each connection some orders
 * are GFD limit orders resting a few ticks from 3800 and the others IOC limit orders
 * priced through the touch that take a resting order of the other side: two orders in five rest
 * and three cross, so the takers outnumber the resting orders, the book stays small (a few
 * orders) and nearly every resting order trades (about 0.4 trades per order).
 *
 * Hold mode (--hold N): N sessions on /ws?user_id=PREFIX<i>, each subscribed to the ticker and
 * orderbook channels of IF2501, held for --duration seconds while something else trades; prints
 * every second the sessions open and the messages received (in total and by a few sample
 * sessions), and the server's VmRSS when --server-pid is given.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };

typedef struct conn {
    int fd;
    int state;
    int idx;
    bool buy;
    char account[48];
    /* orders */
    uint64_t next_seq; /* next request_id to send */
    uint64_t done;     /* order_responses received */
    int outstanding;
    int64_t *sent_ns; /* full speed: send time by request_id modulo ring */
    /* receive */
    unsigned char *rx;
    size_t rx_len, rx_cap;
    unsigned char *msg; /* a fragmented message being assembled */
    size_t msg_len, msg_cap;
    /* send */
    unsigned char *tx;
    size_t tx_off, tx_len, tx_cap;
    bool want_out;
    /* counts */
    uint64_t received, received_mark;
    bool subscribed;
} conn;

typedef struct opts {
    const char *host;
    int port;
    int conns;
    const char *prefix;
    bool open_accounts;
    double init_cash;
    double duration;
    double warmup;
    double rate;
    int window;
    int hold;
    int server_pid;
    int samples;
    int concurrent_connects;
    const char *instrument;
    const char *channels;
} opts;

static opts O = {
    .host = "127.0.0.1",
    .port = 8080,
    .conns = 16,
    .prefix = "W",
    .open_accounts = true,
    .init_cash = 1e12,
    .duration = 10,
    .warmup = 2,
    .rate = 0,
    .window = 32,
    .hold = 0,
    .server_pid = 0,
    .samples = 5,
    .concurrent_connects = 200,
    .instrument = "IF2501",
    .channels = "\"ticker\",\"orderbook\"",
};

static int epfd;
static conn *C;
static int n_conns;
static int64_t t_measure_start, t_measure_end;
static int64_t *lat;
static size_t n_lat, cap_lat;
static uint64_t ok_in_window, refused_in_window, errors_seen, other_msgs, closed_conns;
static uint64_t order_msgs_total;
static uint32_t rng = 2463534242u;

#define RING 65536 /* per connection, full speed: must exceed the window */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint32_t xorshift(void) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "ws_bench: out of memory\n");
        exit(1);
    }
    return q;
}

static void reserve(unsigned char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    *buf = xrealloc(*buf, c);
    *cap = c;
}

static long server_rss_kb(void) {
    if (O.server_pid <= 0) return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", O.server_pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

/* ---- REST: open the accounts ---- */

static int tcp_connect_blocking(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)O.port)};
    inet_pton(AF_INET, O.host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* POSTs a body and returns the HTTP status (the response is read and discarded). */
static int http_post(int fd, const char *path, const char *body) {
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     path, O.host, O.port, strlen(body), body);
    if (write(fd, req, (size_t)n) != n) return -1;
    char buf[8192];
    size_t len = 0;
    char *end = NULL;
    while (end == NULL) {
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r <= 0) return -1;
        len += (size_t)r;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end == NULL && len == sizeof buf - 1) return -1;
    }
    int status = atoi(buf + 9);
    const char *cl = strcasestr(buf, "content-length:");
    size_t body_len = cl ? strtoul(cl + 15, NULL, 10) : 0;
    size_t have = len - (size_t)(end + 4 - buf);
    while (have < body_len) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0) return -1;
        have += (size_t)r;
    }
    return status;
}

static void open_accounts(int n) {
    int fd = tcp_connect_blocking();
    int opened = 0, existed = 0;
    for (int i = 0; i < n; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"user_id\":\"%s%d\",\"user_name\":\"bench\",\"init_cash\":%.0f,"
                 "\"account_type\":\"individual\",\"password\":\"x\"}",
                 O.prefix, i, O.init_cash);
        int st = http_post(fd, "/api/account/open", body);
        if (st == 200)
            opened++;
        else if (st == 409)
            existed++;
        else {
            fprintf(stderr, "ws_bench: opening account %s%d: HTTP %d\n", O.prefix, i, st);
            exit(1);
        }
    }
    close(fd);
    printf("accounts: %d opened, %d already open\n", opened, existed);
}

/* ---- WebSocket framing ---- */

static void queue_frame(conn *c, int opcode, const void *payload, size_t len) {
    reserve(&c->tx, &c->tx_cap, c->tx_len + len + 14);
    unsigned char *p = c->tx + c->tx_len;
    *p++ = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        *p++ = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        *p++ = 0x80 | 126;
        *p++ = (unsigned char)(len >> 8);
        *p++ = (unsigned char)len;
    } else {
        *p++ = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            *p++ = (unsigned char)((uint64_t)len >> (8 * i));
    }
    uint32_t m = xorshift();
    unsigned char mask[4] = {(unsigned char)m, (unsigned char)(m >> 8), (unsigned char)(m >> 16),
                             (unsigned char)(m >> 24)};
    memcpy(p, mask, 4);
    p += 4;
    const unsigned char *src = payload;
    for (size_t i = 0; i < len; i++)
        p[i] = src[i] ^ mask[i & 3];
    c->tx_len = (size_t)(p + len - c->tx);
}

static void conn_close(conn *c) {
    if (c->state == ST_CLOSED) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = ST_CLOSED;
    closed_conns++;
}

static void set_out_interest(conn *c, bool want) {
    if (c->want_out == want) return;
    c->want_out = want;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush_tx(conn *c) {
    while (c->tx_off < c->tx_len) {
        ssize_t n = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_out_interest(c, true);
                return;
            }
            if (errno == EINTR) continue;
            conn_close(c);
            return;
        }
        c->tx_off += (size_t)n;
    }
    c->tx_off = c->tx_len = 0;
    set_out_interest(c, false);
}

/* ---- orders ---- */

static void queue_order(conn *c, int64_t sent) {
    uint64_t seq = c->next_seq++;
    /* in every five orders two rest and three cross: more taking than resting keeps the book
     * small */
    uint64_t k = seq % 5;
    bool rest = k == 0 || k == 2;
    int r = (int)((seq / 5) % 5);
    double price;
    if (rest)
        price = c->buy ? 3800.0 - 0.2 * r : 3800.2 + 0.2 * r;
    else
        price = c->buy ? 3802.0 : 3798.0;
    char m[320];
    int n = snprintf(m, sizeof m,
                     "{\"type\":\"submit_order\",\"request_id\":\"%" PRIu64 "\",\"instrument_id\":"
                     "\"%s\",\"direction\":\"%s\",\"offset\":\"OPEN\",\"volume\":1,\"price\":%.1f,"
                     "\"order_type\":\"LIMIT\",\"time_condition\":\"%s\"}",
                     seq, O.instrument, c->buy ? "BUY" : "SELL", price, rest ? "GFD" : "IOC");
    if (c->sent_ns) c->sent_ns[seq % RING] = sent;
    c->outstanding++;
    queue_frame(c, 1, m, (size_t)n);
}

static void record_latency(int64_t ns) {
    if (n_lat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 1 << 20;
        lat = xrealloc(lat, cap_lat * sizeof *lat);
    }
    lat[n_lat++] = ns;
}

/* the due time of request `seq` of connection `idx` in rate mode */
static int64_t due_time(int64_t t0, int idx, uint64_t seq) {
    double k = (double)seq * n_conns + idx;
    return t0 + (int64_t)(k * 1e9 / O.rate);
}

static int64_t g_t0;
static bool g_sending;

static void on_order_response(conn *c, const char *m, int64_t now) {
    const char *rid = strstr(m, "\"request_id\":\"");
    if (rid == NULL) {
        other_msgs++;
        return;
    }
    uint64_t seq = strtoull(rid + 14, NULL, 10);
    bool success = strstr(m, "\"success\":true") != NULL;
    c->outstanding--;
    c->done++;
    int64_t start = O.rate > 0 ? due_time(g_t0, c->idx, seq) : c->sent_ns[seq % RING];
    if (now >= t_measure_start && now < t_measure_end) {
        if (success)
            ok_in_window++;
        else
            refused_in_window++;
    }
    if (start >= t_measure_start && start < t_measure_end) record_latency(now - start);
    static int refusals_shown;
    if (!success && refusals_shown++ < 3) fprintf(stderr, "ws_bench: refused: %.300s\n", m);
    if (O.rate <= 0 && g_sending && c->state == ST_OPEN) queue_order(c, now_ns());
}

/* messages received by type, for the hold mode's summary */
#define MAX_TYPES 16
static char type_name[MAX_TYPES][32];
static uint64_t type_count[MAX_TYPES], type_bytes[MAX_TYPES];
static int n_types;

static void count_type(const char *m, size_t len) {
    const char *t = strstr(m, "\"type\":\"");
    char name[32] = "?";
    if (t) {
        t += 8;
        size_t n = 0;
        while (t[n] && t[n] != '"' && n < sizeof name - 1)
            n++;
        memcpy(name, t, n);
        name[n] = '\0';
    }
    int i = 0;
    while (i < n_types && strcmp(type_name[i], name) != 0)
        i++;
    if (i == n_types) {
        if (n_types == MAX_TYPES) return;
        snprintf(type_name[n_types++], sizeof type_name[0], "%s", name);
    }
    type_count[i]++;
    type_bytes[i] += len;
}

static void on_message(conn *c, char *m, size_t len, int64_t now) {
    c->received++;
    count_type(m, len);
    if (strstr(m, "\"type\":\"order_response\"")) {
        order_msgs_total++;
        on_order_response(c, m, now);
    } else if (strstr(m, "\"type\":\"subscribe_response\"")) {
        c->subscribed = true;
    } else if (strstr(m, "\"type\":\"error\"")) {
        if (errors_seen++ < 3) fprintf(stderr, "ws_bench: error message: %.300s\n", m);
        /* a gateway-side refusal carries no request_id: free the window slot */
        if (O.hold == 0 && c->outstanding > 0 && strstr(m, "busy")) {
            c->outstanding--;
            if (O.rate <= 0 && g_sending) queue_order(c, now_ns());
        }
    }
}

/* Parses whole frames out of c->rx. */
static void parse_frames(conn *c, int64_t now) {
    size_t off = 0;
    while (c->rx_len - off >= 2) {
        unsigned char *p = c->rx + off;
        bool fin = p[0] & 0x80;
        int op = p[0] & 0x0f;
        bool masked = p[1] & 0x80;
        uint64_t len = p[1] & 0x7f;
        size_t hdr = 2;
        if (len == 126) {
            if (c->rx_len - off < 4) break;
            len = ((uint64_t)p[2] << 8) | p[3];
            hdr = 4;
        } else if (len == 127) {
            if (c->rx_len - off < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            hdr = 10;
        }
        if (masked) hdr += 4;
        if (c->rx_len - off < hdr + len) break;
        unsigned char *payload = p + hdr;
        if (masked)
            for (uint64_t i = 0; i < len; i++)
                payload[i] ^= p[hdr - 4 + (i & 3)];
        if (op == 0x9) {
            queue_frame(c, 0xA, payload, (size_t)len);
        } else if (op == 0x8) {
            conn_close(c);
            return;
        } else if (op == 0x1 || op == 0x2 || op == 0x0) {
            if (op != 0x0) c->msg_len = 0;
            reserve(&c->msg, &c->msg_cap, c->msg_len + len + 1);
            memcpy(c->msg + c->msg_len, payload, (size_t)len);
            c->msg_len += (size_t)len;
            if (fin) {
                c->msg[c->msg_len] = '\0';
                on_message(c, (char *)c->msg, c->msg_len, now);
                c->msg_len = 0;
            }
        }
        off += hdr + (size_t)len;
    }
    memmove(c->rx, c->rx + off, c->rx_len - off);
    c->rx_len -= off;
}

static void send_handshake(conn *c) {
    char req[512];
    unsigned char key[16];
    for (int i = 0; i < 16; i++)
        key[i] = (unsigned char)xorshift();
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char k64[25];
    int j = 0;
    for (int i = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)key[i] << 16 | (uint32_t)key[i + 1] << 8 | key[i + 2];
        k64[j++] = b64[v >> 18 & 63];
        k64[j++] = b64[v >> 12 & 63];
        k64[j++] = b64[v >> 6 & 63];
        k64[j++] = b64[v & 63];
    }
    uint32_t v = (uint32_t)key[15] << 16;
    k64[j++] = b64[v >> 18 & 63];
    k64[j++] = b64[v >> 12 & 63];
    k64[j++] = '=';
    k64[j++] = '=';
    k64[j] = '\0';
    int n = snprintf(req, sizeof req,
                     "GET /ws?user_id=%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     c->account, O.host, O.port, k64);
    reserve(&c->tx, &c->tx_cap, c->tx_len + (size_t)n);
    memcpy(c->tx + c->tx_len, req, (size_t)n);
    c->tx_len += (size_t)n;
    c->state = ST_HANDSHAKE;
    flush_tx(c);
}

static void on_open(conn *c) {
    if (O.hold > 0) {
        char m[256];
        int n = snprintf(m, sizeof m,
                         "{\"type\":\"subscribe\",\"channels\":[%s],\"instruments\":[\"%s\"]}",
                         O.channels, O.instrument);
        queue_frame(c, 1, m, (size_t)n);
        flush_tx(c);
    }
}

static void on_readable(conn *c, int64_t now) {
    for (;;) {
        reserve(&c->rx, &c->rx_cap, c->rx_len + 16384);
        ssize_t n = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len - 1, 0);
        if (n == 0) {
            conn_close(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) conn_close(c);
            break;
        }
        c->rx_len += (size_t)n;
        if (c->state == ST_HANDSHAKE) {
            c->rx[c->rx_len] = '\0';
            char *end = memmem(c->rx, c->rx_len, "\r\n\r\n", 4);
            if (end == NULL) continue;
            if (c->rx_len < 12 || memcmp(c->rx + 9, "101", 3) != 0) {
                fprintf(stderr, "ws_bench: handshake refused: %.200s\n", (char *)c->rx);
                conn_close(c);
                return;
            }
            size_t hl = (size_t)(end + 4 - (char *)c->rx);
            memmove(c->rx, c->rx + hl, c->rx_len - hl);
            c->rx_len -= hl;
            c->state = ST_OPEN;
            on_open(c);
        }
        if (c->state == ST_OPEN) parse_frames(c, now);
        if (c->state == ST_CLOSED) return;
        if ((size_t)n < 16384) break;
    }
    if (c->state == ST_OPEN && c->tx_len > c->tx_off) flush_tx(c);
}

static void start_connect(conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket (raise the descriptor limit)");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)O.port)};
    inet_pton(AF_INET, O.host, &a.sin_addr);
    c->state = ST_CONNECTING;
    int rc = connect(c->fd, (struct sockaddr *)&a, sizeof a);
    if (rc != 0 && errno != EINPROGRESS) die("connect");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->want_out = true;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl");
}

static void on_event(conn *c, uint32_t events, int64_t now) {
    if (c->state == ST_CLOSED) return;
    if (c->state == ST_CONNECTING) {
        if (events & (EPOLLERR | EPOLLHUP)) {
            fprintf(stderr, "ws_bench: connect failed for session %d\n", c->idx);
            conn_close(c);
            return;
        }
        if (events & EPOLLOUT) send_handshake(c);
        return;
    }
    if (events & EPOLLIN) on_readable(c, now);
    if (c->state == ST_CLOSED) return;
    if (events & EPOLLOUT) flush_tx(c);
    if ((events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLIN)) conn_close(c);
}

static int poll_once(int64_t timeout_ns) {
    struct epoll_event evs[512];
    struct timespec ts = {.tv_sec = timeout_ns / 1000000000LL,
                          .tv_nsec = timeout_ns % 1000000000LL};
    int n = epoll_pwait2(epfd, evs, 512, timeout_ns < 0 ? NULL : &ts, NULL);
    if (n < 0 && errno != EINTR) die("epoll_pwait2");
    int64_t now = now_ns();
    for (int i = 0; i < n; i++)
        on_event(evs[i].data.ptr, evs[i].events, now);
    return n;
}

/* Connects every session, at most --concurrent-connects handshakes at a time. */
static int connect_all(double limit_s) {
    int started = 0;
    int64_t deadline = now_ns() + (int64_t)(limit_s * 1e9);
    for (;;) {
        int pending = 0, open = 0;
        for (int i = 0; i < started; i++) {
            if (C[i].state == ST_CONNECTING || C[i].state == ST_HANDSHAKE) pending++;
            if (C[i].state == ST_OPEN) open++;
        }
        while (started < n_conns && pending < O.concurrent_connects) {
            start_connect(&C[started++]);
            pending++;
        }
        if (started == n_conns && pending == 0) return open;
        if (now_ns() > deadline) return open;
        poll_once(10 * 1000000LL);
    }
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pct(double p) {
    if (n_lat == 0) return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n_lat - 1) + 0.5);
    return (double)lat[i] / 1000.0;
}

/* ---- modes ---- */

static void print_types(void) {
    printf("messages by type (whole run):");
    for (int i = 0; i < n_types; i++)
        printf(" %s %" PRIu64 " (avg %" PRIu64 " B)", type_name[i], type_count[i],
               type_count[i] ? type_bytes[i] / type_count[i] : 0);
    printf("\n");
}

static int run_orders(void) {
    for (int i = 0; i < n_conns; i++)
        if (O.rate <= 0) C[i].sent_ns = xrealloc(NULL, RING * sizeof(int64_t));
    int open = connect_all(30);
    if (open != n_conns) {
        fprintf(stderr, "ws_bench: only %d of %d connections opened\n", open, n_conns);
        return 1;
    }
    /* let the server's per-connection setup settle */
    int64_t settle = now_ns() + 200 * 1000000LL;
    while (now_ns() < settle)
        poll_once(10 * 1000000LL);

    int64_t t0 = now_ns();
    g_t0 = t0;
    t_measure_start = t0 + (int64_t)(O.warmup * 1e9);
    t_measure_end = t_measure_start + (int64_t)(O.duration * 1e9);
    g_sending = true;
    uint64_t next_k = 0; /* rate mode: next global order number */
    uint64_t sent_total = 0;
    if (O.rate <= 0) {
        for (int i = 0; i < n_conns; i++) {
            for (int w = 0; w < O.window; w++)
                queue_order(&C[i], now_ns());
            flush_tx(&C[i]);
        }
    }
    uint64_t done_at_start = 0, done_at_end = 0;
    bool start_marked = false;
    int64_t last_report = t0;
    uint64_t last_done = 0;
    for (;;) {
        int64_t now = now_ns();
        if (!start_marked && now >= t_measure_start) {
            start_marked = true;
            for (int i = 0; i < n_conns; i++)
                done_at_start += C[i].done;
        }
        if (now >= t_measure_end) break;
        if (closed_conns) {
            fprintf(stderr, "ws_bench: %" PRIu64 " connections closed by the server\n",
                    closed_conns);
            return 1;
        }
        int64_t timeout = t_measure_end - now;
        if (O.rate > 0) {
            /* send everything that is due, then sleep until the next due time */
            while (1) {
                int idx = (int)(next_k % (uint64_t)n_conns);
                uint64_t seq = next_k / (uint64_t)n_conns;
                int64_t due = due_time(t0, idx, seq);
                if (due > now) {
                    timeout = due - now;
                    break;
                }
                queue_order(&C[idx], due);
                next_k++;
                sent_total++;
                if ((next_k & 255) == 0) now = now_ns();
            }
            for (int i = 0; i < n_conns; i++)
                if (C[i].tx_len > C[i].tx_off && !C[i].want_out) flush_tx(&C[i]);
        }
        if (now - last_report >= 1000000000LL) {
            uint64_t d = 0;
            for (int i = 0; i < n_conns; i++)
                d += C[i].done;
            printf("  t=%5.1fs  %8.0f order_responses/s\n", (double)(now - t0) / 1e9,
                   (double)(d - last_done) * 1e9 / (double)(now - last_report));
            fflush(stdout);
            last_done = d;
            last_report = now;
        }
        if (timeout > 100000000LL) timeout = 100000000LL;
        poll_once(timeout);
    }
    for (int i = 0; i < n_conns; i++)
        done_at_end += C[i].done;
    g_sending = false;
    /* drain what is still in flight (bounded) */
    int64_t drain_end = now_ns() + 3000000000LL;
    for (;;) {
        int left = 0;
        for (int i = 0; i < n_conns; i++)
            left += C[i].state == ST_OPEN ? C[i].outstanding : 0;
        if (left == 0 || now_ns() > drain_end) {
            if (left) printf("still in flight after 3 s: %d\n", left);
            break;
        }
        poll_once(10 * 1000000LL);
    }
    uint64_t sent = 0, recv_msgs = 0;
    for (int i = 0; i < n_conns; i++) {
        sent += C[i].next_seq;
        recv_msgs += C[i].received;
    }
    double secs = O.duration;
    qsort(lat, n_lat, sizeof *lat, cmp_i64);
    double mean = 0;
    for (size_t i = 0; i < n_lat; i++)
        mean += (double)lat[i];
    mean = n_lat ? mean / (double)n_lat / 1000.0 : 0;
    if (O.rate > 0)
        printf("mode: offered %.0f orders/s over %d connections (open loop; latency from the due "
               "time)\n",
               O.rate, n_conns);
    else
        printf("mode: full speed, %d connections x window %d (closed loop; latency from the "
               "send)\n",
               n_conns, O.window);
    printf("measured %.1f s after %.1f s warm-up\n", secs, O.warmup);
    printf("order_responses/s %.0f (ok %" PRIu64 ", refused %" PRIu64 " in the window)\n",
           (double)(done_at_end - done_at_start) / secs, ok_in_window, refused_in_window);
    if (O.rate > 0)
        printf("sent %.0f orders/s on average over the whole run\n",
               (double)sent_total / (O.warmup + secs));
    printf("latency submit->order_response (us, %zu samples): p50 %.1f p90 %.1f p99 %.1f "
           "p99.9 %.1f max %.1f mean %.1f\n",
           n_lat, pct(50), pct(90), pct(99), pct(99.9), pct(100), mean);
    printf("messages received %" PRIu64 " (%.2f per order sent), error messages %" PRIu64
           ", order_responses without request_id %" PRIu64 "\n",
           recv_msgs, sent ? (double)recv_msgs / (double)sent : 0.0, errors_seen, other_msgs);
    print_types();
    printf("orders sent in the whole run: %" PRIu64 "\n", sent);
    long rss = server_rss_kb();
    if (rss >= 0) printf("server VmRSS %ld kB\n", rss);
    return refused_in_window || errors_seen ? 2 : 0;
}

static int run_hold(void) {
    int64_t t0 = now_ns();
    int open = connect_all(120);
    int64_t t1 = now_ns();
    /* wait for the subscribe responses */
    int64_t deadline = t1 + 30000000000LL;
    int subscribed = 0;
    while (now_ns() < deadline) {
        subscribed = 0;
        for (int i = 0; i < n_conns; i++)
            subscribed += C[i].subscribed;
        if (subscribed == open) break;
        poll_once(10 * 1000000LL);
    }
    printf("sessions: %d of %d open in %.2f s, %d subscribed\n", open, n_conns,
           (double)(t1 - t0) / 1e9, subscribed);
    long rss = server_rss_kb();
    if (rss >= 0) printf("server VmRSS with %d sessions subscribed: %ld kB\n", open, rss);
    printf("READY\n");
    fflush(stdout);
    int sample[16];
    int ns = O.samples < 16 ? O.samples : 16;
    for (int i = 0; i < ns; i++)
        sample[i] = ns > 1 ? (int)((int64_t)i * (n_conns - 1) / (ns - 1)) : 0;
    for (int i = 0; i < n_conns; i++)
        C[i].received_mark = C[i].received;
    int64_t start = now_ns(), end = start + (int64_t)(O.duration * 1e9), last = start;
    uint64_t last_total = 0;
    for (int i = 0; i < n_conns; i++)
        last_total += C[i].received;
    long rss_max = rss;
    while (now_ns() < end) {
        poll_once(100 * 1000000LL);
        int64_t now = now_ns();
        if (now - last >= 1000000000LL) {
            uint64_t total = 0;
            int alive = 0;
            for (int i = 0; i < n_conns; i++) {
                total += C[i].received;
                alive += C[i].state == ST_OPEN;
            }
            printf("  t=%5.1fs open %d  messages/s %9.0f  samples:", (double)(now - start) / 1e9,
                   alive, (double)(total - last_total) * 1e9 / (double)(now - last));
            for (int i = 0; i < ns; i++)
                printf(" #%d=%" PRIu64, sample[i],
                       C[sample[i]].received - C[sample[i]].received_mark);
            rss = server_rss_kb();
            if (rss > rss_max) rss_max = rss;
            if (rss >= 0) printf("  server VmRSS %ld kB", rss);
            printf("\n");
            fflush(stdout);
            last_total = total;
            last = now;
        }
    }
    /* per-session receive counts over the hold */
    uint64_t *cnt = xrealloc(NULL, (size_t)n_conns * sizeof *cnt);
    int alive = 0, zero = 0;
    for (int i = 0; i < n_conns; i++) {
        cnt[i] = C[i].received - C[i].received_mark;
        alive += C[i].state == ST_OPEN;
        zero += cnt[i] == 0;
    }
    qsort(cnt, (size_t)n_conns, sizeof *cnt, cmp_u64);
    uint64_t sum = 0;
    for (int i = 0; i < n_conns; i++)
        sum += cnt[i];
    printf("hold %.0f s: %d sessions still open, %" PRIu64
           " closed; messages per session: min %" PRIu64 " median %" PRIu64 " max %" PRIu64
           ", total %" PRIu64 " (%.0f/s); sessions that received "
           "nothing: %d\n",
           O.duration, alive, closed_conns, cnt[0], cnt[n_conns / 2], cnt[n_conns - 1], sum,
           (double)sum / O.duration, zero);
    if (rss_max >= 0) printf("server VmRSS peak during the hold %ld kB\n", rss_max);
    print_types();
    free(cnt);
    return alive == n_conns ? 0 : 2;
}

static void usage(void) {
    printf("usage: ws_bench [--host H] [--port P] [--conns N] [--prefix P] [--no-open]\n"
           "                [--duration S] [--warmup S] [--rate R | --window W]\n"
           "       ws_bench --hold N [--duration S] [--server-pid PID] [--samples K]\n"
           "                [--channels '\"ticker\",\"orderbook\"'] [--instrument IF2501]\n"
           "defaults: 127.0.0.1:8080, 16 connections, prefix W, 10 s after 2 s warm-up,\n"
           "full speed with 32 orders in flight per connection\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && ++i)
        if (ARG("--host"))
            O.host = v;
        else if (ARG("--port"))
            O.port = atoi(v);
        else if (ARG("--conns"))
            O.conns = atoi(v);
        else if (ARG("--prefix"))
            O.prefix = v;
        else if (ARG("--duration"))
            O.duration = atof(v);
        else if (ARG("--warmup"))
            O.warmup = atof(v);
        else if (ARG("--rate"))
            O.rate = atof(v);
        else if (ARG("--window"))
            O.window = atoi(v);
        else if (ARG("--hold"))
            O.hold = atoi(v);
        else if (ARG("--server-pid"))
            O.server_pid = atoi(v);
        else if (ARG("--samples"))
            O.samples = atoi(v);
        else if (ARG("--instrument"))
            O.instrument = v;
        else if (ARG("--channels"))
            O.channels = v;
        else if (strcmp(a, "--no-open") == 0)
            O.open_accounts = false;
        else {
            usage();
            return strcmp(a, "--help") == 0 ? 0 : 2;
        }
#undef ARG
    }
    if (O.window < 1 || O.window >= RING / 2) O.window = 32;
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    n_conns = O.hold > 0 ? O.hold : O.conns;
    if (n_conns < 1) {
        usage();
        return 2;
    }
    if (O.hold == 0 && n_conns % 2) n_conns++; /* buyers and sellers in pairs */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < (rlim_t)n_conns + 16) {
        fprintf(stderr, "ws_bench: descriptor limit %llu is below %d sessions\n",
                (unsigned long long)nofile.rlim_cur, n_conns);
        return 1;
    }
    epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");
    C = calloc((size_t)n_conns, sizeof *C);
    if (C == NULL) die("calloc");
    for (int i = 0; i < n_conns; i++) {
        C[i].idx = i;
        C[i].fd = -1;
        C[i].buy = i % 2 == 0;
        snprintf(C[i].account, sizeof C[i].account, "%s%d", O.prefix, i);
    }
    if (O.hold == 0 && O.open_accounts) open_accounts(n_conns);
    if (server_rss_kb() >= 0) printf("server VmRSS before: %ld kB\n", server_rss_kb());
    int rc = O.hold > 0 ? run_hold() : run_orders();
    fflush(stdout);
    return rc;
}
