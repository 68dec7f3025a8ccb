-- Scenario "comment": POST /api/posts/{random id}/comments with a Bearer token minted before the run.
-- Run by `python -m perf run --scenario comment` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("comment")
