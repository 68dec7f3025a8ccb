-- Scenario "list-cursor": GET /api/posts?cursor={a cursor harvested by walking nextCursor before the run}.
-- Run by `python -m perf run --scenario list-cursor` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("list_cursor")
