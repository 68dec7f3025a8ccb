"""Operations of the OpenAPI document whose routes have not landed on this branch yet.

tests/test_openapi.py fails when an entry here is registered: delete entries as their routes land. Every
operation has landed; keep the file for the next operation documented ahead of its code.
"""

PENDING: set[tuple[str, str]] = set()
