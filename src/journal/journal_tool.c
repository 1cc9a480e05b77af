/* qaexchange-journal: look at a data directory's journal and snapshots without changing them.
 *
 *     qaexchange-journal verify DIR [--schema ID]    every segment and snapshot; exit 1 on a
 * problem
 *     qaexchange-journal dump DIR [--from SEQ] [--limit N]   one line per record, from SEQ on
 *     qaexchange-journal stats DIR                    totals */
#include "journal/crc32c.h"
#include "journal/journal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: qaexchange-journal verify DIR [--schema ID]\n"
               "       qaexchange-journal dump DIR [--from SEQ] [--limit N]\n"
               "       qaexchange-journal stats DIR\n"
               "DIR is the server's --data-dir (it holds journal/ and snapshots/).\n");
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-') return -1;
    *out = v;
    return 0;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ---- verify ---- */

typedef struct verify_ctx {
    bool check_schema;
    uint64_t schema_id;
    bool have_schema; /* the first segment's, when not given */
    int problems;
    char first_problem[JOURNAL_PATH_MAX + JOURNAL_MSG_MAX + 64];
    uint64_t segments, records, first_seq, last_seq;
    uint64_t snapshots, bad_snapshots;
} verify_ctx;

static void note_problem(verify_ctx *v, const char *path, uint64_t offset, const char *msg) {
    if (v->problems++ == 0)
        snprintf(v->first_problem, sizeof v->first_problem, "%s at byte %" PRIu64 ": %s", path,
                 offset, msg);
}

static void verify_segment(void *ctx, const journal_segment_report *r) {
    verify_ctx *v = ctx;
    v->segments++;
    v->records += r->records;
    if (r->records > 0) {
        if (v->first_seq == 0) v->first_seq = r->first_seq;
        v->last_seq = r->last_seq;
    }
    printf("  %s  %" PRIu64 " records", base_name(r->path), r->records);
    if (r->records > 0) printf("  seq %" PRIu64 "..%" PRIu64, r->first_seq, r->last_seq);
    printf("  %" PRIu64 " bytes  schema %016" PRIx64, r->file_size, r->schema_id);
    bool ok = r->ok;
    if (ok && r->version != 0) {
        if (!v->have_schema && !v->check_schema) {
            v->schema_id = r->schema_id;
            v->have_schema = true;
        } else if (r->schema_id != v->schema_id) {
            char msg[160];
            snprintf(msg, sizeof msg, "schema id %016" PRIx64 " differs from %016" PRIx64,
                     r->schema_id, v->schema_id);
            printf("  PROBLEM at byte 16: %s\n", msg);
            note_problem(v, r->path, 16, msg);
            return;
        }
    }
    if (ok) {
        printf("  OK\n");
        return;
    }
    printf("  PROBLEM at byte %" PRIu64 ": %s%s\n", r->problem_offset, r->problem,
           r->torn_tail ? " (torn tail: the server cuts it at start-up)" : "");
    note_problem(v, r->path, r->problem_offset, r->problem);
}

static void verify_snapshot(void *ctx, const snapshot_report *r) {
    verify_ctx *v = ctx;
    v->snapshots++;
    printf("  %s  seq %" PRIu64 "  %" PRIu64 " bytes", base_name(r->path), r->seq, r->file_size);
    if (r->ok) {
        printf("  OK\n");
        return;
    }
    v->bad_snapshots++;
    printf("  PROBLEM: %s\n", r->problem);
    note_problem(v, r->path, 0, r->problem);
}

static int cmd_verify(const char *dir, int argc, char **argv) {
    verify_ctx v;
    memset(&v, 0, sizeof v);
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--schema") == 0 && i + 1 < argc &&
            parse_u64(argv[i + 1], &v.schema_id) == 0) {
            v.check_schema = v.have_schema = true;
            i++;
        } else {
            usage(stderr);
            return 2;
        }
    }
    char err[JOURNAL_MSG_MAX];
    printf("journal %s/journal:\n", dir);
    if (journal_inspect(dir, 0, NULL, verify_segment, &v, err, sizeof err) < 0) {
        fprintf(stderr, "qaexchange-journal: %s\n", err);
        return 1;
    }
    printf("snapshots %s/snapshots:\n", dir);
    if (snapshot_inspect(dir, verify_snapshot, &v, err, sizeof err) < 0) {
        fprintf(stderr, "qaexchange-journal: %s\n", err);
        return 1;
    }
    printf("%" PRIu64 " segments, %" PRIu64 " records", v.segments, v.records);
    if (v.records > 0) printf(" (seq %" PRIu64 "..%" PRIu64 ")", v.first_seq, v.last_seq);
    printf(", %" PRIu64 " snapshots: ", v.snapshots);
    if (v.problems == 0) {
        printf("OK\n");
        return 0;
    }
    printf("%d problem(s)\nfirst problem: %s\n", v.problems, v.first_problem);
    return 1;
}

