-- Scenario "tags": GET /api/tags.
-- Run by `python -m perf run --scenario tags` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("tags")
