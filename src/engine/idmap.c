#include "engine/idmap.h"

#include <stdlib.h>
#include <string.h>

/* The table is kept at most 70% full so that probe sequences stay short. */
#define IDMAP_MAX_LOAD_NUM 7
#define IDMAP_MAX_LOAD_DEN 10

static int idmap_alloc(idmap *m, uint32_t capacity) {
    idmap_entry *e = malloc((size_t)capacity * sizeof *e);
    if (e == NULL) return -1;
    for (uint32_t i = 0; i < capacity; i++)
        e[i].slot = IDMAP_NONE;
    m->entries = e;
    m->capacity = capacity;
    m->count = 0;
    return 0;
}

int idmap_init(idmap *m, uint32_t expected) {
    uint32_t capacity = 16;
    while (capacity < 0x40000000u &&
           (uint64_t)capacity * IDMAP_MAX_LOAD_NUM < (uint64_t)expected * IDMAP_MAX_LOAD_DEN)
        capacity <<= 1;
    return idmap_alloc(m, capacity);
}

void idmap_free(idmap *m) {
    free(m->entries);
    m->entries = NULL;
    m->capacity = m->count = 0;
}

void idmap_clear(idmap *m) {
    for (uint32_t i = 0; i < m->capacity; i++)
        m->entries[i].slot = IDMAP_NONE;
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

/* Eight bytes at a time: ids are short, and this runs for every order and account lookup.
 * The result is mixed again by home_of, so a multiply-rotate per word suffices here. */
uint64_t idmap_hash_str(uint64_t ns, const char *s) {
    size_t n = strlen(s);
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (ns * 0xff51afd7ed558ccdULL) ^ n;
    for (; n >= 8; n -= 8, s += 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 29;
    }
    uint64_t tail = 0;
    memcpy(&tail, s, n);
    h = (h ^ tail) * 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 32);
}

static uint32_t home_of(const idmap *m, uint64_t hash) {
    return (uint32_t)(idmap_hash_u64(hash) & (m->capacity - 1));
}

uint32_t idmap_find(const idmap *m, uint64_t hash, idmap_match_fn match, const void *ctx) {
    uint32_t mask = m->capacity - 1;
    for (uint32_t i = home_of(m, hash);; i = (i + 1) & mask) {
        const idmap_entry *e = &m->entries[i];
        if (e->slot == IDMAP_NONE) return IDMAP_NONE;
        if (e->hash == hash && (match == NULL || match(ctx, e->slot))) return e->slot;
    }
}

static void place(idmap *m, uint64_t hash, uint32_t slot) {
    uint32_t mask = m->capacity - 1;
    uint32_t i = home_of(m, hash);
    while (m->entries[i].slot != IDMAP_NONE)
        i = (i + 1) & mask;
    m->entries[i].hash = hash;
    m->entries[i].slot = slot;
    m->count++;
}

static int grow(idmap *m) {
    idmap old = *m;
    if (old.capacity >= 0x80000000u) return -1;
    if (idmap_alloc(m, old.capacity * 2) != 0) {
        *m = old;
        return -1;
    }
    for (uint32_t i = 0; i < old.capacity; i++)
        if (old.entries[i].slot != IDMAP_NONE) place(m, old.entries[i].hash, old.entries[i].slot);
    free(old.entries);
    return 0;
}

int idmap_insert(idmap *m, uint64_t hash, uint32_t slot) {
    if ((uint64_t)(m->count + 1) * IDMAP_MAX_LOAD_DEN >
            (uint64_t)m->capacity * IDMAP_MAX_LOAD_NUM &&
        grow(m) != 0)
        return -1;
    place(m, hash, slot);
    return 0;
}

int idmap_remove(idmap *m, uint64_t hash, uint32_t slot) {
    uint32_t mask = m->capacity - 1;
    uint32_t i = home_of(m, hash);
    for (;; i = (i + 1) & mask) {
        if (m->entries[i].slot == IDMAP_NONE) return -1;
        if (m->entries[i].hash == hash && m->entries[i].slot == slot) break;
    }
    /* Backward-shift: pull later members of the probe run into the hole when their home slot
     * lies at or before it, so no lookup ever stops early at the vacated entry. */
    uint32_t hole = i;
    for (uint32_t j = (hole + 1) & mask; m->entries[j].slot != IDMAP_NONE; j = (j + 1) & mask) {
        uint32_t home = home_of(m, m->entries[j].hash);
        bool movable = (j > hole) ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            m->entries[hole] = m->entries[j];
            hole = j;
        }
    }
    m->entries[hole].slot = IDMAP_NONE;
    m->count--;
    return 0;
}
