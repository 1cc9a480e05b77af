/* JSON merge patch (RFC 7386) over jansson values: the wire format of the DIFF protocol
 * (shinnytech/diff). The server keeps, per session, the tree the client has already seen and
 * answers a peek_message with rtn_data.data = [merge_patch_diff(seen, now)]; the client folds
 * the list into its mirror with merge_patch_apply_all. Because a diff is computed from the
 * snapshot, not from a queue of events, a client always converges to the true state.
 *
 * Conventions shared by every function here:
 * - Arguments are borrowed (jansson's usual rule): no function steals a reference it is given,
 *   and every json_t * returned is a new reference the caller must json_decref.
 * - NULL (or -1) means failure: a jansson allocation failed or an argument was invalid. Every
 *   allocation is checked, and a failure leaks nothing.
 * - Patch values are deep-copied into the target, never shared, so later in-place patches of the
 *   target cannot reach back into the patch (or the other way round).
 * - Object keys are handled with their lengths, so keys holding "\u0000" work.
 * - Recursion follows the nesting of the values: depth is bounded by jansson's parser limit for
 *   parsed input, and by the (shallow, about 5 levels) tree shape for DIFF trees. */
#ifndef QAEX_PROTO_MERGE_PATCH_H
#define QAEX_PROTO_MERGE_PATCH_H

#include <jansson.h>
#include <stdbool.h>

/* Applies one merge patch, RFC 7386 section 2:
 * - patch is an object: its members are merged into target recursively; a member whose value
 *   is null deletes that member; if target is not an object (or is NULL) it is first replaced by
 *   an empty object. When target is an object it is modified IN PLACE (so are objects nested in
 *   it, even ones the caller shares elsewhere: copy first if that matters), and the result is
 *   target itself with one more reference.
 * - patch is anything else (array, scalar, null): the result is a deep copy of patch; target is
 *   left untouched. Arrays are never merged, only replaced.
 * Typical use, replacing the caller's reference:
 *     json_t *next = merge_patch_apply(root, patch);
 *     if (!next) ...;  json_decref(root);  root = next;
 * Returns NULL if patch is NULL or an allocation failed. On failure target is still the caller's,
 * valid and consistent, but may be partly patched: each member holds either its old or its new
 * value (a merge is not atomic; deep-copy target first if you need rollback).
 * Precondition: patch shares no node with target (it may be iterated while target changes). */
json_t *merge_patch_apply(json_t *target, const json_t *patch);

/* Applies a JSON array of patches in order, as DIFF's rtn_data.data prescribes. *target is
 * replaced by the new root (the old reference is released when the root changes); *target may
 * be NULL, which the first object patch turns into an object. Returns 0 on success, -1 if
 * target is NULL, patch_list is not an array (then *target is untouched), or an allocation
 * failed (then the patches before the failing one are applied and the failing one may be
 * partly applied; *target stays valid and owned by the caller). */
int merge_patch_apply_all(json_t **target, const json_t *patch_list);

/* Computes a merge patch P such that merge_patch_apply(copy of from, P) equals to:
 * - both objects: members of from missing in to become null, equal members are omitted,
 *   changed scalars and arrays are replaced whole, objects on both sides recurse (and are
 *   omitted when nothing below them changed), new members are copied.
 * - to is not an object: P is a deep copy of to (the only patch RFC 7386 allows there).
 * - from is not an object (or NULL, e.g. a session's first snapshot): P is a copy of to.
 * "No change" is an empty object {} (test with merge_patch_is_empty), never NULL, so that NULL
 * unambiguously reports an allocation failure (or a NULL to).
 * Null members: RFC 7386 cannot write a member whose value is null (null means delete), so a
 * null member of to is treated as absent: P deletes it if from has the key, and the result is
 * to with its null object members removed. DIFF trees never hold nulls, so nothing is lost;
 * nulls inside arrays are values like any other and survive. from and to are not modified. */
json_t *merge_patch_diff(const json_t *from, const json_t *to);

/* True when patch is the empty object: the "no change" answer of merge_patch_diff, and a no-op
 * on any object target (DIFF roots are always objects). The server holds a peek_message while
 * this is true. */
bool merge_patch_is_empty(const json_t *patch);

#endif
