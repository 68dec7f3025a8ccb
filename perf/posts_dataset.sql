-- A synthetic data set for the query plans of docs/query-plans.md: :posts posts, 10 comments per post on
-- average, a user per 20 posts, up to 1,000 tags. Plain generate_series INSERTs through the triggers of
-- migration 0003, so the counters are kept exactly as in production. Skewed on purpose: a few authors
-- write much, a few tags are on most posts, post 1 has ~10 x sqrt(:posts) comments; created_at is random
-- over three years and unrelated to the ids.
--   psql "$DSN" -v posts=1000000 -f perf/posts_dataset.sql
\set ON_ERROR_STOP on
\timing on
SELECT setseed(0.42);
SELECT greatest(:posts / 20, 10) AS users, least(1000, greatest(:posts / 10, 10)) AS tags \gset

INSERT INTO users (email, username, password_hash, display_name, bio, created_at)
SELECT 'user' || g || '@example.com', 'user_' || g, 'x', 'User ' || g, '', '2020-01-01'::timestamptz + g * interval '1 minute'
FROM generate_series(1, :users) g;

INSERT INTO tags (name) SELECT 'tag-' || g FROM generate_series(1, :tags) g;

INSERT INTO posts (author_id, title, body, created_at, updated_at)
SELECT 1 + floor(:users * random() ^ 2)::bigint, 'Post title number ' || g, repeat('Some words of a post body. ', 16), t, t
FROM (SELECT g, '2021-01-01'::timestamptz + random() * interval '3 years' AS t FROM generate_series(1, :posts) g) s;

-- 0 to 4 tags a post (2 on average), popular tags more often.
INSERT INTO post_tags (post_id, tag_id)
SELECT p, 1 + floor(:tags * random() ^ 3)::bigint FROM generate_series(1, :posts) p, generate_series(1, 4) k
WHERE random() < 0.5
ON CONFLICT DO NOTHING;

-- Ten comments a post on average, in batches of a million rows (one counter update per batch).
DO $$
BEGIN
    FOR b IN 0 .. (SELECT (count(*) * 10 - 1) / 1000000 FROM posts) LOOP
        INSERT INTO comments (post_id, author_id, body, created_at)
        SELECT 1 + floor(n * random() ^ 2)::bigint, 1 + floor(u * random())::bigint,
               'A comment, somewhat longer than a word or two.', '2021-01-01'::timestamptz + random() * interval '3 years'
        FROM (SELECT count(*) AS n FROM posts) p, (SELECT count(*) AS u FROM users) us,
             generate_series(1, least(1000000, n * 10 - b * 1000000)) g;
        COMMIT;
    END LOOP;
END
$$;

-- With synchronous_commit off (the throwaway cluster), a row's commit may not be flushed yet, and VACUUM
-- then cannot mark its page all-visible; a checkpoint first lets it, so index-only scans are index-only.
CHECKPOINT;
VACUUM ANALYZE;
SELECT (SELECT count(*) FROM posts) AS posts, (SELECT count(*) FROM comments) AS comments,
       (SELECT count(*) FROM post_tags) AS post_tags, (SELECT count(*) FROM users) AS users,
       (SELECT count(*) FROM tags) AS tags, pg_size_pretty(pg_database_size(current_database())) AS size;
