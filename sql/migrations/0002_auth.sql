-- Sessions: one per login, each a family of refresh tokens. Tokens are stored only as SHA-256 hashes.

CREATE TABLE sessions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        bigint NOT NULL REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz NULL,
    revoked_reason text NULL CHECK (revoked_reason IN ('logout', 'reuse', 'password', 'disabled', 'deleted'))
);
CREATE INDEX sessions_user_live_idx ON sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id bigint NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz NULL  -- set when rotated; presenting it again is reuse
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
