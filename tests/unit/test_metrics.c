/* The Prometheus metrics library (src/server/metrics.h): counters and gauges render exact text,
 * families group their series under one HELP/TYPE, histogram observations land in the right
 * cumulative buckets (le inclusive) with exact sum and count, the text reads back through a
 * strict parser of the 0.0.4 format, label values and help are escaped, bad names, labels,
 * bounds and clashes are refused with a reason, callbacks are read at render, and
 * 2 threads x 1,000,000 concurrent updates (with a third thread rendering) give exact counts. */
#include "check.h"
#include "server/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a strict parser of the text format ---- */

#define MAX_SAMPLES 512
#define MAX_LABELS 8
#define MAX_FAMILIES 64

typedef struct sample {
    char name[128];
    char raw_labels[512]; /* the text between the braces, as rendered ("" for none) */
    int nlabels;
    char lname[MAX_LABELS][64];
    char lvalue[MAX_LABELS][256]; /* unescaped */
    double value;
} sample;

typedef struct family {
    char name[128];
    char type[16];
    char help[256]; /* unescaped */
    bool has_help;
} family;

typedef struct parsed {
    int n;
    sample s[MAX_SAMPLES];
    int nf;
    family f[MAX_FAMILIES];
    char error[256];
} parsed;

static bool name_start(char c, bool colon) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}

static bool name_char(char c, bool colon) {
    return name_start(c, colon) || (c >= '0' && c <= '9');
}

/* Reads a name at *p into out; false when there is none. */
static bool read_name(const char **p, char *out, size_t cap, bool colon) {
    const char *s = *p;
    if (!name_start(*s, colon)) return false;
    size_t k = 0;
    while (name_char(*s, colon)) {
        if (k + 1 >= cap) return false;
        out[k++] = *s++;
    }
    out[k] = '\0';
    *p = s;
    return true;
}

static bool read_value(const char *s, const char *end, double *v) {
    size_t n = (size_t)(end - s);
    if (n == 3 && strncmp(s, "NaN", 3) == 0) {
        *v = NAN;
        return true;
    }
    if (n == 4 && strncmp(s, "+Inf", 4) == 0) {
        *v = INFINITY;
        return true;
    }
    if (n == 4 && strncmp(s, "-Inf", 4) == 0) {
        *v = -INFINITY;
        return true;
    }
    char tmp[64];
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *e;
    *v = strtod(tmp, &e);
    return *e == '\0';
}

static family *find_family(parsed *ps, const char *name) {
    for (int i = 0; i < ps->nf; i++)
        if (strcmp(ps->f[i].name, name) == 0) return &ps->f[i];
    return NULL;
}

/* The family a sample name belongs to: itself, or a histogram's _bucket/_sum/_count. */
static family *family_of(parsed *ps, const char *name) {
    family *f = find_family(ps, name);
    if (f != NULL) return f;
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++) {
        size_t ln = strlen(name), ls = strlen(suffixes[i]);
        if (ln > ls && strcmp(name + ln - ls, suffixes[i]) == 0) {
            char base[128];
            memcpy(base, name, ln - ls);
            base[ln - ls] = '\0';
            f = find_family(ps, base);
            if (f != NULL && strcmp(f->type, "histogram") == 0) return f;
        }
    }
    return NULL;
}

static int parse_fail(parsed *ps, int line, const char *why) {
    snprintf(ps->error, sizeof ps->error, "line %d: %s", line, why);
    return -1;
}

/* Parses `text` (len bytes) into ps. 0, or -1 with ps->error. Checks: every line ends with \n;
 * comments are `# HELP name text` or `# TYPE name type`, TYPE once per family and before its
 * samples, HELP before TYPE; a family's samples are contiguous; every sample line is
 * `name{l="v",...} value` with the escapes \\ \" \n only. */
