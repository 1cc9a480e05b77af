/* Prometheus metrics (issue #7): counters, gauges, callback values and histograms, exposed in
 * the Prometheus text format 0.0.4 for `GET /metrics`.
 *
 * Two phases, because that is what makes updates cheap:
 *   - Registration, once, on one thread, before the threads that update start: the registry is
 *     created with a fixed maximum number of series, so every handle is a pointer into one array
 *     that never moves and needs no lock to reach. Registration allocates, validates and may
 *     fail (NULL / -1, with the reason in metrics_registry_error()).
 *   - Updates, from any thread, at any time: relaxed C11 atomics on the handle's own cache line
 *     (each series is 64-byte aligned so two hot counters never share a line). No allocation, no
 *     lock, no system call. Every update accepts a NULL handle and does nothing, so a caller
 *     whose registration failed (or that runs without metrics) needs no checks of its own.
 *   - metrics_render() may run on any thread concurrently with updates (not with registration).
 *     Relaxed reads give each value as it was at some moment during the render; a histogram's
 *     `_count` is taken as the sum of its buckets, so `le="+Inf"` and `_count` always agree.
 *
 * Series and families. A series is one name + one set of constant labels. Registering the same
 * name again with other labels adds a series to that family: the family keeps the type and help
 * of its first registration (a later one must have the same type, and a help that is NULL or
 * the same text), and the render groups all its series under one `# HELP` / `# TYPE` pair, as
 * the text format requires, in registration order of the family's first series.
 *
 * Names and labels are checked at registration:
 *   - a metric name matches [a-zA-Z_:][a-zA-Z0-9_:]*;
 *   - a label name matches [a-zA-Z_][a-zA-Z0-9_]*, does not start with "__" (reserved by
 *     Prometheus), is not "le" on a histogram, and appears once per series;
 *   - a label value is any UTF-8 text; it is escaped at render (\\, \", \n);
 *   - the same label set twice in one family is refused, and so is a name that a histogram's
 *     generated `_bucket`, `_sum` or `_count` series would clash with.
 * Labels are given as a NULL-terminated array of name, value pairs, e.g.
 *     (const char *[]){"route", "submit", NULL}
 * (NULL for none) and are rendered sorted by label name, so one label set has one spelling.
 *
 * Counters are rendered under the name as registered: give them the `_total` suffix yourself
 * (`qaex_orders_total`). Latency histograms are rendered in seconds, the Prometheus convention:
 * name them `..._seconds`. */
#ifndef QAEX_METRICS_H
#define QAEX_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct metrics_registry metrics_registry;
typedef struct metrics_counter metrics_counter;
typedef struct metrics_gauge metrics_gauge;
typedef struct metrics_histogram metrics_histogram;

/* The `# TYPE` of a family. */
typedef enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM } metrics_type;

/* Upper bound on the buckets of one histogram (not counting +Inf): bucket search stays short. */
#define METRICS_MAX_BUCKETS 64

/* The default latency ladder: 1 µs … 1 s in 1-2-5 steps (19 bounds), in nanoseconds. It covers
 * an in-memory match (µs), a journal fsync (ms) and a slow WebSocket push (up to 1 s); slower
 * observations still count, in +Inf. */
#define METRICS_DEFAULT_LATENCY_BUCKETS 19
extern const uint64_t metrics_default_latency_bounds_ns[METRICS_DEFAULT_LATENCY_BUCKETS];

/* ---- registry ---- */

/* A registry for at most `max_series` series (a histogram is one series, whatever its bucket
 * count). NULL when max_series is 0 or memory runs out. */
metrics_registry *metrics_registry_new(size_t max_series);
/* Frees the registry and every handle it gave out. NULL is allowed. */
void metrics_registry_free(metrics_registry *r);
/* Why the last registration on `r` failed ("" when it succeeded), e.g.
 * `invalid metric name "1x": must match [a-zA-Z_:][a-zA-Z0-9_:]*`. */
const char *metrics_registry_error(const metrics_registry *r);
/* Series registered so far. */
size_t metrics_registry_size(const metrics_registry *r);

/* ---- registration (single-threaded, before updates start) ---- */

/* A counter: a uint64 that only goes up. */
metrics_counter *metrics_counter_register(metrics_registry *r, const char *name, const char *help,
                                          const char *const *labels);
