#include "server/spsc.h"

#include <stdlib.h>
#include <string.h>

int spsc_init(spsc *q, size_t capacity, size_t item_size) {
    size_t cap = 2;
    while (cap < capacity)
        cap <<= 1;
    q->items = malloc(cap * item_size);
    if (q->items == NULL) return -1;
    q->item_size = item_size;
    q->mask = cap - 1;
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    return 0;
}

void spsc_free(spsc *q) {
    free(q->items);
    q->items = NULL;
}

bool spsc_push(spsc *q, const void *item) {
    uint64_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&q->head, memory_order_acquire);
    if (tail - head > q->mask) return false;
    memcpy(q->items + (tail & q->mask) * q->item_size, item, q->item_size);
    atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
    return true;
}

bool spsc_pop(spsc *q, void *item) {
    uint64_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    if (head == tail) return false;
    memcpy(item, q->items + (head & q->mask) * q->item_size, q->item_size);
    atomic_store_explicit(&q->head, head + 1, memory_order_release);
    return true;
}

size_t spsc_size(const spsc *q) {
    uint64_t tail = atomic_load_explicit(&((spsc *)q)->tail, memory_order_acquire);
    uint64_t head = atomic_load_explicit(&((spsc *)q)->head, memory_order_acquire);
    return (size_t)(tail - head);
}
