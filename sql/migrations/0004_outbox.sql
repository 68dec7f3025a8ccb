-- The transactional outbox. An event row is written in the same transaction as the change that caused
-- it, with one delivery row per consumer subscribed to its type; workers claim delivery rows, so each
-- consumer succeeds, retries and dies independently of the others.

CREATE TABLE outbox_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type        text NOT NULL,
    data        jsonb NOT NULL,
    request_id  text NULL,
    occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_events_occurred_idx ON outbox_events (occurred_at);

CREATE TABLE outbox_deliveries (
    event_id        bigint NOT NULL REFERENCES outbox_events (id) ON DELETE CASCADE,
    consumer        text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    -- Counted when a worker claims the delivery, so a poison event that kills the worker still dies.
    attempts        integer NOT NULL DEFAULT 0,
    -- Pending: not before this time. A claim moves it forward by the lease, so a delivery whose worker
    -- died becomes claimable again when the lease runs out.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz NULL,
    PRIMARY KEY (event_id, consumer)
);
-- The claim: due pending deliveries, oldest first. Stays small however many events were delivered.
CREATE INDEX outbox_deliveries_due_idx ON outbox_deliveries (next_attempt_at, event_id) WHERE status = 'pending';
-- Backlog, dead letters and the admin's status filters only look at what is not delivered.
CREATE INDEX outbox_deliveries_open_idx ON outbox_deliveries (event_id, status) WHERE status <> 'delivered';

-- The mail consumers' own idempotency keys: one per event and recipient. A key is inserted in the
-- transaction that is open while the message is handed to the SMTP server, so a redelivered event, or
-- a second worker, finds it and sends nothing.
CREATE TABLE mail_sent (
    event_id   bigint NOT NULL,
    recipient  citext NOT NULL,
    consumer   text NOT NULL,
    message_id text NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, recipient)
);
CREATE INDEX mail_sent_sent_idx ON mail_sent (sent_at);