static int parse_text(const char *text, size_t len, parsed *ps) {
    memset(ps, 0, sizeof *ps);
    if (strlen(text) != len) return parse_fail(ps, 0, "length mismatch");
    if (len > 0 && text[len - 1] != '\n') return parse_fail(ps, 0, "no final newline");
    const char *p = text;
    int line = 0;
    family *current = NULL;
    while (*p) {
        line++;
        const char *eol = strchr(p, '\n');
        if (eol == NULL) return parse_fail(ps, line, "unterminated line");
        if (*p == '#') {
            char name[128];
            const char *q = p;
            bool help = strncmp(q, "# HELP ", 7) == 0, type = strncmp(q, "# TYPE ", 7) == 0;
            if (!help && !type) return parse_fail(ps, line, "unknown comment");
            q += 7;
            if (!read_name(&q, name, sizeof name, true) || *q != ' ')
                return parse_fail(ps, line, "bad name in comment");
            q++;
            family *f = find_family(ps, name);
            if (help) {
                if (f != NULL) return parse_fail(ps, line, "HELP after the family started");
                if (ps->nf == MAX_FAMILIES) return parse_fail(ps, line, "too many families");
                f = &ps->f[ps->nf++];
                snprintf(f->name, sizeof f->name, "%s", name);
                f->has_help = true;
                size_t k = 0;
                for (; q < eol; q++) {
                    char c = *q;
                    if (c == '\\') {
                        q++;
                        if (*q == '\\')
                            c = '\\';
                        else if (*q == 'n')
                            c = '\n';
                        else
                            return parse_fail(ps, line, "bad escape in HELP");
                    }
                    if (k + 1 < sizeof f->help) f->help[k++] = c;
                }
                f->help[k] = '\0';
            } else {
                if (f == NULL) {
                    if (ps->nf == MAX_FAMILIES) return parse_fail(ps, line, "too many families");
                    f = &ps->f[ps->nf++];
                    snprintf(f->name, sizeof f->name, "%s", name);
                } else if (f->type[0] != '\0') {
                    return parse_fail(ps, line, "second TYPE for a family");
                }
                size_t tl = (size_t)(eol - q);
                if (!((tl == 7 && strncmp(q, "counter", 7) == 0) ||
                      (tl == 5 && strncmp(q, "gauge", 5) == 0) ||
                      (tl == 9 && strncmp(q, "histogram", 9) == 0)))
                    return parse_fail(ps, line, "unknown type");
                memcpy(f->type, q, tl);
                f->type[tl] = '\0';
                current = f;
            }
            p = eol + 1;
            continue;
        }
        if (ps->n == MAX_SAMPLES) return parse_fail(ps, line, "too many samples");
        sample *s = &ps->s[ps->n];
        memset(s, 0, sizeof *s);
        const char *q = p;
        if (!read_name(&q, s->name, sizeof s->name, true))
            return parse_fail(ps, line, "bad metric name");
        family *f = family_of(ps, s->name);
        if (f == NULL || f->type[0] == '\0') return parse_fail(ps, line, "sample without TYPE");
        if (f != current) return parse_fail(ps, line, "family's samples not contiguous");
        if (*q == '{') {
            q++;
            const char *raw = q;
            while (*q != '}') {
                if (s->nlabels == MAX_LABELS) return parse_fail(ps, line, "too many labels");
                int k = s->nlabels++;
                if (!read_name(&q, s->lname[k], sizeof s->lname[k], false))
                    return parse_fail(ps, line, "bad label name");
                if (q[0] != '=' || q[1] != '"') return parse_fail(ps, line, "expected =\"");
                q += 2;
                size_t vl = 0;
                while (*q != '"') {
                    char c = *q;
                    if (c == '\n' || c == '\0') return parse_fail(ps, line, "unterminated value");
                    if (c == '\\') {
                        q++;
                        if (*q == '\\')
                            c = '\\';
                        else if (*q == '"')
                            c = '"';
                        else if (*q == 'n')
                            c = '\n';
                        else
                            return parse_fail(ps, line, "bad escape in label value");
                    }
                    if (vl + 1 >= sizeof s->lvalue[k]) return parse_fail(ps, line, "long value");
                    s->lvalue[k][vl++] = c;
                    q++;
                }
                s->lvalue[k][vl] = '\0';
                q++;
                if (*q == ',')
                    q++;
                else if (*q != '}')
                    return parse_fail(ps, line, "expected , or }");
            }
            size_t rl = (size_t)(q - raw);
            if (rl >= sizeof s->raw_labels) return parse_fail(ps, line, "labels too long");
            memcpy(s->raw_labels, raw, rl);
            s->raw_labels[rl] = '\0';
            q++;
        }
        if (*q != ' ') return parse_fail(ps, line, "expected a space before the value");
        q++;
        if (!read_value(q, eol, &s->value)) return parse_fail(ps, line, "bad value");
        ps->n++;
        p = eol + 1;
    }
    return 0;
}

/* The value of sample `name{raw_labels}`; NAN (and a failed check) when absent. */
static double sample_value(const parsed *ps, const char *name, const char *raw_labels) {
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->s[i].name, name) == 0 && strcmp(ps->s[i].raw_labels, raw_labels) == 0)
            return ps->s[i].value;
    fprintf(stderr, "no sample %s{%s}\n", name, raw_labels);
    check_failures_in_test++;
    return NAN;
}

static parsed *render_parse(const metrics_registry *r) {
    char *text = NULL;
    size_t len = 0;
    if (metrics_render(r, &text, &len) != 0) return NULL;
    parsed *ps = malloc(sizeof *ps);
    if (ps == NULL) {
        free(text);
        return NULL;
    }
    if (parse_text(text, len, ps) != 0) {
        fprintf(stderr, "parse error: %s\n%s", ps->error, text);
        free(text);
        free(ps);
        return NULL;
    }
    free(text);
    return ps;
}

static char *render(const metrics_registry *r) {
    char *text = NULL;
    size_t len = 0;
    if (metrics_render(r, &text, &len) != 0) return NULL;
    if (strlen(text) != len) {
        free(text);
        return NULL;
    }
    return text;
}

/* ---- counters and gauges ---- */

