/* Prometheus metrics: see metrics.h for the design (fixed registry, lock-free relaxed updates,
 * text format 0.0.4 at render). */
#include "server/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_LINE 64
#define NO_SERIES ((size_t)-1)

const uint64_t metrics_default_latency_bounds_ns[METRICS_DEFAULT_LATENCY_BUCKETS] = {
    1000ULL,       2000ULL,      5000ULL,      /* 1, 2, 5 µs */
    10000ULL,      20000ULL,     50000ULL,     /* 10, 20, 50 µs */
    100000ULL,     200000ULL,    500000ULL,    /* 100, 200, 500 µs */
    1000000ULL,    2000000ULL,   5000000ULL,   /* 1, 2, 5 ms */
    10000000ULL,   20000000ULL,  50000000ULL,  /* 10, 20, 50 ms */
    100000000ULL,  200000000ULL, 500000000ULL, /* 100, 200, 500 ms */
    1000000000ULL,                             /* 1 s */
};

struct metrics_counter {
    _Atomic uint64_t value;
};

struct metrics_gauge {
    _Atomic uint64_t bits; /* the double's bit pattern: C11 has no atomic double add */
};

struct metrics_histogram {
    bool latency; /* true: bounds_ns and an integer ns sum; false: bounds and a double sum */
    size_t n;     /* bounds, not counting +Inf */
    uint64_t *bounds_ns;
    double *bounds;
    _Atomic uint64_t *buckets; /* n + 1 non-cumulative counts (the last is +Inf), own lines */
    _Atomic uint64_t sum;      /* ns (latency) or a double's bits (value) */
};

typedef enum series_kind { KIND_COUNTER, KIND_GAUGE, KIND_CALLBACK, KIND_HISTOGRAM } series_kind;

typedef struct series {
    /* the hot part first, alone at the start of a 64-byte-aligned slot */
    _Alignas(CACHE_LINE) union {
        struct metrics_counter c;
        struct metrics_gauge g;
        struct metrics_histogram h;
    } u;
    series_kind kind;
    metrics_type type;
    char *name;
    char *help;   /* the family head's is rendered */
    char *labels; /* `a="x",b="y"` sorted by name, values escaped; "" for none */
    metrics_value_fn fn;
    void *ctx;
    size_t head; /* index of the family's first series */
    size_t next; /* the family's next series, NO_SERIES at the end */
    size_t last; /* head only: the family's last series */
} series;

struct metrics_registry {
    series *s;
    size_t n, cap;
    char err[256];
};

/* ---- registry ---- */

metrics_registry *metrics_registry_new(size_t max_series) {
    if (max_series == 0 || max_series > SIZE_MAX / sizeof(series)) return NULL;
    metrics_registry *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    /* sizeof(series) is a multiple of its 64-byte alignment, as aligned_alloc requires */
    r->s = aligned_alloc(_Alignof(series), max_series * sizeof(series));
    if (r->s == NULL) {
        free(r);
        return NULL;
    }
    memset(r->s, 0, max_series * sizeof(series));
    r->cap = max_series;
    return r;
}

static void series_free(series *s) {
    free(s->name);
    free(s->help);
    free(s->labels);
    if (s->kind == KIND_HISTOGRAM) {
        free(s->u.h.bounds_ns);
        free(s->u.h.bounds);
        free((void *)s->u.h.buckets);
    }
    memset(s, 0, sizeof *s);
}

void metrics_registry_free(metrics_registry *r) {
    if (r == NULL) return;
    for (size_t i = 0; i < r->n; i++)
        series_free(&r->s[i]);
    free(r->s);
    free(r);
}

const char *metrics_registry_error(const metrics_registry *r) {
    return r ? r->err : "no registry";
}

size_t metrics_registry_size(const metrics_registry *r) {
    return r ? r->n : 0;
}

