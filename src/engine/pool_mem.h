/* Memory for the engine's record pools (orders, trades, accounts): one block per pool that grows
 * by doubling, with the records starting on a cache line.
 *
 * Small blocks come from realloc. Large ones (POOL_MEM_MAP_MIN and up) are mappings of their
 * own, grown by mremap, which neither copies the records nor touches the new part.
 *
 * Transparent huge pages for the mappings are a process-wide choice (pool_mem_set_huge_pages),
 * off by default. With them a busy pool is reached with few TLB misses (with 4 KiB pages nearly
 * every record reached is also one, a two-level page walk in a guest): throughput +15% in
 * engine_bench. Without them the first touch of new memory costs a fault per 4 KiB as the pools
 * grow; with them one per 2 MiB, which on a guest whose host backs memory lazily is a single
 * stall of several milliseconds. So they suit a server that has grown (or been warmed up) more
 * than one that is still growing under load. */
#ifndef QAEX_POOL_MEM_H
#define QAEX_POOL_MEM_H

#include <stdbool.h>
#include <stddef.h>

#define POOL_MEM_MAP_MIN ((size_t)4 << 20)

typedef struct pool_mem {
    void *base;    /* the allocation, or NULL */
    size_t mapped; /* the mapping's length, or 0 for a realloc'ed block */
    void *lines;   /* the first cache line inside base: where the records start */
} pool_mem;

/* Room for `bytes` from `lines`, keeping the first `used` bytes of records. 0, or -1 when out of
 * memory (the block is unchanged). */
int pool_mem_grow(pool_mem *m, size_t used, size_t bytes);

/* Faults in the pages under the first `bytes` from `lines` now, keeping their contents, so that
 * no record reached later costs a page fault (engine_preallocate). 0, or -1 when the memory
 * could not be populated. */
int pool_mem_populate(pool_mem *m, size_t bytes);

/* The same for any block of memory the caller owns (the id maps' tables). */
int pool_mem_populate_range(void *p, size_t bytes);

void pool_mem_free(pool_mem *m);

/* Whether mappings made from now on ask for transparent huge pages (a hint the kernel may
 * refuse). Set once at start, before any engine exists. */
void pool_mem_set_huge_pages(bool on);

#endif
