-- Login, refresh-token rotation and sessions.

-- name: user_for_login
SELECT id, email::text, username, display_name, bio, role, created_at, updated_at, disabled_at, password_hash
FROM users
WHERE email = $1

-- name: update_password_hash
UPDATE users SET password_hash = $2 WHERE id = $1

-- name: insert_session
INSERT INTO sessions (user_id) VALUES ($1) RETURNING id

-- name: insert_refresh_token
INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))

-- name: lock_refresh_token
-- The row lock serialises concurrent refreshes of one token: the first spends it, the rest see it spent.
SELECT t.session_id, t.used_at, t.expires_at <= now() AS expired, s.revoked_at, u.id AS user_id, u.role,
       u.disabled_at
FROM refresh_tokens t
JOIN sessions s ON s.id = t.session_id
JOIN users u ON u.id = s.user_id
WHERE t.token_hash = $1
FOR UPDATE OF t

-- name: spend_refresh_token
UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1

-- name: user_by_id
SELECT id, email::text, username, display_name, bio, role, created_at, updated_at, disabled_at
FROM users
WHERE id = $1

-- name: revoke_session
UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL

-- name: revoke_session_of_token
UPDATE sessions SET revoked_at = now(), revoked_reason = 'logout'
WHERE id = (SELECT session_id FROM refresh_tokens WHERE token_hash = $1) AND revoked_at IS NULL

-- name: revoke_user_sessions
UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE user_id = $1 AND revoked_at IS NULL

-- name: revoke_other_sessions
UPDATE sessions SET revoked_at = now(), revoked_reason = 'password'
WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL
