/* diff_bench: market-data fan-out of qaexchange-server, end to end over loopback (issues 5 and 6).
 *
 * It starts the real server (--no-config --no-storage on a free 127.0.0.1 port), opens two
 * accounts over REST (MK, the maker, and TK, the taker) and runs up to two phases, each with the
 * same trade stream at one or more offered rates:
 *
 *   diff:  N sessions on /ws/diff (no login: market-data sessions), each subscribe_quote to
 *          CFFEX.IF2501,CFFEX.IC2501,CFFEX.IH2501 and keeping one peek outstanding (a
 *          peek_message is sent after every message received). Latency runs from the send of
 *          the taker order of trade k to the receipt, by each session, of the rtn_data whose
 *          quotes.CFFEX.IF2501.volume first includes trade k. rtn_data bytes are counted.
 *   ws:    N sessions on /ws?user_id=S<i> of the `type` protocol, each subscribed to the ticker
 *          channel of IF2501; latency from the same send to the ticker message whose volume
 *          first includes trade k.
 *
 * Trades: MK rests a GFD SELL of 2,000 lots at 3800.0 on its own /ws connection (another one
 * every 1,500 trades, before the previous runs out), and TK sends one IOC BUY of 1 lot at 3800.0
 * per trade, trade k due at t0 + k/R (open loop: sends are not held back by answers). Each
 * trade is therefore one command that trades exactly one lot, one book change and one tick, so
 * the day's volume after trade k is V0 + k + 1 and any message showing the volume names the
 * trades it carries, however many were coalesced into it. The taker's send time is taken just
 * before its send(2); its order_response is timed too (send -> ack).
 *
 * One thread, one epoll loop, nonblocking sockets and its own minimal RFC 6455 framing (masked
 * frames out; pings answered). The server and this client share the machine's CPUs: the client's
 * own CPU time and the server's, per thread (/proc/PID/task), are printed for every run.
 *
 *   diff_bench [--server PATH] [--sessions N] [--rates 100,1000] [--duration S] [--warmup S]
 *              [--phases diff,ws] [--port P] [--log FILE]
 *
 * The server binary is --server, else $QAEX_SERVER, else ../src/qaexchange-server next to this
 * binary's directory (the build tree layout). The server is stopped (SIGTERM, then SIGKILL after
 * 5 s) on every exit path that returns from main, and on SIGINT/SIGTERM. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };
enum { K_DIFF, K_TICKER, K_MAKER, K_TAKER };

typedef struct conn {
    int fd, state, kind, idx;
    char path[96];
    unsigned char *rx, *msg, *tx;
    size_t rx_len, rx_cap, msg_len, msg_cap, tx_off, tx_len, tx_cap;
    bool want_out;
    bool subscribed; /* subscribe sent (diff) / subscribe_response received (ws) */
    int64_t seen;    /* the highest IF2501 volume this session has seen, -1 before any */
    uint64_t msgs, bytes, data_msgs, data_bytes;
} conn;

/* ---- options ---- */

static const char *opt_server;
static int opt_sessions = 1000;
static char opt_rates[128] = "100,1000";
static double opt_duration = 10, opt_warmup = 2;
static char opt_phases[64] = "diff,ws";
static int opt_port;
static const char *opt_log = "/tmp/diff_bench_server.log";

static int port;
static pid_t server_pid;
static int epfd;
static uint32_t rng = 2463534242u;

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

static void stop_server(void) {
    if (server_pid <= 0) return;
    kill(server_pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
            server_pid = 0;
            return;
        }
        usleep(10000);
    }
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
    server_pid = 0;
}

static void on_signal(int sig) {
    if (server_pid > 0) kill(server_pid, SIGKILL);
    _exit(128 + sig);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "diff_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    stop_server();
    exit(1);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (q == NULL) fail("out of memory");
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

/* ---- the server ---- */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        fail("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static int tcp_connect_blocking(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) fail("socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* One HTTP/1.1 request on a new connection; returns the status, the body in out (NUL-ended). */
static int http(const char *method, const char *path, const char *body, char *out, size_t cap) {
    int fd = tcp_connect_blocking();
    if (fd < 0) return -1;
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     method, path, port, body ? strlen(body) : 0, body ? body : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    static char buf[1 << 16];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "content-length:");
        if (end && cl && len >= (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10)) break;
        if (len == sizeof buf - 1) break;
    }
    close(fd);
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (len < 12 || end == NULL) return -1;
    if (out) snprintf(out, cap, "%s", end + 4);
    return atoi(buf + 9);
}

