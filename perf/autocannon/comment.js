'use strict'
// Scenario "comment": POST /api/posts/{random id}/comments with a Bearer token minted before the run.
// Run by `python -m perf run --scenario comment` (see perf/README.md).
require('./common').run('comment')
