"""The outbox's consumers: the Redis Stream `events`, the welcome email and the new-comment email."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import time

import aiosmtplib
import asyncpg
import redis.asyncio as redis

from .config import Config
from .db import Q, transaction
from .mail import make_transport, message_id, render
from .outbox import Delivery

STREAM = "events"
EXCERPT = 500  # characters of a comment quoted in its email

# Failures that concern the connection, not one message: the rest of the batch fails at once with the
# same error instead of each waiting for its own timeout.
_CONNECTION_ERRORS = (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
                      aiosmtplib.SMTPAuthenticationError, OSError, asyncio.TimeoutError)


@dataclasses.dataclass
class Outcome:
    delivered: list[int] = dataclasses.field(default_factory=list)
    failed: list[tuple[Delivery, str]] = dataclasses.field(default_factory=list)
    released: list[int] = dataclasses.field(default_factory=list)  # not attempted: the lease ran short


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().removesuffix(":")


class StreamConsumer:
    """XADD of every event to the stream, trimmed to about `maxlen` entries; `id` lets readers deduplicate."""

    name = "stream"

    def __init__(self, client: redis.Redis, maxlen: int) -> None:
        self.client, self.maxlen = client, maxlen

    async def deliver(self, deliveries: list[Delivery], deadline: float) -> Outcome:
        outcome = Outcome()
        try:
            # One round trip for the batch; each entry still succeeds or fails on its own.
            async with self.client.pipeline(transaction=False) as pipe:
                for d in deliveries:
                    pipe.xadd(STREAM, {"id": d.id, "type": d.type, "payload": d.payload_json()},
                              maxlen=self.maxlen, approximate=True)
                results = await pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError, asyncio.TimeoutError) as exc:
            outcome.failed = [(d, describe(exc)) for d in deliveries]
            return outcome
        for d, result in zip(deliveries, results):
            if isinstance(result, Exception):
                outcome.failed.append((d, describe(result)))
            else:
                outcome.delivered.append(d.id)
        return outcome


class MailConsumer:
    """Sends one email per delivery (or none), guarded by the idempotency key (event, recipient)."""

    name = template = ""

    def __init__(self, pool: asyncpg.Pool, config: Config) -> None:
        self.pool, self.sender = pool, config.mail_from
        self.transport = make_transport(config)  # one per consumer: an SMTP connection is not shared

    async def values(self, delivery: Delivery) -> dict | None:
        """The template's values, `email` included; None when there is nobody to write to."""
        raise NotImplementedError

    async def deliver(self, deliveries: list[Delivery], deadline: float) -> Outcome:
        outcome = Outcome()
        try:
            for i, d in enumerate(deliveries):
                if time.monotonic() > deadline:
                    outcome.released += [r.id for r in deliveries[i:]]
                    break
                try:
                    await self.send(d)
                except _CONNECTION_ERRORS as exc:
                    outcome.failed += [(r, describe(exc)) for r in deliveries[i:]]
                    break
                except Exception as exc:  # noqa: BLE001 - one message's failure is that delivery's error
                    outcome.failed.append((d, describe(exc)))
                else:
                    outcome.delivered.append(d.id)
        finally:
            await self.transport.close()
        return outcome

    async def send(self, delivery: Delivery) -> None:
        values = await self.values(delivery)
        if values is None:
            return
        recipient = values["email"]
        mid = message_id(delivery.id, recipient, self.sender)
        message = render(self.template, values, sender=self.sender, message_id=mid,
                         recipient=email.utils.formataddr((values["name"], recipient)))
        # The key is inserted in the transaction that is open while the server takes the message: a
        # failed send rolls it back (the retry sends), a committed key means sent (a redelivery skips).
        # Only a crash between the server's "250 OK" and the commit can repeat a message.
        async with transaction(self.pool) as conn:
            if await conn.fetchval(Q.claim_mail_key, delivery.id, recipient, self.name, mid):
                await self.transport.send(message)


class WelcomeMail(MailConsumer):
    """user.created {userId}: the welcome email, to the address the user has at delivery time."""

    name, template = "welcome_mail", "welcome"

    async def values(self, delivery: Delivery) -> dict | None:
        row = await self.pool.fetchrow(Q.welcome_recipient, int(delivery.data["userId"]))
        return dict(row) if row else None  # a user disabled before delivery gets no welcome


class CommentMail(MailConsumer):
    """comment.created {commentId, postId, authorId}: tells the post's author, unless they wrote it."""

    name, template = "comment_mail", "comment"

    async def values(self, delivery: Delivery) -> dict | None:
        row = await self.pool.fetchrow(Q.comment_recipient, int(delivery.data["commentId"]))
        if row is None:  # their own comment, or the comment or post is gone
            return None
        body = row["body"]
        excerpt = body if len(body) <= EXCERPT else body[:EXCERPT].rstrip() + " …"
        return {**dict(row), "excerpt": excerpt}


def default_consumers(config: Config, pool: asyncpg.Pool, client: redis.Redis) -> dict:
    consumers = [StreamConsumer(client, config.stream_maxlen), WelcomeMail(pool, config), CommentMail(pool, config)]
    return {c.name: c for c in consumers}
