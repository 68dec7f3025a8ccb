"""Every named query prepares against the migrated schema, so a typo cannot reach production."""

from __future__ import annotations

import pytest

from server.db import Q, load_queries


@pytest.mark.parametrize("name", sorted(Q))
async def test_named_query_prepares(db, name):
    await db.prepare(Q[name])


def test_duplicate_names_are_refused(tmp_path):
    (tmp_path / "a.sql").write_text("-- name: one\nSELECT 1\n-- name: one\nSELECT 2\n")
    with pytest.raises(ValueError, match="defined twice"):
        load_queries(tmp_path)


def test_blocks_are_split_by_name(tmp_path):
    (tmp_path / "a.sql").write_text("-- comment\n-- name: one\nSELECT 1;\n\n-- name: two\nSELECT\n  2\n")
    assert load_queries(tmp_path) == {"one": "SELECT 1", "two": "SELECT\n  2"}
