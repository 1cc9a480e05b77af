/* qaexchange-replay DIR: rebuilds the engine from nothing by replaying every journal record in
 * DIR, and prints its state digest. Operators use it to check that a data directory is
 * self-consistent; the crash test uses it to prove that the recovered server equals a fresh engine
 * fed the same commands. The journal must be complete (not pruned below its first record). */
#include "engine/engine.h"
#include "journal/journal.h"
#include "server/persistence.h"

#include <stdio.h>
#include <string.h>

typedef struct replay {
    engine *e;
    uint64_t records, rejected, last_seq;
} replay;

static int apply_record(void *ctx, uint64_t seq, const void *data, size_t len) {
    replay *r = ctx;
    command cmd;
    if (command_decode(data, len, &cmd) != 0) {
        fprintf(stderr, "record %llu does not decode as a command\n", (unsigned long long)seq);
        return 1;
    }
    engine_result res;
    if (engine_apply(r->e, &cmd, &res) != QAEX_OK) r->rejected++;
    r->records++;
    r->last_seq = seq;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: qaexchange-replay DATA_DIR\n");
        return 2;
    }
    engine_config cfg;
    engine_config_default(&cfg);
    replay r = {.e = engine_create(&cfg)};
    if (r.e == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    char err[1024] = "";
    int rc = journal_replay(argv[1], 0, apply_record, &r, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "replay failed after %llu records: %s\n", (unsigned long long)r.records,
                err);
        engine_destroy(r.e);
        return 1;
    }
    printf("records %llu rejected %llu last_seq %llu state_hash %016llx\n",
           (unsigned long long)r.records, (unsigned long long)r.rejected,
           (unsigned long long)r.last_seq, (unsigned long long)engine_state_hash(r.e));
    engine_destroy(r.e);
    return 0;
}
