-- Scenario "user": GET /api/users/{random seeded id}.
-- Run by `python -m perf run --scenario user` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("user")