static const char *default_server(const char *argv0) {
    static char path[PATH_MAX + 64];
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return argv0;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    snprintf(path, sizeof path, "%s/../src/qaexchange-server", self);
    return path;
}

static void start_server(void) {
    port = opt_port ? opt_port : free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    server_pid = fork();
    if (server_pid < 0) fail("fork: %s", strerror(errno));
    if (server_pid == 0) {
        int fd = open(opt_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(opt_server, opt_server, "--no-config", "--no-storage", "--http", listen,
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        char body[256];
        if (http("GET", "/health", NULL, body, sizeof body) == 200) {
            printf("server: %s (pid %d) on %s, log %s\n", opt_server, (int)server_pid, listen,
                   opt_log);
            return;
        }
        if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
            server_pid = 0;
            fail("the server exited at start (see %s)", opt_log);
        }
        usleep(50000);
    }
    fail("the server did not answer /health within 10 s");
}

static void open_account(const char *id) {
    char body[256], out[512];
    snprintf(body, sizeof body,
             "{\"user_id\":\"%s\",\"user_name\":\"bench\",\"init_cash\":1e12,"
             "\"account_type\":\"individual\",\"password\":\"x\"}",
             id);
    int st = http("POST", "/api/account/open", body, out, sizeof out);
    if (st != 200 && st != 409) fail("opening account %s: HTTP %d %s", id, st, out);
}

static int64_t rest_volume(void) {
    static char out[1 << 16];
    if (http("GET", "/api/market/tick/CFFEX.IF2501", NULL, out, sizeof out) != 200)
        fail("GET /api/market/tick/CFFEX.IF2501 failed");
    const char *v = strstr(out, "\"volume\":");
    if (v == NULL) fail("no volume in the tick: %.200s", out);
    return strtoll(v + 9, NULL, 10);
}

/* CPU time (ns) of the server's main (I/O) thread and of its other threads (the engine). */
static void server_cpu(int64_t *io, int64_t *other) {
    *io = *other = 0;
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)server_pid);
    FILE *ls = NULL;
    char cmd[96];
    snprintf(cmd, sizeof cmd, "ls %s 2>/dev/null", dir);
    ls = popen(cmd, "r");
    if (ls == NULL) return;
    long hz = sysconf(_SC_CLK_TCK);
    char tid[32];
    while (fscanf(ls, "%31s", tid) == 1) {
        char path[128], line[1024];
        snprintf(path, sizeof path, "%s/%s/stat", dir, tid);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue;
        if (fgets(line, sizeof line, f)) {
            char *p = strrchr(line, ')');
            unsigned long ut = 0, st = 0;
            /* fields after the comm: state(3) ... utime(14) stime(15) */
            if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                            &st) == 2) {
                int64_t ns = (int64_t)(ut + st) * 1000000000LL / hz;
                if (atoi(tid) == (int)server_pid)
                    *io += ns;
                else
                    *other += ns;
            }
        }
        fclose(f);
    }
    pclose(ls);
}

