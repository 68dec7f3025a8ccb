-- Scenario "mixed": 90 % reads of every kind, 10 % authenticated writes (8 % comments, 2 % posts).
-- Run by `python -m perf run --scenario mixed` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("mixed")