static void test_counter_gauge_exact_text(void) {
    metrics_registry *r = metrics_registry_new(8);
    CHECK(r != NULL);
    metrics_counter *submit = metrics_counter_register(r, "qaex_orders_total", "Orders received.",
                                                       (const char *[]){"route", "submit", NULL});
    /* another family registered in between: the render still groups qaex_orders_total */
    metrics_gauge *conns =
        metrics_gauge_register(r, "qaex_connections", "Open WebSocket connections.", NULL);
    metrics_counter *cancel = metrics_counter_register(r, "qaex_orders_total", NULL,
                                                       (const char *[]){"route", "cancel", NULL});
    metrics_counter *bare = metrics_counter_register(r, "qaex_fsync_total", "", NULL);
    CHECK(submit != NULL && conns != NULL && cancel != NULL && bare != NULL);
    CHECK_INT(metrics_registry_size(r), 4);
    CHECK_STR(metrics_registry_error(r), "");

    metrics_counter_add(submit, 5);
    for (int i = 0; i < 3; i++)
        metrics_counter_inc(cancel);
    metrics_counter_add(bare, 18446744073709551615ULL);
    metrics_gauge_set(conns, 7);
    metrics_gauge_add(conns, 2.5);
    metrics_gauge_dec(conns);
    CHECK_INT(metrics_counter_value(submit), 5);
    CHECK_INT(metrics_counter_value(cancel), 3);
    CHECK(metrics_gauge_value(conns) == 8.5);

    char *text = render(r);
    CHECK_STR(text, "# HELP qaex_orders_total Orders received.\n"
                    "# TYPE qaex_orders_total counter\n"
                    "qaex_orders_total{route=\"submit\"} 5\n"
                    "qaex_orders_total{route=\"cancel\"} 3\n"
                    "# HELP qaex_connections Open WebSocket connections.\n"
                    "# TYPE qaex_connections gauge\n"
                    "qaex_connections 8.5\n"
                    "# TYPE qaex_fsync_total counter\n"
                    "qaex_fsync_total 18446744073709551615\n");
    free(text);
    metrics_registry_free(r);
}

static void test_labels_sorted_and_gauge_formats(void) {
    metrics_registry *r = metrics_registry_new(16);
    metrics_gauge *g = metrics_gauge_register(
        r, "g", "h", (const char *[]){"zone", "b", "app", "qaex", "mid", "", NULL});
    CHECK(g != NULL);
    /* the same set in another order is the same series */
    CHECK(metrics_gauge_register(
              r, "g", "h", (const char *[]){"app", "qaex", "mid", "", "zone", "b", NULL}) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "already registered with labels");

    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {10.0, "10"},
        {1e15, "1000000000000000"},
        {-2e6, "-2000000"},
        {1e16, "1e+16"},
        {1.5e300, "1.5e+300"},
        {0.0, "0"},
        {0.1, "0.1"},
        {-3.25, "-3.25"},
        {1e-9, "1e-09"},
        {123456789012.0, "123456789012"},
        {1.0 / 3.0, "0.3333333333333333"},
        {NAN, "NaN"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        metrics_gauge_set(g, cases[i].v);
        char *text = render(r);
        char want[256];
        snprintf(want, sizeof want,
                 "# HELP g h\n# TYPE g gauge\ng{app=\"qaex\",mid=\"\",zone=\"b\"} %s\n",
                 cases[i].text);
        CHECK_STR(text, want);
        free(text);
    }
    metrics_registry_free(r);
}

/* ---- histograms ---- */

static void test_latency_histogram_buckets(void) {
    metrics_registry *r = metrics_registry_new(4);
    static const uint64_t bounds[] = {1000, 5000, 1000000}; /* 1 µs, 5 µs, 1 ms */
    metrics_histogram *h =
        metrics_latency_register(r, "qaex_match_seconds", "Matching latency.",
                                 (const char *[]){"instrument", "IF2501", NULL}, bounds, 3);
    CHECK(h != NULL);
    metrics_histogram_observe_ns(h, 0);          /* le 1e-6 */
    metrics_histogram_observe_ns(h, 1000);       /* le 1e-6: bounds are inclusive */
    metrics_histogram_observe_ns(h, 1001);       /* le 5e-6 */
    metrics_histogram_observe_ns(h, 5000);       /* le 5e-6 */
    metrics_histogram_observe_ns(h, 5001);       /* le 1e-3 */
    metrics_histogram_observe_ns(h, 1000000);    /* le 1e-3 */
    metrics_histogram_observe_ns(h, 2000000000); /* +Inf */
    metrics_histogram_observe(h, 0.0000025);     /* 2500 ns: le 5e-6 */
    metrics_histogram_observe(h, -1.0);          /* counts as 0: le 1e-6 */
    metrics_histogram_observe(h, NAN);           /* ignored */
    CHECK_INT(metrics_histogram_count(h), 9);
    CHECK_INT(metrics_histogram_sum_ns(h), 2001014502ULL);
    CHECK(metrics_histogram_sum(h) == 2001014502.0 / 1e9);

    char *text = render(r);
    CHECK_STR(text, "# HELP qaex_match_seconds Matching latency.\n"
                    "# TYPE qaex_match_seconds histogram\n"
                    "qaex_match_seconds_bucket{instrument=\"IF2501\",le=\"0.000001\"} 3\n"
                    "qaex_match_seconds_bucket{instrument=\"IF2501\",le=\"0.000005\"} 6\n"
                    "qaex_match_seconds_bucket{instrument=\"IF2501\",le=\"0.001\"} 8\n"
                    "qaex_match_seconds_bucket{instrument=\"IF2501\",le=\"+Inf\"} 9\n"
                    "qaex_match_seconds_sum{instrument=\"IF2501\"} 2.001014502\n"
                    "qaex_match_seconds_count{instrument=\"IF2501\"} 9\n");
    free(text);
    metrics_registry_free(r);
}

