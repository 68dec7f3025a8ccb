-- tags.post_count without an index, so that the counter's updates are HOT.
--
-- Every new, retagged or deleted post updates its tags' post_count (migration 0003's triggers). With
-- tags_post_count_idx on that column no such update could be HOT: each one wrote a new version of the
-- tag's row and an entry in all three of its indexes, and the reads that look tags up by id (the tag names
-- of every post in every list) walked the dead versions until vacuum came. Measured under the perf kit's
-- mixed workload (perf/README.md): 1,000 to 1,800 dead tag rows beside 300 live ones within 20 s,
-- none of the updates HOT; without the index all of them HOT, and PostgreSQL's CPU per request 8 % lower.
--
-- The price: GET /api/tags scans the tags in use and keeps the top `limit` (a top-N sort) instead of
-- reading 50 index entries, 0.33 ms of PostgreSQL at 1,000 tags against 0.04 (docs/query-plans.md) and
-- linear in their number; its answer is cached and retired only by writes that link or unlink tags. A
-- counter table of its own beside `tags`, indexed, would keep both fast; not done yet.
--
-- fillfactor leaves room on each page for the next versions of its rows.

DROP INDEX tags_post_count_idx;
ALTER TABLE tags SET (fillfactor = 50);
