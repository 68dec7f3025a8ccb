"""Password hashing in a bounded thread pool; pure functions and no aiohttp (JWT lives in tokens.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures

import argon2
import bcrypt

# OWASP's argon2id recommendation (Password Storage Cheat Sheet): 19 MiB of memory, 2 passes, 1 lane.
HASHER = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16,
                               type=argon2.Type.ID)
# Verified against when the email is unknown, so that both failures cost the same time.
DUMMY_HASH = HASHER.hash("dummy password that matches nothing")


class HashQueueFull(RuntimeError):
    """More passwords are waiting to be hashed than the configured bound."""


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """True when `password` matches an argon2id (PHC) or bcrypt (modular crypt) hash."""
    if stored.startswith("$argon2"):
        try:
            return HASHER.verify(stored, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        secret = password.encode()[:72]  # what every bcrypt implementation before bcrypt 5 did
        try:
            return bcrypt.checkpw(secret, stored.encode())
        except ValueError:
            return False
    return False


def needs_rehash(stored: str) -> bool:
    """bcrypt, or argon2 with other parameters than ours: rehash after the next successful login."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return HASHER.check_needs_rehash(stored)
    except argon2.exceptions.InvalidHashError:
        return True


class PasswordPool:
    """Runs hashing off the event loop in `threads` threads with at most `queue` calls waiting.

    argon2-cffi and bcrypt release the GIL while hashing, so the threads use the cores in parallel.
    Past the bound a call raises HashQueueFull at once: a flood of logins is answered with fast 503s
    instead of an ever longer queue.
    """

    def __init__(self, threads: int, queue: int) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="password")
        self._limit = threads + queue
        self.in_use = 0

    async def _run(self, fn, *args):
        if self.in_use >= self._limit:
            raise HashQueueFull()
        self.in_use += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.in_use -= 1

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        return await self._run(verify_password, stored or DUMMY_HASH, password) and stored is not None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
