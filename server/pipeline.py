"""Every request's path in one coroutine around its route's handler; the app has no aiohttp middleware.

In order, the contract's:
1. A CORS preflight from an allowed origin to a path that has routes is answered at once.
2. The request's id (the client's X-Request-Id when it is a short, safe token), the bound on requests in
   flight (past it an immediate 503, not a place in a queue) and the deadline on the request's time.
3. The rate limit: every /api/ request is counted, refused ones included (429).
4. Authentication and the route's guard (401, 403), before anything is loaded.
5. The response cache for public reads (server/cache.py), else the handler.
6. Every failure becomes the error envelope; every answer gets the id, the RateLimit fields, the
   security and CORS headers (server/observe.py); then the metrics tally and the access line.

Why not middlewares: each one is a coroutine frame per request that every resumption of the handler
passes through again, and an app with any gets aiohttp's own wrapper layer and a partial per layer too.
setup_routes wraps each handler once, with what is known of its route (its template, guard and cache
policy), so nothing is looked up per request either. Paths with no route, and methods a path does not
have, are routes too (server/routes.py), so their 404 and 405 take the same path.
"""

from __future__ import annotations

import asyncio
from time import perf_counter

from aiohttp import web

from .cache import CACHE, Cache, Policy, with_etag
from .config import Config
from .deadlines import Deadlines
from .errors import REQUEST_ID, RESPONSE_HEADERS, ServiceUnavailable, error_response, failure_response, request_id_of
from .guards import ANYONE, Guard, authorize
from .observe import CLIENT_GONE, Observer
from .ratelimit import ASK, LIMITER, Limiter, admit, admit_now

UNMATCHED = "unmatched"  # the metrics label of requests that matched no route, or no method of their path


class Pipeline:
    def __init__(self, config: Config, app: web.Application) -> None:
        self.observer = Observer(config, app)
        self.max_in_flight = config.max_in_flight
        self.request_timeout = config.request_timeout
        self.in_flight = 0
        self.deadlines = Deadlines()
        # The app's, once it has started (its cleanup contexts make them); an app may have neither.
        self.limiter: Limiter | None = None
        self.cache: Cache | None = None
        app.on_startup.append(self._started)

    async def _started(self, app: web.Application) -> None:
        self.limiter, self.cache = app.get(LIMITER), app.get(CACHE)

    def wrap(self, handler, label: str, guard: Guard = ANYONE, policy: Policy | None = None,
             preflight: bool = True):
        """`handler` behind the whole request path. `label` names the route in metrics and the access log
        (its template); `policy` caches its answers; `preflight` is False where no route exists."""
        pipeline, observer, deadlines = self, self.observer, self.deadlines
        metrics, access_log = observer.metrics, observer.access_log
        cors = observer.cors and preflight
        max_in_flight, timeout = self.max_in_flight, self.request_timeout
        check_caller = guard is not ANYONE  # else only a given Authorization is checked (and may be refused)

        async def handle(request: web.Request) -> web.StreamResponse:
            start = perf_counter()
            status = 500
            if metrics is not None:
                metrics.in_flight += 1
            try:
                response = observer.preflight(request) if cors and request.method == "OPTIONS" else None
                if response is None:
                    request_id = request[REQUEST_ID] = request_id_of(request)
                    if pipeline.in_flight >= max_in_flight:
                        response = error_response(ServiceUnavailable("The server is overloaded"), request_id)
                    else:
                        pipeline.in_flight += 1
                        try:
                            with deadlines.limit(timeout):
                                fields = admit_now(request, pipeline.limiter)  # RateLimit fields, or 429
                                if fields is ASK:
                                    fields = await admit(request)
                                if check_caller or "Authorization" in request.headers:
                                    authorize(request, guard)  # 401 or 403
                                if policy is None:
                                    response = await handler(request)
                                elif (cache := pipeline.cache) is not None and cache.enabled \
                                        and not policy.personal(request):
                                    response = await cache.get(request, policy, handler)
                                else:
                                    response = with_etag(request, await handler(request))
                            if fields is not None and not response.prepared:
                                response.headers.update(fields)
                        except web.HTTPException as exc:
                            if exc.status >= 400:
                                response = failure_response(request, exc, request_id)
                            else:  # redirects and 304s pass through as exceptions, with the id
                                exc.headers["X-Request-Id"] = request_id
                                exc.headers.update(request.get(RESPONSE_HEADERS, {}))
                                raise
                        except asyncio.CancelledError:
                            raise
                        except Exception as exc:  # noqa: BLE001 - the one place that answers every failure
                            response = failure_response(request, exc, request_id)
                        finally:
                            pipeline.in_flight -= 1
                        response.headers["X-Request-Id"] = request_id
                status = response.status
                observer.decorate(request, response.headers)
                return response
            except web.HTTPException as exc:
                status = exc.status
                observer.decorate(request, exc.headers)
                raise
            except asyncio.CancelledError:
                status = CLIENT_GONE
                raise
            finally:
                seconds = perf_counter() - start
                if metrics is not None:
                    metrics.in_flight -= 1
                    metrics.observe(request.method, label, status, seconds)
                if access_log:
                    observer.log_access(request, label, status, seconds)

        return handle


PIPELINE = web.AppKey("pipeline", Pipeline)
