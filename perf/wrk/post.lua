-- Scenario "post": GET /api/posts/{random seeded id}.
-- Run by `python -m perf run --scenario post` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("post")
