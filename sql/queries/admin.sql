-- The admin's view of users. `role` and `q` (a case-insensitive prefix of username or email, with LIKE's
-- wildcards escaped by the caller) are optional filters: NULL means no filter.

-- name: admin_list_users_page
SELECT t.total, u.*
FROM (SELECT count(*) AS total FROM users
      WHERE ($3::text IS NULL OR role = $3)
        AND ($4::text IS NULL OR lower(username) LIKE $4 OR lower(email::text) LIKE $4)) t
LEFT JOIN LATERAL (
    SELECT id, email::text, username, coalesce(display_name, '') AS display_name, coalesce(bio, '') AS bio,
           role, created_at, updated_at, disabled_at
    FROM users
    WHERE ($3::text IS NULL OR role = $3)
      AND ($4::text IS NULL OR lower(username) LIKE $4 OR lower(email::text) LIKE $4)
    ORDER BY id
    LIMIT $1 OFFSET $2
) u ON true

-- name: admin_list_users_after
SELECT t.total, u.*
FROM (SELECT count(*) AS total FROM users
      WHERE ($3::text IS NULL OR role = $3)
        AND ($4::text IS NULL OR lower(username) LIKE $4 OR lower(email::text) LIKE $4)) t
LEFT JOIN LATERAL (
    SELECT id, email::text, username, coalesce(display_name, '') AS display_name, coalesce(bio, '') AS bio,
           role, created_at, updated_at, disabled_at
    FROM users
    WHERE id > $2
      AND ($3::text IS NULL OR role = $3)
      AND ($4::text IS NULL OR lower(username) LIKE $4 OR lower(email::text) LIKE $4)
    ORDER BY id
    LIMIT $1
) u ON true

-- name: admin_update_user
-- $2 role or NULL to keep; $3 true disables, false enables, NULL keeps; an empty PATCH keeps updated_at.
UPDATE users
SET role = coalesce($2, role),
    disabled_at = CASE WHEN $3::boolean IS NULL THEN disabled_at
                       WHEN $3 THEN coalesce(disabled_at, now())
                       ELSE NULL END,
    updated_at = CASE WHEN $2 IS NULL AND $3::boolean IS NULL THEN updated_at ELSE now() END
WHERE id = $1
RETURNING id, email::text, username, display_name, bio, role, created_at, updated_at, disabled_at

-- name: insert_admin
INSERT INTO users (email, username, password_hash, role) VALUES ($1, $2, $3, 'admin')
ON CONFLICT DO NOTHING
RETURNING id
