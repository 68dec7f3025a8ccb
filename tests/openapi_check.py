"""Checks real responses against the OpenAPI document: status, required headers, media type, body schema.

`validate_response` is an aiohttp client middleware: conftest's `client` fixture installs it, so every
response of the test suite to a documented operation is checked. Paths the document does not describe
(the deliberate 404s of the routing tests) and 405s (not part of the contract's operations) pass unchecked.
"""

from __future__ import annotations

import re

import orjson
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

from server import openapi

DOC = openapi.document()
_ROOT = Draft202012Validator(DOC, format_checker=FormatChecker())
_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}
UNCHECKED_STATUSES = {405}


def _template_regex(template: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"\\\{[a-zA-Z_]+\\\}", "[1-9][0-9]*", re.escape(template)) + "$")


# Static paths first, so `/api/users/me` is not taken for `/api/users/{id}`.
_OPERATIONS = sorted(
    ((method.upper(), template, _template_regex(template), operation)
     for template, item in DOC["paths"].items() for method, operation in item.items() if method in _METHODS),
    key=lambda op: "{" in op[1])


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = _ROOT.evolve(schema=node)._resolver.lookup(node["$ref"]).contents
    return node


def find_operation(method: str, path: str) -> tuple[str, dict] | None:
    for op_method, template, regex, operation in _OPERATIONS:
        if op_method == method and regex.match(path):
            return template, operation
    return None


def schema_errors(schema: dict, instance) -> str | None:
    """The first validation error of `instance` against a (sub)schema of the document, or None."""
    error = best_match(_ROOT.evolve(schema=schema).iter_errors(instance))
    if error is None:
        return None
    where = "".join(f"[{p!r}]" for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def problems(method: str, path: str, status: int, headers, body: bytes) -> list[str]:
    """Everything in one response that disagrees with the document; [] when it conforms or is undocumented."""
    found = find_operation(method, path)
    if found is None or status in UNCHECKED_STATUSES:
        return []
    template, operation = found
    spec = operation["responses"].get(str(status)) or operation["responses"].get("default")
    if spec is None:
        return [f"{method} {template}: status {status} is not documented"]
    spec = _resolve(spec)
    faults = []
    for name, header in (spec.get("headers") or {}).items():
        header = _resolve(header)
        value = headers.get(name)
        if value is None:
            if header.get("required"):
                faults.append(f"header {name} is required")
            continue
        schema = header.get("schema", {})
        if _resolve(schema).get("type") == "integer":
            value = int(value) if value.isdigit() else value
        if (error := schema_errors(schema, value)) is not None:
            faults.append(f"header {name}: {error}")
    content = spec.get("content")
    if not content:
        if body:
            faults.append(f"a {status} must have no body")
    else:
        media_type = (headers.get("Content-Type") or "").split(";")[0].strip()
        if media_type not in content:
            faults.append(f"Content-Type {media_type!r} is not one of {sorted(content)}")
        elif media_type == "application/json":
            try:
                instance = orjson.loads(body)
            except orjson.JSONDecodeError:
                faults.append("the body is not JSON")
            else:
                if (error := schema_errors(content[media_type]["schema"], instance)) is not None:
                    faults.append(f"body {error}")
    return [f"{method} {path} → {status} ({template}): {fault}" for fault in faults]


async def validate_response(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
    response = await handler(request)
    body = await response.read()  # kept by the response: the test reads it again
    faults = problems(request.method, request.url.path, response.status, response.headers, body)
    assert not faults, "response does not match the OpenAPI document:\n  " + "\n  ".join(faults) + \
        f"\n  body: {body[:500]!r}"
    return response
