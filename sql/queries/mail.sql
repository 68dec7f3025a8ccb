-- The mail consumers: who receives what, and their idempotency keys (one per event and recipient).

-- name: welcome_recipient
SELECT email::text AS email, username, coalesce(nullif(display_name, ''), username) AS name
FROM users
WHERE id = $1 AND disabled_at IS NULL

-- name: comment_recipient
-- The post's author, unless they wrote the comment themselves or their account is disabled.
SELECT pa.email::text AS email, pa.username, coalesce(nullif(pa.display_name, ''), pa.username) AS name,
       p.id AS post_id, p.title, c.body,
       coalesce(nullif(ca.display_name, ''), ca.username) AS commenter
FROM comments c
JOIN posts p ON p.id = c.post_id
JOIN users pa ON pa.id = p.author_id
JOIN users ca ON ca.id = c.author_id
WHERE c.id = $1 AND pa.id <> c.author_id AND pa.disabled_at IS NULL

-- name: claim_mail_key
-- Inside the transaction that stays open while the message is sent: NULL when the key exists (the
-- mail went out before); a concurrent sender of the same key waits here until this one commits.
INSERT INTO mail_sent (event_id, recipient, consumer, message_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
RETURNING true