static void test_default_latency_buckets(void) {
    metrics_registry *r = metrics_registry_new(2);
    metrics_histogram *h =
        metrics_latency_register(r, "qaex_fsync_seconds", "fsync", NULL, NULL, 0);
    CHECK(h != NULL);
    /* one observation per ladder step, just above each bound, and one above 1 s */
    for (int i = 0; i < METRICS_DEFAULT_LATENCY_BUCKETS; i++)
        metrics_histogram_observe_ns(h, metrics_default_latency_bounds_ns[i] + 1);
    parsed *ps = render_parse(r);
    CHECK(ps != NULL);
    if (ps != NULL) {
        static const char *const les[] = {"0.000001", "0.000002", "0.000005", "0.00001", "0.00002",
                                          "0.00005",  "0.0001",   "0.0002",   "0.0005",  "0.001",
                                          "0.002",    "0.005",    "0.01",     "0.02",    "0.05",
                                          "0.1",      "0.2",      "0.5",      "1",       "+Inf"};
        CHECK_INT(ps->n, METRICS_DEFAULT_LATENCY_BUCKETS + 1 + 2);
        for (int i = 0; i <= METRICS_DEFAULT_LATENCY_BUCKETS; i++) {
            char lab[64];
            snprintf(lab, sizeof lab, "le=\"%s\"", les[i]);
            /* bound i holds the observations of bounds 0..i-1 (each landed one step up) */
            CHECK(sample_value(ps, "qaex_fsync_seconds_bucket", lab) == (double)i);
        }
        CHECK(sample_value(ps, "qaex_fsync_seconds_count", "") == 19.0);
        uint64_t sum = 0;
        for (int i = 0; i < METRICS_DEFAULT_LATENCY_BUCKETS; i++)
            sum += metrics_default_latency_bounds_ns[i] + 1;
        CHECK_INT(metrics_histogram_sum_ns(h), sum);
        CHECK(sample_value(ps, "qaex_fsync_seconds_sum", "") == (double)sum / 1e9);
    }
    free(ps);
    metrics_registry_free(r);
}

static void test_value_histogram(void) {
    metrics_registry *r = metrics_registry_new(2);
    static const double bounds[] = {1, 2.5, 10};
    metrics_histogram *h =
        metrics_histogram_register(r, "qaex_batch_size", "Frames per batch.", NULL, bounds, 3);
    CHECK(h != NULL);
    metrics_histogram_observe(h, 0.5);
    metrics_histogram_observe(h, 1);
    metrics_histogram_observe(h, 2.5);
    metrics_histogram_observe(h, 3);
    metrics_histogram_observe(h, 100);
    metrics_histogram_observe(h, -INFINITY);            /* le 1: below everything */
    metrics_histogram_observe(h, -INFINITY + INFINITY); /* NaN: ignored */
    metrics_histogram_observe_ns(h, 1500000000);        /* 1.5: le 2.5 */
    CHECK_INT(metrics_histogram_count(h), 7);
    CHECK_INT(metrics_histogram_sum_ns(h), 0);
    char *text = render(r);
    CHECK_STR(text, "# HELP qaex_batch_size Frames per batch.\n"
                    "# TYPE qaex_batch_size histogram\n"
                    "qaex_batch_size_bucket{le=\"1\"} 3\n"
                    "qaex_batch_size_bucket{le=\"2.5\"} 5\n"
                    "qaex_batch_size_bucket{le=\"10\"} 6\n"
                    "qaex_batch_size_bucket{le=\"+Inf\"} 7\n"
                    "qaex_batch_size_sum -Inf\n"
                    "qaex_batch_size_count 7\n");
    free(text);
    metrics_registry_free(r);

    /* a finite sum */
    r = metrics_registry_new(1);
    h = metrics_histogram_register(r, "v", NULL, NULL, bounds, 3);
    metrics_histogram_observe(h, 0.5);
    metrics_histogram_observe(h, 3);
    metrics_histogram_observe(h, 100);
    CHECK(metrics_histogram_sum(h) == 103.5);
    parsed *ps = render_parse(r);
    CHECK(ps != NULL);
    if (ps != NULL) {
        CHECK(sample_value(ps, "v_sum", "") == 103.5);
        CHECK(sample_value(ps, "v_bucket", "le=\"2.5\"") == 1.0);
        CHECK(sample_value(ps, "v_bucket", "le=\"10\"") == 2.0);
        CHECK(sample_value(ps, "v_count", "") == 3.0);
    }
    free(ps);
    metrics_registry_free(r);
}

/* ---- callbacks ---- */

static double read_double(void *ctx) {
    return *(const double *)ctx;
}

static void test_callbacks(void) {
    metrics_registry *r = metrics_registry_new(4);
    double rss = 1048576, pushes = 12;
    CHECK_INT(metrics_callback_register(r, METRICS_GAUGE, "process_resident_memory_bytes",
                                        "Resident memory.", NULL, read_double, &rss),
              0);
    CHECK_INT(metrics_callback_register(r, METRICS_COUNTER, "qaex_ws_push_total", "Pushes.",
                                        (const char *[]){"kind", "diff", NULL}, read_double,
                                        &pushes),
              0);
    CHECK_INT(metrics_callback_register(r, METRICS_HISTOGRAM, "h", NULL, NULL, read_double, &rss),
              -1);
    CHECK_CONTAINS(metrics_registry_error(r), "counter or a gauge");
    CHECK_INT(metrics_callback_register(r, METRICS_GAUGE, "n", NULL, NULL, NULL, NULL), -1);
    CHECK_CONTAINS(metrics_registry_error(r), "callback is NULL");

    char *text = render(r);
    CHECK_STR(text, "# HELP process_resident_memory_bytes Resident memory.\n"
                    "# TYPE process_resident_memory_bytes gauge\n"
                    "process_resident_memory_bytes 1048576\n"
                    "# HELP qaex_ws_push_total Pushes.\n"
                    "# TYPE qaex_ws_push_total counter\n"
                    "qaex_ws_push_total{kind=\"diff\"} 12\n");
    free(text);
    rss = 2097152.5; /* read again at the next render */
    pushes = 13;
    parsed *ps = render_parse(r);
    CHECK(ps != NULL);
    if (ps != NULL) {
        CHECK(sample_value(ps, "process_resident_memory_bytes", "") == 2097152.5);
        CHECK(sample_value(ps, "qaex_ws_push_total", "kind=\"diff\"") == 13.0);
    }
    free(ps);
    metrics_registry_free(r);
}

