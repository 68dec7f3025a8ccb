-- Scenario "list": GET /api/posts, the first page.
-- Run by `python -m perf run --scenario list` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("list")
