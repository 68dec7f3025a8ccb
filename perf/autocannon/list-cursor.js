'use strict'
// Scenario "list-cursor": GET /api/posts?cursor={a cursor harvested by walking nextCursor before the run}.
// Run by `python -m perf run --scenario list-cursor` (see perf/README.md).
require('./common').run('list_cursor')
