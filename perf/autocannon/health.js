'use strict'
// Scenario "health": GET /healthz: the framework's ceiling, no database.
// Run by `python -m perf run --scenario health` (see perf/README.md).
require('./common').run('health')