/* A gauge: a double that is set or moved up and down (connections, accounts, resting orders). */
metrics_gauge *metrics_gauge_register(metrics_registry *r, const char *name, const char *help,
                                      const char *const *labels);

/* A value read at render time by calling fn(ctx) on the rendering thread: for figures that live
 * elsewhere and would be wasteful to mirror on every change (RSS, open connections held by the
 * gateway, a counter another module already keeps). `type` is METRICS_GAUGE or METRICS_COUNTER.
 * fn must be safe to call on the rendering thread and must not call back into the registry.
 * Returns 0, or -1 with the reason in metrics_registry_error(). */
typedef double (*metrics_value_fn)(void *ctx);
int metrics_callback_register(metrics_registry *r, metrics_type type, const char *name,
                              const char *help, const char *const *labels, metrics_value_fn fn,
                              void *ctx);

/* A latency histogram kept in integer nanoseconds (so its sum is exact and summed with one
 * atomic add) and rendered in seconds. bounds_ns: strictly increasing, > 0, at most
 * METRICS_MAX_BUCKETS of them; NULL (with n 0) for metrics_default_latency_bounds_ns.
 * An observation costs a binary search over the bounds and two relaxed atomic adds (its bucket
 * and the sum): there is no separate count, the count is the sum of the buckets, which saves an
 * atomic per observation and keeps `_count` equal to `le="+Inf"` in every render. */
metrics_histogram *metrics_latency_register(metrics_registry *r, const char *name, const char *help,
                                            const char *const *labels, const uint64_t *bounds_ns,
                                            size_t n);
/* A histogram of arbitrary values (order volume, batch size, queue depth). bounds: finite,
 * strictly increasing, 1..METRICS_MAX_BUCKETS of them. Its sum is a double updated by CAS. */
metrics_histogram *metrics_histogram_register(metrics_registry *r, const char *name,
                                              const char *help, const char *const *labels,
                                              const double *bounds, size_t n);

/* ---- updates (any thread; lock-free; NULL handle = no-op) ---- */

void metrics_counter_add(metrics_counter *c, uint64_t n);
void metrics_counter_inc(metrics_counter *c);

void metrics_gauge_set(metrics_gauge *g, double v);
/* An atomic read-modify-write (CAS on the double's bits): concurrent adds are never lost. */
void metrics_gauge_add(metrics_gauge *g, double delta);
void metrics_gauge_inc(metrics_gauge *g);
void metrics_gauge_dec(metrics_gauge *g);

/* One observation of `ns` nanoseconds. On a latency histogram: exact, integer only. On a value
 * histogram: observes ns / 1e9 (seconds). */
void metrics_histogram_observe_ns(metrics_histogram *h, uint64_t ns);
/* One observation of `v` in the histogram's rendered unit: seconds on a latency histogram (then
 * rounded to whole nanoseconds; negative counts as 0), the value itself on a value histogram.
 * A bucket holds the observations <= its bound (Prometheus `le`). NaN is ignored. */
void metrics_histogram_observe(metrics_histogram *h, double v);

/* ---- reads (any thread; relaxed; 0 for NULL) ---- */

uint64_t metrics_counter_value(const metrics_counter *c);
double metrics_gauge_value(const metrics_gauge *g);
/* Observations so far (the sum of the buckets). */
uint64_t metrics_histogram_count(const metrics_histogram *h);
/* Sum of the observations in the rendered unit (seconds for a latency histogram). */
double metrics_histogram_sum(const metrics_histogram *h);
/* Sum in nanoseconds of a latency histogram (0 for a value histogram). */
uint64_t metrics_histogram_sum_ns(const metrics_histogram *h);

/* ---- exposition ---- */

/* The registry in the Prometheus text format 0.0.4 (Content-Type
 * `text/plain; version=0.0.4; charset=utf-8`): per family `# HELP` (when help is non-empty;
 * backslash and newline escaped) and `# TYPE`, then one `name{labels} value` line per series
 * (histograms: cumulative `_bucket{le="…"}` lines ending with `le="+Inf"`, then `_sum` and
 * `_count`). Floats are printed in the shortest form that reads back exactly, with `NaN`,
 * `+Inf`, `-Inf`; latency bounds and sums are exact decimal seconds ("0.000005").
 * *out is malloc'ed and NUL-terminated (the caller frees it), *len excludes the NUL.
 * Returns 0, or -1 (out of memory; *out NULL, *len 0). */
int metrics_render(const metrics_registry *r, char **out, size_t *len);

#endif
