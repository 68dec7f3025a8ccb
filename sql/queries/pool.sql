-- name: backend_ended
-- $1 the server process of a lost connection: true once it has ended (ended now, waiting up to 5 s, or
-- gone already), so nothing it was running can still commit; false if it is still running after the wait.
SELECT pg_terminate_backend($1, 5000) OR NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)
