#define _GNU_SOURCE /* mremap */
#include "engine/pool_mem.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { LINE = 64 };
static const size_t HUGE_PAGE = (size_t)2 << 20;

static bool huge_pages; /* process-wide, set before any engine exists */

void pool_mem_set_huge_pages(bool on) {
    huge_pages = on;
}

static int grow_mapping(pool_mem *m, size_t used, size_t bytes) {
    size_t len = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    void *p;
    if (m->mapped) {
        p = mremap(m->base, m->mapped, len, MREMAP_MAYMOVE);
        if (p == MAP_FAILED) return -1;
    } else {
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return -1;
        /* a hint: without transparent huge pages in the kernel it is refused, and only speed
         * differs; the flag stays with the mapping through mremap */
        if (huge_pages) (void)madvise(p, len, MADV_HUGEPAGE);
        if (used) memcpy(p, m->lines, used);
        free(m->base);
    }
    m->base = m->lines = p; /* a mapping starts on a page */
    m->mapped = len;
    return 0;
}

int pool_mem_grow(pool_mem *m, size_t used, size_t bytes) {
    if (bytes >= POOL_MEM_MAP_MIN || m->mapped) return grow_mapping(m, used, bytes);
    size_t old_shift = m->base ? (size_t)((char *)m->lines - (char *)m->base) : 0;
    char *p = realloc(m->base, bytes + LINE);
    if (p == NULL) return -1;
    /* realloc keeps the contents but not their alignment: when the first line of the new
     * block lies at another offset, the records move there */
    size_t shift = (size_t)(-(uintptr_t)p & (LINE - 1));
    if (shift != old_shift) memmove(p + shift, p + old_shift, used);
    m->base = p;
    m->lines = p + shift;
    return 0;
}

int pool_mem_populate_range(void *p, size_t bytes) {
    if (bytes == 0) return 0;
    const size_t page = 4096;
    uintptr_t start = (uintptr_t)p & ~(uintptr_t)(page - 1);
    uintptr_t end = ((uintptr_t)p + bytes + page - 1) & ~(uintptr_t)(page - 1);
    /* one call for the whole range; kernels before 5.14 do not know it, and there every page is
     * written once instead (the same value back: the contents stay) */
    if (madvise((void *)start, end - start, MADV_POPULATE_WRITE) == 0) return 0;
    if (errno != EINVAL) return -1; /* ENOMEM, EFAULT: the memory is not there to be had */
    volatile char *c = p;
    for (size_t off = 0; off < bytes; off += page)
        c[off] = c[off];
    c[bytes - 1] = c[bytes - 1];
    return 0;
}

int pool_mem_populate(pool_mem *m, size_t bytes) {
    return m->lines ? pool_mem_populate_range(m->lines, bytes) : 0;
}

void pool_mem_free(pool_mem *m) {
    if (m->mapped)
        munmap(m->base, m->mapped);
    else
        free(m->base);
    memset(m, 0, sizeof *m);
}
