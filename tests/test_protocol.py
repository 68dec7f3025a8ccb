"""Units of the resilience layer: the answers to unparsable requests, the mapping of a full server."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong

from server.errors import ServiceUnavailable, ValidationError, from_exception
from server.protocol import _parse_error


@pytest.mark.parametrize("exc, message", [
    (LineTooLong(b"aaa...", 8190), "The request line or a header is too long"),
    (BadHttpMessage("Too many headers received"), "Too many header lines"),
    (BadStatusLine(b"\x16\x03\x01"), "The request is not valid HTTP/1.1"),
    (None, "The request is not valid HTTP/1.1"),
])
def test_parser_refusals_are_validation_errors(exc, message):
    error = _parse_error(exc)
    assert isinstance(error, ValidationError) and error.status == 400 and error.message == message


@pytest.mark.parametrize("exc", [asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
                                 asyncpg.exceptions.DiskFullError("could not extend file"),
                                 asyncpg.exceptions.CannotConnectNowError("the database system is starting up")])
def test_a_database_out_of_resources_is_a_503(exc):
    assert isinstance(from_exception(exc), ServiceUnavailable)
