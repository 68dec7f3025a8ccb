"""The hand-written OpenAPI document (server/openapi.yaml), loaded once and kept as JSON bytes."""

from __future__ import annotations

import functools
from pathlib import Path

import orjson
import yaml

DOCUMENT_PATH = Path(__file__).resolve().parent / "openapi.yaml"
SPEC_URL = "/api/openapi.json"


def load(path: Path = DOCUMENT_PATH) -> dict:
    """The document as a dict, without the `x-anchors` block that only holds YAML anchors."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
    with path.open("rb") as f:
        document = yaml.load(f, Loader=loader)  # noqa: S506 - a safe loader
    document.pop("x-anchors", None)
    return document


@functools.cache
def document() -> dict:
    return load()


@functools.cache
def document_json() -> bytes:
    # Anchored YAML nodes are shared objects; orjson writes each occurrence out in full.
    return orjson.dumps(document())


def operations(doc: dict | None = None) -> set[tuple[str, str]]:
    """Every (METHOD, path template) the document describes."""
    doc = doc or document()
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item if method in methods}
