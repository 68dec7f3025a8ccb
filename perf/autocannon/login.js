'use strict'
// Scenario "login": POST /api/auth/login as a random seeded user (cost: one argon2id verification).
// Run by `python -m perf run --scenario login` (see perf/README.md).
require('./common').run('login')
