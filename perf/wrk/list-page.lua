-- Scenario "list-page": GET /api/posts?page={random page within the 10,000-row window}.
-- Run by `python -m perf run --scenario list-page` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("list_page")