/* ---- escaping ---- */

static void test_escaping(void) {
    metrics_registry *r = metrics_registry_new(4);
    const char *nasty = "a\\b\"c\nd";
    metrics_counter *c =
        metrics_counter_register(r, "qaex_x_total", "line one\nline two \\ \"quoted\"",
                                 (const char *[]){"path", nasty, "user", "\xe5\xbc\xa0", NULL});
    CHECK(c != NULL);
    metrics_counter_inc(c);
    char *text = render(r);
    CHECK_STR(text, "# HELP qaex_x_total line one\\nline two \\\\ \"quoted\"\n"
                    "# TYPE qaex_x_total counter\n"
                    "qaex_x_total{path=\"a\\\\b\\\"c\\nd\",user=\"\xe5\xbc\xa0\"} 1\n");
    free(text);
    parsed *ps = render_parse(r);
    CHECK(ps != NULL);
    if (ps != NULL) {
        CHECK_INT(ps->n, 1);
        CHECK_INT(ps->s[0].nlabels, 2);
        CHECK_STR(ps->s[0].lname[0], "path");
        CHECK_STR(ps->s[0].lvalue[0], nasty);
        CHECK_STR(ps->s[0].lvalue[1], "\xe5\xbc\xa0");
        CHECK_INT(ps->nf, 1);
        CHECK_STR(ps->f[0].help, "line one\nline two \\ \"quoted\"");
        CHECK(ps->s[0].value == 1.0);
    }
    free(ps);

    /* a histogram with labels that need escaping: every bucket line carries them */
    metrics_histogram *h = metrics_latency_register(r, "qaex_push_seconds", NULL,
                                                    (const char *[]){"q", "\"", NULL}, NULL, 0);
    metrics_histogram_observe_ns(h, 3000);
    ps = render_parse(r);
    CHECK(ps != NULL);
    if (ps != NULL) {
        CHECK(sample_value(ps, "qaex_push_seconds_bucket", "q=\"\\\"\",le=\"0.000002\"") == 0.0);
        CHECK(sample_value(ps, "qaex_push_seconds_bucket", "q=\"\\\"\",le=\"0.000005\"") == 1.0);
        CHECK(sample_value(ps, "qaex_push_seconds_sum", "q=\"\\\"\"") == 0.000003);
    }
    free(ps);
    metrics_registry_free(r);
}

/* ---- refusals ---- */

static void test_invalid_names_refused(void) {
    metrics_registry *r = metrics_registry_new(8);
    static const char *const bad[] = {"", "1abc", "a-b", "a b", "a.b", "é", "a{b}", "qaex_x\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(metrics_counter_register(r, bad[i], "h", NULL) == NULL);
        CHECK_CONTAINS(metrics_registry_error(r), "invalid metric name");
        CHECK_CONTAINS(metrics_registry_error(r), "[a-zA-Z_:][a-zA-Z0-9_:]*");
        CHECK(metrics_gauge_register(r, bad[i], "h", NULL) == NULL);
        CHECK(metrics_latency_register(r, bad[i], "h", NULL, NULL, 0) == NULL);
    }
    CHECK(metrics_counter_register(r, NULL, "h", NULL) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "NULL");
    CHECK_STR(metrics_registry_error(r), "metric name is NULL");
    CHECK(metrics_counter_register(r, "1abc", "h", NULL) == NULL);
    CHECK_STR(metrics_registry_error(r),
              "invalid metric name \"1abc\": must match [a-zA-Z_:][a-zA-Z0-9_:]*");
    CHECK_INT(metrics_registry_size(r), 0);

    static const char *const good[] = {"a", "_a", ":a:b_1", "A9", "qaex_orders_total"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        CHECK(metrics_counter_register(r, good[i], "h", NULL) != NULL);
        CHECK_STR(metrics_registry_error(r), "");
    }
    CHECK_INT(metrics_registry_size(r), 5);
    metrics_registry_free(r);
}

