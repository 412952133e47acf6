#!/usr/bin/env bash
# `make demo`: the session worker against the local Kafka and Redis, fed by a MovieLens-1M replay.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
EVENTS=${DEMO_EVENTS:-20000}
RATE=${DEMO_RATE:-3000}
mkdir -p var/logs
log=var/logs/demo-worker.log

echo "== starting the session worker (log: $log)"
: > "$log"
"$BIN/streamrec" worker > "$log" 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null; wait $worker 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  grep -q "Ready" "$log" && break
  kill -0 $worker 2>/dev/null || { echo "the worker exited:"; tail -30 "$log"; exit 1; }
  sleep 0.5
done

echo "== replaying $EVENTS MovieLens-1M ratings as clicks at $RATE events/s"
"$BIN/streamrec" publish --dataset ml-1m --limit "$EVENTS" --rate "$RATE"

echo "== waiting for the worker to catch up"
"$BIN/streamrec" stats --wait-lag 60

echo "== a few live sessions, read from Redis"
"$BIN/streamrec" sessions list --limit 4

echo "== stopping the worker; Kafka and Redis stay up (make infra-down stops them)"
