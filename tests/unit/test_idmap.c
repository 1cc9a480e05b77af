/* The idmap (src/engine/idmap.h): an open-addressing index from a 64-bit hash to a slot, with
 * linear probing and backward-shift deletion. Integer keys are their own hash and need no match
 * callback; string keys live in the caller's records and are compared by a callback. Besides the
 * direct cases, 200,000 random operations run against a plain reference model (and operations
 * in the middle of a growth's incremental migration against another), and after every
 * removal the table's structure is checked: every entry is reachable from its home bucket without
 * crossing an empty one (the property backward shift has to keep). */
#include "check.h"
#include "engine/idmap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

/* A fixed-seed xorshift64 generator: the same sequence on every platform. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t xorshift64(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

/* The n-th integer key (n = 0, 1, ...) whose home bucket in a table of `capacity` is `bucket`. */
static uint64_t key_with_home(uint32_t capacity, uint32_t bucket, int n, uint64_t start) {
    for (uint64_t k = start;; k++) {
        if ((idmap_hash_u64(k) & (capacity - 1)) == bucket && n-- == 0) return k;
    }
}

/* The index of the entry holding (hash, slot), or -1. */
static int64_t entry_index(const idmap *m, uint64_t hash, uint32_t slot) {
    for (uint32_t i = 0; i < m->capacity; i++)
        if (m->entries[i].tag == slot + 1 && m->entries[i].hash == hash) return i;
    return -1;
}

/* Entries of one table that can no longer be reached from their home: an empty bucket lies
 * between (a tombstone does not cut a run). Only buckets from `from` on are live. */
static int cut_off(const idmap_entry *t, uint32_t capacity, uint32_t from, uint32_t *live) {
    int bad = 0;
    uint32_t mask = capacity - 1;
    for (uint32_t i = from; i < capacity; i++) {
        if (t[i].tag == IDMAP_TAG_EMPTY || t[i].tag == IDMAP_TAG_TOMBSTONE) continue;
        (*live)++;
        uint32_t home = (uint32_t)(idmap_hash_u64(t[i].hash) & mask);
        for (uint32_t j = home; j != i; j = (j + 1) & mask) {
            if (t[j].tag == IDMAP_TAG_EMPTY) {
                fprintf(stderr, "entry %u (home %u) is cut off by the empty bucket %u\n", i, home,
                        j);
                bad++;
                break;
            }
        }
    }
    return bad;
}

/* Structural invariants: capacity a power of two, load at most 70%, count equal to the live
 * entries of the current table plus those the old one still holds above its migration cursor,
 * and no empty bucket between any entry and its home, in either table. Returns the number of
 * violations (each printed). */
static int check_structure(const idmap *m) {
    if (m->capacity == 0 || (m->capacity & (m->capacity - 1)) != 0) {
        fprintf(stderr, "capacity %u is not a power of two\n", m->capacity);
        return 1;
    }
    uint32_t live = 0;
    int bad = cut_off(m->entries, m->capacity, 0, &live);
    if (m->old) bad += cut_off(m->old, m->old_capacity, m->migrated, &live);
    if (live != m->count) {
        fprintf(stderr, "count %u but %u live entries\n", m->count, live);
        bad++;
    }
    if ((uint64_t)m->count * 10 > (uint64_t)m->capacity * 7) {
        fprintf(stderr, "load %u/%u above 70%%\n", m->count, m->capacity);
        bad++;
    }
    return bad;
}

/* String records for keyed lookups: the map keeps only (hash, slot); keys stay here. */
typedef struct string_table {
    const char *const *keys;
    const char *sought;
} string_table;

static bool string_match(const void *ctx, uint32_t slot) {
    const string_table *t = ctx;
    return strcmp(t->keys[slot], t->sought) == 0;
}

static uint32_t find_string(const idmap *m, const char *const *keys, uint64_t ns, const char *s) {
    string_table t = {keys, s};
    return idmap_find(m, idmap_hash_str(ns, s), string_match, &t);
}

/* ---- initialisation ---- */

