"""The script batcher's lean Redis connection (server/resp.py), against real Redis servers."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import redis.asyncio as redis
from redis.exceptions import NoScriptError, ResponseError

from server.resp import RespConnection, encode


def test_encode_is_resp():
    assert encode("EVALSHA", b"ab", 2, "é") == b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n$2\r\n\xc3\xa9\r\n"
    assert encode("GET", "") == b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n"


async def test_replies_come_back_in_order_with_errors_as_exceptions(redis_server):
    connection = RespConnection(redis_server.url)
    try:
        first, second = await asyncio.gather(
            connection.send([encode("SET", "resp:a", "1"), encode("INCR", "resp:a"), encode("GET", "resp:missing")]),
            connection.send([encode("EVALSHA", "0" * 40, 0), encode("INCR", "resp:a"), encode("NOSUCHCOMMAND")]))
        assert first == [b"OK", 2, None]
        assert isinstance(second[0], NoScriptError) and second[1] == 3
        assert isinstance(second[2], ResponseError) and not isinstance(second[2], NoScriptError)
        assert await connection.send([encode("EVAL", "return {1, 'x', false}", 0)]) == [[1, b"x", None]]
    finally:
        connection.close()


@pytest.fixture
async def own(servers):
    """A Redis server of the test's own and a connection to it, closed afterwards."""
    server = servers()
    connection = RespConnection(server.url)
    yield server, connection
    connection.close()


async def test_a_lost_connection_fails_its_batch_and_the_next_one_reconnects(own):
    server, connection = own
    assert await connection.send([encode("PING")]) == [b"PONG"]
    waiting = asyncio.ensure_future(connection.send([encode("BLPOP", "resp:never", 5)]))
    await asyncio.sleep(0.05)
    client = redis.Redis.from_url(server.url)
    await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    await client.aclose()
    with pytest.raises(ConnectionError):  # the batch in flight fails
        await waiting
    assert await connection.send([encode("PING")]) == [b"PONG"]  # the next one reconnects
    server.stop()
    with pytest.raises(OSError):  # refused: nothing listens
        await connection.send([encode("PING")])


async def test_a_timed_out_batch_drops_the_connection(own):
    server, connection = own
    assert await connection.send([encode("PING")]) == [b"PONG"]
    os.kill(server.proc.pid, signal.SIGSTOP)  # Redis hangs
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await connection.send([encode("PING")])
    connection.reset()
    os.kill(server.proc.pid, signal.SIGCONT)
    assert await connection.send([encode("SET", "resp:b", "2"), encode("GET", "resp:b")]) == [b"OK", b"2"]


async def test_auth_and_database_come_from_the_url(servers):
    server = servers()
    admin = redis.Redis.from_url(server.url)
    try:
        await admin.execute_command("ACL", "SETUSER", "app", "on", ">s3cret", "~*", "+@all")
        connection = RespConnection(f"redis://app:s3cret@127.0.0.1:{server.port}/3")
        assert await connection.send([encode("SET", "resp:c", "in three")]) == [b"OK"]
        connection.close()
        three = redis.Redis.from_url(f"redis://127.0.0.1:{server.port}/3")
        assert await three.get("resp:c") == b"in three"
        assert await admin.get("resp:c") is None  # database 0
        await three.aclose()
        wrong = RespConnection(f"redis://app:wrong@127.0.0.1:{server.port}/0")
        with pytest.raises(ResponseError):
            await wrong.send([encode("PING")])
        wrong.close()
    finally:
        await admin.aclose()


def test_only_redis_urls_are_supported():
    assert RespConnection.supports("redis://h:1/0") and RespConnection.supports("rediss://h:1/0")
    assert not RespConnection.supports("unix:///tmp/redis.sock")
    with pytest.raises(ValueError):
        RespConnection("unix:///tmp/redis.sock")