static int64_t self_cpu_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           (int64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

/* ---- WebSocket ---- */

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

static void queue_text(conn *c, const char *text) {
    queue_frame(c, 1, text, strlen(text));
}

static uint64_t closed_conns;

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

/* ---- the trade stream and what is measured ---- */

#define MAX_TRADES (1 << 21)
static int64_t *send_ns;      /* by global trade number */
static int64_t *ack_ns;       /* order_response received */
static int64_t *first_rx_ns;  /* the first session that showed the trade */
static int64_t *last_rx_ns;   /* the last one */
static uint32_t *rx_sessions; /* how many sessions showed it */
static int64_t v_base;        /* the volume before global trade 0 */
static uint64_t trades_sent, acks, refused;
static uint64_t measure_lo, measure_hi; /* global trade numbers measured: [lo, hi) */
static bool measuring_bytes;
static uint32_t *lat; /* per (trade, session) in the measured range, 100 ns units */
static size_t n_lat, cap_lat;

static void record(int64_t ns) {
    if (n_lat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 1 << 22;
        lat = xrealloc(lat, cap_lat * sizeof *lat);
    }
    int64_t units = ns / 100; /* 100 ns units: up to 429 s */
    lat[n_lat++] = units < 0 ? 0 : units > UINT32_MAX ? UINT32_MAX : (uint32_t)units;
}

/* A session saw the IF2501 volume v at time now: every trade newly covered is delivered. */
static void saw_volume(conn *c, int64_t v, int64_t now) {
    if (c->seen < 0 || v <= c->seen) {
        if (c->seen < v) c->seen = v;
        return;
    }
    for (int64_t vol = c->seen + 1; vol <= v; vol++) {
        int64_t k = vol - v_base - 1;
        if (k < 0 || (uint64_t)k >= trades_sent) continue;
        if (first_rx_ns[k] == 0) first_rx_ns[k] = now;
        last_rx_ns[k] = now;
        rx_sessions[k]++;
        if ((uint64_t)k >= measure_lo && (uint64_t)k < measure_hi) record(now - send_ns[k]);
    }
    c->seen = v;
}

static const char *k_instrument_key = "\"CFFEX.IF2501\":{";

static void on_diff_message(conn *c, char *m, size_t len, int64_t now) {
    if (strncmp(m, "{\"aid\":\"rtn_data\"", 17) == 0 || strstr(m, "\"rtn_data\"")) {
        c->data_msgs++;
        if (measuring_bytes) c->data_bytes += len;
        char *q = strstr(m, "\"quotes\":{");
        char *ins = q ? strstr(q, k_instrument_key) : NULL;
        if (ins) {
            char *end = strchr(ins + strlen(k_instrument_key), '}');
            if (end) *end = '\0';
            char *v = strstr(ins, "\"volume\":");
            if (v) {
                int64_t vol = strtoll(v + 9, NULL, 10);
                if (c->seen < 0)
                    c->seen = vol;
                else
                    saw_volume(c, vol, now);
            }
        }
    } else if (!c->subscribed) { /* rtn_brokers: the server spoke first */
        queue_text(c, "{\"aid\":\"subscribe_quote\",\"ins_list\":"
                      "\"CFFEX.IF2501,CFFEX.IC2501,CFFEX.IH2501\"}");
        c->subscribed = true;
    }
    queue_text(c, "{\"aid\":\"peek_message\"}");
}

static void on_ticker_message(conn *c, char *m, size_t len, int64_t now) {
    if (strstr(m, "\"type\":\"ticker\"")) {
        c->data_msgs++;
        if (measuring_bytes) c->data_bytes += len;
        char *v = strstr(m, "\"volume\":");
        if (v) saw_volume(c, strtoll(v + 9, NULL, 10), now);
    } else if (strstr(m, "\"type\":\"subscribe_response\"")) {
        c->subscribed = true;
    }
}

static uint64_t maker_acks;

static void on_trader_message(conn *c, char *m, int64_t now) {
    if (!strstr(m, "\"type\":\"order_response\"")) return;
    bool ok = strstr(m, "\"success\":true") != NULL;
    if (!ok && refused++ < 3) fprintf(stderr, "diff_bench: refused: %.300s\n", m);
    if (c->kind == K_MAKER) {
        maker_acks++;
        return;
    }
    const char *rid = strstr(m, "\"request_id\":\"t");
    if (rid == NULL) return;
    uint64_t k = strtoull(rid + 15, NULL, 10);
    if (k < trades_sent) ack_ns[k] = now;
    acks++;
}

static void on_message(conn *c, char *m, size_t len, int64_t now) {
    c->msgs++;
    if (measuring_bytes) c->bytes += len;
    if (c->kind == K_DIFF)
        on_diff_message(c, m, len, now);
    else if (c->kind == K_TICKER)
        on_ticker_message(c, m, len, now);
    else
        on_trader_message(c, m, now);
}

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
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char k64[25];
    for (int i = 0; i < 22; i++)
        k64[i] = b64[xorshift() & 63];
    k64[21] = 'A'; /* 16 random bytes: the last character holds 4 bits */
    k64[22] = k64[23] = '=';
    k64[24] = '\0';
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     c->path, port, k64);
    reserve(&c->tx, &c->tx_cap, c->tx_len + (size_t)n);
    memcpy(c->tx + c->tx_len, req, (size_t)n);
    c->tx_len += (size_t)n;
    c->state = ST_HANDSHAKE;
    flush_tx(c);
}

