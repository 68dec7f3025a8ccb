'use strict'
// Scenario "mixed": 90 % reads of every kind, 10 % authenticated writes (8 % comments, 2 % posts).
// Run by `python -m perf run --scenario mixed` (see perf/README.md).
require('./common').run('mixed')
