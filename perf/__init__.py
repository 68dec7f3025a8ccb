"""The perf kit: seeded data, wrk and autocannon scenarios, the runner, the bare baseline and the report."""
