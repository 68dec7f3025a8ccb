#!/usr/bin/env bash
# What the rate limiter costs per request: one short wrk run per mode against /api/nope (a 404 from the
# router: every layer but the database), reporting req/s and the CPU microseconds per request spent by the
# API process and by Redis. Other work on the machine moves req/s a lot, CPU per request much less.
# Usage: perf/limiter_cost.sh   (after `make run` or `make test` made .venv; needs wrk)
set -u
cd "$(dirname "$0")/.."
# No in-process outbox worker: its own Redis traffic (and retries while Redis is down) is not the limiter's.
export VAR_DIR=${VAR_DIR:-/tmp/limiter-cost-var} LOG_LEVEL=warning RATE_LIMIT=100000000/15m WORKER_IN_PROCESS=false
mkdir -p "$VAR_DIR"
cpu() { [ -r "/proc/$1/stat" ] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }  # clock ticks
free_port() { .venv/bin/python -c 'from server.embedded import free_port; print(free_port())'; }
run() {  # label, extra environment...
  local label=$1; shift
  local port; port=$(free_port)
  env PORT="$port" "$@" .venv/bin/python -m server serve > "$VAR_DIR/serve-$label.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "localhost:$port/healthz" && break; sleep 0.2; done
  local rpid; rpid=$(ps --ppid $pid -o pid=,comm= | awk '$2 == "redis-server" {print $1}')
  local a0 r0 a1 r1 out n tck
  a0=$(cpu $pid); r0=$(cpu "${rpid:-0}")
  out=$(wrk -t1 -c64 -d8s "http://127.0.0.1:$port/api/nope")
  a1=$(cpu $pid); r1=$(cpu "${rpid:-0}")
  n=$(echo "$out" | awk '/requests in/ {print $1}'); tck=$(getconf CLK_TCK)
  echo "$label: $(echo "$out" | awk '/Requests\/sec/ {print $2}') req/s;" \
       "API $(( (a1 - a0) * 1000000 / tck / n )) us/req, Redis $(( (r1 - r0) * 1000000 / tck / n )) us/req"
  kill -INT $pid; wait $pid
}
run off RATE_LIMIT_ENABLED=false
run redis
run redis-down REDIS_URL="redis://127.0.0.1:$(free_port)/0"
