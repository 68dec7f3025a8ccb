-- Comments. Reads are one statement each with their JSON built by PostgreSQL (see posts.sql).

-- name: get_comment
SELECT api_comment(c.id, c.post_id, c.body, c.created_at, api_author(u.id, u.username, u.display_name))::text
FROM comments c
JOIN users u ON u.id = c.author_id
WHERE c.id = $1

-- name: list_comments_first
-- A post's comments, newest first; no row when the post is unknown. The total is the post's
-- post_stats.comment_count (migration 0003's triggers). Paging parameters as in posts.sql, then the post id.
SELECT coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0) AS total, l.*
FROM posts p
CROSS JOIN LATERAL (
    SELECT coalesce(json_agg((SELECT api_comment(c.id, c.post_id, c.body, c.created_at,
                               (SELECT api_author(u.id, u.username, u.display_name) FROM users u
                                WHERE u.id = c.author_id))
               FROM comments c WHERE c.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT id, created_at FROM comments WHERE post_id = p.id
                ORDER BY created_at DESC, id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l
WHERE p.id = $2

-- name: list_comments_page
-- `start`: the key at the offset, found by an index scan that stops there; the page reads on from it.
WITH start AS MATERIALIZED (
    SELECT created_at, id FROM comments WHERE post_id = (SELECT $3::bigint)
    ORDER BY created_at DESC, id DESC OFFSET (SELECT $2::bigint) LIMIT 1
)
SELECT coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0) AS total, l.*
FROM posts p
CROSS JOIN LATERAL (
    SELECT coalesce(json_agg((SELECT api_comment(c.id, c.post_id, c.body, c.created_at,
                               (SELECT api_author(u.id, u.username, u.display_name) FROM users u
                                WHERE u.id = c.author_id))
               FROM comments c WHERE c.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT id, created_at FROM comments WHERE post_id = p.id
                  AND (created_at, id) <= ((SELECT created_at FROM start), (SELECT id FROM start))
                ORDER BY created_at DESC, id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l
WHERE p.id = $3

-- name: list_comments_after
SELECT coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0) AS total, l.*
FROM posts p
CROSS JOIN LATERAL (
    SELECT coalesce(json_agg((SELECT api_comment(c.id, c.post_id, c.body, c.created_at,
                               (SELECT api_author(u.id, u.username, u.display_name) FROM users u
                                WHERE u.id = c.author_id))
               FROM comments c WHERE c.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT id, created_at FROM comments WHERE post_id = p.id
                  AND (created_at, id) < ((SELECT $2::timestamptz), (SELECT $3::bigint))
                ORDER BY created_at DESC, id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l
WHERE p.id = $4

-- name: insert_comment
-- $1 post, $2 author, $3 body, $4 request id, $5 consumers of comment.created. An unknown post is a
-- foreign key violation (the API's 404).
-- One statement, so one round trip and its own transaction: the comment and its comment.created event
-- with a delivery per consumer (as outbox.emit writes them; the handler wakes the workers after the
-- commit). Without BEGIN and COMMIT a comment costs the API a third of the round trips.
WITH c AS (
    INSERT INTO comments (post_id, author_id, body) VALUES ($1, $2, $3)
    RETURNING id, post_id, author_id, body, created_at
), e AS (
    INSERT INTO outbox_events (type, data, request_id)
    SELECT 'comment.created', jsonb_build_object('commentId', c.id, 'postId', c.post_id, 'authorId', c.author_id), $4
    FROM c
    RETURNING id
), d AS (
    INSERT INTO outbox_deliveries (event_id, consumer)
    SELECT e.id, consumer FROM e, unnest($5::text[]) AS consumer
)
SELECT c.id, api_comment(c.id, c.post_id, c.body, c.created_at, api_author(u.id, u.username, u.display_name))::text AS data
FROM c
JOIN users u ON u.id = c.author_id
CROSS JOIN e

-- name: comment_written
-- $1 request id, $2 post, $3 author, $4 body: the comment insert_comment wrote for this request, if it
-- committed (asked after a lost connection, server/db.py write_once); as insert_comment returns it. The
-- request id may come from the client, so the comment must match as well. Recent events only (their index).
SELECT c.id, api_comment(c.id, c.post_id, c.body, c.created_at, api_author(u.id, u.username, u.display_name))::text AS data
FROM outbox_events e
JOIN comments c ON c.id = (e.data ->> 'commentId')::bigint
JOIN users u ON u.id = c.author_id
WHERE e.occurred_at > now() - interval '10 minutes' AND e.type = 'comment.created' AND e.request_id = $1
  AND c.post_id = $2 AND c.author_id = $3 AND c.body = $4
ORDER BY c.id DESC
LIMIT 1

-- name: comment_owners
-- Who may delete a comment: its author, its post's author (or an admin).
SELECT c.post_id, c.author_id, p.author_id AS post_author_id
FROM comments c
JOIN posts p ON p.id = c.post_id
WHERE c.id = $1

-- name: delete_comment
-- The comment's row, then its post's counter (migration 0003's lock order, as any plain delete).
DELETE FROM comments WHERE id = $1 RETURNING id
