/* Users: the people who log in. A user owns accounts (account.user_id); the password is kept
 * only as a slow-KDF hash computed before the command reaches the engine, so the engine stays
 * deterministic and a journal never holds a password. */
#ifndef QAEX_USER_H
#define QAEX_USER_H

#include "engine/types.h"

#define QAEX_HASH_LEN 128 /* a PHC string (argon2id) and its NUL */
#define QAEX_EMAIL_LEN 128
#define QAEX_PHONE_LEN 32

typedef enum user_role { ROLE_USER = 0, ROLE_ADMIN = 1 } user_role;

typedef struct user {
    char user_id[QAEX_ID_LEN]; /* a UUID */
    char username[QAEX_NAME_LEN];
    char email[QAEX_EMAIL_LEN];
    char phone[QAEX_PHONE_LEN];
    char password_hash[QAEX_HASH_LEN];
    user_role role;
    int64_t created_ns;
} user;

const char *user_role_name(user_role r); /* "user" | "admin" */

#endif
