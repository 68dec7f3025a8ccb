"""create_app(config): middlewares, cleanup contexts, routes. Nothing else."""

from __future__ import annotations

from aiohttp import web

from .admission import admission_middleware
from .cache import cache_ctx
from .config import Config
from .db import CONFIG, pg_ctx
from .errors import envelope_middleware
from .guards import keys_ctx
from .metrics import setup as setup_metrics
from .observe import observe_middleware
from .passwords import passwords_ctx
from .ratelimit import ratelimit_ctx
from .redisdb import redis_ctx
from .routes import setup_routes
from .worker import worker_ctx


def create_app(config: Config) -> web.Application:
    """The application for `config`, whose database_url and redis_url must be set. Does no I/O."""
    middlewares = [envelope_middleware(config.max_in_flight, config.request_timeout), admission_middleware]
    # Request bodies reach handlers as sent; a compressed one is inflated with a bound (server/inflate.py).
    app = web.Application(middlewares=middlewares, client_max_size=config.body_limit,
                          handler_args={"auto_decompress": False})
    app[CONFIG] = config
    app.cleanup_ctx.extend([keys_ctx, pg_ctx, redis_ctx, ratelimit_ctx, cache_ctx, passwords_ctx])
    if config.runs_worker_in_process:  # the embedded mode: one command runs the whole system
        app.cleanup_ctx.append(worker_ctx)
    setup_routes(app)
    setup_metrics(app)  # before the middleware below, which counts into it
    app.middlewares.insert(0, observe_middleware(config, app))  # outermost: sees every answer as sent
    return app
