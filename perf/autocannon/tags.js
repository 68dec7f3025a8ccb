'use strict'
// Scenario "tags": GET /api/tags.
// Run by `python -m perf run --scenario tags` (see perf/README.md).
require('./common').run('tags')