static void on_open(conn *c) {
    if (c->kind == K_TICKER)
        queue_text(c, "{\"type\":\"subscribe\",\"channels\":[\"ticker\"],\"instruments\":"
                      "[\"CFFEX.IF2501\"]}");
}

static void on_readable(conn *c, int64_t now) {
    for (;;) {
        reserve(&c->rx, &c->rx_cap, c->rx_len + 65536);
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
                fprintf(stderr, "diff_bench: handshake refused: %.200s\n", (char *)c->rx);
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
        if ((size_t)n < 65536) break;
    }
    if (c->state == ST_OPEN && c->tx_len > c->tx_off) flush_tx(c);
}

static void start_connect(conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) fail("socket: %s (raise the descriptor limit)", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    c->state = ST_CONNECTING;
    int rc = connect(c->fd, (struct sockaddr *)&a, sizeof a);
    if (rc != 0 && errno != EINPROGRESS) fail("connect: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->want_out = true;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) fail("epoll_ctl: %s", strerror(errno));
}

static void on_event(conn *c, uint32_t events, int64_t now) {
    if (c->state == ST_CLOSED) return;
    if (c->state == ST_CONNECTING) {
        if (events & (EPOLLERR | EPOLLHUP)) {
            fprintf(stderr, "diff_bench: connect failed (%s)\n", c->path);
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

static void poll_once(int64_t timeout_ns) {
    struct epoll_event evs[512];
    if (timeout_ns < 0) timeout_ns = 0;
    struct timespec ts = {.tv_sec = timeout_ns / 1000000000LL,
                          .tv_nsec = timeout_ns % 1000000000LL};
    int n = epoll_pwait2(epfd, evs, 512, &ts, NULL);
    if (n < 0 && errno != EINTR) fail("epoll_pwait2: %s", strerror(errno));
    int64_t now = now_ns();
    for (int i = 0; i < n; i++)
        on_event(evs[i].data.ptr, evs[i].events, now);
}

static void connect_all(conn *cs, int n, double limit_s) {
    int started = 0;
    int64_t deadline = now_ns() + (int64_t)(limit_s * 1e9);
    for (;;) {
        int pending = 0, open = 0;
        for (int i = 0; i < started; i++) {
            pending += cs[i].state == ST_CONNECTING || cs[i].state == ST_HANDSHAKE;
            open += cs[i].state == ST_OPEN;
        }
        while (started < n && pending < 200) {
            start_connect(&cs[started++]);
            pending++;
        }
        if ((started == n && pending == 0) || now_ns() > deadline) {
            if (open != n) fail("only %d of %d sessions opened", open, n);
            return;
        }
        poll_once(10 * 1000000LL);
    }
}

static void close_all(conn *cs, int n) {
    for (int i = 0; i < n; i++) {
        conn_close(&cs[i]);
        free(cs[i].rx);
        free(cs[i].tx);
        free(cs[i].msg);
    }
    closed_conns = 0;
}

/* ---- a run ---- */

static conn trader[2]; /* maker, taker */

static void send_maker(void) {
    char m[320];
    snprintf(m, sizeof m,
             "{\"type\":\"submit_order\",\"request_id\":\"m%" PRIu64 "\",\"instrument_id\":"
             "\"CFFEX.IF2501\",\"direction\":\"SELL\",\"offset\":\"OPEN\",\"volume\":2000,"
             "\"price\":3800.0,\"order_type\":\"LIMIT\",\"time_condition\":\"GFD\"}",
             trades_sent);
    queue_text(&trader[0], m);
    flush_tx(&trader[0]);
}

static void send_taker(void) {
    uint64_t k = trades_sent;
    if (k >= MAX_TRADES) return;
    char m[320];
    int n = snprintf(m, sizeof m,
                     "{\"type\":\"submit_order\",\"request_id\":\"t%" PRIu64 "\","
                     "\"instrument_id\":\"CFFEX.IF2501\",\"direction\":\"BUY\",\"offset\":"
                     "\"OPEN\",\"volume\":1,\"price\":3800.0,\"order_type\":\"LIMIT\","
                     "\"time_condition\":\"IOC\"}",
                     k);
    queue_frame(&trader[1], 1, m, (size_t)n);
    send_ns[k] = now_ns();
    trades_sent++;
    flush_tx(&trader[1]);
    /* a new resting order well before the current one runs out */
    if (trades_sent % 1500 == 0) send_maker();
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_u32(const uint32_t *v, size_t n, double p) {
    return n ? (double)v[(size_t)(p / 100.0 * (double)(n - 1) + 0.5)] / 10.0 : 0;
}

static double pct_i64(const int64_t *v, size_t n, double p) {
    return n ? (double)v[(size_t)(p / 100.0 * (double)(n - 1) + 0.5)] / 1000.0 : 0;
}

static void print_dist_i64(const char *label, int64_t *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_i64);
    printf("  %s (us, %zu): P50 %.1f  P90 %.1f  P99 %.1f  P99.9 %.1f  max %.1f\n", label, n,
           pct_i64(v, n, 50), pct_i64(v, n, 90), pct_i64(v, n, 99), pct_i64(v, n, 99.9),
           pct_i64(v, n, 100));
}

static void run_rate(conn *subs, int n_subs, double rate, const char *phase) {
    printf("\n-- %s: %d sessions, offered %.0f trades/s, %.1f s measured after %.1f s warm-up "
           "\n",
           phase, n_subs, rate, opt_duration, opt_warmup);
    {
        FILE *f = fopen("/proc/loadavg", "r");
        char la[64] = "?";
        if (f && fgets(la, sizeof la, f)) la[strcspn(la, "\n")] = '\0';
        if (f) fclose(f);
        printf("   load average before: %s\n", la);
    }
    uint64_t first = trades_sent, acks0 = acks, refused0 = refused;
    uint64_t n_warm = (uint64_t)(opt_warmup * rate), n_meas = (uint64_t)(opt_duration * rate);
    if (first + n_warm + n_meas >= MAX_TRADES) fail("too many trades for one server run");
    measure_lo = first + n_warm;
    measure_hi = measure_lo + n_meas;
    n_lat = 0;
    for (int i = 0; i < n_subs; i++)
        subs[i].bytes = subs[i].data_bytes = 0;
    uint64_t data_msgs0 = 0;
    for (int i = 0; i < n_subs; i++)
        data_msgs0 += subs[i].data_msgs;
    int64_t io0 = 0, eng0 = 0, io1, eng1, self0 = 0, t_meas0 = 0, t_meas1 = 0;
    uint64_t data_msgs_meas0 = 0, data_msgs_meas1 = 0;
    int64_t t0 = now_ns();
    uint64_t total = n_warm + n_meas;
    int64_t max_lag = 0;
    for (uint64_t j = 0; j < total;) {
        int64_t due = t0 + (int64_t)((double)j * 1e9 / rate);
        int64_t now = now_ns();
        if (now >= due) {
            if (first + j == measure_lo) {
                measuring_bytes = true;
                server_cpu(&io0, &eng0);
                self0 = self_cpu_ns();
                t_meas0 = now_ns();
                for (int i = 0; i < n_subs; i++)
                    data_msgs_meas0 += subs[i].data_msgs;
            }
            if (now - due > max_lag && first + j >= measure_lo) max_lag = now - due;
            send_taker();
            j++;
            continue;
        }
        poll_once(due - now);
        if (trader[0].state == ST_CLOSED || trader[1].state == ST_CLOSED) {
            printf("   !! the server closed the %s's connection after %" PRIu64
                   " trades sent: the run stops here\n",
                   trader[1].state == ST_CLOSED ? "taker" : "maker", j);
            total = j;
            if (measure_hi > first + j) measure_hi = first + j;
            if (measure_lo > measure_hi) measure_lo = measure_hi;
            n_meas = measure_hi - measure_lo;
            break;
        }
    }
    if (closed_conns) printf("   !! %" PRIu64 " connections closed by the server\n", closed_conns);
    if (t_meas0 == 0) { /* stopped before the measured window began */
        measuring_bytes = true;
        server_cpu(&io0, &eng0);
        self0 = self_cpu_ns();
        t_meas0 = now_ns();
    }
    /* the measured window ends one period after the last send */
    int64_t end = now_ns() + (int64_t)(1e9 / rate);
    while (now_ns() < end)
        poll_once(end - now_ns());
    measuring_bytes = false;
    t_meas1 = now_ns();
    server_cpu(&io1, &eng1);
    int64_t self1 = self_cpu_ns();
    for (int i = 0; i < n_subs; i++)
        data_msgs_meas1 += subs[i].data_msgs;
    /* drain: every session should show the last trade */
    int64_t want = v_base + (int64_t)trades_sent;
    int64_t drain_end = now_ns() + 10000000000LL;
    int behind = 0;
    for (;;) {
        behind = 0;
        for (int i = 0; i < n_subs; i++)
            behind += subs[i].seen < want;
        if ((behind == 0 && (acks + refused >= trades_sent || trader[1].state == ST_CLOSED)) ||
            now_ns() > drain_end)
            break;
        poll_once(5000000LL);
    }
    double wall = (double)(t_meas1 - t_meas0) / 1e9;
    printf("   trades sent %" PRIu64 " (measured %" PRIu64 "), order_responses %" PRIu64
           " (refused %" PRIu64 "); largest send lag behind schedule %.1f us\n",
           trades_sent - first, n_meas, acks - acks0, refused - refused0, (double)max_lag / 1000.0);
    if (behind)
        printf("   !! after 10 s of draining, %d sessions still had not shown the last trade\n",
               behind);
    size_t expected = (size_t)n_meas * (size_t)n_subs;
    qsort(lat, n_lat, sizeof *lat, cmp_u32);
    printf("   send -> receipt, every (trade, session) (us, %zu of %zu): P50 %.1f  P90 %.1f  P99 "
           "%.1f  P99.9 %.1f  max %.1f\n",
           n_lat, expected, pct_u32(lat, n_lat, 50), pct_u32(lat, n_lat, 90),
           pct_u32(lat, n_lat, 99), pct_u32(lat, n_lat, 99.9), pct_u32(lat, n_lat, 100));
    int64_t *v = xrealloc(NULL, (size_t)(n_meas ? n_meas : 1) * sizeof *v);
    size_t nv = 0;
    for (uint64_t k = measure_lo; k < measure_hi; k++)
        if (ack_ns[k]) v[nv++] = ack_ns[k] - send_ns[k];
    print_dist_i64("send -> order_response (taker ack)", v, nv);
    nv = 0;
    for (uint64_t k = measure_lo; k < measure_hi; k++)
        if (first_rx_ns[k]) v[nv++] = first_rx_ns[k] - send_ns[k];
    print_dist_i64("send -> first session shows the trade", v, nv);
    nv = 0;
    for (uint64_t k = measure_lo; k < measure_hi; k++)
        if (rx_sessions[k] == (uint32_t)n_subs) v[nv++] = last_rx_ns[k] - send_ns[k];
    print_dist_i64("send -> last session shows it (all sessions)", v, nv);
    nv = 0;
    for (uint64_t k = measure_lo; k < measure_hi; k++)
        if (rx_sessions[k] == (uint32_t)n_subs) v[nv++] = last_rx_ns[k] - first_rx_ns[k];
    print_dist_i64("spread first -> last session, per trade", v, nv);
    free(v);
    uint64_t bytes = 0, data_bytes = 0;
    for (int i = 0; i < n_subs; i++) {
        bytes += subs[i].bytes;
        data_bytes += subs[i].data_bytes;
    }
    uint64_t data_msgs = data_msgs_meas1 - data_msgs_meas0;
    if (n_meas == 0) n_meas = 1; /* keeps the ratios finite; nothing was measured */
    double per = (double)n_meas * (double)n_subs;
    printf("   %s messages in the window: %" PRIu64 " (%.3f per trade per session), %.1f bytes "
           "each; %.1f bytes per trade per session (all frames %.1f)\n",
           phase, data_msgs, (double)data_msgs / per,
           data_msgs ? (double)data_bytes / (double)data_msgs : 0.0, (double)data_bytes / per,
           (double)bytes / per);
    double sio = (double)(io1 - io0) / 1e9, seng = (double)(eng1 - eng0) / 1e9,
           sself = (double)(self1 - self0) / 1e9;
    printf("   CPU over %.2f s: server I/O thread %.0f%%, engine thread %.0f%%, this client "
           "%.0f%% of a core; server %.1f us per trade (I/O %.1f, engine %.1f), I/O %.2f us per "
           "trade per session\n",
           wall, 100 * sio / wall, 100 * seng / wall, 100 * sself / wall,
           1e6 * (sio + seng) / (double)n_meas, 1e6 * sio / (double)n_meas,
           1e6 * seng / (double)n_meas, 1e6 * sio / per);
    fflush(stdout);
}

/* One run on a fresh server: the accounts, the maker's first resting order, the sessions, the
 * trade stream at one rate. */
static void phase(const char *name, int kind, double rate) {
    printf("\n=== %s, offered %.0f trades/s\n", name, rate);
    memset(send_ns, 0, MAX_TRADES * sizeof *send_ns);
    memset(ack_ns, 0, MAX_TRADES * sizeof *ack_ns);
    memset(first_rx_ns, 0, MAX_TRADES * sizeof *first_rx_ns);
    memset(last_rx_ns, 0, MAX_TRADES * sizeof *last_rx_ns);
    memset(rx_sessions, 0, MAX_TRADES * sizeof *rx_sessions);
    trades_sent = acks = refused = maker_acks = 0;
    start_server();
    open_account("MK");
    open_account("TK");
    memset(trader, 0, sizeof trader);
    for (int i = 0; i < 2; i++) {
        trader[i].kind = i == 0 ? K_MAKER : K_TAKER;
        trader[i].fd = -1;
        snprintf(trader[i].path, sizeof trader[i].path, "/ws?user_id=%s", i == 0 ? "MK" : "TK");
    }
    connect_all(trader, 2, 10);
    send_maker();
    int64_t deadline = now_ns() + 5000000000LL;
    while (maker_acks < 1 && now_ns() < deadline)
        poll_once(10000000LL);
    if (maker_acks < 1 || refused) fail("the maker's resting order was not accepted");

    conn *subs = calloc((size_t)opt_sessions, sizeof *subs);
    if (subs == NULL) fail("calloc");
    for (int i = 0; i < opt_sessions; i++) {
        subs[i].kind = kind;
        subs[i].idx = i;
        subs[i].fd = -1;
        subs[i].seen = kind == K_DIFF ? -1 : 0;
        if (kind == K_DIFF)
            snprintf(subs[i].path, sizeof subs[i].path, "/ws/diff");
        else
            snprintf(subs[i].path, sizeof subs[i].path, "/ws?user_id=S%d", i);
    }
    int64_t t0 = now_ns();
    connect_all(subs, opt_sessions, 60);
    /* every session has its first quote (diff) or its subscribe_response (ws) */
    deadline = now_ns() + 30000000000LL;
    int ready = 0;
    while (now_ns() < deadline) {
        ready = 0;
        for (int i = 0; i < opt_sessions; i++)
            ready += kind == K_DIFF ? subs[i].seen >= 0 : subs[i].subscribed;
        if (ready == opt_sessions) break;
        poll_once(10000000LL);
    }
    if (ready != opt_sessions)
        fail("only %d of %d sessions got their first data", ready, opt_sessions);
    /* the volume before the first trade; diff sessions must agree with it */
    v_base = rest_volume();
    for (int i = 0; i < opt_sessions; i++) {
        if (kind == K_DIFF && subs[i].seen != v_base)
            fail("session %d shows volume %" PRId64 ", REST %" PRId64, i, subs[i].seen, v_base);
        if (kind == K_TICKER) subs[i].seen = v_base;
    }
    printf("%d sessions open and subscribed in %.2f s; IF2501 volume before: %" PRId64 "\n",
           opt_sessions, (double)(now_ns() - t0) / 1e9, v_base);
    fflush(stdout);
    run_rate(subs, opt_sessions, rate, name);
    close_all(subs, opt_sessions);
    free(subs);
    close_all(trader, 2);
    stop_server();
}

int main(int argc, char **argv) {
    opt_server = getenv("QAEX_SERVER");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && ++i)
        if (ARG("--server"))
            opt_server = v;
        else if (ARG("--sessions"))
            opt_sessions = atoi(v);
        else if (ARG("--rates"))
            snprintf(opt_rates, sizeof opt_rates, "%s", v);
        else if (ARG("--duration"))
            opt_duration = atof(v);
        else if (ARG("--warmup"))
            opt_warmup = atof(v);
        else if (ARG("--phases"))
            snprintf(opt_phases, sizeof opt_phases, "%s", v);
        else if (ARG("--port"))
            opt_port = atoi(v);
        else if (ARG("--log"))
            opt_log = v;
        else {
            printf("usage: diff_bench [--server PATH] [--sessions N (1000)] [--rates 100,1000]\n"
                   "                  [--duration S (10)] [--warmup S (2)] [--phases diff,ws]\n"
                   "                  [--port P (a free one)] [--log FILE]\n"
                   "the server defaults to $QAEX_SERVER, else ../src/qaexchange-server beside "
                   "this binary\n");
            return strcmp(a, "--help") == 0 ? 0 : 2;
        }
#undef ARG
    }
    if (opt_server == NULL) opt_server = default_server(argv[0]);
    if (access(opt_server, X_OK) != 0) {
        fprintf(stderr, "diff_bench: no server at %s (--server or QAEX_SERVER)\n", opt_server);
        return 1;
    }
    if (opt_sessions < 1 || opt_duration <= 0 || opt_duration > 600 || opt_warmup < 0) {
        fprintf(stderr, "diff_bench: bad --sessions/--duration/--warmup\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    send_ns = calloc(MAX_TRADES, sizeof *send_ns);
    ack_ns = calloc(MAX_TRADES, sizeof *ack_ns);
    first_rx_ns = calloc(MAX_TRADES, sizeof *first_rx_ns);
    last_rx_ns = calloc(MAX_TRADES, sizeof *last_rx_ns);
    rx_sessions = calloc(MAX_TRADES, sizeof *rx_sessions);
    if (!send_ns || !ack_ns || !first_rx_ns || !last_rx_ns || !rx_sessions) fail("calloc");
    epfd = epoll_create1(0);
    if (epfd < 0) fail("epoll_create1: %s", strerror(errno));
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256], model[128] = "?";
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            snprintf(model, sizeof model, "%s", strchr(line, ':') + 2);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    if (f) fclose(f);
    printf("machine: %ld CPUs (%s)\n", sysconf(_SC_NPROCESSORS_ONLN), model);

    char phases[64];
    snprintf(phases, sizeof phases, "%s", opt_phases);
    for (char *save = NULL, *p = strtok_r(phases, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (strcmp(p, "diff") != 0 && strcmp(p, "ws") != 0) {
            fprintf(stderr, "diff_bench: unknown phase %s (diff, ws)\n", p);
            continue;
        }
        char rates[128];
        snprintf(rates, sizeof rates, "%s", opt_rates);
        for (char *s2 = NULL, *r = strtok_r(rates, ",", &s2); r; r = strtok_r(NULL, ",", &s2))
            if (atof(r) > 0) phase(p, strcmp(p, "diff") == 0 ? K_DIFF : K_TICKER, atof(r));
    }
    printf("\ndone; every server stopped\n");
    return 0;
}
