/* A small, strict TOML reader for `--config FILE`.
 *
 * It reads the subset that real configuration files use (TOML 1.0 minus date/time types):
 * comments, bare/quoted/dotted keys, [tables], [[arrays of tables]], basic, literal and
 * multi-line strings, integers (decimal, 0x, 0o, 0b, with '_'), floats (incl. inf/nan),
 * booleans, arrays and one-line inline tables. Dates and times are validated and kept as
 * strings, because the server has no date-typed settings.
 *
 * Strict on purpose: a typo in a config file must stop the server with a message that says
 * where ("line 12, column 7: expected '=' after key \"port\""), never be silently ignored.
 * Duplicate keys, redefined tables and malformed values are all errors.
 *
 * The tree is read-only after parsing and owned by the root: free it with toml_free(). All
 * accessors accept NULL and wrong-typed values (they return NULL / 0 / "absent"), so lookups
 * can be chained without checks in between. */
#ifndef QAEX_TOML_H
#define QAEX_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    TOML_TABLE,
    TOML_ARRAY,
    TOML_STRING, /* also local/offset dates and times, kept verbatim */
    TOML_INTEGER,
    TOML_FLOAT,
    TOML_BOOLEAN
} toml_type;

typedef struct toml_value toml_value;

/* Parses `len` bytes (no NUL terminator needed). Returns the root table, or NULL with
 * "line L, column C: what was wrong" in err (columns count characters, from 1). err may be
 * NULL; messages longer than errlen are truncated. */
toml_value *toml_parse(const char *text, size_t len, char *err, size_t errlen);

/* Reads and parses a file; errors are prefixed with the path ("cfg.toml: line 3, ..."). */
toml_value *toml_parse_file(const char *path, char *err, size_t errlen);

void toml_free(toml_value *v);

/* The one accessor that needs a value: NULL gives TOML_TABLE, so test for NULL first. */
toml_type toml_type_of(const toml_value *v);
/* "table", "array", "string", "integer", "float", "boolean": for type-mismatch messages. */
const char *toml_type_name(toml_type type);
/* Where the value (or table header) starts in the source, so a config loader can say where a
 * well-formed but unacceptable value is (e.g. a port out of range). 0 for NULL. */
int toml_line(const toml_value *v);
int toml_column(const toml_value *v);

/* Tables keep insertion order, so iteration follows the file (useful to reject unknown keys
 * in file order). */
size_t toml_table_size(const toml_value *table);
const char *toml_table_key(const toml_value *table, size_t i);
const toml_value *toml_table_value(const toml_value *table, size_t i);
/* One key, taken literally (may contain dots). NULL if absent or not a table. */
const toml_value *toml_get(const toml_value *table, const char *key);
/* A dotted path with optional array indexes: "storage.subscriber.batch_size",
 * "instruments[1].name". Segments are literal between '.', use toml_get for keys that contain
 * '.' or '['. An empty path is the table itself. NULL if anything on the way is missing. */
const toml_value *toml_get_path(const toml_value *root, const char *path);

size_t toml_array_size(const toml_value *array);
const toml_value *toml_array_at(const toml_value *array, size_t i);

/* The string's bytes (UTF-8, NUL-terminated) or NULL if not a string. A "\u0000" escape makes
 * an embedded NUL: toml_string_len gives the full length so callers can refuse such values. */
const char *toml_string(const toml_value *v);
size_t toml_string_len(const toml_value *v);

/* Typed access, one convention for all: returns 0 and stores the value when present with the
 * right type, 1 when absent (v NULL), -1 when present with another type. *out is written only
 * on 0, so callers preset it with their default. toml_as_double also accepts integers (a price
 * written "3800" is as good as "3800.0"); toml_as_int does not accept floats. */
int toml_as_int(const toml_value *v, int64_t *out);
int toml_as_double(const toml_value *v, double *out);
int toml_as_bool(const toml_value *v, bool *out);
int toml_as_string(const toml_value *v, const char **out);

/* The same by path (see toml_get_path). -1 also when the path runs through a value that is
 * not a table/array (e.g. "server.port" with `server = 1`): the file is wrong, not silent. */
int toml_get_int(const toml_value *table, const char *path, int64_t *out);
int toml_get_double(const toml_value *table, const char *path, double *out);
int toml_get_bool(const toml_value *table, const char *path, bool *out);
int toml_get_string(const toml_value *table, const char *path, const char **out);
int toml_get_table(const toml_value *table, const char *path, const toml_value **out);
int toml_get_array(const toml_value *table, const char *path, const toml_value **out);

#endif
