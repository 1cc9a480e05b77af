#include "engine/idmap.h"

#include "engine/pool_mem.h"

#include <stdlib.h>
#include <string.h>

/* The table is kept at most 70% full so that probe sequences stay short. */
#define IDMAP_MAX_LOAD_NUM 7
#define IDMAP_MAX_LOAD_DEN 10

/* Old buckets moved per insert or remove: the old table is empty after capacity / 64 of them,
 * long before the new one (twice the size) can fill. */
#define MIGRATE_STEP 64

/* Zeroed, that is empty: a large table's pages are touched as entries land, not at once. */
static idmap_entry *table_new(uint32_t capacity) {
    return calloc(capacity, sizeof(idmap_entry));
}

int idmap_init(idmap *m, uint32_t expected) {
    uint32_t capacity = 16;
    while (capacity < 0x40000000u &&
           (uint64_t)capacity * IDMAP_MAX_LOAD_NUM < (uint64_t)expected * IDMAP_MAX_LOAD_DEN)
        capacity <<= 1;
    memset(m, 0, sizeof *m);
    m->entries = table_new(capacity);
    if (m->entries == NULL) return -1;
    m->capacity = capacity;
    return 0;
}

void idmap_free(idmap *m) {
    free(m->entries);
    free(m->old);
    memset(m, 0, sizeof *m);
}

void idmap_clear(idmap *m) {
    free(m->old);
    m->old = NULL;
    m->old_capacity = m->migrated = 0;
    memset(m->entries, 0, (size_t)m->capacity * sizeof *m->entries);
    m->count = 0;
}

