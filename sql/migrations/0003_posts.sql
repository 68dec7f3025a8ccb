-- Posts, comments and tags: the counters behind exact totals, the keyset indexes the reads walk, and the
-- JSON helpers the reads build their answers with.
--
-- Counters. Totals and counts must be exact and must not cost a count(*) per request, whoever writes:
-- the API, outside loaders inserting rows one by one or COPYing millions, TRUNCATE. So the database keeps
-- them itself, with triggers on the core tables:
--   post_stats.comment_count           a post's comments (a narrow table of its own, not a column of
--                                      posts: see the lock order)
--   tags.post_count                    a tag's posts (its index serves GET /api/tags)
--   author_post_counts                 an author's posts
--   author_tag_post_counts             an author's posts with a tag (the ?author=&tag= filter)
--   post_total_shards                  all posts, in 16 rows summed at read time: one global row would
--                                      make every post create and delete wait for the one before it
-- Inserts and deletes are counted by statement-level triggers over transition tables, so a bulk COPY
-- costs one grouped update per statement, not one per row. Deletes of posts are counted BEFORE each row
-- (see the lock order below); rare moves (a comment to another post, a post to another author) by row
-- triggers whose WHEN clause makes them free for every other UPDATE.
--
-- Lock order. Row locks are taken in the order a plain statement on the core tables takes them, so that
-- the API's transactions cannot deadlock with each other, nor with outside writers' single statements:
--   a post's row -> its author's counter row -> a shard of the total -> the post's post_tags and
--   comments rows -> post_stats rows -> tags rows, by id -> (author, tag) counter rows, by key.
-- (A post delete locks the post, counts it BEFORE the row goes, cascades to its links and comments, and
-- the statement triggers of those cascades fire last, at the end of the outer statement. Deleting a
-- comment or a link locks that row, then its counters. This is why a comment's count is not a column of
-- posts: a comment delete would then lock its post after the comment, the reverse of a post delete.)
-- Every multi-row counter update locks its rows in key order. Outside writers' multi-statement
-- transactions can still meet the API in another order; PostgreSQL then aborts one of the two, and the
-- API runs its write again (server/retry.py). Counts stay exact either way: an aborted write counts nothing.
--
-- post_tags carries a copy of its post's created_at and author_id (kept by triggers from posts, whatever
-- a writer supplies), so a tag's posts come newest first straight from an index, with no sort of all of
-- a popular tag's posts.

-- Writers wait while the counters are filled from the rows already there, so none is missed or counted twice.
LOCK TABLE posts, comments, tags, post_tags IN SHARE ROW EXCLUSIVE MODE;

-- JSON helpers (SQL functions of one expression: the planner inlines them) ----------------------------