/* ---- dump ---- */

typedef struct dump_ctx {
    uint64_t limit, printed;
    bool problem;
} dump_ctx;

static int dump_record(void *ctx, uint64_t seq, const void *data, size_t len) {
    dump_ctx *d = ctx;
    if (d->limit > 0 && d->printed >= d->limit) return 1;
    unsigned char s[8];
    for (int i = 0; i < 8; i++)
        s[i] = (unsigned char)(seq >> (8 * i));
    uint32_t crc = crc32c(crc32c(0, s, 8), data, len);
    printf("seq=%" PRIu64 " len=%zu crc=%08x data=", seq, len, crc);
    const unsigned char *p = data;
    size_t show = len < 32 ? len : 32;
    for (size_t i = 0; i < show; i++)
        printf("%02x", p[i]);
    printf("%s\n", len > show ? "..." : "");
    d->printed++;
    return 0;
}

static void dump_segment(void *ctx, const journal_segment_report *r) {
    dump_ctx *d = ctx;
    if (!r->ok) {
        d->problem = true;
        fprintf(stderr, "%s at byte %" PRIu64 ": %s\n", r->path, r->problem_offset, r->problem);
    }
}

static int cmd_dump(const char *dir, int argc, char **argv) {
    uint64_t from = 0;
    dump_ctx d = {0, 0, false};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--from") == 0 && i + 1 < argc && parse_u64(argv[i + 1], &from) == 0)
            i++;
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc &&
                 parse_u64(argv[i + 1], &d.limit) == 0)
            i++;
        else {
            usage(stderr);
            return 2;
        }
    }
    char err[JOURNAL_MSG_MAX];
    /* --from names the first record shown; journal_inspect starts after the seq it is given */
    if (journal_inspect(dir, from > 0 ? from - 1 : 0, dump_record, dump_segment, &d, err,
                        sizeof err) < 0) {
        fprintf(stderr, "qaexchange-journal: %s\n", err);
        return 1;
    }
    return d.problem ? 1 : 0;
}

/* ---- stats ---- */

typedef struct stats_ctx {
    uint64_t segments, records, bytes, first_seq, last_seq, problems;
    uint64_t snapshots, snapshot_bytes, newest_snapshot, bad_snapshots;
} stats_ctx;

static void stats_segment(void *ctx, const journal_segment_report *r) {
    stats_ctx *s = ctx;
    s->segments++;
    s->records += r->records;
    s->bytes += r->file_size;
    if (r->records > 0) {
        if (s->first_seq == 0) s->first_seq = r->first_seq;
        s->last_seq = r->last_seq;
    }
    if (!r->ok) s->problems++;
}

static void stats_snapshot(void *ctx, const snapshot_report *r) {
    stats_ctx *s = ctx;
    s->snapshots++;
    s->snapshot_bytes += r->file_size;
    if (r->ok)
        s->newest_snapshot = r->seq;
    else
        s->bad_snapshots++;
}

static int cmd_stats(const char *dir, int argc) {
    if (argc != 0) {
        usage(stderr);
        return 2;
    }
    stats_ctx s;
    memset(&s, 0, sizeof s);
    char err[JOURNAL_MSG_MAX];
    if (journal_inspect(dir, 0, NULL, stats_segment, &s, err, sizeof err) < 0 ||
        snapshot_inspect(dir, stats_snapshot, &s, err, sizeof err) < 0) {
        fprintf(stderr, "qaexchange-journal: %s\n", err);
        return 1;
    }
    printf("segments:        %" PRIu64 "\n", s.segments);
    printf("records:         %" PRIu64 "\n", s.records);
    if (s.records > 0)
        printf("seq range:       %" PRIu64 "..%" PRIu64 "\n", s.first_seq, s.last_seq);
    printf("journal bytes:   %" PRIu64 "\n", s.bytes);
    printf("snapshots:       %" PRIu64 " (%" PRIu64 " damaged)\n", s.snapshots, s.bad_snapshots);
    printf("snapshot bytes:  %" PRIu64 "\n", s.snapshot_bytes);
    if (s.newest_snapshot > 0) printf("newest snapshot: seq %" PRIu64 "\n", s.newest_snapshot);
    if (s.problems > 0) printf("segments with problems: %" PRIu64 " (run verify)\n", s.problems);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 3) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1], *dir = argv[2];
    if (strcmp(cmd, "verify") == 0) return cmd_verify(dir, argc - 3, argv + 3);
    if (strcmp(cmd, "dump") == 0) return cmd_dump(dir, argc - 3, argv + 3);
    if (strcmp(cmd, "stats") == 0) return cmd_stats(dir, argc - 3);
    usage(stderr);
    return 2;
}
