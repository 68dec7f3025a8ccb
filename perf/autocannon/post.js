'use strict'
// Scenario "post": GET /api/posts/{random seeded id}.
// Run by `python -m perf run --scenario post` (see perf/README.md).
require('./common').run('post')
