/* A bounded single-producer, single-consumer ring of fixed-size items.
 *
 * One thread pushes and one thread pops; neither ever takes a lock. The producer learns that
 * the ring is full (and the caller decides: refuse with 9005, or wait) instead of the queue
 * growing without bound. */
#ifndef QAEX_SPSC_H
#define QAEX_SPSC_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct spsc {
    alignas(64) _Atomic uint64_t head; /* next slot to pop: written by the consumer */
    alignas(64) _Atomic uint64_t tail; /* next slot to push: written by the producer */
    alignas(64) unsigned char *items;
    size_t item_size;
    uint64_t mask;
} spsc;

/* capacity is rounded up to a power of two. */
int spsc_init(spsc *q, size_t capacity, size_t item_size);
void spsc_free(spsc *q);

/* Copies the item in; false when full. */
bool spsc_push(spsc *q, const void *item);
/* Copies the oldest item out; false when empty. */
bool spsc_pop(spsc *q, void *item);
size_t spsc_size(const spsc *q);

#endif
