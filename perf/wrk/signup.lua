-- Scenario "signup": POST /api/users with a unique email and username (cost: one argon2id hash).
-- Run by `python -m perf run --scenario signup` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("signup")
