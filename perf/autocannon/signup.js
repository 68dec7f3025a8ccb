'use strict'
// Scenario "signup": POST /api/users with a unique email and username (cost: one argon2id hash).
// Run by `python -m perf run --scenario signup` (see perf/README.md).
require('./common').run('signup')
