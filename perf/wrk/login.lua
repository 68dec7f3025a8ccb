-- Scenario "login": POST /api/auth/login as a random seeded user (cost: one argon2id verification).
-- Run by `python -m perf run --scenario login` (see perf/README.md).
package.path = (os.getenv("PERF_WRK_DIR") or "perf/wrk") .. "/?.lua;" .. package.path
require("common").scenario("login")
