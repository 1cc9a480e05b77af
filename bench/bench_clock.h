/* The benchmarks' clock: rdtsc between lfences (invariant TSC), calibrated against
 * CLOCK_MONOTONIC, or CLOCK_MONOTONIC itself where there is no TSC. Header-only: each benchmark
 * is one translation unit. */
#ifndef QAEX_BENCH_CLOCK_H
#define QAEX_BENCH_CLOCK_H

#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#endif

static double ns_per_tick = 1.0;

static inline int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline uint64_t ticks(void) {
#ifdef HAVE_TSC
    _mm_lfence();
    uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
#else
    return (uint64_t)mono_ns();
#endif
}

/* Sets ns_per_tick from 200 ms of both clocks. */
static inline void calibrate(void) {
#ifdef HAVE_TSC
    int64_t n0 = mono_ns();
    uint64_t t0 = ticks();
    while (mono_ns() - n0 < 200000000LL) {
    }
    int64_t n1 = mono_ns();
    uint64_t t1 = ticks();
    ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
#endif
}

static inline int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

#endif