static void test_init_capacity(void) {
    idmap m;
    CHECK_INT(idmap_init(&m, 0), 0);
    CHECK_INT(m.capacity, 16);
    CHECK_INT(m.count, 0);
    for (uint32_t i = 0; i < m.capacity; i++)
        CHECK_INT(m.entries[i].tag, IDMAP_TAG_EMPTY);
    CHECK_INT(idmap_find(&m, 42, NULL, NULL), IDMAP_NONE);
    CHECK_INT(idmap_remove(&m, 42, 0), -1);
    idmap_free(&m);
    CHECK(m.entries == NULL);
    CHECK_INT(m.capacity, 0);

    /* room for the expected count at 70% load: 100 -> 256 (128 * 0.7 = 89.6 < 100) */
    CHECK_INT(idmap_init(&m, 100), 0);
    CHECK_INT(m.capacity, 256);
    idmap_free(&m);
    CHECK_INT(idmap_init(&m, 11), 0); /* 16 * 0.7 = 11.2 */
    CHECK_INT(m.capacity, 16);
    idmap_free(&m);
    CHECK_INT(idmap_init(&m, 12), 0);
    CHECK_INT(m.capacity, 32);
    idmap_free(&m);
}

/* ---- integer keys ---- */

static void test_integer_keys(void) {
    idmap m;
    CHECK_INT(idmap_init(&m, 0), 0);
    for (uint32_t k = 1; k <= 10; k++)
        CHECK_INT(idmap_insert(&m, k * 1000, k + 100), 0);
    CHECK_INT(m.count, 10);
    for (uint32_t k = 1; k <= 10; k++)
        CHECK_INT(idmap_find(&m, k * 1000, NULL, NULL), k + 100);
    CHECK_INT(idmap_find(&m, 999, NULL, NULL), IDMAP_NONE);
    CHECK_INT(idmap_find(&m, 0, NULL, NULL), IDMAP_NONE);

    /* removal needs the exact (hash, slot) pair */
    CHECK_INT(idmap_remove(&m, 5000, 999), -1);
    CHECK_INT(idmap_remove(&m, 5001, 105), -1);
    CHECK_INT(m.count, 10);
    CHECK_INT(idmap_remove(&m, 5000, 105), 0);
    CHECK_INT(m.count, 9);
    CHECK_INT(idmap_find(&m, 5000, NULL, NULL), IDMAP_NONE);
    CHECK_INT(idmap_remove(&m, 5000, 105), -1);
    for (uint32_t k = 1; k <= 10; k++)
        if (k != 5) CHECK_INT(idmap_find(&m, k * 1000, NULL, NULL), k + 100);

    /* slot 0 and the largest hash are ordinary values */
    CHECK_INT(idmap_insert(&m, UINT64_MAX, 0), 0);
    CHECK_INT(idmap_find(&m, UINT64_MAX, NULL, NULL), 0);
    CHECK_INT(idmap_remove(&m, UINT64_MAX, 0), 0);
    CHECK_INT(check_structure(&m), 0);

    idmap_clear(&m);
    CHECK_INT(m.count, 0);
    CHECK_INT(m.capacity, 16);
    for (uint32_t k = 1; k <= 10; k++)
        CHECK_INT(idmap_find(&m, k * 1000, NULL, NULL), IDMAP_NONE);
    CHECK_INT(idmap_insert(&m, 7, 7), 0);
    CHECK_INT(idmap_find(&m, 7, NULL, NULL), 7);
    idmap_free(&m);
}

/* Equal hashes are told apart by the match callback; removal takes the exact pair. */
static bool slot_is(const void *ctx, uint32_t slot) {
    return slot == *(const uint32_t *)ctx;
}

static void test_equal_hashes(void) {
    idmap m;
    CHECK_INT(idmap_init(&m, 0), 0);
    CHECK_INT(idmap_insert(&m, 77, 1), 0);
    CHECK_INT(idmap_insert(&m, 77, 2), 0);
    CHECK_INT(idmap_insert(&m, 77, 3), 0);
    uint32_t want = 2;
    CHECK_INT(idmap_find(&m, 77, slot_is, &want), 2);
    want = 3;
    CHECK_INT(idmap_find(&m, 77, slot_is, &want), 3);
    want = 4;
    CHECK_INT(idmap_find(&m, 77, slot_is, &want), IDMAP_NONE);
    /* without a callback, the first of the run */
    CHECK_INT(idmap_find(&m, 77, NULL, NULL), 1);
    CHECK_INT(idmap_remove(&m, 77, 1), 0);
    CHECK_INT(idmap_find(&m, 77, NULL, NULL), 2);
    want = 3;
    CHECK_INT(idmap_find(&m, 77, slot_is, &want), 3);
    CHECK_INT(idmap_remove(&m, 77, 3), 0);
    CHECK_INT(idmap_find(&m, 77, slot_is, &want), IDMAP_NONE);
    CHECK_INT(idmap_find(&m, 77, NULL, NULL), 2);
    CHECK_INT(check_structure(&m), 0);
    idmap_free(&m);
}

