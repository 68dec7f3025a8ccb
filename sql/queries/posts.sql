-- Posts. Every read is one statement and PostgreSQL builds its JSON (the api_* functions of migration
-- 0003, which the planner inlines), returned as text that goes straight into the response body.
--
-- Lists are newest first by (created_at DESC, id DESC). Each list statement answers one row:
--   total            the exact count of the whole list, read from the counters the triggers keep
--   data             the page's items, a JSON array
--   more             whether another item follows the page (one more key than the page is read)
--   last_created_at, last_id   the sort key of the page's last item, for nextCursor
-- Three statements per list, never `$n IS NULL OR ...`, so that each has one plan:
--   _first   the first page: $1 limit, then the filters
--   _page    page mode past the first page: $1 limit, $2 offset (rows to skip), then the filters
--   _after   cursor mode: $1 limit, $2, $3 the sort key after which to start, then the filters
-- Shape of each: the page's keys come from one index in list order, at most 101 of them (`limit` is at
-- most 100; the extra key says whether more follow), and a window run condition (n <= $1 + 1) stops
-- the scan when the page is read; then each item is built by a subquery on its primary key, a nested
-- loop by construction whatever the row estimates. Page mode first finds the key at the offset (`start`:
-- an index-only scan of at most 10,000 entries, page x limit being at most that), then reads on from it.
--
-- Plans are made once per connection. asyncpg prepares every statement, and PostgreSQL keeps a generic
-- plan only when it costs no more than the plans made for the actual values; otherwise it plans again
-- on every call (about 0.3 ms here, more than the rest of the read). So nothing the planner could peek
-- at differs between calls, and every row estimate that decides the plan is a constant: the LIMIT is
-- the constant 101, and offsets, cursor keys and author ids reach the plan through one-row sub-selects,
-- which the planner treats alike for every value. (A LIMIT or OFFSET that is a parameter is estimated at
-- 10% of the rows, a guess that also differs between plan shapes: a parallel sort of the whole table
-- looked cheaper than the index once its rows were multiplied by the per-item subqueries; `start`
-- returns one row whatever its plan, so its guess cannot leak.)
-- tests/test_posts_sql.py checks that each read runs on its generic plan; docs/query-plans.md shows them.

