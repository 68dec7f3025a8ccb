-- The outbox: emitting inside the writer's transaction, claiming, recording outcomes, dead letters,
-- the admin's listing and the numbers the metrics publish.

-- name: emit_event
-- One round trip: the event and a delivery row per subscribed consumer ($4). The workers' wake-up
-- follows the commit (server/outbox.py wake()), never inside the transaction.
WITH e AS (
    INSERT INTO outbox_events (type, data, request_id) VALUES ($1, $2, $3)
    RETURNING id
), d AS (
    INSERT INTO outbox_deliveries (event_id, consumer)
    SELECT e.id, c FROM e, unnest($4::text[]) AS c
)
SELECT e.id FROM e

-- name: claim_deliveries
-- Due deliveries, oldest first; SKIP LOCKED lets any number of workers claim side by side. The claim
-- counts an attempt and reserves the row for the lease ($2 seconds); it commits at once, so no
-- connection or lock is held while consumers talk to SMTP or Redis.
WITH picked AS (
    SELECT event_id, consumer
    FROM outbox_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, event_id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = now() + $2 * interval '1 second', updated_at = now()
FROM picked p, outbox_events e
WHERE d.event_id = p.event_id AND d.consumer = p.consumer AND e.id = d.event_id
RETURNING e.id, e.type, e.data, e.request_id, e.occurred_at, d.consumer, d.attempts

-- name: mark_delivered
UPDATE outbox_deliveries
SET status = 'delivered', delivered_at = now(), updated_at = now()
WHERE consumer = $1 AND event_id = ANY($2::bigint[]) AND status = 'pending'

-- name: mark_failed
-- $2 is the attempt limit: a delivery that used its last attempt becomes a dead letter.
UPDATE outbox_deliveries d
SET status = CASE WHEN d.attempts >= $2 THEN 'dead' ELSE 'pending' END,
    next_attempt_at = now() + f.delay * interval '1 second', last_error = f.error, updated_at = now()
FROM unnest($3::bigint[], $4::text[], $5::float8[]) AS f(event_id, error, delay)
WHERE d.consumer = $1 AND d.event_id = f.event_id AND d.status = 'pending'
RETURNING d.event_id, d.status

-- name: release_deliveries
-- Claimed but not attempted (the lease was running out): back in the queue, the attempt not counted.
UPDATE outbox_deliveries
SET attempts = attempts - 1, next_attempt_at = now(), updated_at = now()
WHERE consumer = $1 AND event_id = ANY($2::bigint[]) AND status = 'pending'

-- name: hasten_deliveries
-- Deliveries that failed while their consumer's endpoint was unreachable, due again now that it answers
-- ($2 event ids, $3 the attempts each had then). One claimed since (its attempts moved on) is left alone.
UPDATE outbox_deliveries d
SET next_attempt_at = now(), updated_at = now()
FROM unnest($2::bigint[], $3::int[]) AS f(event_id, attempts)
WHERE d.consumer = $1 AND d.event_id = f.event_id AND d.attempts = f.attempts
  AND d.status = 'pending' AND d.next_attempt_at > now()

-- name: next_due_in
-- Seconds until the next pending delivery is due (negative: due now); NULL when nothing is pending.
SELECT extract(epoch FROM min(next_attempt_at) - clock_timestamp())::float8
FROM outbox_deliveries
WHERE status = 'pending'

-- name: redeliver_event
UPDATE outbox_deliveries
SET status = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now()
WHERE event_id = $1 AND status = 'dead'
RETURNING consumer

-- name: redeliver_all
UPDATE outbox_deliveries
SET status = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now()
WHERE status = 'dead'
RETURNING event_id

-- name: notify_outbox
SELECT pg_notify('outbox', '')

-- name: event_exists
SELECT EXISTS (SELECT 1 FROM outbox_events WHERE id = $1)

-- name: outbox_stats
SELECT count(DISTINCT d.event_id) FILTER (WHERE d.status = 'pending') AS backlog,
       coalesce(extract(epoch FROM now() - min(e.occurred_at) FILTER (WHERE d.status = 'pending')), 0)::float8
           AS oldest_pending_age,
       count(DISTINCT d.event_id) FILTER (WHERE d.status = 'dead') AS dead_letters
FROM outbox_deliveries d
JOIN outbox_events e ON e.id = d.event_id
WHERE d.status <> 'delivered'

-- name: prune_events
-- Events older than $1 days whose every delivery is done; at most $2 per call, so one call stays short.
DELETE FROM outbox_events
WHERE id IN (
    SELECT e.id FROM outbox_events e
    WHERE e.occurred_at < now() - $1 * interval '1 day'
      AND NOT EXISTS (SELECT 1 FROM outbox_deliveries d WHERE d.event_id = e.id AND d.status <> 'delivered')
    ORDER BY e.id
    LIMIT $2)

-- name: prune_mail_keys
-- A key is needed as long as its event could be delivered again, i.e. while the event exists.
DELETE FROM mail_sent m
WHERE m.sent_at < now() - $1 * interval '1 day'
  AND NOT EXISTS (SELECT 1 FROM outbox_events e WHERE e.id = m.event_id)

-- name: event_deliveries
SELECT event_id, consumer, status, attempts, last_error, next_attempt_at, delivered_at, updated_at
FROM outbox_deliveries
WHERE event_id = ANY($1::bigint[])
ORDER BY event_id, consumer

-- name: get_event
SELECT id, type, data, request_id, occurred_at FROM outbox_events WHERE id = $1

-- The admin's listing, newest first, one statement per status filter. $1 is the page size, $2 the
-- id the page starts below (the cursor, or the largest bigint for the first page); `total` counts the
-- whole filtered set. An event is dead when any delivery is, pending when any is and none is dead,
-- delivered when all are.

-- name: list_events_all
SELECT t.total, e.id, e.type, e.data, e.request_id, e.occurred_at
FROM (SELECT count(*) AS total FROM outbox_events) t
LEFT JOIN LATERAL (
    SELECT id, type, data, request_id, occurred_at FROM outbox_events
    WHERE id < $2
    ORDER BY id DESC
    LIMIT $1
) e ON true

-- name: list_events_dead
SELECT t.total, e.id, e.type, e.data, e.request_id, e.occurred_at
FROM (SELECT count(DISTINCT event_id) AS total FROM outbox_deliveries WHERE status = 'dead') t
LEFT JOIN LATERAL (
    SELECT id, type, data, request_id, occurred_at FROM outbox_events
    WHERE id < $2 AND id IN (SELECT event_id FROM outbox_deliveries WHERE status = 'dead')
    ORDER BY id DESC
    LIMIT $1
) e ON true

-- name: list_events_pending
SELECT t.total, e.id, e.type, e.data, e.request_id, e.occurred_at
FROM (
    SELECT count(DISTINCT p.event_id) AS total FROM outbox_deliveries p
    WHERE p.status = 'pending'
      AND NOT EXISTS (SELECT 1 FROM outbox_deliveries x WHERE x.event_id = p.event_id AND x.status = 'dead')
) t
LEFT JOIN LATERAL (
    SELECT id, type, data, request_id, occurred_at FROM outbox_events ev
    WHERE id < $2
      AND id IN (SELECT event_id FROM outbox_deliveries WHERE status = 'pending')
      AND NOT EXISTS (SELECT 1 FROM outbox_deliveries x WHERE x.event_id = ev.id AND x.status = 'dead')
    ORDER BY id DESC
    LIMIT $1
) e ON true

-- name: list_events_delivered
SELECT t.total, e.id, e.type, e.data, e.request_id, e.occurred_at
FROM (
    SELECT count(*) AS total FROM outbox_events ev
    WHERE NOT EXISTS (SELECT 1 FROM outbox_deliveries x WHERE x.event_id = ev.id AND x.status <> 'delivered')
) t
LEFT JOIN LATERAL (
    SELECT id, type, data, request_id, occurred_at FROM outbox_events ev
    WHERE id < $2
      AND NOT EXISTS (SELECT 1 FROM outbox_deliveries x WHERE x.event_id = ev.id AND x.status <> 'delivered')
    ORDER BY id DESC
    LIMIT $1
) e ON true
