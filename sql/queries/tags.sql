-- Tags. Names are normalised by the API before they reach these statements.

-- name: list_tags
-- Most used first, then by name; tags no post uses are left out. A top-N sort of the tags in use: no
-- index on post_count, so that its updates stay HOT (migration 0005).
SELECT coalesce(json_agg(json_build_object('name', name, 'postCount', post_count)
                         ORDER BY post_count DESC, name), '[]')::text
FROM (SELECT name, post_count FROM tags WHERE post_count > 0 ORDER BY post_count DESC, name LIMIT $1) t

-- name: upsert_tags
-- Tags are created on first use. Safe under concurrent creators: a name another transaction is
-- inserting makes this one wait for it, then skip it; once this statement returns, every name exists
-- (committed, or ours). Sorted names make concurrent creators wait in the same order.
INSERT INTO tags (name)
SELECT DISTINCT unnest($1::text[]) ORDER BY 1
ON CONFLICT (name) DO NOTHING