-- RFC 3339 in UTC exactly as orjson's OPT_UTC_Z prints a datetime: microseconds only when not zero.
CREATE FUNCTION api_ts(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT replace(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '.000000Z', 'Z')
$$;

-- An author as posts and comments show it: {id, username, displayName}.
CREATE FUNCTION api_author(id bigint, username text, display_name text) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT json_build_object('id', id, 'username', username, 'displayName', coalesce(display_name, ''))
$$;

-- A post summary: {id, title, createdAt, updatedAt, author, tags, commentCount}.
CREATE FUNCTION api_post_summary(id bigint, title text, created_at timestamptz, updated_at timestamptz,
                                 author json, tags json, comment_count bigint) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT json_build_object('id', id, 'title', title, 'createdAt', api_ts(created_at),
                             'updatedAt', api_ts(updated_at), 'author', author, 'tags', tags,
                             'commentCount', comment_count)
$$;

-- A comment: {id, postId, body, createdAt, author}.
CREATE FUNCTION api_comment(id bigint, post_id bigint, body text, created_at timestamptz, author json) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT json_build_object('id', id, 'postId', post_id, 'body', body, 'createdAt', api_ts(created_at),
                             'author', author)
$$;

-- Counter columns and tables ------------------------------------------------------------------------

ALTER TABLE tags ADD COLUMN post_count bigint NOT NULL DEFAULT 0;
ALTER TABLE post_tags ADD COLUMN post_created_at timestamptz, ADD COLUMN post_author_id bigint;

-- A post with no comments may have no row; a deleted post's row goes with it (posts_deleted below).
-- No foreign key: the cascades of a post delete would otherwise lock this row before the comments.
CREATE TABLE post_stats (
    post_id       bigint PRIMARY KEY,
    comment_count bigint NOT NULL
) WITH (fillfactor = 80);  -- room for HOT updates: comment_count is in no index

CREATE TABLE author_post_counts (
    author_id  bigint PRIMARY KEY,
    post_count bigint NOT NULL
) WITH (fillfactor = 80);

CREATE TABLE author_tag_post_counts (
    author_id  bigint NOT NULL,
    tag_id     bigint NOT NULL,
    post_count bigint NOT NULL,
    PRIMARY KEY (author_id, tag_id)
) WITH (fillfactor = 80);

-- 16 shards: concurrent writers on different connections (the shard is the backend's pid modulo 16)
-- rarely share a row; a read sums 16 rows on one page.
CREATE TABLE post_total_shards (
    shard      smallint PRIMARY KEY CHECK (shard BETWEEN 0 AND 15),
    post_count bigint NOT NULL
) WITH (fillfactor = 50);

-- Filled from the rows already there (the tables are locked above).
INSERT INTO post_stats SELECT post_id, count(*) FROM comments GROUP BY post_id;
UPDATE tags t SET post_count = c.n
FROM (SELECT tag_id, count(*) AS n FROM post_tags GROUP BY tag_id) c WHERE t.id = c.tag_id;
UPDATE post_tags pt SET post_created_at = p.created_at, post_author_id = p.author_id
FROM posts p WHERE p.id = pt.post_id;
ALTER TABLE post_tags ALTER COLUMN post_created_at SET NOT NULL, ALTER COLUMN post_author_id SET NOT NULL;
INSERT INTO author_post_counts SELECT author_id, count(*) FROM posts GROUP BY author_id;
INSERT INTO author_tag_post_counts SELECT post_author_id, tag_id, count(*) FROM post_tags GROUP BY 1, 2;
INSERT INTO post_total_shards
SELECT s, CASE WHEN s = 0 THEN (SELECT count(*) FROM posts) ELSE 0 END FROM generate_series(0, 15) s;

-- Indexes the reads walk -------------------------------------------------------------------------------

-- A tag's posts and an author's posts with a tag, newest first (the keyset of every post list).
CREATE INDEX post_tags_tag_created_idx ON post_tags (tag_id, post_created_at DESC, post_id DESC);
CREATE INDEX post_tags_author_tag_created_idx
    ON post_tags (post_author_id, tag_id, post_created_at DESC, post_id DESC);
-- GET /api/tags: most used first, then by name; unused tags are not listed.
CREATE INDEX tags_post_count_idx ON tags (post_count DESC, name) WHERE post_count > 0;

-- posts: author counts and the total -----------------------------------------------------------------

CREATE FUNCTION posts_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM new_posts) THEN
        RETURN NULL;
    END IF;
    INSERT INTO author_post_counts AS c (author_id, post_count)
    SELECT author_id, count(*) FROM new_posts GROUP BY author_id ORDER BY author_id
    ON CONFLICT (author_id) DO UPDATE SET post_count = c.post_count + excluded.post_count;
    UPDATE post_total_shards SET post_count = post_count + (SELECT count(*) FROM new_posts)
    WHERE shard = pg_backend_pid() % 16;
    RETURN NULL;
END
$$;
CREATE TRIGGER posts_count_insert AFTER INSERT ON posts REFERENCING NEW TABLE AS new_posts
FOR EACH STATEMENT EXECUTE FUNCTION posts_count_insert();

-- Counted BEFORE each row goes, so a delete locks the author's row and a shard right after the post, in
-- the order a create takes them, before the cascades reach the post's links, comments and tags. (A bulk
-- delete of posts pays a row trigger per post; bulk deletes are rare, bulk inserts are not.) The row is
-- already locked when this runs; a row deleted or changed by another writer meanwhile is re-checked
-- first, so a row counted here is a row deleted.
CREATE FUNCTION posts_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE author_post_counts SET post_count = post_count - 1 WHERE author_id = OLD.author_id;
    UPDATE post_total_shards SET post_count = post_count - 1 WHERE shard = pg_backend_pid() % 16;
    RETURN OLD;