/* ---- string keys ---- */

static void test_string_keys(void) {
    static const char *const keys[] = {
        "CFFEX.IF2501", "IF2501", "CFFEX.IC2501",   "IC2501", "trader",
        "market",       "",       "a-very-long-key"};
    const uint32_t n = sizeof keys / sizeof keys[0];
    idmap m;
    CHECK_INT(idmap_init(&m, 4), 0);
    for (uint32_t i = 0; i < n; i++)
        CHECK_INT(idmap_insert(&m, idmap_hash_str(0, keys[i]), i), 0);
    for (uint32_t i = 0; i < n; i++)
        CHECK_INT(find_string(&m, keys, 0, keys[i]), i);
    CHECK_INT(find_string(&m, keys, 0, "IF2502"), IDMAP_NONE);
    CHECK_INT(find_string(&m, keys, 0, "trade"), IDMAP_NONE);
    CHECK_INT(find_string(&m, keys, 0, "traderx"), IDMAP_NONE);
    /* the namespace is part of the hash: the same text in another namespace is another key */
    CHECK(idmap_hash_str(0, "trader") != idmap_hash_str(1, "trader"));
    CHECK(idmap_hash_str(7, "O1") != idmap_hash_str(8, "O1"));
    CHECK(idmap_hash_str(0, "ab") != idmap_hash_str(0, "ba"));
    CHECK(idmap_hash_str(3, "x") == idmap_hash_str(3, "x"));
    CHECK_INT(find_string(&m, keys, 1, "trader"), IDMAP_NONE);

    CHECK_INT(idmap_remove(&m, idmap_hash_str(0, "IF2501"), 1), 0);
    CHECK_INT(find_string(&m, keys, 0, "IF2501"), IDMAP_NONE);
    CHECK_INT(find_string(&m, keys, 0, "CFFEX.IF2501"), 0);
    for (uint32_t i = 2; i < n; i++)
        CHECK_INT(find_string(&m, keys, 0, keys[i]), i);
    CHECK_INT(check_structure(&m), 0);
    idmap_free(&m);
}

/* String keys whose hashes collide on purpose (only 4 distinct hash values): every lookup has to
 * walk a run of equal hashes and rely on the callback. */
static void test_string_keys_forced_collisions(void) {
    enum { N = 40 };
    static char storage[N][16];
    const char *keys[N];
    for (int i = 0; i < N; i++) {
        snprintf(storage[i], sizeof storage[i], "key-%d", i);
        keys[i] = storage[i];
    }
    idmap m;
    CHECK_INT(idmap_init(&m, 0), 0);
    for (uint32_t i = 0; i < N; i++)
        CHECK_INT(idmap_insert(&m, i % 4, i), 0);
    for (uint32_t i = 0; i < N; i++) {
        string_table t = {keys, keys[i]};
        CHECK_INT(idmap_find(&m, i % 4, string_match, &t), i);
        /* the right text under the wrong hash is not found */
        CHECK_INT(idmap_find(&m, (i + 1) % 4, string_match, &t), IDMAP_NONE);
    }
    /* remove every third, then all the rest must still be found */
    for (uint32_t i = 0; i < N; i += 3)
        CHECK_INT(idmap_remove(&m, i % 4, i), 0);
    CHECK_INT(check_structure(&m), 0);
    for (uint32_t i = 0; i < N; i++) {
        string_table t = {keys, keys[i]};
        CHECK_INT(idmap_find(&m, i % 4, string_match, &t), i % 3 == 0 ? IDMAP_NONE : i);
    }
    idmap_free(&m);
}

/* ---- growth ---- */