static void test_invalid_labels_and_clashes_refused(void) {
    metrics_registry *r = metrics_registry_new(6);
    CHECK(metrics_counter_register(r, "c", NULL, (const char *[]){"1a", "x", NULL}) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "invalid label name \"1a\"");
    CHECK(metrics_counter_register(r, "c", NULL, (const char *[]){"a:b", "x", NULL}) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "invalid label name");
    CHECK(metrics_counter_register(r, "c", NULL, (const char *[]){"a-b", "x", NULL}) == NULL);
    CHECK(metrics_counter_register(r, "c", NULL, (const char *[]){"__name__", "x", NULL}) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "reserved");
    CHECK(metrics_counter_register(r, "c", NULL, (const char *[]){"a", NULL}) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "has no value");
    CHECK(metrics_counter_register(r, "c", NULL, (const char *[]){"a", "1", "a", "2", NULL}) ==
          NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "given twice");
    CHECK(metrics_latency_register(r, "h_seconds", NULL, (const char *[]){"le", "1", NULL}, NULL,
                                   0) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "\"le\" is reserved");
    /* le is an ordinary label elsewhere */
    CHECK(metrics_counter_register(r, "c", NULL, (const char *[]){"le", "1", NULL}) != NULL);
    CHECK_INT(metrics_registry_size(r), 1);

    /* one family, one type, one help; no duplicate series */
    CHECK(metrics_gauge_register(r, "c", NULL, (const char *[]){"le", "2", NULL}) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "already registered as a counter, not a gauge");
    CHECK(metrics_counter_register(r, "c", "other help", (const char *[]){"le", "2", NULL}) ==
          NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "another help text");
    CHECK(metrics_counter_register(r, "c", NULL, (const char *[]){"le", "1", NULL}) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "already registered with labels {le=\"1\"}");

    /* histogram suffixes, both ways round */
    CHECK(metrics_latency_register(r, "lat", NULL, NULL, NULL, 0) != NULL);
    CHECK(metrics_counter_register(r, "lat_count", NULL, NULL) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "clashes with the series of histogram \"lat\"");
    CHECK(metrics_gauge_register(r, "lat_bucket", NULL, NULL) == NULL);
    CHECK(metrics_gauge_register(r, "lat_sum", NULL, NULL) == NULL);
    CHECK(metrics_gauge_register(r, "lat_summary", NULL, NULL) != NULL);
    CHECK(metrics_gauge_register(r, "x_sum", NULL, NULL) != NULL);
    CHECK(metrics_latency_register(r, "x", NULL, NULL, NULL, 0) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "clashes with the series of histogram \"x\"");

    /* bounds */
    static const uint64_t down_ns[] = {5, 5};
    static const uint64_t zero_ns[] = {0, 5};
    CHECK(metrics_latency_register(r, "b1", NULL, NULL, down_ns, 2) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "strictly increasing");
    CHECK(metrics_latency_register(r, "b1", NULL, NULL, zero_ns, 2) == NULL);
    CHECK(metrics_latency_register(r, "b1", NULL, NULL, down_ns, 0) == NULL);
    CHECK(metrics_latency_register(r, "b1", NULL, NULL, NULL, 3) == NULL);
    static const double nan_b[] = {1, NAN};
    static const double inf_b[] = {1, INFINITY};
    static const double down_b[] = {2, 1};
    CHECK(metrics_histogram_register(r, "b2", NULL, NULL, nan_b, 2) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "finite and strictly increasing");
    CHECK(metrics_histogram_register(r, "b2", NULL, NULL, inf_b, 2) == NULL);
    CHECK(metrics_histogram_register(r, "b2", NULL, NULL, down_b, 2) == NULL);
    CHECK(metrics_histogram_register(r, "b2", NULL, NULL, NULL, 0) == NULL);
    uint64_t many[METRICS_MAX_BUCKETS + 1];
    for (int i = 0; i <= METRICS_MAX_BUCKETS; i++)
        many[i] = (uint64_t)(i + 1);
    CHECK(metrics_latency_register(r, "b3", NULL, NULL, many, METRICS_MAX_BUCKETS + 1) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "bounds");
    CHECK_INT(metrics_registry_size(r), 4);

    /* capacity */
    CHECK(metrics_latency_register(r, "b3", NULL, NULL, many, METRICS_MAX_BUCKETS) != NULL);
    CHECK(metrics_counter_register(r, "c", NULL, (const char *[]){"le", "3", NULL}) != NULL);
    CHECK_INT(metrics_registry_size(r), 6);
    CHECK(metrics_counter_register(r, "one_more", NULL, NULL) == NULL);
    CHECK_CONTAINS(metrics_registry_error(r), "registry is full (6 series)");

    /* what was registered still renders and reads back */
    parsed *ps = render_parse(r);
    CHECK(ps != NULL);
    if (ps != NULL) {
        CHECK_INT(ps->nf, 5);
        CHECK(sample_value(ps, "c", "le=\"1\"") == 0.0);
        CHECK(sample_value(ps, "c", "le=\"3\"") == 0.0);
        CHECK(sample_value(ps, "b3_bucket", "le=\"0.000000064\"") == 0.0);
    }
    free(ps);
    metrics_registry_free(r);
}

static void test_null_and_empty(void) {
    CHECK(metrics_registry_new(0) == NULL);
    metrics_counter_add(NULL, 1);
    metrics_counter_inc(NULL);
    metrics_gauge_set(NULL, 1);
    metrics_gauge_add(NULL, 1);
    metrics_gauge_inc(NULL);
    metrics_gauge_dec(NULL);
    metrics_histogram_observe(NULL, 1);
    metrics_histogram_observe_ns(NULL, 1);
    CHECK_INT(metrics_counter_value(NULL), 0);
    CHECK(metrics_gauge_value(NULL) == 0.0);
    CHECK_INT(metrics_histogram_count(NULL), 0);
    CHECK(metrics_histogram_sum(NULL) == 0.0);
    CHECK(metrics_counter_register(NULL, "a", NULL, NULL) == NULL);
    CHECK_INT(metrics_callback_register(NULL, METRICS_GAUGE, "a", NULL, NULL, read_double, NULL),
              -1);
    metrics_registry_free(NULL);

    char *text = NULL;
    size_t len = 99;
    metrics_registry *r = metrics_registry_new(1);
    CHECK_INT(metrics_render(r, &text, &len), 0);
    CHECK_STR(text, "");
    CHECK_INT(len, 0);
    free(text);
    CHECK_INT(metrics_render(NULL, &text, &len), 0);
    CHECK_STR(text, "");
    free(text);
    metrics_registry_free(r);
}

