"""Compressed request bodies (`Content-Encoding: gzip` or `deflate`), inflated no further than the limit.

aiohttp can inflate request bodies itself, but then a gzip bomb costs the process seconds of CPU even
when it is refused: aiohttp inflates as the body arrives, and after an early answer it still reads (and
inflates) the rest before it closes the connection. Measured on a 1 MB body of 1 GiB of zeros: 3 s of
one core, answered 413. The app therefore turns that off (`auto_decompress` in server/app.py) and a
handler inflates here: at most BODY_LIMIT + 1 bytes come out, about a millisecond, then 413.
"""

from __future__ import annotations

import zlib

from .errors import MalformedJson, PayloadTooLarge, UnsupportedMediaType

ACCEPTED = "gzip, deflate"  # what a 415 says in Accept-Encoding
MAX_MEMBERS = 16  # gzip members (concatenated streams) in one body at most


def inflate(raw: bytes, encoding: str, limit: int) -> bytes:
    """`raw` decoded per its Content-Encoding; 413 past `limit` bytes, 400 if it does not decode."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding in ("gzip", "x-gzip"):
        wbits = 31
    elif encoding == "deflate":
        # RFC 9110's deflate is a zlib stream; some clients send raw deflate (no header), as aiohttp allows.
        wbits = 15 if raw[:1] and raw[0] & 0x0F == 8 else -15
    else:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported",
                                   headers={"Accept-Encoding": ACCEPTED})
    out, rest = bytearray(), raw
    for _ in range(MAX_MEMBERS):
        decoder = zlib.decompressobj(wbits)
        try:
            out += decoder.decompress(rest, limit + 1 - len(out))
        except zlib.error:
            raise MalformedJson(f"The body is not valid {encoding} data") from None
        if len(out) > limit or decoder.unconsumed_tail:
            raise PayloadTooLarge()
        if not decoder.eof:
            raise MalformedJson(f"The {encoding} data of the body is truncated")
        rest = decoder.unused_data
        if not rest or wbits != 31:
            return bytes(out)
    raise MalformedJson("The body has too many gzip members")
