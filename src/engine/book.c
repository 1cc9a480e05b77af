#include "engine/book.h"

#include <stdlib.h>
#include <string.h>

static void set_bit(uint64_t *bits, uint32_t i) {
    bits[i >> 6] |= 1ULL << (i & 63);
}

static void clear_bit(uint64_t *bits, uint32_t i) {
    bits[i >> 6] &= ~(1ULL << (i & 63));
}

/* Highest set bit at or below `from`, or -1. */
static int32_t scan_down(const uint64_t *bits, int32_t from) {
    if (from < 0) return BOOK_NO_LEVEL;
    int32_t w = from >> 6;
    uint64_t word = bits[w] & (~0ULL >> (63 - (from & 63)));
    for (;;) {
        if (word) return (w << 6) + 63 - __builtin_clzll(word);
        if (--w < 0) return BOOK_NO_LEVEL;
        word = bits[w];
    }
}

/* Lowest set bit at or above `from`, or -1. */
static int32_t scan_up(const uint64_t *bits, uint32_t n_words, int32_t from) {
    int32_t w = from >> 6;
    if ((uint32_t)w >= n_words) return BOOK_NO_LEVEL;
    uint64_t word = bits[w] & (~0ULL << (from & 63));
    for (;;) {
        if (word) return (w << 6) + __builtin_ctzll(word);
        if ((uint32_t)++w >= n_words) return BOOK_NO_LEVEL;
        word = bits[w];
    }
}

/* The lowest occupied sell level at or above `from`, which may be one past the band. */
static int32_t scan_up_from(const book *b, int32_t from) {
    if ((uint32_t)from >= b->n_levels) return BOOK_NO_LEVEL;
    return scan_up(b->occupied[DIR_SELL], b->n_words, from);
}

static int alloc_arrays(book *b, uint32_t n_levels) {
    uint32_t n_words = (n_levels + 63) / 64;
    memset(b->levels, 0, sizeof b->levels);
    memset(b->occupied, 0, sizeof b->occupied);
    for (int s = 0; s < 2; s++) {
        b->levels[s] = malloc((size_t)n_levels * sizeof(book_level));
        b->occupied[s] = calloc(n_words, sizeof(uint64_t));
        if (b->levels[s] == NULL || b->occupied[s] == NULL) {
            book_free(b);
            return -1;
        }
        for (uint32_t i = 0; i < n_levels; i++)
            b->levels[s][i] = (book_level){SLOT_NONE, SLOT_NONE, 0, 0};
    }
    b->n_levels = n_levels;
    b->n_words = n_words;
    b->best[DIR_BUY] = b->best[DIR_SELL] = BOOK_NO_LEVEL;
    return 0;
}

int book_init(book *b, int64_t low_tick, int64_t high_tick) {
    memset(b, 0, sizeof *b);
    if (high_tick < low_tick || high_tick - low_tick >= (1 << 26)) return -1;
    b->base_tick = low_tick;
    return alloc_arrays(b, (uint32_t)(high_tick - low_tick + 1));
}

void book_free(book *b) {
    for (int s = 0; s < 2; s++) {
        free(b->levels[s]);
        free(b->occupied[s]);
        b->levels[s] = NULL;
        b->occupied[s] = NULL;
    }
}

bool book_covers(const book *b, int64_t tick) {
    return tick >= b->base_tick && tick < b->base_tick + (int64_t)b->n_levels;
}

int book_rebase(book *b, int64_t low_tick, int64_t high_tick) {
    for (int s = 0; s < 2; s++) {
        int32_t lo = scan_up(b->occupied[s], b->n_words, 0);
        int32_t hi = scan_down(b->occupied[s], (int32_t)b->n_levels - 1);
        if (lo != BOOK_NO_LEVEL && b->base_tick + lo < low_tick) low_tick = b->base_tick + lo;
        if (hi != BOOK_NO_LEVEL && b->base_tick + hi > high_tick) high_tick = b->base_tick + hi;
    }
    if (high_tick - low_tick >= (1 << 26)) return -1;
    book fresh;
    if (book_init(&fresh, low_tick, high_tick) != 0) return -1;
    for (int s = 0; s < 2; s++) {
        for (int32_t i = scan_up(b->occupied[s], b->n_words, 0); i != BOOK_NO_LEVEL;
             i = (uint32_t)i + 1 < b->n_levels ? scan_up(b->occupied[s], b->n_words, i + 1)
                                               : BOOK_NO_LEVEL) {
            uint32_t j = (uint32_t)(b->base_tick + i - low_tick);
            fresh.levels[s][j] = b->levels[s][i];
            set_bit(fresh.occupied[s], j);
        }
        fresh.order_count[s] = b->order_count[s];
        if (b->best[s] != BOOK_NO_LEVEL)
            fresh.best[s] = (int32_t)(b->base_tick + b->best[s] - low_tick);
    }
    book_free(b);
    *b = fresh;
    return 0;
}

void book_insert(book *b, order *pool, uint32_t slot) {
    order *o = &pool[slot];
    uint32_t i = (uint32_t)(o->price_tick - b->base_tick);
    book_level *lv = &b->levels[o->direction][i];
    o->level_prev = lv->tail;
    o->level_next = SLOT_NONE;
    if (lv->tail != SLOT_NONE)
        pool[lv->tail].level_next = slot;
    else
        lv->head = slot;
    lv->tail = slot;
    lv->volume += o->volume_left;
    lv->count++;
    set_bit(b->occupied[o->direction], i);
    b->order_count[o->direction]++;
    int32_t best = b->best[o->direction];
    if (best == BOOK_NO_LEVEL || (o->direction == DIR_BUY ? (int32_t)i > best : (int32_t)i < best))
        b->best[o->direction] = (int32_t)i;
    o->in_book = true;
}

void book_remove(book *b, order *pool, uint32_t slot) {
    order *o = &pool[slot];
    uint32_t i = (uint32_t)(o->price_tick - b->base_tick);
    book_level *lv = &b->levels[o->direction][i];
    if (o->level_prev != SLOT_NONE)
        pool[o->level_prev].level_next = o->level_next;
    else
        lv->head = o->level_next;
    if (o->level_next != SLOT_NONE)
        pool[o->level_next].level_prev = o->level_prev;
    else
        lv->tail = o->level_prev;
    lv->volume -= o->volume_left;
    lv->count--;
    if (lv->count == 0) {
        clear_bit(b->occupied[o->direction], i);
        /* the best level emptied: the next one is near, so the scan from it is short */
        if ((int32_t)i == b->best[o->direction])
            b->best[o->direction] = o->direction == DIR_BUY
                                        ? scan_down(b->occupied[DIR_BUY], (int32_t)i - 1)
                                        : scan_up_from(b, (int32_t)i + 1);
    }
    b->order_count[o->direction]--;
    o->level_prev = o->level_next = SLOT_NONE;
    o->in_book = false;
}

void book_reduce(book *b, const order *o, int64_t volume) {
    b->levels[o->direction][o->price_tick - b->base_tick].volume -= volume;
}

int32_t book_next_worse(const book *b, direction side, int32_t level) {
    if (side == DIR_BUY) return scan_down(b->occupied[side], level - 1);
    return scan_up_from(b, level + 1);
}

int book_depth(const book *b, direction side, int n, int64_t *ticks, int64_t *volumes) {
    int k = 0;
    for (int32_t lv = book_best(b, side); lv != BOOK_NO_LEVEL && k < n;
         lv = book_next_worse(b, side, lv)) {
        ticks[k] = book_level_tick(b, lv);
        volumes[k] = b->levels[side][lv].volume;
        k++;
    }
    return k;
}