/* A registry with every kind, rendered and read back by the parser. */
static void test_round_trip(void) {
    metrics_registry *r = metrics_registry_new(32);
    static const char *const routes[] = {"submit", "cancel", "query", "open"};
    metrics_counter *req[4];
    metrics_histogram *lat[4];
    for (int i = 0; i < 4; i++) {
        const char *labels[] = {"route", routes[i], NULL};
        req[i] = metrics_counter_register(r, "qaex_http_requests_total", "HTTP requests.", labels);
        lat[i] = metrics_latency_register(r, "qaex_http_request_seconds", "HTTP latency.", labels,
                                          NULL, 0);
    }
    metrics_gauge *accounts = metrics_gauge_register(r, "qaex_accounts", "Open accounts.", NULL);
    double conns = 42;
    CHECK_INT(metrics_callback_register(r, METRICS_GAUGE, "qaex_ws_connections", "Connections.",
                                        NULL, read_double, &conns),
              0);
    for (int i = 0; i < 4; i++) {
        metrics_counter_add(req[i], (uint64_t)(100 * (i + 1)));
        for (int k = 0; k <= i; k++)
            metrics_histogram_observe_ns(lat[i], 150000); /* 150 µs */
    }
    metrics_gauge_set(accounts, 1000);

    parsed *ps = render_parse(r);
    CHECK(ps != NULL);
    if (ps != NULL) {
        CHECK_INT(ps->nf, 4);
        CHECK_STR(ps->f[0].name, "qaex_http_requests_total");
        CHECK_STR(ps->f[0].type, "counter");
        CHECK_STR(ps->f[1].name, "qaex_http_request_seconds");
        CHECK_STR(ps->f[1].type, "histogram");
        CHECK_STR(ps->f[3].type, "gauge");
        CHECK_INT(ps->n, 4 + 4 * (20 + 2) + 1 + 1);
        for (int i = 0; i < 4; i++) {
            char lab[128];
            snprintf(lab, sizeof lab, "route=\"%s\"", routes[i]);
            CHECK(sample_value(ps, "qaex_http_requests_total", lab) == 100.0 * (i + 1));
            snprintf(lab, sizeof lab, "route=\"%s\",le=\"0.0001\"", routes[i]);
            CHECK(sample_value(ps, "qaex_http_request_seconds_bucket", lab) == 0.0);
            snprintf(lab, sizeof lab, "route=\"%s\",le=\"0.0002\"", routes[i]);
            CHECK(sample_value(ps, "qaex_http_request_seconds_bucket", lab) == i + 1.0);
            snprintf(lab, sizeof lab, "route=\"%s\",le=\"+Inf\"", routes[i]);
            CHECK(sample_value(ps, "qaex_http_request_seconds_bucket", lab) == i + 1.0);
            snprintf(lab, sizeof lab, "route=\"%s\"", routes[i]);
            CHECK(sample_value(ps, "qaex_http_request_seconds_count", lab) == i + 1.0);
            CHECK(sample_value(ps, "qaex_http_request_seconds_sum", lab) ==
                  strtod(i == 0   ? "0.00015"
                         : i == 1 ? "0.0003"
                         : i == 2 ? "0.00045"
                                  : "0.0006",
                         NULL));
        }
        CHECK(sample_value(ps, "qaex_accounts", "") == 1000.0);
        CHECK(sample_value(ps, "qaex_ws_connections", "") == 42.0);
        /* cumulative buckets never decrease */
        double prev = -1;
        for (int i = 0; i < ps->n; i++) {
            if (strcmp(ps->s[i].name, "qaex_http_request_seconds_bucket") != 0) {
                prev = -1;
                continue;
            }
            CHECK(ps->s[i].value >= prev);
            prev = ps->s[i].value;
        }
    }
    free(ps);
    metrics_registry_free(r);
}

/* ---- concurrency ---- */

#define PER_THREAD 1000000

typedef struct shared {
    metrics_counter *c;
    metrics_gauge *g;
    metrics_histogram *lat;
    metrics_histogram *val;
    int id;
} shared;

static atomic_int workers_done;

/* Thread t observes, for i in 0..PER_THREAD-1, latency (i % 4) * 1000 + 500 + t ns:
 * 500/501 (le 1 µs), 1500/1501 (le 2 µs), 2500/2501 and 3500/3501 (le 5 µs). */
static void *worker(void *arg) {
    const shared *sh = arg;
    for (uint64_t i = 0; i < PER_THREAD; i++) {
        metrics_counter_inc(sh->c);
        metrics_gauge_add(sh->g, sh->id == 0 ? 1.0 : 2.0);
        metrics_histogram_observe_ns(sh->lat, (i % 4) * 1000 + 500 + (uint64_t)sh->id);
        metrics_histogram_observe(sh->val, (double)(i % 3));
    }
    atomic_fetch_add(&workers_done, 1);
    return NULL;
}

typedef struct render_stats {
    const metrics_registry *r;
    int renders;
    int bad;
} render_stats;

