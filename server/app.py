"""create_app(config): cleanup contexts, metrics, routes behind the pipeline. Nothing else."""

from __future__ import annotations

from aiohttp import web

from .cache import cache_ctx
from .config import Config
from .db import CONFIG, pg_ctx
from .guards import keys_ctx
from .metrics import setup as setup_metrics
from .passwords import passwords_ctx
from .pipeline import Pipeline
from .ratelimit import ratelimit_ctx
from .redisdb import redis_ctx
from .routes import setup_routes
from .worker import worker_ctx


def create_app(config: Config) -> web.Application:
    """The application for `config`, whose database_url and redis_url must be set. Does no I/O."""
    # Request bodies reach handlers as sent; a compressed one is inflated with a bound (server/inflate.py).
    # No middlewares: every route's handler is wrapped in the request's whole path (server/pipeline.py).
    app = web.Application(client_max_size=config.body_limit, handler_args={"auto_decompress": False})
    app[CONFIG] = config
    app.cleanup_ctx.extend([keys_ctx, pg_ctx, redis_ctx, ratelimit_ctx, cache_ctx, passwords_ctx])
    if config.runs_worker_in_process:  # the embedded mode: one command runs the whole system
        app.cleanup_ctx.append(worker_ctx)
    setup_metrics(app)  # before the pipeline, which counts into it
    setup_routes(app, Pipeline(config, app))
    return app
