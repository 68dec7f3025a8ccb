'use strict'
// Scenario "list": GET /api/posts, the first page.
// Run by `python -m perf run --scenario list` (see perf/README.md).
require('./common').run('list')
