-- Scenario "health": GET /healthz: the framework's ceiling, no database.
-- Run by `python -m perf run --scenario health` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("health")
