"""The layer between the envelope and the handlers: the rate limit, then who may call, then the cache.

One middleware rather than three: each layer costs a coroutine frame per request, on every resumption
of the handler too. The order is the contract's: every /api/ request is counted, refused ones included;
authentication and the route's guard come before anything is loaded; only what the caller may see is
served from the cache.
"""

from __future__ import annotations

from aiohttp import web

from .cache import cached
from .guards import authorize
from .ratelimit import admit


@web.middleware
async def admission_middleware(request: web.Request, handler):
    fields = await admit(request)  # RateLimit fields, or 429
    authorize(request)  # 401 or 403
    response = await cached(request, handler)
    if fields is not None and not response.prepared:
        response.headers.update(fields)
    return response
