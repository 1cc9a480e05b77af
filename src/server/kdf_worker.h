/* Password hashing off the I/O thread. argon2id costs about 0.1 s and 64 MiB per password by
 * design; done on the event loop it would stall every connection, done on the engine thread
 * every order. A worker thread takes jobs from a bounded queue and hands results back, waking
 * the I/O thread through the given callback. */
#ifndef QAEX_KDF_WORKER_H
#define QAEX_KDF_WORKER_H

#include "server/auth.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum kdf_kind {
    KDF_HASH = 1, /* password -> hash */
    KDF_VERIFY,   /* password against hash -> result (an empty hash burns the time and fails) */
} kdf_kind;

/* One job; the caller's context travels with it untouched. */
typedef struct kdf_job {
    kdf_kind kind;
    uint64_t conn_id;
    int purpose; /* the caller's: what to do with the result */
    char password[AUTH_PASSWORD_MAX + 1];
    char hash[AUTH_HASH_LEN];
    auth_result result;
    char error[160];
    char context[512]; /* the caller's data (e.g. the request body's other fields) */
} kdf_job;

typedef struct kdf_worker kdf_worker;

kdf_worker *kdf_worker_start(const auth_pwhash_cost *cost, void (*wake)(void *), void *ctx);
/* Stops the thread; unfinished jobs are dropped (their passwords wiped). */
void kdf_worker_stop(kdf_worker *w);
/* False when the queue is full. The job's password is wiped from the caller's copy. */
bool kdf_worker_submit(kdf_worker *w, kdf_job *job);
/* The next finished job (password wiped), false when none. */
bool kdf_worker_poll(kdf_worker *w, kdf_job *out);

#endif
