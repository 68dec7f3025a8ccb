"""One frozen Config read once from the environment; secrets redacted in its repr."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A setting in the environment has a value that cannot be used."""


def redact_url(url: str | None) -> str | None:
    """The URL with its password replaced by `***`, for logs and reprs."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of the service. Field metadata names the environment variable and its meaning."""

    database_url: str | None = dataclasses.field(
        default=None, repr=False, metadata={"env": "DATABASE_URL", "doc": "PostgreSQL DSN; unset: embedded server under `var/postgres`"})
    redis_url: str | None = dataclasses.field(
        default=None, repr=False, metadata={"env": "REDIS_URL", "doc": "Redis URL; unset: embedded server under `var/redis`"})
    host: str = dataclasses.field(default="127.0.0.1", metadata={"env": "HOST", "doc": "listen address"})
    port: int = dataclasses.field(default=8080, metadata={"env": "PORT", "doc": "listen port"})
    workers: int = dataclasses.field(default=1, metadata={"env": "WORKERS", "doc": "API processes for `serve`"})
    log_level: str = dataclasses.field(default="info", metadata={"env": "LOG_LEVEL", "doc": "debug, info, warning or error"})
    log_format: str = dataclasses.field(
        default="", metadata={"env": "LOG_FORMAT", "doc": "`json` or `text`; unset: text when embedded, else json"})
    body_limit: int = dataclasses.field(
        default=1024 * 1024, metadata={"env": "BODY_LIMIT", "doc": "largest request body in bytes (413 beyond)"})
    # The pool is sized to the concurrency one process sustains: with fewer connections than requests
    # in flight, requests queue on acquire and tail latency explodes (FIELD-NOTES).
    pg_pool_min: int = dataclasses.field(default=4, metadata={"env": "PG_POOL_MIN", "doc": "PostgreSQL connections kept open per process"})
    pg_pool_max: int = dataclasses.field(default=32, metadata={"env": "PG_POOL_MAX", "doc": "PostgreSQL connections at most per process"})
    pg_command_timeout: float = dataclasses.field(
        default=10.0, metadata={"env": "PG_COMMAND_TIMEOUT", "doc": "seconds one statement may take on the client side"})
    redis_pool_max: int = dataclasses.field(default=64, metadata={"env": "REDIS_POOL_MAX", "doc": "Redis connections at most per process"})
    # Argon2id at OWASP's parameters costs ~20 ms of one core; two threads keep both cores busy and the
    # queue bound turns a flood of logins into fast 503s instead of a growing backlog.
    hash_threads: int = dataclasses.field(default=2, metadata={"env": "HASH_THREADS", "doc": "threads that hash passwords"})
    hash_queue: int = dataclasses.field(
        default=32, metadata={"env": "HASH_QUEUE", "doc": "password hashes waiting at most before sign-up and login answer 503"})
    var_dir: str = dataclasses.field(default="var", metadata={"env": "VAR_DIR", "doc": "folder of embedded servers, keys and mail files"})
    # Tokens and sessions.
    jwt_issuer: str = dataclasses.field(default="blog-api", metadata={"env": "JWT_ISSUER", "doc": "`iss` of access tokens, checked on every verification"})
    jwt_audience: str = dataclasses.field(default="blog-api", metadata={"env": "JWT_AUDIENCE", "doc": "`aud` of access tokens, checked on every verification"})
    jwt_private_key: str | None = dataclasses.field(
        default=None, repr=False,
        metadata={"env": "JWT_PRIVATE_KEY", "doc": "PEM RSA private key(s); the last one signs, all verify"})
    jwt_private_key_file: str | None = dataclasses.field(
        default=None, metadata={"env": "JWT_PRIVATE_KEY_FILE", "doc": "file of PEM RSA private key(s), as JWT_PRIVATE_KEY"})
    jwt_public_keys_file: str | None = dataclasses.field(
        default=None, metadata={"env": "JWT_PUBLIC_KEYS_FILE", "doc": "file of PEM public keys that still verify (retired signing keys)"})
    access_token_ttl: int = dataclasses.field(default=900, metadata={"env": "ACCESS_TOKEN_TTL", "doc": "access token lifetime in seconds"})
    refresh_token_ttl: int = dataclasses.field(default=7 * 24 * 3600, metadata={"env": "REFRESH_TOKEN_TTL", "doc": "refresh token lifetime in seconds"})
    # Overload protection: past these bounds a request is answered 503 at once instead of queueing.
    max_in_flight: int = dataclasses.field(
        default=128, metadata={"env": "MAX_IN_FLIGHT", "doc": "requests handled at once per process; more get an immediate 503"})
    request_timeout: float = dataclasses.field(
        default=10.0, metadata={"env": "REQUEST_TIMEOUT", "doc": "seconds a request may take before it is answered 503"})
    pg_acquire_timeout: float = dataclasses.field(
        default=2.0, metadata={"env": "PG_ACQUIRE_TIMEOUT", "doc": "seconds a request waits for a PostgreSQL connection before a 503"})
    pg_statement_timeout: float = dataclasses.field(
        default=5.0, metadata={"env": "PG_STATEMENT_TIMEOUT", "doc": "seconds PostgreSQL lets one statement run (statement_timeout)"})
    # The response cache of public reads.
    cache_ttl: int = dataclasses.field(default=300, metadata={"env": "CACHE_TTL", "doc": "response cache lifetime in seconds"})
    cache_enabled: bool = dataclasses.field(
        default=True, metadata={"env": "CACHE_ENABLED", "doc": "`false` serves every read from PostgreSQL (ETags and 304s stay)"})
    # Events: the outbox, its worker, the Redis Stream and mail (issue 6). The backoff doubles from the
    # base to the cap, so 15 attempts span about two hours before an event becomes a dead letter.
    smtp_url: str | None = dataclasses.field(
        default=None, repr=False, metadata={"env": "SMTP_URL", "doc": "`smtp://user:pass@host:port` (`smtps://` for TLS; options in the Events section); unset: `.eml` files under `var/mail`"})
    mail_from: str = dataclasses.field(
        default="Blog <no-reply@localhost>", metadata={"env": "MAIL_FROM", "doc": "sender address of every email"})
    smtp_timeout: float = dataclasses.field(default=30.0, metadata={"env": "SMTP_TIMEOUT", "doc": "seconds an SMTP exchange may take"})
    outbox_batch_size: int = dataclasses.field(
        default=100, metadata={"env": "OUTBOX_BATCH_SIZE", "doc": "deliveries a worker claims at once"})
    outbox_max_attempts: int = dataclasses.field(
        default=15, metadata={"env": "OUTBOX_MAX_ATTEMPTS", "doc": "attempts before a delivery becomes a dead letter"})
    outbox_backoff_base: float = dataclasses.field(
        default=2.0, metadata={"env": "OUTBOX_BACKOFF_BASE", "doc": "seconds before the first retry; doubles each attempt, with jitter"})
    outbox_backoff_max: float = dataclasses.field(
        default=1800.0, metadata={"env": "OUTBOX_BACKOFF_MAX", "doc": "longest wait between two attempts in seconds"})
    outbox_lease: float = dataclasses.field(
        default=60.0, metadata={"env": "OUTBOX_LEASE", "doc": "seconds a claimed delivery stays reserved for its worker (a dead worker's deliveries return after it)"})
    outbox_poll_interval: float = dataclasses.field(
        default=5.0, metadata={"env": "OUTBOX_POLL_INTERVAL", "doc": "seconds between checks when no notification wakes the worker"})
    outbox_retention_days: int = dataclasses.field(
        default=7, metadata={"env": "OUTBOX_RETENTION_DAYS", "doc": "days delivered events are kept (0: for ever)"})
    stream_maxlen: int = dataclasses.field(
        default=100000, metadata={"env": "STREAM_MAXLEN", "doc": "approximate length the Redis Stream `events` is trimmed to"})
    worker_in_process: bool | None = dataclasses.field(
        default=None, metadata={"env": "WORKER_IN_PROCESS", "doc": "run the outbox worker inside `serve`; unset: only in the embedded mode"})
    # Rate limiting and Redis degradation (issue 5). A policy is `N/W`: N requests per window W
    # (`900s`, `15m`, `1h`, `1d`, or a bare unit like `m`). The Redis timeout bounds how long any request
    # waits on Redis (pool wait, connect, command together); after that many consecutive failures the
    # breaker stops asking Redis until a probe succeeds. The fallback keeps the per-process budgets while
    # Redis is away: one small entry per client, the least recently seen dropped past the size.
    rate_limit: str = dataclasses.field(
        default="100/15m", metadata={"env": "RATE_LIMIT", "doc": "default policy per client IP on every `/api/` request, `N/W`"})
    rate_limit_login: str = dataclasses.field(
        default="10/15m", metadata={"env": "RATE_LIMIT_LOGIN", "doc": "`POST /api/auth/login` policy, per client IP and per email"})
    rate_limit_enabled: bool = dataclasses.field(
        default=True, metadata={"env": "RATE_LIMIT_ENABLED", "doc": "`false` turns the limiter and its header fields off"})
    trusted_proxies: str = dataclasses.field(
        default="", metadata={"env": "TRUSTED_PROXIES", "doc": "comma-separated addresses or networks whose `X-Forwarded-For` is believed"})
    rate_limit_fallback_size: int = dataclasses.field(
        default=50_000, metadata={"env": "RATE_LIMIT_FALLBACK_SIZE", "doc": "clients tracked per process while Redis is unreachable"})
    redis_timeout: float = dataclasses.field(
        default=0.25, metadata={"env": "REDIS_TIMEOUT", "doc": "seconds a request waits on Redis at most"})
    redis_breaker_failures: int = dataclasses.field(
        default=3, metadata={"env": "REDIS_BREAKER_FAILURES", "doc": "consecutive Redis failures that open the circuit breaker"})
    redis_breaker_reset: float = dataclasses.field(
        default=2.0, metadata={"env": "REDIS_BREAKER_RESET", "doc": "seconds the breaker stays open before one probe tries Redis again"})
    # Operability: access log, metrics, CORS.
    access_log: bool = dataclasses.field(
        default=True, metadata={"env": "ACCESS_LOG", "doc": "one log line per request; `false` for load tests"})
    metrics_enabled: bool = dataclasses.field(
        default=True, metadata={"env": "METRICS_ENABLED", "doc": "count requests by route and status for `/metrics`"})
    cors_origins: str = dataclasses.field(
        default="", metadata={"env": "CORS_ORIGINS",
                              "doc": "comma-separated origins that browsers may call the API from (`*`: any); empty: no CORS"})
    prometheus_multiproc_dir: str | None = dataclasses.field(
        default=None, metadata={"env": "PROMETHEUS_MULTIPROC_DIR",
                                "doc": "folder where API processes share their metrics; unset: a temporary one when `WORKERS` > 1"})
    # Resilience (issue 9): slow clients, the graceful stop, the listen queue (server/protocol.py,
    # server/runner.py). The body deadline stays below REQUEST_TIMEOUT so that a slow client gets its 408
    # before the request deadline answers 503 for it.
    header_timeout: float = dataclasses.field(
        default=10.0, metadata={"env": "HEADER_TIMEOUT", "doc": "seconds a client has to send a request's line and headers from its first byte; then the connection is closed"})
    body_timeout: float = dataclasses.field(
        default=5.0, metadata={"env": "BODY_TIMEOUT", "doc": "seconds a client has to send a request's body once its headers are in; then 408 and the connection is closed"})
    shutdown_timeout: float = dataclasses.field(
        default=10.0, metadata={"env": "SHUTDOWN_TIMEOUT", "doc": "seconds a stopping process gives requests in flight before it cancels them"})
    listen_backlog: int = dataclasses.field(
        default=1024, metadata={"env": "LISTEN_BACKLOG", "doc": "connections the kernel queues before the process accepts them (at most net.core.somaxconn)"})

    @property
    def embedded(self) -> bool:
        """True when this process starts its own PostgreSQL or Redis."""
        return self.database_url is None or self.redis_url is None

    @property
    def runs_worker_in_process(self) -> bool:
        return self.embedded if self.worker_in_process is None else self.worker_in_process

    @property
    def effective_log_format(self) -> str:
        return self.log_format or ("text" if self.embedded else "json")

    @property
    def var_path(self) -> Path:
        return Path(self.var_dir).resolve()

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}
        shown["database_url"] = redact_url(self.database_url)
        shown["redis_url"] = redact_url(self.redis_url)
        shown["smtp_url"] = redact_url(self.smtp_url)
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Config:
        """Read every field's variable; unset or empty means the default. Raises ConfigError."""
        environ = os.environ if environ is None else environ
        values, problems = {}, []
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"], "").strip()
            if not raw:
                continue
            try:
                values[f.name] = _parse(f, raw)
            except ValueError as exc:
                problems.append(f"{f.metadata['env']}={raw!r}: {exc}")
        values.update(overrides)
        if problems:
            raise ConfigError("; ".join(problems))
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        """Cross-field rules; raises ConfigError naming the variables."""
        problems = []
        if self.log_level not in LOG_LEVELS:
            problems.append(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in ("", "json", "text"):
            problems.append("LOG_FORMAT must be json or text")
        if not 0 < self.port < 65536:
            problems.append("PORT must be 1-65535")
        if not 0 < self.pg_pool_min <= self.pg_pool_max:
            problems.append("PG_POOL_MIN must be positive and at most PG_POOL_MAX")
        for name in ("workers", "body_limit", "redis_pool_max", "hash_threads", "hash_queue", "access_token_ttl",
                     "refresh_token_ttl", "max_in_flight", "cache_ttl"):
            if getattr(self, name) < 1:
                problems.append(f"{name.upper()} must be positive")
        for name in ("request_timeout", "pg_acquire_timeout", "pg_statement_timeout", "pg_command_timeout",
                     "header_timeout", "body_timeout", "shutdown_timeout", "listen_backlog"):
            if getattr(self, name) <= 0:
                problems.append(f"{name.upper()} must be positive")
        problems += _check_events(self)
        problems += _check_rate_limits(self)
        if problems:
            raise ConfigError("; ".join(problems))


def _parse(f: dataclasses.Field, raw: str):
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    if kind.startswith("bool"):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    return raw


def _check_events(config: Config) -> list[str]:
    problems = []
    for name in ("smtp_timeout", "outbox_batch_size", "outbox_max_attempts", "outbox_backoff_base",
                 "outbox_backoff_max", "outbox_lease", "outbox_poll_interval", "stream_maxlen"):
        if getattr(config, name) <= 0:
            problems.append(f"{name.upper()} must be positive")
    if config.outbox_retention_days < 0:
        problems.append("OUTBOX_RETENTION_DAYS must be 0 or more")
    if config.smtp_url and urlsplit(config.smtp_url).scheme not in ("smtp", "smtps"):
        problems.append("SMTP_URL must start with smtp:// or smtps://")
    return problems


def _check_rate_limits(config: Config) -> list[str]:
    problems = []
    for name in ("rate_limit", "rate_limit_login"):
        try:
            parse_rate(getattr(config, name))
        except ValueError as exc:
            problems.append(f"{name.upper()}: {exc}")
    try:
        parse_networks(config.trusted_proxies)
    except ValueError as exc:
        problems.append(f"TRUSTED_PROXIES: {exc}")
    for name in ("rate_limit_fallback_size", "redis_breaker_failures"):
        if getattr(config, name) < 1:
            problems.append(f"{name.upper()} must be positive")
    for name in ("redis_timeout", "redis_breaker_reset"):
        if not getattr(config, name) > 0:
            problems.append(f"{name.upper()} must be a positive number of seconds")
    return problems


_RATE = re.compile(r"([0-9]+)/([0-9]*)([smhd]?)")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}


def parse_rate(text: str) -> tuple[int, int]:
    """`N/W` as (N requests, W seconds): `100/15m`, `10/900s`, `5/1h`, `60/m` (one minute), `3/30`."""
    match = _RATE.fullmatch(text.replace(" ", ""))
    if not match or (not match.group(2) and not match.group(3)):
        raise ValueError(f"{text!r} is not N/W, e.g. 100/15m")
    count, window = int(match.group(1)), int(match.group(2) or 1) * _UNIT[match.group(3)]
    # The limiter counts in whole microseconds, in doubles inside Redis's Lua: these bounds keep every
    # number it handles exact (below 2^53). A rate over one per microsecond (a load test's "no limit",
    # e.g. 10^9 per minute) is served at one per microsecond, which still keeps the documented bound.
    if not 1 <= count <= 10**12 or not 1 <= window <= 10**7:
        raise ValueError(f"{text!r} needs 1 to 10^12 requests per 1 s to 10^7 s")
    return count, window


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated addresses or CIDR networks (`10.0.0.1, 10.1.0.0/16, ::1`)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())