-- name: get_post
-- One post with its author, tags, exact comment count and its 10 newest comments with their authors.
-- Authors and tag names are looked up one by one by primary key (sub-selects), which is what a handful
-- of rows wants whatever the planner's costs for small tables.
SELECT json_build_object(
           'id', p.id, 'title', p.title, 'createdAt', api_ts(p.created_at), 'updatedAt', api_ts(p.updated_at),
           'author', (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
           'tags', (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
           'commentCount', coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0),
           'body', p.body,
           'comments', (SELECT coalesce(json_agg(json_build_object(
                                 'id', c.id, 'body', c.body, 'createdAt', api_ts(c.created_at),
                                 'author', (SELECT api_author(u.id, u.username, u.display_name) FROM users u
                                            WHERE u.id = c.author_id))
                            ORDER BY c.created_at DESC, c.id DESC), '[]')
                        FROM (SELECT id, author_id, body, created_at FROM comments WHERE post_id = p.id
                              ORDER BY created_at DESC, id DESC LIMIT 10) c))::text
FROM posts p
WHERE p.id = $1

-- name: list_posts_first
SELECT (SELECT sum(post_count) FROM post_total_shards)::bigint AS total, l.*
FROM (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at,
                   (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT id, created_at FROM posts
                ORDER BY created_at DESC, id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l

-- name: list_posts_page
-- `start`: the key at the offset, found by an index scan that stops there; the page reads on from it.
WITH start AS MATERIALIZED (
    SELECT created_at, id FROM posts
    ORDER BY created_at DESC, id DESC OFFSET (SELECT $2::bigint) LIMIT 1
)
SELECT (SELECT sum(post_count) FROM post_total_shards)::bigint AS total, l.*
FROM (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at,
                   (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT id, created_at FROM posts
                WHERE (created_at, id) <= ((SELECT created_at FROM start), (SELECT id FROM start))
                ORDER BY created_at DESC, id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l

-- name: list_posts_after
SELECT (SELECT sum(post_count) FROM post_total_shards)::bigint AS total, l.*
FROM (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at,
                   (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT id, created_at FROM posts
                WHERE (created_at, id) < ((SELECT $2::timestamptz), (SELECT $3::bigint))
                ORDER BY created_at DESC, id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l

-- name: list_posts_by_author_first
-- An author's posts, whether or not their account is still active.
SELECT coalesce((SELECT post_count FROM author_post_counts WHERE author_id = $2), 0) AS total, l.*
FROM (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at,
                   (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT id, created_at FROM posts WHERE author_id = (SELECT $2::bigint)
                ORDER BY created_at DESC, id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l

-- name: list_posts_by_author_page
-- `start`: the key at the offset, found by an index scan that stops there; the page reads on from it.
WITH start AS MATERIALIZED (
    SELECT created_at, id FROM posts WHERE author_id = (SELECT $3::bigint)
    ORDER BY created_at DESC, id DESC OFFSET (SELECT $2::bigint) LIMIT 1
)
SELECT coalesce((SELECT post_count FROM author_post_counts WHERE author_id = $3), 0) AS total, l.*
FROM (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at,
                   (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT id, created_at FROM posts WHERE author_id = (SELECT $3::bigint)
                  AND (created_at, id) <= ((SELECT created_at FROM start), (SELECT id FROM start))
                ORDER BY created_at DESC, id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l

-- name: list_posts_by_author_after
SELECT coalesce((SELECT post_count FROM author_post_counts WHERE author_id = $4), 0) AS total, l.*
FROM (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at,
                   (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT id, created_at FROM posts WHERE author_id = (SELECT $4::bigint)
                  AND (created_at, id) < ((SELECT $2::timestamptz), (SELECT $3::bigint))
                ORDER BY created_at DESC, id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l

-- name: list_posts_by_tag_first
-- A tag's posts in the order of post_tags' copy of the post's created_at; an unknown tag is an empty list.
SELECT coalesce((SELECT post_count FROM tags WHERE name = $2), 0) AS total, l.*
FROM (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at,
                   (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT post_id AS id, post_created_at AS created_at FROM post_tags
                WHERE tag_id = (SELECT id FROM tags WHERE name = $2)
                ORDER BY post_created_at DESC, post_id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l

-- name: list_posts_by_tag_page
-- `start`: the key at the offset, found by an index scan that stops there; the page reads on from it.
WITH start AS MATERIALIZED (
    SELECT post_created_at AS created_at, post_id AS id FROM post_tags
    WHERE tag_id = (SELECT id FROM tags WHERE name = $3)
    ORDER BY post_created_at DESC, post_id DESC OFFSET (SELECT $2::bigint) LIMIT 1
)
SELECT coalesce((SELECT post_count FROM tags WHERE name = $3), 0) AS total, l.*
FROM (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at,
                   (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT post_id AS id, post_created_at AS created_at FROM post_tags
                WHERE tag_id = (SELECT id FROM tags WHERE name = $3)
                  AND (post_created_at, post_id) <= ((SELECT created_at FROM start), (SELECT id FROM start))
                ORDER BY post_created_at DESC, post_id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l

-- name: list_posts_by_tag_after
SELECT coalesce((SELECT post_count FROM tags WHERE name = $4), 0) AS total, l.*
FROM (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at,
                   (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT post_id AS id, post_created_at AS created_at FROM post_tags
                WHERE tag_id = (SELECT id FROM tags WHERE name = $4)
                  AND (post_created_at, post_id) < ((SELECT $2::timestamptz), (SELECT $3::bigint))
                ORDER BY post_created_at DESC, post_id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l

-- name: list_posts_by_author_tag_first
-- An author's posts with a tag.
SELECT coalesce((SELECT post_count FROM author_tag_post_counts
                 WHERE author_id = $2 AND tag_id = (SELECT id FROM tags WHERE name = $3)), 0) AS total, l.*
FROM (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at,
                   (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT post_id AS id, post_created_at AS created_at FROM post_tags
                WHERE post_author_id = (SELECT $2::bigint) AND tag_id = (SELECT id FROM tags WHERE name = $3)
                ORDER BY post_created_at DESC, post_id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l

-- name: list_posts_by_author_tag_page
-- `start`: the key at the offset, found by an index scan that stops there; the page reads on from it.
WITH start AS MATERIALIZED (
    SELECT post_created_at AS created_at, post_id AS id FROM post_tags
    WHERE post_author_id = (SELECT $3::bigint) AND tag_id = (SELECT id FROM tags WHERE name = $4)
    ORDER BY post_created_at DESC, post_id DESC OFFSET (SELECT $2::bigint) LIMIT 1
)
SELECT coalesce((SELECT post_count FROM author_tag_post_counts
                 WHERE author_id = $3 AND tag_id = (SELECT id FROM tags WHERE name = $4)), 0) AS total, l.*
FROM (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at,
                   (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT post_id AS id, post_created_at AS created_at FROM post_tags
                WHERE post_author_id = (SELECT $3::bigint) AND tag_id = (SELECT id FROM tags WHERE name = $4)
                  AND (post_created_at, post_id) <= ((SELECT created_at FROM start), (SELECT id FROM start))
                ORDER BY post_created_at DESC, post_id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l

-- name: list_posts_by_author_tag_after
SELECT coalesce((SELECT post_count FROM author_tag_post_counts
                 WHERE author_id = $4 AND tag_id = (SELECT id FROM tags WHERE name = $5)), 0) AS total, l.*
FROM (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at,
                   (SELECT api_author(u.id, u.username, u.display_name) FROM users u WHERE u.id = p.author_id),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]')::text AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT post_id AS id, post_created_at AS created_at FROM post_tags
                WHERE post_author_id = (SELECT $4::bigint) AND tag_id = (SELECT id FROM tags WHERE name = $5)
                  AND (post_created_at, post_id) < ((SELECT $2::timestamptz), (SELECT $3::bigint))
                ORDER BY post_created_at DESC, post_id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l

-- name: user_posts_first
-- GET /api/users/{id}/posts: the user's public view and a page of their posts, as one JSON object
-- {user, posts}; no row when the user is unknown or deleted. The user id comes after the paging parameters.
SELECT coalesce(c.post_count, 0) AS total,
       json_build_object('user', json_build_object('id', u.id, 'username', u.username,
                                                   'displayName', coalesce(u.display_name, ''),
                                                   'bio', coalesce(u.bio, ''), 'createdAt', api_ts(u.created_at)),
                         'posts', l.data)::text AS data,
       l.more, l.last_created_at, l.last_id
FROM users u
LEFT JOIN author_post_counts c ON c.author_id = u.id
CROSS JOIN LATERAL (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at, api_author(u.id, u.username, u.display_name),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]') AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT id, created_at FROM posts WHERE author_id = u.id
                ORDER BY created_at DESC, id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l
WHERE u.id = $2 AND u.disabled_at IS NULL

-- name: user_posts_page
-- `start`: the key at the offset, found by an index scan that stops there; the page reads on from it.
WITH start AS MATERIALIZED (
    SELECT created_at, id FROM posts WHERE author_id = (SELECT $3::bigint)
    ORDER BY created_at DESC, id DESC OFFSET (SELECT $2::bigint) LIMIT 1
)
SELECT coalesce(c.post_count, 0) AS total,
       json_build_object('user', json_build_object('id', u.id, 'username', u.username,
                                                   'displayName', coalesce(u.display_name, ''),
                                                   'bio', coalesce(u.bio, ''), 'createdAt', api_ts(u.created_at)),
                         'posts', l.data)::text AS data,
       l.more, l.last_created_at, l.last_id
FROM users u
LEFT JOIN author_post_counts c ON c.author_id = u.id
CROSS JOIN LATERAL (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at, api_author(u.id, u.username, u.display_name),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]') AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT id, created_at FROM posts WHERE author_id = u.id
                  AND (created_at, id) <= ((SELECT created_at FROM start), (SELECT id FROM start))
                ORDER BY created_at DESC, id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l
WHERE u.id = $3 AND u.disabled_at IS NULL


-- name: user_posts_after
SELECT coalesce(c.post_count, 0) AS total,
       json_build_object('user', json_build_object('id', u.id, 'username', u.username,
                                                   'displayName', coalesce(u.display_name, ''),
                                                   'bio', coalesce(u.bio, ''), 'createdAt', api_ts(u.created_at)),
                         'posts', l.data)::text AS data,
       l.more, l.last_created_at, l.last_id
FROM users u
LEFT JOIN author_post_counts c ON c.author_id = u.id
CROSS JOIN LATERAL (
    SELECT coalesce(json_agg((SELECT api_post_summary(
                   p.id, p.title, p.created_at, p.updated_at, api_author(u.id, u.username, u.display_name),
                   (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id) t),
                   coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))
               FROM posts p WHERE p.id = k.id)
               ORDER BY k.n) FILTER (WHERE k.n <= $1), '[]') AS data,
           count(*) > $1 AS more,
           min(k.created_at) FILTER (WHERE k.n = $1) AS last_created_at,
           min(k.id) FILTER (WHERE k.n = $1) AS last_id
    FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
          FROM (SELECT id, created_at FROM posts WHERE author_id = u.id
                  AND (created_at, id) < ((SELECT $2::timestamptz), (SELECT $3::bigint))
                ORDER BY created_at DESC, id DESC LIMIT 101) s) k
    WHERE k.n <= $1 + 1
) l
WHERE u.id = $4 AND u.disabled_at IS NULL

-- Writes ------------------------------------------------------------------------------------------------

-- name: post_author
-- Who may change a post: its author (or an admin).
SELECT author_id FROM posts WHERE id = $1

-- name: insert_post
-- The post and its tags ($4, normalised names that upsert_tags has just made sure exist), answered as
-- GET /api/posts/{id} will show it. post_tags rows go in tag id order: the lock order of migration 0003.
WITH p AS (
    INSERT INTO posts (author_id, title, body) VALUES ($1, $2, $3)
    RETURNING id, author_id, title, body, created_at, updated_at
), linked AS (
    INSERT INTO post_tags (post_id, tag_id)
    SELECT p.id, t.id FROM p, tags t WHERE t.name = ANY($4::text[]) ORDER BY t.id
    RETURNING tag_id
)
SELECT p.id,
       json_build_object(
           'id', p.id, 'title', p.title, 'createdAt', api_ts(p.created_at), 'updatedAt', api_ts(p.updated_at),
           'author', api_author(u.id, u.username, u.display_name),
           'tags', (SELECT coalesce(json_agg(t.name ORDER BY t.name), '[]')
                    FROM linked l JOIN tags t ON t.id = l.tag_id),
           'commentCount', 0,
           'body', p.body,
           'comments', '[]'::json)::text AS data
FROM p
JOIN users u ON u.id = p.author_id

-- name: update_post
-- NULL leaves a field as it is (the API refuses null as a value); $4 false (an empty PATCH) keeps
-- updated_at too. Locks the post's row first, as every writer of a post does (migration 0003).
UPDATE posts
SET title = coalesce($2, title), body = coalesce($3, body),
    updated_at = CASE WHEN $4 THEN now() ELSE updated_at END
WHERE id = $1
RETURNING id

-- name: lock_post_links
-- Before a PATCH replaces a post's tags: its links, in the lock order of migration 0003 (after the post's
-- row, before tags rows), as a plain DELETE of them would lock them.
SELECT tag_id FROM post_tags WHERE post_id = $1 ORDER BY tag_id FOR UPDATE

-- name: replace_post_tags
-- A PATCH's new tag set $2 (names that exist): the old and the new tag rows are locked in id order
-- first (an unlink and a link are two trigger runs; two PATCHes swapping tags would otherwise lock
-- them crosswise), then the tags no longer wanted are unlinked and the new ones linked.
WITH locked AS (
    SELECT id, name FROM tags
    WHERE id IN (SELECT tag_id FROM post_tags WHERE post_id = $1) OR name = ANY($2::text[])
    ORDER BY id
    FOR NO KEY UPDATE
), wanted AS (
    SELECT id FROM locked WHERE name = ANY($2::text[])
), unlinked AS (
    DELETE FROM post_tags WHERE post_id = $1 AND tag_id NOT IN (SELECT id FROM wanted)
)
INSERT INTO post_tags (post_id, tag_id)
SELECT $1, id FROM wanted ORDER BY id
ON CONFLICT DO NOTHING

-- name: delete_post
-- Its comments and tag links go with it (ON DELETE CASCADE); the triggers keep every count.
DELETE FROM posts WHERE id = $1 RETURNING id
