/* The user registry of the engine (see user.h). */
#include "engine/engine_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define NS_USER_ID 1
#define NS_USERNAME 2

const char *user_role_name(user_role r) {
    return r == ROLE_ADMIN ? "admin" : "user";
}

static bool user_matches(const void *ctx, uint32_t slot) {
    const struct {
        const engine *e;
        const char *key;
        int ns;
    } *m = ctx;
    const user *u = &m->e->users[slot];
    return strcmp(m->ns == NS_USER_ID ? u->user_id : u->username, m->key) == 0;
}

static const user *find(const engine *e, int ns, const char *key) {
    struct {
        const engine *e;
        const char *key;
        int ns;
    } m = {e, key, ns};
    uint32_t slot = idmap_find(&e->user_map, idmap_hash_str((uint64_t)ns, key), user_matches, &m);
    return slot == SLOT_NONE ? NULL : &e->users[slot];
}

const user *engine_user_find(const engine *e, const char *user_id) {
    return user_id ? find(e, NS_USER_ID, user_id) : NULL;
}

const user *engine_user_find_by_name(const engine *e, const char *username) {
    return username ? find(e, NS_USERNAME, username) : NULL;
}

uint32_t engine_user_count(const engine *e) {
    return e->n_users;
}

const user *engine_user_at(const engine *e, uint32_t i) {
    return i < e->n_users ? &e->users[i] : NULL;
}

int users_add(engine *e, const user *u) {
    if (grow_array((void **)&e->users, &e->cap_users, e->n_users + 1, sizeof(user)) != 0) return -1;
    uint32_t slot = e->n_users;
    if (idmap_insert(&e->user_map, idmap_hash_str(NS_USER_ID, u->user_id), slot) != 0) return -1;
    if (idmap_insert(&e->user_map, idmap_hash_str(NS_USERNAME, u->username), slot) != 0) {
        idmap_remove(&e->user_map, idmap_hash_str(NS_USER_ID, u->user_id), slot);
        return -1;
    }
    e->users[slot] = *u;
    e->n_users++;
    return 0;
}

/* Letters, digits and . _ - @: names that read the same in a URL, a log and a token. */
static bool valid_username(const char *s) {
    if (s[0] == '\0') return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("._-@", *s)) return false;
    return true;
}

int users_register(engine *e, const command *cmd, engine_result *r) {
    const user *u = &cmd->u.user;
    if (!valid_username(u->username))
        return engine_fail(r, ERR_BAD_MESSAGE,
                           "username must be letters, digits, '.', '_', '-' or '@', got \"%s\"",
                           u->username);
    if (u->user_id[0] == '\0') return engine_fail(r, ERR_BAD_MESSAGE, "user_id must not be empty");
    if (u->password_hash[0] == '\0')
        return engine_fail(r, ERR_BAD_MESSAGE, "user %s has no password", u->username);
    if (u->email[0] && strchr(u->email, '@') == NULL)
        return engine_fail(r, ERR_BAD_MESSAGE, "email must contain '@', got \"%s\"", u->email);
    if (u->role != ROLE_USER && u->role != ROLE_ADMIN)
        return engine_fail(r, ERR_BAD_MESSAGE, "unknown role %d", (int)u->role);
    if (engine_user_find_by_name(e, u->username))
        return engine_fail(r, ERR_ACCOUNT_EXISTS, "username already taken: %s", u->username);
    if (engine_user_find(e, u->user_id))
        return engine_fail(r, ERR_ACCOUNT_EXISTS, "user id already taken: %s", u->user_id);
    user copy = *u;
    copy.created_ns = cmd->ts_ns;
    if (users_add(e, &copy) != 0)
        return engine_fail(r, ERR_INTERNAL, "out of memory registering %s", u->username);
    return QAEX_OK;
}
