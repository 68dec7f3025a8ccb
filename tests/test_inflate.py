"""Compressed request bodies: gzip and deflate inflated up to the body limit, anything else refused."""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest

from server.errors import MalformedJson, PayloadTooLarge, UnsupportedMediaType
from server.inflate import inflate

BODY = orjson.dumps({"email": "zip@example.com", "username": "zipper", "password": "correct horse"})


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize("encoding, raw", [
    ("gzip", gzip.compress(BODY)),
    ("x-gzip", gzip.compress(BODY)),
    (" GZIP ", gzip.compress(BODY)),
    ("deflate", zlib.compress(BODY)),  # RFC 9110's deflate: a zlib stream
    ("deflate", _raw_deflate(BODY)),  # what some clients send instead
    ("gzip", gzip.compress(BODY[:20]) + gzip.compress(BODY[20:])),  # two members
    ("identity", BODY),
])
def test_accepted_encodings_give_the_body_back(encoding, raw):
    assert inflate(raw, encoding, 1024) == BODY


@pytest.mark.parametrize("encoding, raw, error", [
    ("gzip", gzip.compress(b"x" * 1025), PayloadTooLarge),  # one byte over the limit, inflated
    ("gzip", gzip.compress(b"x" * 600) * 2, PayloadTooLarge),  # members add up
    ("deflate", zlib.compress(b"\0" * 10**7), PayloadTooLarge),
    ("gzip", b"not gzip at all", MalformedJson),
    ("gzip", gzip.compress(BODY)[:-12], MalformedJson),  # truncated
    ("gzip", gzip.compress(b"") * 17, MalformedJson),  # more members than MAX_MEMBERS
    ("br", b"\x0b\x02\x80{}\x03", UnsupportedMediaType),
    ("gzip, br", gzip.compress(BODY), UnsupportedMediaType),  # stacked codings are not supported
])
def test_refused_bodies(encoding, raw, error):
    with pytest.raises(error):
        inflate(raw, encoding, 1024)


def test_a_415_names_what_is_accepted():
    with pytest.raises(UnsupportedMediaType) as caught:
        inflate(b"", "zstd", 1024)
    assert caught.value.headers == {"Accept-Encoding": "gzip, deflate"}


async def test_a_gzip_body_through_the_app(client):
    response = await client.post("/api/users", data=gzip.compress(BODY),
                                 headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status == 201, await response.text()
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = b"".join(bomb.compress(bytes(1 << 20)) for _ in range(64)) + bomb.flush()  # 64 MiB of zeros
    response = await client.post("/api/users", data=data,
                                 headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "PAYLOAD_TOO_LARGE"
