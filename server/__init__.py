"""A fast async HTTP API for users, posts, comments and tags on aiohttp, asyncpg and Redis."""
