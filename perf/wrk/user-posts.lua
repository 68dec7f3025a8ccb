-- Scenario "user-posts": GET /api/users/{random seeded id}/posts.
-- Run by `python -m perf run --scenario user-posts` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("user_posts")
