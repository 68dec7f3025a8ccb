-- name: backend_ended
-- $1 the server process of a lost connection: true once it has ended (ended now, waiting up to 5 s, or
-- gone already), so nothing it was running can still commit; false if it is still running after the wait.
SELECT pg_terminate_backend($1, 5000) OR NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)

-- name: notify
-- $1 a channel: what server/db.py Pool.notify sends after the commits it follows, outside any transaction.
SELECT pg_notify($1, '')
