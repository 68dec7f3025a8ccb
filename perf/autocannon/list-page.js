'use strict'
// Scenario "list-page": GET /api/posts?page={random page within the 10,000-row window}.
// Run by `python -m perf run --scenario list-page` (see perf/README.md).
require('./common').run('list_page')
