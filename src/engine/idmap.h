/* Open-addressing hash index from a 64-bit hash to a 32-bit slot in some owner's pool.
 *
 * The map stores only (hash, slot). Keys stay in the owner's records, so a string-keyed lookup
 * passes a callback that compares the sought key with the record in a candidate slot; integer
 * keys that are their own hash need no callback. Linear probing with backward-shift deletion keeps
 * lookups short without tombstones (only a table being emptied after a growth gets them).
 * Growth is the only allocation. */
#ifndef QAEX_IDMAP_H
#define QAEX_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDMAP_NONE UINT32_MAX

/* tag = slot + 1, so that a zeroed table (calloc: no pages touched until used) is empty */
#define IDMAP_TAG_EMPTY 0u
#define IDMAP_TAG_TOMBSTONE UINT32_MAX /* removed from a table being emptied: probes go on */

typedef struct idmap_entry {
    uint64_t hash;
    uint32_t tag;
} idmap_entry;

/* Growth never rehashes everything at once (a 100 ms stall at a million orders): the table
 * doubles into a new one and the old one is emptied a few buckets per insert or remove, while
 * lookups probe both. */
typedef struct idmap {
    idmap_entry *entries; /* the current table */
    uint32_t capacity;    /* of entries, a power of two */
    uint32_t count;       /* live entries in both tables */
    idmap_entry *old;     /* the table being emptied, or NULL */
    uint32_t old_capacity;
    uint32_t migrated; /* old buckets below this have been moved */
} idmap;

/* Returns true when the record in `slot` has the key the caller is looking for. */
typedef bool (*idmap_match_fn)(const void *ctx, uint32_t slot);

int idmap_init(idmap *m, uint32_t expected);
void idmap_free(idmap *m);
void idmap_clear(idmap *m);

/* Room for `n` entries without a growth, and the table's pages faulted in now
 * (engine_preallocate). A larger table is filled at once: a stall meant for start-up. */
int idmap_reserve(idmap *m, uint32_t n);

/* The slot whose hash equals `hash` and which `match` accepts (NULL: any), or IDMAP_NONE. */
uint32_t idmap_find(const idmap *m, uint64_t hash, idmap_match_fn match, const void *ctx);

/* Adds (hash, slot); the caller has checked that the key is absent. -1 when out of memory or
 * slot >= IDMAP_NONE - 1 (reserved). */
int idmap_insert(idmap *m, uint64_t hash, uint32_t slot);

/* Removes the entry for exactly (hash, slot); returns -1 when there is none. */
int idmap_remove(idmap *m, uint64_t hash, uint32_t slot);

/* Moves every entry still in the old table (tests; a lookup never needs it). */
void idmap_settle(idmap *m);

/* Hashes for keys: a string (with a namespace, such as an account slot) and an integer. */
uint64_t idmap_hash_str(uint64_t ns, const char *s);
uint64_t idmap_hash_u64(uint64_t x);

#endif
