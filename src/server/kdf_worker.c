/* The password-hashing thread (see kdf_worker.h). */
#include "server/kdf_worker.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define KDF_QUEUE 64

struct kdf_worker {
    auth_pwhash_cost cost;
    void (*wake)(void *);
    void *wake_ctx;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    kdf_job todo[KDF_QUEUE], done[KDF_QUEUE];
    unsigned todo_head, todo_count, done_head, done_count;
};

static void run(kdf_worker *w, kdf_job *j) {
    if (j->kind == KDF_HASH) {
        j->result = auth_password_hash(&w->cost, j->password, j->hash, j->error, sizeof j->error);
    } else if (j->hash[0] == '\0') {
        auth_password_burn(&w->cost, j->password);
        j->result = AUTH_MISMATCH;
    } else {
        j->result = auth_password_verify(j->hash, j->password, j->error, sizeof j->error);
    }
    sodium_memzero(j->password, sizeof j->password);
}

static void *worker_main(void *arg) {
    kdf_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && (w->todo_count == 0 || w->done_count == KDF_QUEUE))
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop) break;
        kdf_job j = w->todo[w->todo_head];
        sodium_memzero(&w->todo[w->todo_head], sizeof j);
        w->todo_head = (w->todo_head + 1) % KDF_QUEUE;
        w->todo_count--;
        pthread_mutex_unlock(&w->mu);
        run(w, &j);
        pthread_mutex_lock(&w->mu);
        w->done[(w->done_head + w->done_count) % KDF_QUEUE] = j;
        w->done_count++;
        pthread_mutex_unlock(&w->mu);
        w->wake(w->wake_ctx);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

kdf_worker *kdf_worker_start(const auth_pwhash_cost *cost, void (*wake)(void *), void *ctx) {
    if (!auth_init()) return NULL;
    kdf_worker *w = calloc(1, sizeof *w);
    if (w == NULL) return NULL;
    w->cost = *cost;
    w->wake = wake;
    w->wake_ctx = ctx;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        free(w);
        return NULL;
    }
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

void kdf_worker_stop(kdf_worker *w) {
    if (w == NULL) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    sodium_memzero(w->todo, sizeof w->todo);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

bool kdf_worker_submit(kdf_worker *w, kdf_job *job) {
    pthread_mutex_lock(&w->mu);
    bool ok = w->todo_count < KDF_QUEUE;
    if (ok) {
        w->todo[(w->todo_head + w->todo_count) % KDF_QUEUE] = *job;
        w->todo_count++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    sodium_memzero(job->password, sizeof job->password);
    return ok;
}

bool kdf_worker_poll(kdf_worker *w, kdf_job *out) {
    pthread_mutex_lock(&w->mu);
    bool ok = w->done_count > 0;
    if (ok) {
        *out = w->done[w->done_head];
        w->done_head = (w->done_head + 1) % KDF_QUEUE;
        w->done_count--;
        pthread_cond_signal(&w->cv); /* room for a result the worker may hold */
    }
    pthread_mutex_unlock(&w->mu);
    return ok;
}