static void test_growth(void) {
    idmap m;
    CHECK_INT(idmap_init(&m, 0), 0);
    /* 16 buckets hold 11 entries at 70%; the 12th insert doubles the table */
    for (uint32_t i = 0; i < 11; i++)
        CHECK_INT(idmap_insert(&m, i, i), 0);
    CHECK_INT(m.capacity, 16);
    CHECK_INT(idmap_insert(&m, 11, 11), 0);
    CHECK_INT(m.capacity, 32);
    CHECK_INT(m.count, 12);
    uint32_t last_cap = m.capacity;
    int doublings = 0;
    for (uint32_t i = 12; i < 100000; i++) {
        CHECK_INT(idmap_insert(&m, (uint64_t)i * 0x10001ULL, i), 0);
        if (m.capacity != last_cap) {
            CHECK_INT(m.capacity, last_cap * 2);
            last_cap = m.capacity;
            doublings++;
        }
    }
    CHECK_INT(m.count, 100000);
    /* 100,000 at most 70% full: 2^18 = 262,144 (2^17 * 0.7 = 91,750 is too small) */
    CHECK_INT(m.capacity, 262144);
    CHECK_INT(doublings, 13);
    for (uint32_t i = 0; i < 12; i++)
        CHECK_INT(idmap_find(&m, i, NULL, NULL), i);
    for (uint32_t i = 12; i < 100000; i++)
        if (idmap_find(&m, (uint64_t)i * 0x10001ULL, NULL, NULL) != i) {
            CHECK_INT(idmap_find(&m, (uint64_t)i * 0x10001ULL, NULL, NULL), i);
            break;
        }
    CHECK_INT(check_structure(&m), 0);
    /* removing everything leaves an empty table of the same size */
    for (uint32_t i = 12; i < 100000; i++)
        CHECK_INT(idmap_remove(&m, (uint64_t)i * 0x10001ULL, i), 0);
    for (uint32_t i = 0; i < 12; i++)
        CHECK_INT(idmap_remove(&m, i, i), 0);
    CHECK_INT(m.count, 0);
    CHECK_INT(m.capacity, 262144);
    CHECK_INT(check_structure(&m), 0);
    idmap_free(&m);
}

/* Reserving moves what the table holds (also what a migration had not moved yet) into a table
 * that takes the reserved count without growing. */
static void test_reserve(void) {
    idmap m;
    CHECK_INT(idmap_init(&m, 0), 0);
    /* the 90th insert doubles 128 buckets, and moves only 64 of them at once */
    for (uint32_t i = 0; i < 90; i++)
        CHECK_INT(idmap_insert(&m, i * 7919ULL, i), 0);
    CHECK(m.old != NULL);
    CHECK_INT(idmap_reserve(&m, 50000), 0);
    CHECK(m.old == NULL);
    /* 50,000 at most 70% full: 2^17 = 131,072 (2^16 * 0.7 = 45,875 is too small) */
    CHECK_INT(m.capacity, 131072);
    CHECK_INT(m.count, 90);
    for (uint32_t i = 0; i < 90; i++)
        CHECK_INT(idmap_find(&m, i * 7919ULL, NULL, NULL), i);
    CHECK_INT(check_structure(&m), 0);
    for (uint32_t i = 90; i < 50000; i++)
        CHECK_INT(idmap_insert(&m, i * 7919ULL, i), 0);
    CHECK_INT(m.capacity, 131072);
    CHECK(m.old == NULL);
    /* a smaller reservation keeps the table; an impossible one is refused and changes nothing */
    CHECK_INT(idmap_reserve(&m, 10), 0);
    CHECK_INT(m.capacity, 131072);
    CHECK_INT(idmap_reserve(&m, UINT32_MAX), -1);
    CHECK_INT(m.capacity, 131072);
    CHECK_INT(m.count, 50000);
    CHECK_INT(idmap_find(&m, 49999 * 7919ULL, NULL, NULL), 49999);
    idmap_free(&m);
}

/* ---- backward shift, placed by hand ---- */

