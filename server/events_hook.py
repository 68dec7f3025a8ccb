"""The outbox hook of the posts and comments writes: does nothing until the outbox module is merged."""

from __future__ import annotations

import asyncpg


async def emit_event(conn: asyncpg.Connection, type_: str, data: dict, request_id: str | None) -> None:
    """Record event `type_` with `data` in the transactional outbox, on `conn`, inside the open transaction.

    MERGE (lead): wire this to the outbox's emit (server/outbox.py) once it lands; the callers already
    pass the writer's connection inside its transaction, so the event commits or rolls back with the change.
    """
    return None
