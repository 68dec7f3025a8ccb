-- Users. Public reads leave out disabled (and deleted) accounts; display_name and bio may be NULL when
-- an outside loader wrote the row, and read as ''.

-- name: insert_user
INSERT INTO users (email, username, password_hash, display_name, bio)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, email::text, username, display_name, bio, role, created_at, updated_at, disabled_at

-- name: get_user_public
SELECT id, username, coalesce(display_name, '') AS display_name, coalesce(bio, '') AS bio, created_at
FROM users
WHERE id = $1 AND disabled_at IS NULL

-- name: list_users_page
SELECT t.total, u.id, u.username, u.display_name, u.bio, u.created_at
FROM (SELECT count(*) AS total FROM users WHERE disabled_at IS NULL) t
LEFT JOIN LATERAL (
    SELECT id, username, coalesce(display_name, '') AS display_name, coalesce(bio, '') AS bio, created_at
    FROM users
    WHERE disabled_at IS NULL
    ORDER BY id
    LIMIT $1 OFFSET $2
) u ON true

-- name: list_users_after
SELECT t.total, u.id, u.username, u.display_name, u.bio, u.created_at
FROM (SELECT count(*) AS total FROM users WHERE disabled_at IS NULL) t
LEFT JOIN LATERAL (
    SELECT id, username, coalesce(display_name, '') AS display_name, coalesce(bio, '') AS bio, created_at
    FROM users
    WHERE disabled_at IS NULL AND id > $2
    ORDER BY id
    LIMIT $1
) u ON true

-- name: update_user
-- NULL leaves a field as it is (the API refuses null as a value, so NULL only means "not given"); an
-- empty PATCH keeps updated_at too, as a post's does.
UPDATE users
SET display_name = coalesce($2, display_name),
    bio = coalesce($3, bio),
    password_hash = coalesce($4, password_hash),
    updated_at = CASE WHEN coalesce($2, $3, $4) IS NULL THEN updated_at ELSE now() END
WHERE id = $1
RETURNING id, email::text, username, display_name, bio, role, created_at, updated_at, disabled_at

-- name: password_hash_of
SELECT password_hash FROM users WHERE id = $1

-- name: disable_user
UPDATE users SET disabled_at = now(), updated_at = now() WHERE id = $1 AND disabled_at IS NULL
RETURNING id