/* Removal in the middle of a probe chain pulls the later members back. */
static void test_backward_shift_middle(void) {
    idmap m;
    CHECK_INT(idmap_init(&m, 0), 0);
    CHECK_INT(m.capacity, 16);
    /* three keys with home 5, one with home 6 and one with home 9 */
    uint64_t a = key_with_home(16, 5, 0, 1), b = key_with_home(16, 5, 1, 1),
             c = key_with_home(16, 5, 2, 1);
    uint64_t d = key_with_home(16, 6, 0, 1), f = key_with_home(16, 9, 0, 1);
    CHECK_INT(idmap_insert(&m, a, 1), 0); /* -> 5 */
    CHECK_INT(idmap_insert(&m, b, 2), 0); /* -> 6 */
    CHECK_INT(idmap_insert(&m, d, 4), 0); /* home 6 -> 7 */
    CHECK_INT(idmap_insert(&m, c, 3), 0); /* home 5 -> 8 */
    CHECK_INT(idmap_insert(&m, f, 5), 0); /* home 9 -> 9 */
    CHECK_INT(entry_index(&m, a, 1), 5);
    CHECK_INT(entry_index(&m, b, 2), 6);
    CHECK_INT(entry_index(&m, d, 4), 7);
    CHECK_INT(entry_index(&m, c, 3), 8);
    CHECK_INT(entry_index(&m, f, 5), 9);

    /* remove b (bucket 6): d (home 6) moves to 6, c (home 5) to 7, f stays at home 9 */
    CHECK_INT(idmap_remove(&m, b, 2), 0);
    CHECK_INT(entry_index(&m, a, 1), 5);
    CHECK_INT(entry_index(&m, d, 4), 6);
    CHECK_INT(entry_index(&m, c, 3), 7);
    CHECK_INT(m.entries[8].tag, IDMAP_TAG_EMPTY);
    CHECK_INT(entry_index(&m, f, 5), 9);
    CHECK_INT(idmap_find(&m, a, NULL, NULL), 1);
    CHECK_INT(idmap_find(&m, b, NULL, NULL), IDMAP_NONE);
    CHECK_INT(idmap_find(&m, c, NULL, NULL), 3);
    CHECK_INT(idmap_find(&m, d, NULL, NULL), 4);
    CHECK_INT(idmap_find(&m, f, NULL, NULL), 5);
    CHECK_INT(check_structure(&m), 0);

    /* remove a (the head of the run): c (home 5) must move into 5, d stays at its home 6 */
    CHECK_INT(idmap_remove(&m, a, 1), 0);
    CHECK_INT(entry_index(&m, d, 4), 6);
    CHECK_INT(entry_index(&m, c, 3), 5);
    CHECK_INT(m.entries[7].tag, IDMAP_TAG_EMPTY);
    CHECK_INT(idmap_find(&m, c, NULL, NULL), 3);
    CHECK_INT(idmap_find(&m, d, NULL, NULL), 4);
    CHECK_INT(check_structure(&m), 0);
    CHECK_INT(m.count, 3);
    idmap_free(&m);
}

/* An entry whose home lies after the hole stays put, even when later ones move past it. */
static void test_backward_shift_skips_entries_at_home(void) {
    idmap m;
    CHECK_INT(idmap_init(&m, 0), 0);
    uint64_t a = key_with_home(16, 3, 0, 1);  /* -> 3 */
    uint64_t b = key_with_home(16, 4, 0, 1);  /* -> 4, at home */
    uint64_t c = key_with_home(16, 3, 1, 1);  /* home 3 -> 5 */
    uint64_t d = key_with_home(16, 4, 1, 1);  /* home 4 -> 6 */
    uint64_t e2 = key_with_home(16, 7, 0, 1); /* -> 7, at home */
    CHECK_INT(idmap_insert(&m, a, 10), 0);
    CHECK_INT(idmap_insert(&m, b, 11), 0);
    CHECK_INT(idmap_insert(&m, c, 12), 0);
    CHECK_INT(idmap_insert(&m, d, 13), 0);
    CHECK_INT(idmap_insert(&m, e2, 14), 0);
    CHECK_INT(entry_index(&m, c, 12), 5);
    CHECK_INT(entry_index(&m, d, 13), 6);
    CHECK_INT(idmap_remove(&m, a, 10), 0);
    /* c (home 3) jumps over b (at its home 4) into 3; d (home 4) moves to 5; e2 stays */
    CHECK_INT(entry_index(&m, c, 12), 3);
    CHECK_INT(entry_index(&m, b, 11), 4);
    CHECK_INT(entry_index(&m, d, 13), 5);
    CHECK_INT(m.entries[6].tag, IDMAP_TAG_EMPTY);
    CHECK_INT(entry_index(&m, e2, 14), 7);
    CHECK_INT(idmap_find(&m, b, NULL, NULL), 11);
    CHECK_INT(idmap_find(&m, c, NULL, NULL), 12);
    CHECK_INT(idmap_find(&m, d, NULL, NULL), 13);
    CHECK_INT(idmap_find(&m, e2, NULL, NULL), 14);
    CHECK_INT(check_structure(&m), 0);
    idmap_free(&m);
}

