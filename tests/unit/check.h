/* A minimal assertion library for unit tests: each failed check prints where and why, and the
 * runner ends with the "N passed, N failed" line that CTest logs and CI reads. */
#ifndef QAEX_CHECK_H
#define QAEX_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_failures_in_test __attribute__((unused));
static int check_tests_passed __attribute__((unused));
static int check_tests_failed __attribute__((unused));

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            check_failures_in_test++;                                                              \
        }                                                                                          \
    } while (0)

#define CHECK_INT(actual, expected)                                                                \
    do {                                                                                           \
        long long check_a_ = (long long)(actual), check_e_ = (long long)(expected);                \
        if (check_a_ != check_e_) {                                                                \
            fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #actual,     \
                    check_a_, check_e_);                                                           \
            check_failures_in_test++;                                                              \
        }                                                                                          \
    } while (0)

/* Money is compared to a tenth of a cent: the seed's figures are given to the cent. */
#define CHECK_MONEY(actual, expected)                                                              \
    do {                                                                                           \
        double check_a_ = (actual), check_e_ = (expected);                                         \
        if (!(fabs(check_a_ - check_e_) < 1e-3)) {                                                 \
            fprintf(stderr, "%s:%d: %s == %.6f, expected %.6f\n", __FILE__, __LINE__, #actual,     \
                    check_a_, check_e_);                                                           \
            check_failures_in_test++;                                                              \
        }                                                                                          \
    } while (0)

#define CHECK_STR(actual, expected)                                                                \
    do {                                                                                           \
        const char *check_a_ = (actual), *check_e_ = (expected);                                   \
        if (check_a_ == NULL || strcmp(check_a_, check_e_) != 0) {                                 \
            fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #actual, \
                    check_a_ ? check_a_ : "(null)", check_e_);                                     \
            check_failures_in_test++;                                                              \
        }                                                                                          \
    } while (0)

#define CHECK_CONTAINS(haystack, needle)                                                           \
    do {                                                                                           \
        const char *check_h_ = (haystack), *check_n_ = (needle);                                   \
        if (check_h_ == NULL || strstr(check_h_, check_n_) == NULL) {                              \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,         \
                    check_h_ ? check_h_ : "(null)", check_n_);                                     \
            check_failures_in_test++;                                                              \
        }                                                                                          \
    } while (0)

#define RUN_TEST(fn)                                                                               \
    do {                                                                                           \
        check_failures_in_test = 0;                                                                \
        fn();                                                                                      \
        if (check_failures_in_test == 0) {                                                         \
            check_tests_passed++;                                                                  \
        } else {                                                                                   \
            check_tests_failed++;                                                                  \
            fprintf(stderr, "FAILED: %s\n", #fn);                                                  \
        }                                                                                          \
    } while (0)

#define CHECK_REPORT()                                                                             \
    (printf("%d passed, %d failed\n", check_tests_passed, check_tests_failed),                     \
     check_tests_failed == 0 ? 0 : 1)

#endif