END
$$;
CREATE TRIGGER posts_count_delete BEFORE DELETE ON posts
FOR EACH ROW EXECUTE FUNCTION posts_count_delete();

-- The deleted posts' comment counts go with them. (The statement triggers of the cascaded deletes of
-- comments and post_tags fire after this one, at the end of the outer statement; comments_count skips
-- posts that are gone.)
CREATE FUNCTION posts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM post_stats WHERE post_id IN (SELECT id FROM old_posts);
    RETURN NULL;
END
$$;
CREATE TRIGGER posts_deleted AFTER DELETE ON posts REFERENCING OLD TABLE AS old_posts
FOR EACH STATEMENT EXECUTE FUNCTION posts_deleted();

-- A post given to another author, or re-dated, by an outside writer: move its count, refresh its copies.
CREATE FUNCTION posts_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.author_id <> OLD.author_id THEN
        PERFORM FROM author_post_counts WHERE author_id IN (OLD.author_id, NEW.author_id)
        ORDER BY author_id FOR NO KEY UPDATE;
        UPDATE author_post_counts SET post_count = post_count - 1 WHERE author_id = OLD.author_id;
        INSERT INTO author_post_counts AS c VALUES (NEW.author_id, 1)
        ON CONFLICT (author_id) DO UPDATE SET post_count = c.post_count + 1;
    END IF;
    UPDATE post_tags SET post_created_at = NEW.created_at, post_author_id = NEW.author_id
    WHERE post_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER posts_moved AFTER UPDATE ON posts FOR EACH ROW
WHEN (NEW.author_id IS DISTINCT FROM OLD.author_id OR NEW.created_at IS DISTINCT FROM OLD.created_at)
EXECUTE FUNCTION posts_moved();

CREATE FUNCTION posts_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE post_total_shards SET post_count = 0;
    TRUNCATE author_post_counts;
    RETURN NULL;
END
$$;
CREATE TRIGGER posts_count_truncate AFTER TRUNCATE ON posts
FOR EACH STATEMENT EXECUTE FUNCTION posts_count_truncate();

-- comments: post_stats.comment_count -----------------------------------------------------------------

-- A comment is inserted (or moved) only while its post is held by the foreign key check, so the post
-- exists and the upsert never makes a row for a deleted post. On delete, a post deleted with its
-- comments (the cascade) is skipped: posts_deleted removes its row. Otherwise the row exists (the comment
-- was counted), so the negative delta takes the UPDATE path. The upsert locks rows in post id order.
CREATE FUNCTION comments_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO post_stats AS s (post_id, comment_count)
        SELECT post_id, count(*) FROM changed GROUP BY post_id ORDER BY post_id
        ON CONFLICT (post_id) DO UPDATE SET comment_count = s.comment_count + excluded.comment_count;
    ELSE
        INSERT INTO post_stats AS s (post_id, comment_count)
        SELECT post_id, -count(*) FROM changed WHERE EXISTS (SELECT FROM posts WHERE id = post_id)
        GROUP BY post_id ORDER BY post_id
        ON CONFLICT (post_id) DO UPDATE SET comment_count = s.comment_count + excluded.comment_count;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER comments_count_insert AFTER INSERT ON comments REFERENCING NEW TABLE AS changed
FOR EACH STATEMENT EXECUTE FUNCTION comments_count();
CREATE TRIGGER comments_count_delete AFTER DELETE ON comments REFERENCING OLD TABLE AS changed
FOR EACH STATEMENT EXECUTE FUNCTION comments_count();

CREATE FUNCTION comments_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO post_stats AS s (post_id, comment_count)
    SELECT p, d FROM (VALUES (OLD.post_id, -1), (NEW.post_id, 1)) v (p, d) ORDER BY p
    ON CONFLICT (post_id) DO UPDATE SET comment_count = s.comment_count + excluded.comment_count;
    RETURN NULL;
END
$$;
CREATE TRIGGER comments_moved AFTER UPDATE ON comments FOR EACH ROW
WHEN (NEW.post_id IS DISTINCT FROM OLD.post_id) EXECUTE FUNCTION comments_moved();

CREATE FUNCTION comments_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE post_stats;
    RETURN NULL;
