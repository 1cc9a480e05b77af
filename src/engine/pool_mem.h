/* Memory for the engine's record pools (orders, trades, accounts): one block per pool that grows
 * by doubling, with the records starting on a cache line.
 *
 * Small blocks come from realloc. Large ones (POOL_MEM_MAP_MIN and up) are mappings of their
 * own: they grow by mremap, which neither copies the records nor touches the new part, and they
 * ask for transparent huge pages, since a busy server's pools span gigabytes and with 4 KiB
 * pages nearly every record reached is also a TLB miss (a two-level page walk in a guest). */
#ifndef QAEX_POOL_MEM_H
#define QAEX_POOL_MEM_H

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

void pool_mem_free(pool_mem *m);

#endif
