/* A price-time priority order book over integer price ticks.
 *
 * Each side is an array of price levels covering the instrument's limit band, with a bitmap of the
 * non-empty levels so the best price and the next worse one are found with a few word scans.
 * Orders at one level form an intrusive FIFO through their level links, oldest first. The book
 * never allocates on insert or remove; only a rebase (a new limit band) does. */
#ifndef QAEX_BOOK_H
#define QAEX_BOOK_H

#include "engine/order.h"

#include <stddef.h>

typedef struct book_level {
    uint32_t head, tail; /* order slots, oldest first */
    int64_t volume;      /* sum of volume_left */
    uint32_t count;
} book_level;

typedef struct book {
    int64_t base_tick; /* the tick of level 0 */
    uint32_t n_levels;
    uint32_t n_words;
    book_level *levels[2]; /* indexed by direction */
    uint64_t *occupied[2];
    uint32_t order_count[2];
    /* the best non-empty level of each side, kept up to date by insert and remove: the scans
     * from the band edge it replaces walked dozens of bitmap words for every incoming order */
    int32_t best[2];
} book;

#define BOOK_NO_LEVEL (-1)

int book_init(book *b, int64_t low_tick, int64_t high_tick);
void book_free(book *b);
bool book_covers(const book *b, int64_t tick);

/* Re-spans the book over [low_tick, high_tick] and every level that holds orders. */
int book_rebase(book *b, int64_t low_tick, int64_t high_tick);

void book_insert(book *b, order *pool, uint32_t slot);
void book_remove(book *b, order *pool, uint32_t slot);
/* A resting order traded `volume` lots and stays in the book. */
void book_reduce(book *b, const order *o, int64_t volume);

/* Levels: the best of a side, then successively worse ones; BOOK_NO_LEVEL past the end. */
static inline int32_t book_best(const book *b, direction side) {
    return b->best[side];
}
int32_t book_next_worse(const book *b, direction side, int32_t level);
static inline int64_t book_level_tick(const book *b, int32_t level) {
    return b->base_tick + level;
}
static inline const book_level *book_level_at(const book *b, direction side, int32_t level) {
    return &b->levels[side][level];
}

/* Fills up to n (tick, volume) pairs from the best level down; returns how many. */
int book_depth(const book *b, direction side, int n, int64_t *ticks, int64_t *volumes);

#endif
