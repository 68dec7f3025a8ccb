'use strict'
// Scenario "user": GET /api/users/{random seeded id}.
// Run by `python -m perf run --scenario user` (see perf/README.md).
require('./common').run('user')