/* A probe run that wraps from the last bucket to the first. */
static void test_backward_shift_wraps(void) {
    idmap m;
    CHECK_INT(idmap_init(&m, 0), 0);
    uint64_t a = key_with_home(16, 14, 0, 1); /* -> 14 */
    uint64_t b = key_with_home(16, 14, 1, 1); /* -> 15 */
    uint64_t c = key_with_home(16, 15, 0, 1); /* -> 0 (wrapped) */
    uint64_t d = key_with_home(16, 14, 2, 1); /* -> 1 (wrapped) */
    uint64_t f = key_with_home(16, 0, 0, 1);  /* home 0 -> 2 */
    uint64_t g = key_with_home(16, 1, 0, 1);  /* home 1 -> 3 */
    CHECK_INT(idmap_insert(&m, a, 1), 0);
    CHECK_INT(idmap_insert(&m, b, 2), 0);
    CHECK_INT(idmap_insert(&m, c, 3), 0);
    CHECK_INT(idmap_insert(&m, d, 4), 0);
    CHECK_INT(idmap_insert(&m, f, 5), 0);
    CHECK_INT(idmap_insert(&m, g, 6), 0);
    CHECK_INT(entry_index(&m, c, 3), 0);
    CHECK_INT(entry_index(&m, d, 4), 1);
    CHECK_INT(entry_index(&m, f, 5), 2);
    CHECK_INT(entry_index(&m, g, 6), 3);
    CHECK_INT(idmap_remove(&m, b, 2), 0); /* hole at 15 */
    /* c (home 15) -> 15, d (home 14) -> 0, f (home 0) -> 1, g (home 1) -> 2 */
    CHECK_INT(entry_index(&m, a, 1), 14);
    CHECK_INT(entry_index(&m, c, 3), 15);
    CHECK_INT(entry_index(&m, d, 4), 0);
    CHECK_INT(entry_index(&m, f, 5), 1);
    CHECK_INT(entry_index(&m, g, 6), 2);
    CHECK_INT(m.entries[3].tag, IDMAP_TAG_EMPTY);
    CHECK_INT(check_structure(&m), 0);
    /* now remove across the wrap: the hole at 14 pulls d (home 14) back over the boundary */
    CHECK_INT(idmap_remove(&m, a, 1), 0);
    CHECK_INT(entry_index(&m, c, 3), 15);
    CHECK_INT(entry_index(&m, d, 4), 14);
    CHECK_INT(entry_index(&m, f, 5), 0);
    CHECK_INT(entry_index(&m, g, 6), 1);
    CHECK_INT(m.entries[2].tag, IDMAP_TAG_EMPTY);
    CHECK_INT(idmap_find(&m, c, NULL, NULL), 3);
    CHECK_INT(idmap_find(&m, d, NULL, NULL), 4);
    CHECK_INT(idmap_find(&m, f, NULL, NULL), 5);
    CHECK_INT(idmap_find(&m, g, NULL, NULL), 6);
    CHECK_INT(check_structure(&m), 0);
    idmap_free(&m);
}

/* ---- random operations against a reference model ---- */

enum { UNIVERSE = 3000, OPS = 200000 };

/* Integer keys drawn from a small universe, so that the table fills and drains around its growth
 * thresholds and removals constantly hit the middle of probe runs. */
