-- Scenario "list-tag": GET /api/posts?tag={random seeded tag}.
-- Run by `python -m perf run --scenario list-tag` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("list_tag")