uint64_t idmap_hash_u64(uint64_t x) {
    /* splitmix64 finaliser: spreads sequential ids over the whole table */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t load64(const char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static uint64_t load32(const char *p) {
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* Eight bytes at a time: ids are short, and this runs for every order and account lookup.
 * The last bytes are read as whole words that may overlap the ones before (a byte-wise copy of
 * them into a word cost a stalled store-to-load forward on every call). The result is mixed
 * again by home_of, so a multiply-rotate per word suffices here. */
uint64_t idmap_hash_str(uint64_t ns, const char *s) {
    size_t n = strlen(s);
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (ns * 0xff51afd7ed558ccdULL) ^ n;
    uint64_t tail;
    if (n >= 8) {
        const char *last = s + n - 8;
        for (; s < last; s += 8) {
            h = (h ^ load64(s)) * 0xc4ceb9fe1a85ec53ULL;
            h ^= h >> 29;
        }
        tail = load64(last);
    } else if (n >= 4) {
        tail = load32(s) << 32 | load32(s + n - 4);
    } else if (n > 0) {
        tail = (uint64_t)(unsigned char)s[0] << 16 | (uint64_t)(unsigned char)s[n / 2] << 8 |
               (uint64_t)(unsigned char)s[n - 1];
    } else {
        tail = 0;
    }
    h = (h ^ tail) * 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 32);
}

static uint32_t home_of(uint32_t capacity, uint64_t hash) {
    return (uint32_t)(idmap_hash_u64(hash) & (capacity - 1));
}

/* The index of the entry in t with this hash that match accepts (NULL: any), or IDMAP_NONE. */
static uint32_t probe(const idmap_entry *t, uint32_t capacity, uint64_t hash, idmap_match_fn match,
                      const void *ctx) {
    uint32_t mask = capacity - 1;
    for (uint32_t i = home_of(capacity, hash);; i = (i + 1) & mask) {
        const idmap_entry *e = &t[i];
        if (e->tag == IDMAP_TAG_EMPTY) return IDMAP_NONE;
        if (e->tag != IDMAP_TAG_TOMBSTONE && e->hash == hash &&
            (match == NULL || match(ctx, e->tag - 1)))
            return i;
    }
}

uint32_t idmap_find(const idmap *m, uint64_t hash, idmap_match_fn match, const void *ctx) {
    uint32_t i = probe(m->entries, m->capacity, hash, match, ctx);
    if (i != IDMAP_NONE) return m->entries[i].tag - 1;
    if (m->old == NULL) return IDMAP_NONE;
    /* old buckets below the cursor were moved: what they still hold is a stale copy */
    i = probe(m->old, m->old_capacity, hash, match, ctx);
    return i != IDMAP_NONE && i >= m->migrated ? m->old[i].tag - 1 : IDMAP_NONE;
}

static void place(idmap_entry *t, uint32_t capacity, uint64_t hash, uint32_t tag) {
    uint32_t mask = capacity - 1;
    uint32_t i = home_of(capacity, hash);
    while (t[i].tag != IDMAP_TAG_EMPTY)
        i = (i + 1) & mask;
    t[i].hash = hash;
    t[i].tag = tag;
}

/* Moves up to `steps` old buckets into the current table; frees the old one once empty. */
static void migrate(idmap *m, uint32_t steps) {
    if (m->old == NULL) return;
    for (; steps > 0 && m->migrated < m->old_capacity; steps--) {
        const idmap_entry *e = &m->old[m->migrated++];
        if (e->tag != IDMAP_TAG_EMPTY && e->tag != IDMAP_TAG_TOMBSTONE)
            place(m->entries, m->capacity, e->hash, e->tag);
    }
    if (m->migrated == m->old_capacity) {
        free(m->old);
        m->old = NULL;
        m->old_capacity = m->migrated = 0;
    }
}

void idmap_settle(idmap *m) {
    migrate(m, UINT32_MAX);
}

/* A table twice the size takes the inserts from now on; the current one becomes the old one. */
static int grow(idmap *m) {
    if (m->capacity >= 0x80000000u) return -1;
    idmap_settle(m); /* (a growth never overtakes a migration; this is only a guard) */
    idmap_entry *bigger = table_new(m->capacity * 2);
    if (bigger == NULL) return -1;
    m->old = m->entries;
    m->old_capacity = m->capacity;
    m->migrated = 0;
    m->entries = bigger;
    m->capacity *= 2;
    return 0;
}

int idmap_reserve(idmap *m, uint32_t n) {
    idmap_settle(m);
    uint32_t capacity = m->capacity;
    while ((uint64_t)capacity * IDMAP_MAX_LOAD_NUM < (uint64_t)n * IDMAP_MAX_LOAD_DEN) {
        if (capacity >= 0x80000000u) return -1;
        capacity <<= 1;
    }
    if (capacity != m->capacity) {
        idmap_entry *bigger = table_new(capacity);
        if (bigger == NULL) return -1;
        for (uint32_t i = 0; i < m->capacity; i++)
            if (m->entries[i].tag != IDMAP_TAG_EMPTY)
                place(bigger, capacity, m->entries[i].hash, m->entries[i].tag);
        free(m->entries);
        m->entries = bigger;
        m->capacity = capacity;
    }
    return pool_mem_populate_range(m->entries, (size_t)capacity * sizeof *m->entries);
}

int idmap_insert(idmap *m, uint64_t hash, uint32_t slot) {
    if (slot >= IDMAP_TAG_TOMBSTONE - 1) return -1;
    if ((uint64_t)(m->count + 1) * IDMAP_MAX_LOAD_DEN >
            (uint64_t)m->capacity * IDMAP_MAX_LOAD_NUM &&
        grow(m) != 0)
        return -1;
    migrate(m, MIGRATE_STEP);
    place(m->entries, m->capacity, hash, slot + 1);
    m->count++;
    return 0;
}

/* Backward-shift removal of t[i]: pull later members of the probe run into the hole when their
 * home lies at or before it, so no lookup ever stops early at the vacated bucket. */
static void remove_at(idmap_entry *t, uint32_t capacity, uint32_t i) {
    uint32_t mask = capacity - 1;
    uint32_t hole = i;
    for (uint32_t j = (hole + 1) & mask; t[j].tag != IDMAP_TAG_EMPTY; j = (j + 1) & mask) {
        uint32_t home = home_of(capacity, t[j].hash);
        bool movable = (j > hole) ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            t[hole] = t[j];
            hole = j;
        }
    }
    t[hole].tag = IDMAP_TAG_EMPTY;
}

/* The index of exactly (hash, slot) in t, or IDMAP_NONE. */
static uint32_t probe_exact(const idmap_entry *t, uint32_t capacity, uint64_t hash, uint32_t slot) {
    uint32_t mask = capacity - 1;
    for (uint32_t i = home_of(capacity, hash);; i = (i + 1) & mask) {
        if (t[i].tag == IDMAP_TAG_EMPTY) return IDMAP_NONE;
        if (t[i].hash == hash && t[i].tag == slot + 1) return i;
    }
}

int idmap_remove(idmap *m, uint64_t hash, uint32_t slot) {
    if (slot >= IDMAP_TAG_TOMBSTONE - 1) return -1;
    uint32_t i = probe_exact(m->entries, m->capacity, hash, slot);
    if (i != IDMAP_NONE) {
        remove_at(m->entries, m->capacity, i);
    } else {
        /* still in the old table: a tombstone, since a backward shift there could move an entry
         * behind the migration cursor, where it would never be moved */
        i = m->old ? probe_exact(m->old, m->old_capacity, hash, slot) : IDMAP_NONE;
        if (i == IDMAP_NONE || i < m->migrated) return -1;
        m->old[i].tag = IDMAP_TAG_TOMBSTONE;
    }
    m->count--;
    migrate(m, MIGRATE_STEP);
    return 0;
}