END
$$;
CREATE TRIGGER comments_count_truncate AFTER TRUNCATE ON comments
FOR EACH STATEMENT EXECUTE FUNCTION comments_count_truncate();

-- post_tags: the copies of the post's keys, tags.post_count, author_tag_post_counts ----------------------

-- Whatever a writer supplies, the copies come from the post. FOR SHARE holds the post's created_at and
-- author_id still until this row is committed, so a concurrent re-dating cannot miss it.
CREATE FUNCTION post_tags_copy_post() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT created_at, author_id INTO NEW.post_created_at, NEW.post_author_id
    FROM posts WHERE id = NEW.post_id FOR SHARE;
    IF NOT FOUND THEN
        RAISE foreign_key_violation USING
            MESSAGE = 'insert or update on table "post_tags" violates foreign key constraint "post_tags_post_id_fkey"',
            DETAIL = format('Key (post_id)=(%s) is not present in table "posts".', NEW.post_id);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER post_tags_copy_post_insert BEFORE INSERT ON post_tags
FOR EACH ROW EXECUTE FUNCTION post_tags_copy_post();
CREATE TRIGGER post_tags_copy_post_update BEFORE UPDATE ON post_tags FOR EACH ROW
WHEN (NEW.post_id IS DISTINCT FROM OLD.post_id OR NEW.post_created_at IS DISTINCT FROM OLD.post_created_at
      OR NEW.post_author_id IS DISTINCT FROM OLD.post_author_id)
EXECUTE FUNCTION post_tags_copy_post();

CREATE FUNCTION post_tags_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sign bigint := CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    PERFORM FROM tags WHERE id IN (SELECT tag_id FROM changed) ORDER BY id FOR NO KEY UPDATE;
    UPDATE tags t SET post_count = t.post_count + sign * d.n
    FROM (SELECT tag_id, count(*) AS n FROM changed GROUP BY tag_id) d WHERE t.id = d.tag_id;
    -- The rows exist for every counted pair, so a delete's negative delta always takes the UPDATE path;
    -- the upsert locks them in key order.
    INSERT INTO author_tag_post_counts AS c (author_id, tag_id, post_count)
    SELECT post_author_id, tag_id, sign * count(*) FROM changed GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (author_id, tag_id) DO UPDATE SET post_count = c.post_count + excluded.post_count;
    RETURN NULL;
END
$$;
CREATE TRIGGER post_tags_count_insert AFTER INSERT ON post_tags REFERENCING NEW TABLE AS changed
FOR EACH STATEMENT EXECUTE FUNCTION post_tags_count();
CREATE TRIGGER post_tags_count_delete AFTER DELETE ON post_tags REFERENCING OLD TABLE AS changed
FOR EACH STATEMENT EXECUTE FUNCTION post_tags_count();

CREATE FUNCTION post_tags_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM tags WHERE id IN (OLD.tag_id, NEW.tag_id) ORDER BY id FOR NO KEY UPDATE;
    UPDATE tags SET post_count = post_count - 1 WHERE id = OLD.tag_id;
    UPDATE tags SET post_count = post_count + 1 WHERE id = NEW.tag_id;
    INSERT INTO author_tag_post_counts AS c (author_id, tag_id, post_count)
    SELECT a, t, d FROM (VALUES (OLD.post_author_id, OLD.tag_id, -1), (NEW.post_author_id, NEW.tag_id, 1)) v (a, t, d)
    ORDER BY a, t
    ON CONFLICT (author_id, tag_id) DO UPDATE SET post_count = c.post_count + excluded.post_count;
    RETURN NULL;
END
$$;
CREATE TRIGGER post_tags_moved AFTER UPDATE ON post_tags FOR EACH ROW
WHEN (NEW.tag_id IS DISTINCT FROM OLD.tag_id OR NEW.post_author_id IS DISTINCT FROM OLD.post_author_id)
EXECUTE FUNCTION post_tags_moved();

CREATE FUNCTION post_tags_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tags SET post_count = 0 WHERE post_count <> 0;
    TRUNCATE author_tag_post_counts;
    RETURN NULL;
END
$$;
CREATE TRIGGER post_tags_count_truncate AFTER TRUNCATE ON post_tags
FOR EACH STATEMENT EXECUTE FUNCTION post_tags_count_truncate();
