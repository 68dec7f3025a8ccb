"""Operations routes: the OpenAPI document, its docs page and the Prometheus metrics."""

from __future__ import annotations

from aiohttp import web

from .. import docs_page, metrics, openapi


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi.document_json(), content_type="application/json")


async def get_docs(request: web.Request) -> web.Response:
    plain, compressed = docs_page.page()
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(body=compressed, content_type="text/html", charset="utf-8",
                            headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return web.Response(body=plain, content_type="text/html", charset="utf-8", headers={"Vary": "Accept-Encoding"})


async def get_metrics(request: web.Request) -> web.Response:
    body, content_type = await metrics.exposition(request.app)
    return web.Response(body=body, headers={"Content-Type": content_type})
