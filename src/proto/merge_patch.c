/* RFC 7386 merge patch: apply, apply a list, diff. See merge_patch.h for the contracts. */
#include "proto/merge_patch.h"

/* jansson's iterator functions take json_t * even for read-only walks; the const arguments of
 * this library are only ever read through this alias. */
static json_t *readonly(const json_t *value) {
    return (json_t *)value;
}

static int merge_into(json_t *target, const json_t *patch);

/* The value a patch member puts where the target had nothing mergeable: a non-object is copied
 * as is, an object is merged into an empty object (which drops its null members, recursively,
 * exactly as RFC 7386 does when the target member is missing or not an object). */
static json_t *fresh_value(const json_t *patch) {
    if (!json_is_object(patch)) return json_deep_copy(patch);
    json_t *object = json_object();
    if (!object) return NULL;
    if (merge_into(object, patch) != 0) {
        json_decref(object);
        return NULL;
    }
    return object;
}

/* Merges the members of the object patch into the object target, in place. */
static int merge_into(json_t *target, const json_t *patch) {
    json_t *p = readonly(patch);
    for (void *it = json_object_iter(p); it; it = json_object_iter_next(p, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);
        const json_t *value = json_object_iter_value(it);
        if (json_is_null(value)) {
            json_object_deln(target, key, key_len); /* deleting a missing member is no error */
            continue;
        }
        json_t *current = json_object_getn(target, key, key_len);
        if (json_is_object(value) && json_is_object(current)) {
            if (merge_into(current, value) != 0) return -1;
            continue;
        }
        json_t *replacement = fresh_value(value);
        /* setn_new releases replacement itself when it fails. */
        if (!replacement || json_object_setn_new_nocheck(target, key, key_len, replacement) != 0)
            return -1;
    }
    return 0;
}

json_t *merge_patch_apply(json_t *target, const json_t *patch) {
    if (!patch) return NULL;
    if (json_is_object(patch) && json_is_object(target)) {
        if (merge_into(target, patch) != 0) return NULL;
        return json_incref(target);
    }
    return fresh_value(patch);
}

int merge_patch_apply_all(json_t **target, const json_t *patch_list) {
    if (!target || !json_is_array(patch_list)) return -1;
    size_t count = json_array_size(patch_list);
    for (size_t i = 0; i < count; i++) {
        json_t *next = merge_patch_apply(*target, json_array_get(patch_list, i));
        if (!next) return -1;
        json_decref(*target);
        *target = next;
    }
    return 0;
}

/* Adds to out the members that turn the object from into the object to. */
static int diff_objects(const json_t *from, const json_t *to, json_t *out) {
    json_t *t = readonly(to);
    for (void *it = json_object_iter(t); it; it = json_object_iter_next(t, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);
        const json_t *to_value = json_object_iter_value(it);
        const json_t *from_value = json_object_getn(from, key, key_len);
        if (json_is_null(to_value) || from_value == to_value)
            continue; /* a null is an absent member: the second loop deletes it */
        json_t *member;
        if (json_is_object(to_value) && json_is_object(from_value)) {
            member = json_object();
            if (!member) return -1;
            if (diff_objects(from_value, to_value, member) != 0) {
                json_decref(member);
                return -1;
            }
            if (json_object_size(member) == 0) {
                json_decref(member);
                continue;
            }
        } else if (from_value && json_equal(from_value, to_value)) {
            continue;
        } else {
            member = fresh_value(to_value);
            if (!member) return -1;
        }
        if (json_object_setn_new_nocheck(out, key, key_len, member) != 0) return -1;
    }

    json_t *f = readonly(from);
    for (void *it = json_object_iter(f); it; it = json_object_iter_next(f, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);
        const json_t *to_value = json_object_getn(to, key, key_len);
        if (to_value && !json_is_null(to_value)) continue;
        json_t *deletion = json_null();
        if (!deletion || json_object_setn_new_nocheck(out, key, key_len, deletion) != 0) return -1;
    }
    return 0;
}

json_t *merge_patch_diff(const json_t *from, const json_t *to) {
    if (!to) return NULL;
    if (!json_is_object(to) || !json_is_object(from)) return fresh_value(to);
    json_t *patch = json_object();
    if (!patch) return NULL;
    if (from != to && diff_objects(from, to, patch) != 0) {
        json_decref(patch);
        return NULL;
    }
    return patch;
}

bool merge_patch_is_empty(const json_t *patch) {
    return json_is_object(patch) && json_object_size(patch) == 0;
}
