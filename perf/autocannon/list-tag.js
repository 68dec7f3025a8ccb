'use strict'
// Scenario "list-tag": GET /api/posts?tag={random seeded tag}.
// Run by `python -m perf run --scenario list-tag` (see perf/README.md).
require('./common').run('list_tag')