static void test_random_integer_keys(void) {
    static bool present[UNIVERSE];
    static uint32_t slot_of[UNIVERSE];
    memset(present, 0, sizeof present);
    uint32_t n_present = 0;
    idmap m;
    CHECK_INT(idmap_init(&m, 0), 0);
    rng_state = 0x243F6A8885A308D3ULL;
    int mismatches = 0;
    uint32_t max_count = 0;
    for (int op = 0; op < OPS && mismatches < 5; op++) {
        uint64_t r = xorshift64();
        /* a drifting bias: phases that mostly insert and phases that mostly remove */
        int phase = (op / 20000) % 2;
        uint32_t k = (uint32_t)(r % UNIVERSE);
        uint64_t hash = (uint64_t)k * 0x9E3779B97F4A7C15ULL; /* any 64-bit value */
        unsigned what = (unsigned)((r >> 40) % 10);
        bool want_insert = phase == 0 ? what < 6 : what < 3;
        if (what >= 8) {
            uint32_t got = idmap_find(&m, hash, NULL, NULL);
            uint32_t want = present[k] ? slot_of[k] : IDMAP_NONE;
            if (got != want) {
                fprintf(stderr, "op %d: find(%u) = %u, expected %u\n", op, k, got, want);
                mismatches++;
            }
        } else if (want_insert) {
            if (!present[k]) {
                uint32_t slot = (uint32_t)(xorshift64() % 1000000);
                if (idmap_insert(&m, hash, slot) != 0) {
                    fprintf(stderr, "op %d: insert failed\n", op);
                    mismatches++;
                }
                present[k] = true;
                slot_of[k] = slot;
                n_present++;
            }
        } else {
            int rc = idmap_remove(&m, hash, present[k] ? slot_of[k] : 12345678u);
            if (rc != (present[k] ? 0 : -1)) {
                fprintf(stderr, "op %d: remove(%u) = %d\n", op, k, rc);
                mismatches++;
            }
            if (present[k]) {
                present[k] = false;
                n_present--;
                /* the structure right after a removal in a possibly long run */
                if (op % 97 == 0 && check_structure(&m) != 0) mismatches++;
            }
        }
        if (m.count != n_present) {
            fprintf(stderr, "op %d: count %u, expected %u\n", op, m.count, n_present);
            mismatches++;
        }
        if (m.count > max_count) max_count = m.count;
        if (op % 10000 == 9999) {
            /* a full sweep: every key of the universe */
            for (uint32_t x = 0; x < UNIVERSE; x++) {
                uint32_t got = idmap_find(&m, (uint64_t)x * 0x9E3779B97F4A7C15ULL, NULL, NULL);
                if (got != (present[x] ? slot_of[x] : IDMAP_NONE)) {
                    fprintf(stderr, "op %d: sweep find(%u) = %u\n", op, x, got);
                    mismatches++;
                    break;
                }
            }
            if (check_structure(&m) != 0) mismatches++;
        }
    }
    CHECK_INT(mismatches, 0);
    CHECK(max_count > 1000); /* the table really filled and grew */
    CHECK(m.capacity >= 2048);
    idmap_free(&m);
}

/* Growth moves the old table a few buckets per insert or remove: right after a doubling, finds,
 * removals (tombstones in the old table), re-inserts of removed keys and new inserts are checked
 * against a model after every operation, with the structure of both tables, until the old table
 * is gone; then every key once more. Several rounds with different seeds. */
enum { MIG_KEYS = 40000 };
static void test_operations_during_migration(void) {
    static bool present[MIG_KEYS];
    static uint32_t slot_of[MIG_KEYS];
    int mismatches = 0;
    for (int round = 0; round < 6 && mismatches == 0; round++) {
        memset(present, 0, sizeof present);
        rng_state = 0x13198A2E03707344ULL + (uint64_t)round;
        idmap m;
        CHECK_INT(idmap_init(&m, 0), 0);
        uint32_t n_present = 0, next = 0;
        /* fill to just past the growth of a 16,384-bucket table (11,468 entries at 70%) */
        uint32_t target = round % 2 ? 11469 : 22938;
        while (n_present < target) {
            CHECK_INT(idmap_insert(&m, (uint64_t)next * 0x9E3779B97F4A7C15ULL, next), 0);
            present[next] = true;
            slot_of[next] = next;
            next++;
            n_present++;
        }
        CHECK(m.old != NULL); /* a migration is under way */
        for (int op = 0; m.old != NULL && op < 5000 && mismatches < 5; op++) {
            uint64_t r = xorshift64();
            uint32_t k = (uint32_t)(r % (next + 100 < MIG_KEYS ? next + 100 : MIG_KEYS));
            uint64_t hash = (uint64_t)k * 0x9E3779B97F4A7C15ULL;
            unsigned what = (unsigned)((r >> 40) % 3);
            if (what == 0) {
                int rc = idmap_remove(&m, hash, present[k] ? slot_of[k] : 7u);
                if (rc != (present[k] ? 0 : -1)) mismatches++;
                if (present[k]) n_present--;
                present[k] = false;
            } else if (what == 1 && !present[k]) {
                uint32_t slot = (uint32_t)(xorshift64() % 1000000);
                if (idmap_insert(&m, hash, slot) != 0) mismatches++;
                present[k] = true;
                slot_of[k] = slot;
                n_present++;
                if (k >= next) next = k + 1;
            } else {
                uint32_t got = idmap_find(&m, hash, NULL, NULL);
                if (got != (present[k] ? slot_of[k] : IDMAP_NONE)) {
                    fprintf(stderr, "round %d op %d: find(%u) = %u\n", round, op, k, got);
                    mismatches++;
                }
            }
            if (m.count != n_present) mismatches++;
            if (op % 16 == 0 && check_structure(&m) != 0) mismatches++;
        }
        CHECK(m.old == NULL); /* the migration finished */
        for (uint32_t x = 0; x < next + 100 && x < MIG_KEYS; x++)
            if (idmap_find(&m, (uint64_t)x * 0x9E3779B97F4A7C15ULL, NULL, NULL) !=
                (present[x] ? slot_of[x] : IDMAP_NONE)) {
                mismatches++;
                break;
            }
        if (check_structure(&m) != 0) mismatches++;
        idmap_free(&m);
    }
    CHECK_INT(mismatches, 0);
}

