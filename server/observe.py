"""What every answer gets on its way out: CORS and the response headers of a JSON API, the metrics
tally and the access log line. Called by server/pipeline.py outside the envelope, so it sees every
answer as the client does, errors rendered and 304s included.
"""

from __future__ import annotations

import logging

from aiohttp import web

from .config import Config
from .errors import REQUEST_ID, ClientGone, request_id_of
from .guards import PRINCIPAL
from .metrics import METRICS
from .protocol import SERVER
from .ratelimit import LIMITER

access_log = logging.getLogger("server.access")

NO_STORE_PREFIXES = ("/api/auth/", "/api/users/me")  # answers that carry tokens or the caller's own record
CORS_METHODS = "GET, POST, PATCH, DELETE"
CORS_HEADERS = "Authorization, Content-Type, If-None-Match, X-Request-Id"
CORS_EXPOSE = "ETag, Location, RateLimit, RateLimit-Policy, Retry-After, X-Request-Id"
CORS_MAX_AGE = "600"  # seconds a browser may reuse a preflight answer
CLIENT_GONE = ClientGone.status  # nginx's 499, for a request whose client went away before the answer


def _client_ip(request: web.Request) -> str | None:
    """The socket's peer, or the address a trusted proxy forwarded (TRUSTED_PROXIES), as the limiter sees it."""
    limiter = request.app.get(LIMITER)
    return limiter.client_ip.address(request.remote, request.headers) if limiter is not None else request.remote


class Observer:
    def __init__(self, config: Config, app: web.Application) -> None:
        self.metrics = app[METRICS] if config.metrics_enabled else None
        self.access_log = config.access_log
        origins = {o.strip() for o in config.cors_origins.split(",") if o.strip()}
        self.any_origin = "*" in origins
        self.origins = frozenset(origins - {"*"})
        self.cors = bool(origins)

    def _allowed_origin(self, request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        return "*" if self.any_origin else (origin if origin in self.origins else None)

    def preflight(self, request: web.Request) -> web.Response | None:
        """The answer to a CORS preflight from an allowed origin; else None. Asked only for paths with routes."""
        if "Access-Control-Request-Method" not in request.headers:
            return None
        origin = self._allowed_origin(request)
        if origin is None:
            return None
        # Answered before the rest of the request's path (server/pipeline.py), so the request id is given here.
        request_id = request[REQUEST_ID] = request_id_of(request)
        return web.Response(status=204, headers={
            "X-Request-Id": request_id, "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": CORS_METHODS,
            "Access-Control-Allow-Headers": CORS_HEADERS, "Access-Control-Max-Age": CORS_MAX_AGE,
            "Vary": "Origin"})

    def decorate(self, request: web.Request, headers) -> None:
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Server"] = SERVER
        if request.path.startswith(NO_STORE_PREFIXES):
            headers["Cache-Control"] = "no-store"
        if self.cors:
            vary = headers.get("Vary")
            if vary is None:
                headers["Vary"] = "Origin"
            elif "origin" not in vary.lower():
                headers["Vary"] = vary + ", Origin"
            origin = self._allowed_origin(request)
            if origin is not None:
                headers["Access-Control-Allow-Origin"] = origin
                headers["Access-Control-Expose-Headers"] = CORS_EXPOSE

    def log_access(self, request: web.Request, route: str, status: int, seconds: float) -> None:
        """The access line, when ACCESS_LOG is on; `route` is the template (`/api/users/{id}`), never the raw path.
        (The metrics tally is the pipeline's own: one call fewer on every request.)"""
        if access_log.isEnabledFor(logging.INFO):
            principal = request.get(PRINCIPAL)
            ms = round(seconds * 1000, 2)
            # Path without its query string; no headers and no bodies: nothing secret reaches the log.
            access_log.info("%s %s %d %.2fms", request.method, request.path, status, ms, extra={
                "request_id": request.get(REQUEST_ID), "method": request.method, "route": route,
                "path": request.path, "status": status, "duration_ms": ms,
                "user_id": getattr(principal, "user_id", None), "client_ip": _client_ip(request)})
