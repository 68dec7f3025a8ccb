'use strict'
// Scenario "user-posts": GET /api/users/{random seeded id}/posts.
// Run by `python -m perf run --scenario user-posts` (see perf/README.md).
require('./common').run('user_posts')