/* String keys with a deliberately weak hash (64 values for 2,000 keys): the map holds long runs
 * of equal hashes and finds through the callback; removal must take the exact (hash, slot). */
enum { SKEYS = 2000 };
static char skey_text[SKEYS][12];
static const char *skey_ptr[SKEYS];

static uint64_t weak_hash(uint32_t k) {
    return idmap_hash_str(0, skey_text[k]) & 63;
}

static void test_random_string_keys(void) {
    for (uint32_t i = 0; i < SKEYS; i++) {
        snprintf(skey_text[i], sizeof skey_text[i], "acc%u", i);
        skey_ptr[i] = skey_text[i];
    }
    static bool present[SKEYS];
    memset(present, 0, sizeof present);
    uint32_t n_present = 0;
    idmap m;
    CHECK_INT(idmap_init(&m, 0), 0);
    rng_state = 0x13198A2E03707344ULL;
    int mismatches = 0;
    /* the slot is the key's index, as in the engine: the record holds the key */
    for (int op = 0; op < OPS / 4 && mismatches < 5; op++) {
        uint64_t r = xorshift64();
        uint32_t k = (uint32_t)(r % SKEYS);
        unsigned what = (unsigned)((r >> 40) % 3);
        string_table t = {skey_ptr, skey_text[k]};
        if (what == 0) {
            uint32_t got = idmap_find(&m, weak_hash(k), string_match, &t);
            if (got != (present[k] ? k : IDMAP_NONE)) {
                fprintf(stderr, "op %d: find(%s) = %u\n", op, skey_text[k], got);
                mismatches++;
            }
        } else if (what == 1) {
            if (!present[k]) {
                CHECK_INT(idmap_insert(&m, weak_hash(k), k), 0);
                present[k] = true;
                n_present++;
            }
        } else {
            int rc = idmap_remove(&m, weak_hash(k), k);
            if (rc != (present[k] ? 0 : -1)) {
                fprintf(stderr, "op %d: remove(%s) = %d\n", op, skey_text[k], rc);
                mismatches++;
            }
            if (present[k]) {
                present[k] = false;
                n_present--;
            }
        }
        if (m.count != n_present) mismatches++;
    }
    for (uint32_t k = 0; k < SKEYS; k++) {
        string_table t = {skey_ptr, skey_text[k]};
        if (idmap_find(&m, weak_hash(k), string_match, &t) != (present[k] ? k : IDMAP_NONE)) {
            fprintf(stderr, "final sweep: %s\n", skey_text[k]);
            mismatches++;
            break;
        }
    }
    CHECK_INT(check_structure(&m), 0);
    CHECK_INT(mismatches, 0);
    idmap_free(&m);
}

int main(void) {
    RUN_TEST(test_init_capacity);
    RUN_TEST(test_integer_keys);
    RUN_TEST(test_equal_hashes);
    RUN_TEST(test_string_keys);
    RUN_TEST(test_string_keys_forced_collisions);
    RUN_TEST(test_growth);
    RUN_TEST(test_reserve);
    RUN_TEST(test_backward_shift_middle);
    RUN_TEST(test_backward_shift_skips_entries_at_home);
    RUN_TEST(test_backward_shift_wraps);
    RUN_TEST(test_random_integer_keys);
    RUN_TEST(test_random_string_keys);
    RUN_TEST(test_operations_during_migration);
    return CHECK_REPORT();
}