/* Renders while the workers run: every render parses, and le="+Inf" equals _count. */
static void *renderer(void *arg) {
    render_stats *rs = arg;
    while (atomic_load(&workers_done) < 2) {
        char *text = NULL;
        size_t len = 0;
        if (metrics_render(rs->r, &text, &len) != 0) {
            rs->bad++;
            break;
        }
        parsed *ps = malloc(sizeof *ps);
        if (ps == NULL || parse_text(text, len, ps) != 0) {
            rs->bad++;
        } else {
            double inf = -1, count = -2, prev = 0;
            for (int i = 0; i < ps->n; i++) {
                if (strcmp(ps->s[i].name, "lat_seconds_bucket") == 0) {
                    if (ps->s[i].value < prev) rs->bad++;
                    prev = ps->s[i].value;
                    if (strcmp(ps->s[i].raw_labels, "le=\"+Inf\"") == 0) inf = ps->s[i].value;
                }
                if (strcmp(ps->s[i].name, "lat_seconds_count") == 0) count = ps->s[i].value;
            }
            if (inf != count) rs->bad++;
        }
        free(ps);
        free(text);
        rs->renders++;
    }
    return NULL;
}

static void test_concurrent_exact(void) {
    metrics_registry *r = metrics_registry_new(8);
    static const double vb[] = {0, 1};
    shared sh[2];
    sh[0].c = metrics_counter_register(r, "ops_total", NULL, NULL);
    sh[0].g = metrics_gauge_register(r, "level", NULL, NULL);
    sh[0].lat = metrics_latency_register(r, "lat_seconds", NULL, NULL, NULL, 0);
    sh[0].val = metrics_histogram_register(r, "val", NULL, NULL, vb, 2);
    sh[0].id = 0;
    sh[1] = sh[0];
    sh[1].id = 1;
    CHECK(sh[0].c && sh[0].g && sh[0].lat && sh[0].val);
    atomic_store(&workers_done, 0);

    pthread_t th[2], rt;
    render_stats rs = {.r = r};
    CHECK_INT(pthread_create(&rt, NULL, renderer, &rs), 0);
    for (int t = 0; t < 2; t++)
        CHECK_INT(pthread_create(&th[t], NULL, worker, &sh[t]), 0);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    pthread_join(rt, NULL);
    CHECK_INT(rs.bad, 0);
    CHECK(rs.renders >= 1);

    CHECK_INT(metrics_counter_value(sh[0].c), 2 * PER_THREAD);
    CHECK(metrics_gauge_value(sh[0].g) == 3.0 * PER_THREAD);
    CHECK_INT(metrics_histogram_count(sh[0].lat), 2 * PER_THREAD);
    /* per thread: sum over i of (i%4)*1000 + 500 + id = 1500*N + (500+id)*N */
    uint64_t want_ns = 2ULL * 1500 * PER_THREAD + 500ULL * PER_THREAD + 501ULL * PER_THREAD;
    CHECK_INT(metrics_histogram_sum_ns(sh[0].lat), want_ns);
    CHECK_INT(metrics_histogram_count(sh[0].val), 2 * PER_THREAD);
    /* i%3 over 0..N-1: 333334 zeros, 333333 ones, 333333 twos per thread */
    CHECK(metrics_histogram_sum(sh[0].val) == 2.0 * (333333.0 + 2 * 333333.0));

    parsed *ps = render_parse(r);
    CHECK(ps != NULL);
    if (ps != NULL) {
        CHECK(sample_value(ps, "ops_total", "") == 2.0 * PER_THREAD);
        CHECK(sample_value(ps, "level", "") == 3.0 * PER_THREAD);
        CHECK(sample_value(ps, "lat_seconds_bucket", "le=\"0.000001\"") == 0.5 * PER_THREAD);
        CHECK(sample_value(ps, "lat_seconds_bucket", "le=\"0.000002\"") == 1.0 * PER_THREAD);
        CHECK(sample_value(ps, "lat_seconds_bucket", "le=\"0.000005\"") == 2.0 * PER_THREAD);
        CHECK(sample_value(ps, "lat_seconds_bucket", "le=\"1\"") == 2.0 * PER_THREAD);
        CHECK(sample_value(ps, "lat_seconds_bucket", "le=\"+Inf\"") == 2.0 * PER_THREAD);
        CHECK(sample_value(ps, "lat_seconds_count", "") == 2.0 * PER_THREAD);
        CHECK(sample_value(ps, "lat_seconds_sum", "") == (double)want_ns / 1e9);
        CHECK(sample_value(ps, "val_bucket", "le=\"0\"") == 2.0 * 333334);
        CHECK(sample_value(ps, "val_bucket", "le=\"1\"") == 2.0 * (333334 + 333333));
        CHECK(sample_value(ps, "val_bucket", "le=\"+Inf\"") == 2.0 * PER_THREAD);
    }
    free(ps);
    char *text = render(r);
    CHECK_CONTAINS(text, "lat_seconds_sum 4.001\n"); /* 4,001,000,000 ns exactly */
    free(text);
    metrics_registry_free(r);
}

int main(void) {
    RUN_TEST(test_counter_gauge_exact_text);
    RUN_TEST(test_labels_sorted_and_gauge_formats);
    RUN_TEST(test_latency_histogram_buckets);
    RUN_TEST(test_default_latency_buckets);
    RUN_TEST(test_value_histogram);
    RUN_TEST(test_callbacks);
    RUN_TEST(test_escaping);
    RUN_TEST(test_invalid_names_refused);
    RUN_TEST(test_invalid_labels_and_clashes_refused);
    RUN_TEST(test_null_and_empty);
    RUN_TEST(test_round_trip);
    RUN_TEST(test_concurrent_exact);
    return CHECK_REPORT();
}