static void set_err(metrics_registry *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_err(metrics_registry *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
}

/* ---- validation ---- */

static bool is_alpha_(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

static bool valid_metric_name(const char *s) {
    if (s == NULL || !(is_alpha_(s[0]) || s[0] == ':')) return false;
    for (const char *p = s + 1; *p; p++)
        if (!(is_alpha_(*p) || is_digit(*p) || *p == ':')) return false;
    return true;
}

static bool valid_label_name(const char *s) {
    if (s == NULL || !is_alpha_(s[0])) return false;
    for (const char *p = s + 1; *p; p++)
        if (!(is_alpha_(*p) || is_digit(*p))) return false;
    return true;
}

static const char *type_name(metrics_type t) {
    switch (t) {
        case METRICS_COUNTER:
            return "counter";
        case METRICS_GAUGE:
            return "gauge";
        case METRICS_HISTOGRAM:
            return "histogram";
    }
    return "untyped";
}

/* ---- a growing text buffer (render and label strings) ---- */

typedef struct buf {
    char *p;
    size_t len, cap;
    bool failed;
} buf;

static void buf_put(buf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(buf *b, const char *s) {
    buf_put(b, s, strlen(s));
}

/* Label values escape backslash, double quote and newline; help text only backslash and
 * newline (text format 0.0.4). */
static void buf_escaped(buf *b, const char *s, bool quote) {
    const char *run = s;
    for (const char *p = s;; p++) {
        const char *esc = NULL;
        if (*p == '\\')
            esc = "\\\\";
        else if (*p == '\n')
            esc = "\\n";
        else if (*p == '"' && quote)
            esc = "\\\"";
        else if (*p != '\0')
            continue;
        buf_put(b, run, (size_t)(p - run));
        if (esc == NULL) break;
        buf_str(b, esc);
        run = p + 1;
    }
}

/* ---- number formatting ---- */

/* The shortest %g form that reads back as the same double; NaN, +Inf, -Inf as Prometheus
 * spells them. */
static void fmt_double(char out[40], double v) {
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (strtod(out, NULL) == v) break;
    }
    /* %g writes 10 as "1e+01" when one digit suffices; whole numbers below 10^16 read better
     * (and as Prometheus clients write them) in full */
    const char *e = strchr(out, 'e');
    if (e != NULL && e[1] == '+' && atoi(e + 2) < 16) snprintf(out, 40, "%.0f", v);
}

/* Exact decimal seconds from integer nanoseconds: 5000 -> "0.000005", 10^9 -> "1". */
static void fmt_ns_seconds(char out[40], uint64_t ns) {
    uint64_t sec = ns / 1000000000ULL, frac = ns % 1000000000ULL;
    if (frac == 0) {
        snprintf(out, 40, "%llu", (unsigned long long)sec);
        return;
    }
    int k = snprintf(out, 40, "%llu.%09llu", (unsigned long long)sec, (unsigned long long)frac);
    while (k > 0 && out[k - 1] == '0')
        out[--k] = '\0';
}

/* ---- registration ---- */

/* Validates the labels and builds their canonical text (sorted by name, values escaped) into
 * *out (malloc'ed). Returns false with the reason in r->err. */
static bool build_labels(metrics_registry *r, const char *name, const char *const *labels,
                         bool histogram, char **out) {
    *out = NULL;
    size_t pairs = 0;
    if (labels != NULL) {
        while (labels[2 * pairs] != NULL) {
            const char *ln = labels[2 * pairs];
            if (labels[2 * pairs + 1] == NULL) {
                set_err(r,
                        "metric \"%s\": label \"%.64s\" has no value (labels are name, value "
                        "pairs ending with NULL)",
                        name, ln);
                return false;
            }
            if (!valid_label_name(ln)) {
                set_err(r,
                        "metric \"%s\": invalid label name \"%.64s\": must match "
                        "[a-zA-Z_][a-zA-Z0-9_]*",
                        name, ln);
                return false;
            }
            if (ln[0] == '_' && ln[1] == '_') {
                set_err(r,
                        "metric \"%s\": label name \"%.64s\": names starting with \"__\" are "
                        "reserved",
                        name, ln);
                return false;
            }
            if (histogram && strcmp(ln, "le") == 0) {
                set_err(r, "metric \"%s\": label name \"le\" is reserved for histogram buckets",
                        name);
                return false;
            }
            pairs++;
        }
    }
    size_t *order_idx = NULL;
    if (pairs > 0) {
        order_idx = malloc(pairs * sizeof *order_idx);
        if (order_idx == NULL) {
            set_err(r, "metric \"%s\": out of memory", name);
            return false;
        }
        /* insertion sort by label name: a handful of labels */
        for (size_t i = 0; i < pairs; i++) {
            size_t j = i;
            while (j > 0 && strcmp(labels[2 * order_idx[j - 1]], labels[2 * i]) > 0) {
                order_idx[j] = order_idx[j - 1];
                j--;
            }
            order_idx[j] = i;
        }
        for (size_t i = 1; i < pairs; i++) {
            if (strcmp(labels[2 * order_idx[i - 1]], labels[2 * order_idx[i]]) == 0) {
                set_err(r, "metric \"%s\": label \"%.64s\" given twice", name,
                        labels[2 * order_idx[i]]);
                free(order_idx);
                return false;
            }
        }
    }
    buf b = {0};
    buf_put(&b, "", 0);
    for (size_t i = 0; i < pairs; i++) {
        if (i > 0) buf_put(&b, ",", 1);
        buf_str(&b, labels[2 * order_idx[i]]);
        buf_put(&b, "=\"", 2);
        buf_escaped(&b, labels[2 * order_idx[i] + 1], true);
        buf_put(&b, "\"", 1);
    }
    free(order_idx);
    if (b.failed) {
        free(b.p);
        set_err(r, "metric \"%s\": out of memory", name);
        return false;
    }
    *out = b.p;
    return true;
}

/* Is `a` equal to `b` followed by `suffix`? */
static bool is_suffixed(const char *a, const char *b, const char *suffix) {
    size_t lb = strlen(b);
    return strncmp(a, b, lb) == 0 && strcmp(a + lb, suffix) == 0;
}

static bool histogram_clash(const char *a, const char *hist) {
    return is_suffixed(a, hist, "_bucket") || is_suffixed(a, hist, "_sum") ||
           is_suffixed(a, hist, "_count");
}

/* Validates a new series and fills the free slot r->s[r->n] with its name, help and labels
 * (not yet linked: series_commit does that once the caller's own allocations succeeded).
 * NULL with the reason in r->err. */
static series *series_prepare(metrics_registry *r, metrics_type type, series_kind kind,
                              const char *name, const char *help, const char *const *labels) {
    if (r == NULL) return NULL;
    r->err[0] = '\0';
    if (name == NULL) {
        set_err(r, "metric name is NULL");
        return NULL;
    }
    if (!valid_metric_name(name)) {
        set_err(r, "invalid metric name \"%.64s\": must match [a-zA-Z_:][a-zA-Z0-9_:]*", name);
        return NULL;
    }
    bool hist = type == METRICS_HISTOGRAM;
    char *lab = NULL;
    if (!build_labels(r, name, labels, hist, &lab)) return NULL;

    size_t head = NO_SERIES;
    for (size_t i = 0; i < r->n; i++) {
        const series *f = &r->s[i];
        if (f->head != i) continue; /* families only */
        if (strcmp(f->name, name) == 0) {
            head = i;
            continue;
        }
        if ((f->type == METRICS_HISTOGRAM && histogram_clash(name, f->name)) ||
            (hist && histogram_clash(f->name, name))) {
            set_err(r, "metric \"%s\" clashes with the series of histogram \"%s\"", name,
                    hist ? name : f->name);
            free(lab);
            return NULL;
        }
    }
    if (head != NO_SERIES) {
        const series *f = &r->s[head];
        if (f->type != type) {
            set_err(r, "metric \"%s\" is already registered as a %s, not a %s", name,
                    type_name(f->type), type_name(type));
            free(lab);
            return NULL;
        }
        if (help != NULL && strcmp(help, f->help) != 0) {
            set_err(r, "metric \"%s\" is already registered with another help text", name);
            free(lab);
            return NULL;
        }
        for (size_t j = head; j != NO_SERIES; j = r->s[j].next) {
            if (strcmp(r->s[j].labels, lab) == 0) {
                set_err(r, "metric \"%s\" is already registered with labels {%s}", name, lab);
                free(lab);
                return NULL;
            }
        }
    }
    if (r->n == r->cap) {
        set_err(r, "metric \"%s\": the registry is full (%zu series)", name, r->cap);
        free(lab);
        return NULL;
    }
    series *s = &r->s[r->n];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->type = type;
    s->labels = lab;
    s->name = strdup(name);
    s->help = strdup(head != NO_SERIES ? r->s[head].help : help ? help : "");
    if (s->name == NULL || s->help == NULL) {
        set_err(r, "metric \"%s\": out of memory", name);
        series_free(s);
        return NULL;
    }
    s->head = head == NO_SERIES ? r->n : head;
    s->next = NO_SERIES;
    s->last = r->n;
    return s;
}

static void series_commit(metrics_registry *r, series *s) {
    size_t idx = (size_t)(s - r->s);
    if (s->head != idx) {
        series *h = &r->s[s->head];
        r->s[h->last].next = idx;
        h->last = idx;
    }
    r->n++;
}

metrics_counter *metrics_counter_register(metrics_registry *r, const char *name, const char *help,
                                          const char *const *labels) {
    series *s = series_prepare(r, METRICS_COUNTER, KIND_COUNTER, name, help, labels);
    if (s == NULL) return NULL;
    atomic_init(&s->u.c.value, 0);
    series_commit(r, s);
    return &s->u.c;
}

static uint64_t dbits(double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static double bitsd(uint64_t u) {
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

metrics_gauge *metrics_gauge_register(metrics_registry *r, const char *name, const char *help,
                                      const char *const *labels) {
    series *s = series_prepare(r, METRICS_GAUGE, KIND_GAUGE, name, help, labels);
    if (s == NULL) return NULL;
    atomic_init(&s->u.g.bits, dbits(0.0));
    series_commit(r, s);
    return &s->u.g;
}

int metrics_callback_register(metrics_registry *r, metrics_type type, const char *name,
                              const char *help, const char *const *labels, metrics_value_fn fn,
                              void *ctx) {
    if (r == NULL) return -1;
    if (type != METRICS_COUNTER && type != METRICS_GAUGE) {
        set_err(r, "metric \"%s\": a callback is a counter or a gauge", name ? name : "(null)");
        return -1;
    }
    if (fn == NULL) {
        set_err(r, "metric \"%s\": callback is NULL", name ? name : "(null)");
        return -1;
    }
    series *s = series_prepare(r, type, KIND_CALLBACK, name, help, labels);
    if (s == NULL) return -1;
    s->fn = fn;
    s->ctx = ctx;
    series_commit(r, s);
    return 0;
}

/* Buckets on their own cache lines: observers of this histogram do not disturb neighbours. */
static _Atomic uint64_t *alloc_buckets(size_t n) {
    size_t bytes = (n + 1) * sizeof(_Atomic uint64_t);
    bytes = (bytes + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    _Atomic uint64_t *b = aligned_alloc(CACHE_LINE, bytes);
    if (b == NULL) return NULL;
    for (size_t i = 0; i <= n; i++)
        atomic_init(&b[i], 0);
    return b;
}

metrics_histogram *metrics_latency_register(metrics_registry *r, const char *name, const char *help,
                                            const char *const *labels, const uint64_t *bounds_ns,
                                            size_t n) {
    if (r == NULL) return NULL;
    if (bounds_ns == NULL) {
        if (n != 0) {
            set_err(r, "histogram \"%s\": NULL bounds with n = %zu", name ? name : "(null)", n);
            return NULL;
        }
        bounds_ns = metrics_default_latency_bounds_ns;
        n = METRICS_DEFAULT_LATENCY_BUCKETS;
    }
    if (n == 0 || n > METRICS_MAX_BUCKETS) {
        set_err(r, "histogram \"%s\": %zu bounds (1..%d allowed)", name ? name : "(null)", n,
                METRICS_MAX_BUCKETS);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (bounds_ns[i] == 0 || (i > 0 && bounds_ns[i] <= bounds_ns[i - 1])) {
            set_err(r, "histogram \"%s\": bounds must be > 0 and strictly increasing (bound %zu)",
                    name ? name : "(null)", i);
            return NULL;
        }
    }
    series *s = series_prepare(r, METRICS_HISTOGRAM, KIND_HISTOGRAM, name, help, labels);
    if (s == NULL) return NULL;
    struct metrics_histogram *h = &s->u.h;
    h->latency = true;
    h->n = n;
    h->bounds_ns = malloc(n * sizeof *h->bounds_ns);
    h->buckets = alloc_buckets(n);
    if (h->bounds_ns == NULL || h->buckets == NULL) {
        set_err(r, "histogram \"%s\": out of memory", name);
        series_free(s);
        return NULL;
    }
    memcpy(h->bounds_ns, bounds_ns, n * sizeof *h->bounds_ns);
    atomic_init(&h->sum, 0);
    series_commit(r, s);
    return h;
}

metrics_histogram *metrics_histogram_register(metrics_registry *r, const char *name,
                                              const char *help, const char *const *labels,
                                              const double *bounds, size_t n) {
    if (r == NULL) return NULL;
    if (bounds == NULL || n == 0 || n > METRICS_MAX_BUCKETS) {
        set_err(r, "histogram \"%s\": %zu bounds (1..%d allowed)", name ? name : "(null)",
                bounds ? n : 0, METRICS_MAX_BUCKETS);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
            set_err(r,
                    "histogram \"%s\": bounds must be finite and strictly increasing (bound %zu)",
                    name ? name : "(null)", i);
            return NULL;
        }
    }
    series *s = series_prepare(r, METRICS_HISTOGRAM, KIND_HISTOGRAM, name, help, labels);
    if (s == NULL) return NULL;
    struct metrics_histogram *h = &s->u.h;
    h->latency = false;
    h->n = n;
    h->bounds = malloc(n * sizeof *h->bounds);
    h->buckets = alloc_buckets(n);
    if (h->bounds == NULL || h->buckets == NULL) {
        set_err(r, "histogram \"%s\": out of memory", name);
        series_free(s);
        return NULL;
    }
    memcpy(h->bounds, bounds, n * sizeof *h->bounds);
    atomic_init(&h->sum, dbits(0.0));
    series_commit(r, s);
    return h;
}

/* ---- updates ---- */

void metrics_counter_add(metrics_counter *c, uint64_t n) {
    if (c) atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}

void metrics_counter_inc(metrics_counter *c) {
    metrics_counter_add(c, 1);
}

void metrics_gauge_set(metrics_gauge *g, double v) {
    if (g) atomic_store_explicit(&g->bits, dbits(v), memory_order_relaxed);
}

/* CAS loop on a double kept as its bits. */
static void add_double(_Atomic uint64_t *a, double delta) {
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, dbits(bitsd(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

void metrics_gauge_add(metrics_gauge *g, double delta) {
    if (g) add_double(&g->bits, delta);
}

void metrics_gauge_inc(metrics_gauge *g) {
    metrics_gauge_add(g, 1.0);
}

void metrics_gauge_dec(metrics_gauge *g) {
    metrics_gauge_add(g, -1.0);
}

static void observe_latency(metrics_histogram *h, uint64_t ns) {
    /* the first bound >= ns (le is inclusive); n when none: +Inf */
    size_t lo = 0, hi = h->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h->bounds_ns[mid] < ns)
            lo = mid + 1;
        else
            hi = mid;
    }
    atomic_fetch_add_explicit(&h->buckets[lo], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, ns, memory_order_relaxed);
}

static void observe_value(metrics_histogram *h, double v) {
    size_t lo = 0, hi = h->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h->bounds[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    atomic_fetch_add_explicit(&h->buckets[lo], 1, memory_order_relaxed);
    add_double(&h->sum, v);
}

void metrics_histogram_observe_ns(metrics_histogram *h, uint64_t ns) {
    if (h == NULL) return;
    if (h->latency)
        observe_latency(h, ns);
    else
        observe_value(h, (double)ns / 1e9);
}

void metrics_histogram_observe(metrics_histogram *h, double v) {
    if (h == NULL || isnan(v)) return;
    if (!h->latency) {
        observe_value(h, v);
        return;
    }
    uint64_t ns = 0;
    if (v > 0) {
        double x = floor(v * 1e9 + 0.5);
        ns = x >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)x;
    }
    observe_latency(h, ns);
}

/* ---- reads ---- */

uint64_t metrics_counter_value(const metrics_counter *c) {
    return c ? atomic_load_explicit(&c->value, memory_order_relaxed) : 0;
}

double metrics_gauge_value(const metrics_gauge *g) {
    return g ? bitsd(atomic_load_explicit(&g->bits, memory_order_relaxed)) : 0.0;
}

uint64_t metrics_histogram_count(const metrics_histogram *h) {
    if (h == NULL) return 0;
    uint64_t total = 0;
    for (size_t i = 0; i <= h->n; i++)
        total += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    return total;
}

uint64_t metrics_histogram_sum_ns(const metrics_histogram *h) {
    if (h == NULL || !h->latency) return 0;
    return atomic_load_explicit(&h->sum, memory_order_relaxed);
}

double metrics_histogram_sum(const metrics_histogram *h) {
    if (h == NULL) return 0.0;
    uint64_t raw = atomic_load_explicit(&h->sum, memory_order_relaxed);
    return h->latency ? (double)raw / 1e9 : bitsd(raw);
}

/* ---- exposition ---- */

/* `name` + suffix + `{labels[,extra]}` + ` value\n` */
static void put_sample(buf *b, const series *s, const char *suffix, const char *extra,
                       const char *value) {
    buf_str(b, s->name);
    buf_str(b, suffix);
    bool any = s->labels[0] != '\0' || extra != NULL;
    if (any) buf_put(b, "{", 1);
    buf_str(b, s->labels);
    if (extra != NULL) {
        if (s->labels[0] != '\0') buf_put(b, ",", 1);
        buf_str(b, extra);
    }
    if (any) buf_put(b, "}", 1);
    buf_put(b, " ", 1);
    buf_str(b, value);
    buf_put(b, "\n", 1);
}

static void render_histogram(buf *b, const series *s) {
    const struct metrics_histogram *h = &s->u.h;
    char num[40], le[64];
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->n; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        char bound[40];
        if (i == h->n)
            strcpy(bound, "+Inf");
        else if (h->latency)
            fmt_ns_seconds(bound, h->bounds_ns[i]);
        else
            fmt_double(bound, h->bounds[i]);
        snprintf(le, sizeof le, "le=\"%s\"", bound);
        snprintf(num, sizeof num, "%llu", (unsigned long long)cum);
        put_sample(b, s, "_bucket", le, num);
    }
    uint64_t raw = atomic_load_explicit(&h->sum, memory_order_relaxed);
    if (h->latency)
        fmt_ns_seconds(num, raw);
    else
        fmt_double(num, bitsd(raw));
    put_sample(b, s, "_sum", NULL, num);
    snprintf(num, sizeof num, "%llu", (unsigned long long)cum);
    put_sample(b, s, "_count", NULL, num);
}

static void render_series(buf *b, const series *s) {
    char num[40];
    switch (s->kind) {
        case KIND_COUNTER:
            snprintf(num, sizeof num, "%llu",
                     (unsigned long long)atomic_load_explicit(&s->u.c.value, memory_order_relaxed));
            put_sample(b, s, "", NULL, num);
            break;
        case KIND_GAUGE:
            fmt_double(num, bitsd(atomic_load_explicit(&s->u.g.bits, memory_order_relaxed)));
            put_sample(b, s, "", NULL, num);
            break;
        case KIND_CALLBACK:
            fmt_double(num, s->fn(s->ctx));
            put_sample(b, s, "", NULL, num);
            break;
        case KIND_HISTOGRAM:
            render_histogram(b, s);
            break;
    }
}

int metrics_render(const metrics_registry *r, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    buf b = {0};
    buf_put(&b, "", 0); /* "" for an empty registry, not NULL */
    for (size_t i = 0; r != NULL && i < r->n; i++) {
        const series *f = &r->s[i];
        if (f->head != i) continue;
        if (f->help[0] != '\0') {
            buf_str(&b, "# HELP ");
            buf_str(&b, f->name);
            buf_put(&b, " ", 1);
            buf_escaped(&b, f->help, false);
            buf_put(&b, "\n", 1);
        }
        buf_str(&b, "# TYPE ");
        buf_str(&b, f->name);
        buf_put(&b, " ", 1);
        buf_str(&b, type_name(f->type));
        buf_put(&b, "\n", 1);
        for (size_t j = i; j != NO_SERIES; j = r->s[j].next)
            render_series(&b, &r->s[j]);
    }
    if (b.failed) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
