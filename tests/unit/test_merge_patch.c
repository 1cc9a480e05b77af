/* Unit tests for the RFC 7386 merge-patch library: the RFC's own examples, DIFF-shaped
 * sessions (rtn_data.data lists, a server diffing its snapshot), a seeded property test of
 * diff/apply, and allocation-failure injection through jansson's allocator hooks. */
#include "check.h"
#include "proto/merge_patch.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

static json_t *parse(const char *text) {
    json_error_t error;
    json_t *value = json_loads(text, JSON_DECODE_ANY, &error);
    if (!value) {
        fprintf(stderr, "bad test JSON (%s): %s\n", error.text, text);
        abort();
    }
    return value;
}

/* json_equal with a readable complaint, for CHECK. */
static bool json_matches(const json_t *value, const char *expected_text) {
    json_t *expected = parse(expected_text);
    bool same = json_equal(value, expected);
    if (!same) {
        char *got =
            value ? json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
        fprintf(stderr, "  got      %s\n  expected %s\n", got ? got : "(NULL)", expected_text);
        free(got);
    }
    json_decref(expected);
    return same;
}

/* ---- 1. RFC 7386 Appendix A ------------------------------------------------------------- */

struct rfc_example {
    const char *target, *patch, *result;
};

static const struct rfc_example rfc_examples[] = {
    {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
    {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
    {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
    {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
    {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
    {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
    {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
    {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
    {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
    {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
    {"{\"a\":\"foo\"}", "null", "null"},
    {"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
    {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
    {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
    {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
};
#define RFC_EXAMPLE_COUNT (sizeof rfc_examples / sizeof rfc_examples[0])

static void test_rfc7386_examples(void) {
    CHECK_INT(RFC_EXAMPLE_COUNT, 15);
    for (size_t i = 0; i < RFC_EXAMPLE_COUNT; i++) {
        const struct rfc_example *ex = &rfc_examples[i];
        json_t *target = parse(ex->target);
        json_t *patch = parse(ex->patch);
        json_t *result = merge_patch_apply(target, patch);
        if (!json_matches(result, ex->result)) {
            fprintf(stderr, "  RFC 7386 example %zu\n", i + 1);
            CHECK(false);
        }
        /* An object patch on an object target works in place; anything else is a new value
         * and leaves the target alone. The patch is never touched. */
        if (json_is_object(target) && json_is_object(patch))
            CHECK(result == target);
        else
            CHECK(json_matches(target, ex->target));
        CHECK(json_matches(patch, ex->patch));
        json_decref(result);
        json_decref(target);
        json_decref(patch);
    }
}

/* The same examples through the list form, each as a one-element rtn_data.data. */
static void test_rfc7386_examples_via_apply_all(void) {
    for (size_t i = 0; i < RFC_EXAMPLE_COUNT; i++) {
        const struct rfc_example *ex = &rfc_examples[i];
        json_t *root = parse(ex->target);
        json_t *list = json_array();
        CHECK(list && json_array_append_new(list, parse(ex->patch)) == 0);
        CHECK_INT(merge_patch_apply_all(&root, list), 0);
        if (!json_matches(root, ex->result)) {
            fprintf(stderr, "  RFC 7386 example %zu via apply_all\n", i + 1);
            CHECK(false);
        }
        json_decref(root);
        json_decref(list);
    }
}

/* ---- API contracts ---------------------------------------------------------------------- */

static void test_apply_ownership(void) {
    /* Patch values are copied, not shared: changing the result leaves the patch alone. */
    json_t *target = parse("{\"a\":1}");
    json_t *patch = parse("{\"b\":{\"c\":[1,2]},\"d\":\"x\"}");
    json_t *result = merge_patch_apply(target, patch);
    CHECK(result == target);
    CHECK(json_object_get(result, "b") != json_object_get(patch, "b"));
    CHECK(json_object_get(result, "d") != json_object_get(patch, "d"));
    CHECK(json_array_append_new(json_object_get(json_object_get(result, "b"), "c"),
                                json_integer(3)) == 0);
    CHECK(json_matches(patch, "{\"b\":{\"c\":[1,2]},\"d\":\"x\"}"));
    CHECK(json_matches(result, "{\"a\":1,\"b\":{\"c\":[1,2,3]},\"d\":\"x\"}"));
    json_decref(result);
    json_decref(target);

    /* A NULL target is "not an object": an object patch yields a fresh object. */
    result = merge_patch_apply(NULL, patch);
    CHECK(json_matches(result, "{\"b\":{\"c\":[1,2]},\"d\":\"x\"}"));
    json_decref(result);

    /* A NULL patch is an error, not a deletion. */
    target = parse("{\"a\":1}");
    CHECK(merge_patch_apply(target, NULL) == NULL);
    CHECK(json_matches(target, "{\"a\":1}"));
    json_decref(target);
    json_decref(patch);

    /* Deleting a member that is not there, and merging into a nested non-object. */
    target = parse("{\"a\":1,\"b\":2}");
    patch = parse("{\"zz\":null,\"b\":{\"c\":{\"d\":null,\"e\":true}}}");
    result = merge_patch_apply(target, patch);
    CHECK(json_matches(result, "{\"a\":1,\"b\":{\"c\":{\"e\":true}}}"));
    json_decref(result);
    json_decref(target);
    json_decref(patch);
}

static void test_apply_all_contract(void) {
    json_t *root = parse("{\"a\":1}");
    json_t *not_a_list = parse("{\"a\":2}");
    json_t *empty = parse("[]");
    CHECK_INT(merge_patch_apply_all(&root, not_a_list), -1);
    CHECK(json_matches(root, "{\"a\":1}"));
    CHECK_INT(merge_patch_apply_all(&root, NULL), -1);
    CHECK_INT(merge_patch_apply_all(NULL, empty), -1);
    json_t *before = root;
    CHECK_INT(merge_patch_apply_all(&root, empty), 0);
    CHECK(root == before);
    json_decref(root);

    /* Starting from nothing, and a list that replaces the root and then rebuilds it. */
    root = NULL;
    json_t *list = parse("[{\"a\":{\"b\":1}}, [1,2], {\"c\":null,\"d\":3}, {\"d\":4}]");
    CHECK_INT(merge_patch_apply_all(&root, list), 0);
    CHECK(json_matches(root, "{\"d\":4}"));
    json_decref(root);
    json_decref(list);
    json_decref(not_a_list);
    json_decref(empty);
}

static void test_diff_basics(void) {
    json_t *from = parse("{\"a\":1,\"b\":{\"c\":2,\"d\":3},\"e\":[1],\"g\":{\"h\":1},\"i\":1,"
                         "\"j\":{\"k\":{}},\"n\":[null]}");
    json_t *to = parse("{\"a\":1,\"b\":{\"c\":2,\"d\":4},\"e\":[1,2],\"f\":\"x\",\"g\":5,"
                       "\"i\":1.0,\"j\":{\"k\":{}},\"n\":[null]}");
    json_t *patch = merge_patch_diff(from, to);
    /* Equal members (a, b.c, j, n) are omitted, changed leaves and arrays replaced, a type change
     * (integer 1 to real 1.0 included) replaces, new members are added. */
    CHECK(json_matches(patch, "{\"b\":{\"d\":4},\"e\":[1,2],\"f\":\"x\",\"g\":5,\"i\":1.0}"));
    json_decref(patch);

    patch = merge_patch_diff(to, from);
    CHECK(json_matches(patch, "{\"b\":{\"d\":3},\"e\":[1],\"f\":null,\"g\":{\"h\":1},\"i\":1}"));
    json_decref(patch);

    /* No change is the empty object, whether or not the two are the same pointer. */
    json_t *copy = json_deep_copy(from);
    patch = merge_patch_diff(from, copy);
    CHECK(merge_patch_is_empty(patch));
    json_decref(patch);
    patch = merge_patch_diff(from, from);
    CHECK(merge_patch_is_empty(patch));
    json_decref(patch);
    CHECK(!merge_patch_is_empty(NULL));
    CHECK(!merge_patch_is_empty(to));
    json_decref(copy);

    /* First snapshot: from NULL (or any non-object) the patch is the whole tree. */
    patch = merge_patch_diff(NULL, to);
    CHECK(json_equal(patch, to));
    CHECK(patch != to);
    json_decref(patch);

    /* A non-object to can only be written as itself. */
    json_t *scalar = parse("5");
    patch = merge_patch_diff(from, scalar);
    CHECK(json_matches(patch, "5"));
    json_t *applied = merge_patch_apply(from, patch);
    CHECK(json_matches(applied, "5"));
    json_decref(applied);
    json_decref(patch);
    patch = merge_patch_diff(scalar, from);
    applied = merge_patch_apply(scalar, patch);
    CHECK(json_equal(applied, from));
    json_decref(applied);
    json_decref(patch);
    json_decref(scalar);
    CHECK(merge_patch_diff(from, NULL) == NULL);

    json_decref(from);
    json_decref(to);
}

/* RFC 7386 cannot carry a null member; diff treats one in `to` as an absent member. */
static void test_diff_null_members(void) {
    json_t *from = parse("{\"a\":1,\"b\":null,\"c\":2,\"d\":{\"e\":1}}");
    json_t *to = parse("{\"a\":null,\"b\":null,\"x\":null,\"d\":{\"e\":null},\"f\":{\"g\":null}}");
    json_t *patch = merge_patch_diff(from, to);
    CHECK(json_matches(patch, "{\"a\":null,\"b\":null,\"c\":null,\"d\":{\"e\":null},\"f\":{}}"));
    json_t *copy = json_deep_copy(from);
    json_t *result = merge_patch_apply(copy, patch);
    CHECK(json_matches(result, "{\"d\":{},\"f\":{}}")); /* to without its null members */
    json_decref(result);
    json_decref(copy);
    json_decref(patch);
    json_decref(from);
    json_decref(to);
}

/* Keys are handled with their lengths, so "a\0b" and "a" are different members. */
static void test_keys_with_nul(void) {
    json_t *target = parse("{\"a\":1}");
    json_t *patch = json_object();
    CHECK(json_object_setn_new(patch, "a\0b", 3, json_integer(2)) == 0);
    json_t *result = merge_patch_apply(target, patch);
    CHECK_INT(json_object_size(result), 2);
    CHECK_INT(json_integer_value(json_object_getn(result, "a\0b", 3)), 2);
    CHECK_INT(json_integer_value(json_object_get(result, "a")), 1);
    json_decref(result);

    json_t *to = parse("{\"a\":1}");
    json_t *diff = merge_patch_diff(target, to);
    CHECK_INT(json_object_size(diff), 1);
    CHECK(json_is_null(json_object_getn(diff, "a\0b", 3)));
    result = merge_patch_apply(target, diff);
    CHECK(json_equal(result, to));
    json_decref(result);
    json_decref(diff);
    json_decref(to);
    json_decref(patch);
    json_decref(target);
}

/* ---- 2. DIFF-shaped sessions ------------------------------------------------------------ */

static const char diff_initial[] =
    "{\"quotes\":{\"SHFE.cu2501\":{\"instrument_id\":\"SHFE.cu2501\",\"last_price\":72000.0,"
    "\"bid_price1\":71990.0,\"ask_price1\":72010.0,\"volume\":120}},"
    "\"trade\":{\"u1\":{\"user_id\":\"u1\","
    "\"accounts\":{\"CNY\":{\"balance\":1000000.0,\"available\":1000000.0}},"
    "\"orders\":{\"o1\":{\"order_id\":\"o1\",\"direction\":\"BUY\",\"volume_orign\":2,"
    "\"status\":\"ALIVE\"}}}}}";

/* Each step is one rtn_data.data list, and the whole tree expected after it. */
static const struct {
    const char *data, *expected;
} diff_steps[] = {
    /* a quote tick, and a new order */
    {"[{\"quotes\":{\"SHFE.cu2501\":{\"last_price\":72010.0,\"volume\":121}}},"
     "{\"trade\":{\"u1\":{\"orders\":{\"o2\":{\"order_id\":\"o2\",\"direction\":\"SELL\","
     "\"volume_orign\":1,\"status\":\"ALIVE\"}}}}}]",
     "{\"quotes\":{\"SHFE.cu2501\":{\"instrument_id\":\"SHFE.cu2501\",\"last_price\":72010.0,"
     "\"bid_price1\":71990.0,\"ask_price1\":72010.0,\"volume\":121}},"
     "\"trade\":{\"u1\":{\"user_id\":\"u1\","
     "\"accounts\":{\"CNY\":{\"balance\":1000000.0,\"available\":1000000.0}},"
     "\"orders\":{\"o1\":{\"order_id\":\"o1\",\"direction\":\"BUY\",\"volume_orign\":2,"
     "\"status\":\"ALIVE\"},\"o2\":{\"order_id\":\"o2\",\"direction\":\"SELL\","
     "\"volume_orign\":1,\"status\":\"ALIVE\"}}}}}"},
    /* o1 deleted with null; a trade and a position appear (nested objects); the account moves */
    {"[{\"trade\":{\"u1\":{\"orders\":{\"o1\":null},"
     "\"trades\":{\"t1\":{\"trade_id\":\"t1\",\"order_id\":\"o2\",\"price\":72010.0,"
     "\"volume\":1}},\"positions\":{\"SHFE.cu2501\":{\"volume_short\":1}}}}},"
     "{\"trade\":{\"u1\":{\"accounts\":{\"CNY\":{\"available\":985000.5}}}}}]",
     "{\"quotes\":{\"SHFE.cu2501\":{\"instrument_id\":\"SHFE.cu2501\",\"last_price\":72010.0,"
     "\"bid_price1\":71990.0,\"ask_price1\":72010.0,\"volume\":121}},"
     "\"trade\":{\"u1\":{\"user_id\":\"u1\","
     "\"accounts\":{\"CNY\":{\"balance\":1000000.0,\"available\":985000.5}},"
     "\"orders\":{\"o2\":{\"order_id\":\"o2\",\"direction\":\"SELL\","
     "\"volume_orign\":1,\"status\":\"ALIVE\"}},"
     "\"trades\":{\"t1\":{\"trade_id\":\"t1\",\"order_id\":\"o2\",\"price\":72010.0,"
     "\"volume\":1}},\"positions\":{\"SHFE.cu2501\":{\"volume_short\":1}}}}}"},
    /* an array, a k-line three levels down, a notify */
    {"[{\"ins_list\":[\"SHFE.cu2501\",\"SHFE.cu2502\"]},"
     "{\"klines\":{\"SHFE.cu2501\":{\"60000000000\":{\"last_id\":28000001,"
     "\"data\":{\"28000001\":{\"datetime\":1680000060000000000,\"open\":72000.0,"
     "\"close\":72010.0}}}}}},"
     "{\"notify\":{\"n1\":{\"type\":\"MESSAGE\",\"level\":\"INFO\",\"code\":1000,"
     "\"content\":\"login ok\"}}}]",
     "{\"quotes\":{\"SHFE.cu2501\":{\"instrument_id\":\"SHFE.cu2501\",\"last_price\":72010.0,"
     "\"bid_price1\":71990.0,\"ask_price1\":72010.0,\"volume\":121}},"
     "\"trade\":{\"u1\":{\"user_id\":\"u1\","
     "\"accounts\":{\"CNY\":{\"balance\":1000000.0,\"available\":985000.5}},"
     "\"orders\":{\"o2\":{\"order_id\":\"o2\",\"direction\":\"SELL\","
     "\"volume_orign\":1,\"status\":\"ALIVE\"}},"
     "\"trades\":{\"t1\":{\"trade_id\":\"t1\",\"order_id\":\"o2\",\"price\":72010.0,"
     "\"volume\":1}},\"positions\":{\"SHFE.cu2501\":{\"volume_short\":1}}}},"
     "\"ins_list\":[\"SHFE.cu2501\",\"SHFE.cu2502\"],"
     "\"klines\":{\"SHFE.cu2501\":{\"60000000000\":{\"last_id\":28000001,"
     "\"data\":{\"28000001\":{\"datetime\":1680000060000000000,\"open\":72000.0,"
     "\"close\":72010.0}}}}},"
     "\"notify\":{\"n1\":{\"type\":\"MESSAGE\",\"level\":\"INFO\",\"code\":1000,"
     "\"content\":\"login ok\"}}}"},
    /* the array is replaced, not merged; the notify goes; later patches in a list win */
    {"[{\"ins_list\":[\"SHFE.cu2502\"]},{\"notify\":{\"n1\":null}},"
     "{\"trade\":{\"u1\":{\"orders\":{\"o2\":{\"status\":\"FINISHED\"}}}}},"
     "{\"quotes\":{\"SHFE.cu2501\":{\"last_price\":72020.0}}},"
     "{\"quotes\":{\"SHFE.cu2501\":{\"last_price\":72030.0}}}]",
     "{\"quotes\":{\"SHFE.cu2501\":{\"instrument_id\":\"SHFE.cu2501\",\"last_price\":72030.0,"
     "\"bid_price1\":71990.0,\"ask_price1\":72010.0,\"volume\":121}},"
     "\"trade\":{\"u1\":{\"user_id\":\"u1\","
     "\"accounts\":{\"CNY\":{\"balance\":1000000.0,\"available\":985000.5}},"
     "\"orders\":{\"o2\":{\"order_id\":\"o2\",\"direction\":\"SELL\","
     "\"volume_orign\":1,\"status\":\"FINISHED\"}},"
     "\"trades\":{\"t1\":{\"trade_id\":\"t1\",\"order_id\":\"o2\",\"price\":72010.0,"
     "\"volume\":1}},\"positions\":{\"SHFE.cu2501\":{\"volume_short\":1}}}},"
     "\"ins_list\":[\"SHFE.cu2502\"],"
     "\"klines\":{\"SHFE.cu2501\":{\"60000000000\":{\"last_id\":28000001,"
     "\"data\":{\"28000001\":{\"datetime\":1680000060000000000,\"open\":72000.0,"
     "\"close\":72010.0}}}}},"
     "\"notify\":{}}"},
};
#define DIFF_STEP_COUNT (sizeof diff_steps / sizeof diff_steps[0])

/* The client side: fold each rtn_data.data into the mirror. */
static void test_diff_client_steps(void) {
    json_t *mirror = parse(diff_initial);
    json_t *root = mirror;
    for (size_t i = 0; i < DIFF_STEP_COUNT; i++) {
        json_t *data = parse(diff_steps[i].data);
        CHECK_INT(merge_patch_apply_all(&mirror, data), 0);
        if (!json_matches(mirror, diff_steps[i].expected)) {
            fprintf(stderr, "  DIFF step %zu\n", i + 1);
            CHECK(false);
        }
        CHECK(mirror == root); /* object patches on an object root work in place */
        json_decref(data);
    }
    json_decref(mirror);
}

/* The server side: the snapshot moves on; each peek gets diff(seen, snapshot); the client's
 * mirror, fed only those patches, always equals the snapshot. */
static void test_diff_server_loop(void) {
    json_t *snapshot = parse(diff_initial);
    json_t *seen = json_object();
    json_t *mirror = json_object();

    for (size_t i = 0; i <= DIFF_STEP_COUNT; i++) {
        json_t *patch = merge_patch_diff(seen, snapshot);
        CHECK(patch != NULL);
        if (i == 0) CHECK(json_equal(patch, snapshot)); /* the first answer is the whole tree */
        if (i == 2) /* step 2, seen from the server: one patch, o1 deleted with null */
            CHECK(json_matches(patch, "{\"trade\":{\"u1\":{\"orders\":{\"o1\":null},"
                                      "\"trades\":{\"t1\":{\"trade_id\":\"t1\",\"order_id\":\"o2\","
                                      "\"price\":72010.0,\"volume\":1}},"
                                      "\"positions\":{\"SHFE.cu2501\":{\"volume_short\":1}},"
                                      "\"accounts\":{\"CNY\":{\"available\":985000.5}}}}}"));
        CHECK(!merge_patch_is_empty(patch));

        json_t *data = json_array();
        CHECK(data && json_array_append_new(data, patch) == 0);
        /* Over the wire and back, as the client would see it. */
        char *wire = json_dumps(data, JSON_COMPACT);
        CHECK(wire != NULL);
        json_t *received = parse(wire);
        free(wire);
        CHECK_INT(merge_patch_apply_all(&mirror, received), 0);
        CHECK(json_equal(mirror, snapshot));
        json_decref(received);
        json_decref(data);

        json_decref(seen);
        seen = json_deep_copy(snapshot);

        /* Nothing moved: the peek is held. */
        json_t *none = merge_patch_diff(seen, snapshot);
        CHECK(merge_patch_is_empty(none));
        json_decref(none);

        if (i < DIFF_STEP_COUNT) {
            json_t *step = parse(diff_steps[i].data);
            CHECK_INT(merge_patch_apply_all(&snapshot, step), 0);
            json_decref(step);
        }
    }
    CHECK(json_matches(mirror, diff_steps[DIFF_STEP_COUNT - 1].expected));
    json_decref(snapshot);
    json_decref(seen);
    json_decref(mirror);
}

/* ---- 3. Property test ------------------------------------------------------------------- */

static uint64_t rng_state;

/* xorshift64*: small, fast, and the same sequence on every platform. */
static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static unsigned rng_below(unsigned n) {
    return (unsigned)(rng_next() >> 33) % n;
}

/* A small key pool, so that mutations and independent trees collide on keys. */
static const char *const random_keys[] = {
    "a", "b",   "c", "last_price", "orders", "SHFE.cu2501", "\xe4\xbb\xb7\xe6\xa0\xbc",
    "",  "x.y", "9"};
static const char *const random_strings[] = {"",          "ALIVE",        "FINISHED", "BUY",
                                             "a\"b\\c\n", "\xe9\x93\x9c", "1"};
#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

enum { MAX_DEPTH = 4 };

static json_t *random_value(int depth);

static json_t *random_scalar(void) {
    switch (rng_below(6)) {
        case 0:
            return json_string(random_strings[rng_below(COUNT_OF(random_strings))]);
        case 1:
            return json_integer((json_int_t)rng_below(2001) - 1000);
        case 2: /* full-range integers, extremes included */
            return json_integer((json_int_t)rng_next());
        case 3:
            return json_real((double)((int)rng_below(200001) - 100000) / 64.0);
        case 4: /* any finite double, to check the wire round trip is exact */
            return json_real((double)(int64_t)rng_next() / (double)(UINT64_C(1) << rng_below(63)));
        default:
            return json_boolean(rng_below(2));
    }
}

static json_t *random_object(int depth) {
    json_t *object = json_object();
    unsigned members = rng_below(7);
    for (unsigned i = 0; i < members; i++)
        json_object_set_new(object, random_keys[rng_below(COUNT_OF(random_keys))],
                            random_value(depth + 1));
    return object;
}

static json_t *random_array(int depth) {
    json_t *array = json_array();
    unsigned items = rng_below(5);
    for (unsigned i = 0; i < items; i++)
        json_array_append_new(array, depth < MAX_DEPTH && rng_below(4) == 0
                                         ? random_value(depth + 1)
                                         : random_scalar());
    return array;
}

static json_t *random_value(int depth) {
    unsigned roll = rng_below(100);
    if (depth < MAX_DEPTH && roll < 35) return random_object(depth);
    if (roll < 50) return random_array(depth);
    return random_scalar();
}

/* Changes a tree in place: members deleted, replaced (often with another type), retouched
 * (an integer made a real of the same value, an array grown) or mutated further down, and new
 * members added. Sometimes nothing changes at all. */
static void mutate(json_t *object, int depth) {
    const char *key;
    json_t *value;
    void *next;
    json_object_foreach_safe(object, next, key, value) {
        unsigned roll = rng_below(100);
        if (roll < 12) {
            json_object_del(object, key);
        } else if (roll < 24) {
            json_object_set_new(object, key, random_value(depth + 1));
        } else if (roll < 30 && json_is_integer(value)) {
            json_object_set_new(object, key, json_real((double)json_integer_value(value)));
        } else if (roll < 36 && json_is_array(value)) {
            json_array_append_new(value, random_scalar());
        } else if (roll < 70 && json_is_object(value)) {
            mutate(value, depth + 1);
        }
    }
    unsigned added = rng_below(3) == 0 ? rng_below(3) : 0;
    for (unsigned i = 0; i < added; i++)
        json_object_set_new(object, random_keys[rng_below(COUNT_OF(random_keys))],
                            random_value(depth + 1));
}

/* Every member of patch is needed: deletions name members from has, objects recurse into
 * objects and are not empty there, other values differ from what from holds. */
static bool patch_is_minimal(const json_t *from, const json_t *patch) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)patch, key, value) {
        size_t key_len = json_object_iter_key_len(json_object_key_to_iter(key));
        const json_t *old = json_object_getn(from, key, key_len);
        if (json_is_null(value)) {
            if (!old) return false;
        } else if (json_is_object(value) && json_is_object(old)) {
            if (json_object_size(value) == 0 || !patch_is_minimal(old, value)) return false;
        } else if (old && json_equal(old, value)) {
            return false;
        }
    }
    return true;
}

enum { PROPERTY_CASES = 2000 };

static void test_property_diff_apply(void) {
    rng_state = 0x9E3779B97F4A7C15ULL;
    int unchanged = 0, changed = 0;
    for (int n = 0; n < PROPERTY_CASES; n++) {
        int failures_before = check_failures_in_test;
        json_t *from = random_object(0);
        json_t *to;
        if (rng_below(10) == 0) {
            to = random_object(0); /* an unrelated tree */
        } else {
            to = json_deep_copy(from);
            mutate(to, 0);
        }
        CHECK(from && to);
        json_t *from_saved = json_deep_copy(from);
        json_t *to_saved = json_deep_copy(to);

        json_t *patch = merge_patch_diff(from, to);
        CHECK(patch != NULL);
        CHECK(json_is_object(patch));
        CHECK(patch_is_minimal(from, patch));
        CHECK(merge_patch_is_empty(patch) == (bool)json_equal(from, to));
        if (merge_patch_is_empty(patch))
            unchanged++;
        else
            changed++;

        /* apply(copy(from), diff(from, to)) == to, and applying again changes nothing. */
        json_t *result = merge_patch_apply(json_deep_copy(from), patch);
        CHECK(json_equal(result, to));
        json_t *again = merge_patch_apply(result, patch);
        CHECK(again == result);
        CHECK(json_equal(again, to));
        json_decref(again);
        json_decref(result); /* merge_patch_apply borrowed the copy: this drops it */
        json_decref(result);

        /* Through the wire as a one-element rtn_data.data. */
        json_t *data = json_array();
        CHECK(json_array_append(data, patch) == 0);
        char *wire = json_dumps(data, JSON_COMPACT);
        CHECK(wire != NULL);
        json_t *received = parse(wire);
        free(wire);
        json_t *mirror = json_deep_copy(from);
        CHECK_INT(merge_patch_apply_all(&mirror, received), 0);
        CHECK(json_equal(mirror, to));
        json_decref(mirror);
        json_decref(received);
        json_decref(data);

        /* diff(x, x) is no change, for the same pointer and for an equal copy. */
        json_t *none = merge_patch_diff(to, to_saved);
        CHECK(merge_patch_is_empty(none));
        json_decref(none);
        none = merge_patch_diff(from, from);
        CHECK(merge_patch_is_empty(none));
        json_decref(none);

        /* diff reads its arguments only. */
        CHECK(json_equal(from, from_saved));
        CHECK(json_equal(to, to_saved));

        json_decref(patch);
        json_decref(from);
        json_decref(to);
        json_decref(from_saved);
        json_decref(to_saved);
        if (check_failures_in_test != failures_before) {
            fprintf(stderr, "  property case %d failed\n", n);
            break;
        }
    }
    /* The generator must exercise both outcomes. */
    CHECK(changed > PROPERTY_CASES / 2);
    CHECK(unchanged > 0);
}

/* ---- Allocation failures ---------------------------------------------------------------- */

/* jansson allocates through a hook; this one fails the allocation numbered alloc_fail_at (and,
 * when sticky, every later one), so each allocation site of the library is hit in turn. */
static long alloc_count, alloc_fail_at = -1, alloc_failed;
static bool alloc_sticky;

static void *counting_malloc(size_t size) {
    long n = alloc_count++;
    if (alloc_fail_at >= 0 && (n == alloc_fail_at || (alloc_sticky && n > alloc_fail_at))) {
        alloc_failed++;
        return NULL;
    }
    return malloc(size);
}

static void arm_failure(long at, bool sticky) {
    alloc_count = 0;
    alloc_failed = 0;
    alloc_fail_at = at;
    alloc_sticky = sticky;
}

static void disarm_failure(void) {
    alloc_fail_at = -1;
}

/* A tree still usable after a failure: it can be walked and serialised. */
static bool still_valid(const json_t *value) {
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    bool ok = text != NULL;
    free(text);
    return ok;
}

/* Runs apply_all of data over a copy of initial with the k-th allocation failing, for every k
 * until a run needs no failure; returns how many runs reported a failure. */
static int inject_apply_all(const json_t *initial, const json_t *data, const json_t *expected,
                            bool sticky) {
    int reported = 0;
    for (long at = 0;; at++) {
        json_t *root = json_deep_copy(initial);
        arm_failure(at, sticky);
        int rc = merge_patch_apply_all(&root, data);
        long failed = alloc_failed;
        disarm_failure();
        if (rc == 0) {
            CHECK(json_equal(root, expected)); /* a failure must never pass silently */
        } else {
            CHECK_INT(rc, -1);
            CHECK(failed > 0);
            CHECK(root && still_valid(root));
            reported++;
        }
        json_decref(root);
        if (failed == 0) return reported;
    }
}

static int inject_diff(const json_t *from, const json_t *to, bool sticky) {
    int reported = 0;
    for (long at = 0;; at++) {
        arm_failure(at, sticky);
        json_t *patch = merge_patch_diff(from, to);
        long failed = alloc_failed;
        disarm_failure();
        if (patch) {
            json_t *result = merge_patch_apply(json_deep_copy(from), patch);
            CHECK(json_equal(result, to));
            json_decref(result);
            json_decref(result);
            json_decref(patch);
        } else {
            CHECK(failed > 0);
            reported++;
        }
        if (failed == 0) return reported;
    }
}

static void test_allocation_failures(void) {
    json_set_alloc_funcs(counting_malloc, free);

    json_t *initial = parse(diff_initial);
    json_t *expected = json_deep_copy(initial);
    json_t *all_steps = json_array();
    for (size_t i = 0; i < DIFF_STEP_COUNT; i++) {
        json_t *step = parse(diff_steps[i].data);
        CHECK(json_array_extend(all_steps, step) == 0);
        json_decref(step);
    }
    CHECK_INT(merge_patch_apply_all(&expected, all_steps), 0);

    for (int sticky = 0; sticky <= 1; sticky++) {
        CHECK(inject_apply_all(initial, all_steps, expected, sticky) > 50);
        /* Non-object patches and non-object targets take the copying paths. */
        json_t *replace = parse("[[1,{\"a\":[2]}],{\"b\":{\"c\":{\"d\":\"e\",\"f\":null}}}]");
        json_t *replaced = parse("{\"b\":{\"c\":{\"d\":\"e\"}}}");
        CHECK(inject_apply_all(initial, replace, replaced, sticky) > 10);
        json_decref(replace);
        json_decref(replaced);

        json_t *empty = json_object();
        CHECK(inject_diff(initial, expected, sticky) > 50);
        CHECK(inject_diff(expected, initial, sticky) > 20);
        CHECK(inject_diff(empty, expected, sticky) > 50);
        CHECK(inject_diff(expected, empty, sticky) > 3);
        json_decref(empty);
    }

    /* A sample of the random trees, too. */
    rng_state = 0xD1B54A32D192ED03ULL;
    for (int n = 0; n < 40; n++) {
        json_t *from = random_object(0);
        json_t *to = json_deep_copy(from);
        mutate(to, 0);
        inject_diff(from, to, n % 2 == 0);
        json_t *patch = merge_patch_diff(from, to);
        json_t *data = json_array();
        CHECK(json_array_append_new(data, patch) == 0);
        inject_apply_all(from, data, to, n % 2 == 1);
        json_decref(data);
        json_decref(from);
        json_decref(to);
    }

    json_decref(initial);
    json_decref(expected);
    json_decref(all_steps);
    json_set_alloc_funcs(malloc, free);
}

int main(void) {
    RUN_TEST(test_rfc7386_examples);
    RUN_TEST(test_rfc7386_examples_via_apply_all);
    RUN_TEST(test_apply_ownership);
    RUN_TEST(test_apply_all_contract);
    RUN_TEST(test_diff_basics);
    RUN_TEST(test_diff_null_members);
    RUN_TEST(test_keys_with_nul);
    RUN_TEST(test_diff_client_steps);
    RUN_TEST(test_diff_server_loop);
    RUN_TEST(test_property_diff_apply);
    RUN_TEST(test_allocation_failures);
    return CHECK_REPORT();
}
