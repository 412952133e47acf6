#!/usr/bin/env bash
# `make demo`: models, the session worker and the gRPC server against the local Kafka and Redis, fed
# by a MovieLens-1M replay, then live recommendations for sessions the replay built.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
EVENTS=${DEMO_EVENTS:-20000}
RATE=${DEMO_RATE:-3000}
TRAIN_MIN=${DEMO_TRAIN_MIN:-1}
REGISTRY=${STREAMREC_REGISTRY:-models}
mkdir -p var/logs
log=var/logs/demo-worker.log
serve_log=var/logs/demo-serve.log

if [ ! -f "$REGISTRY/deepfm/CURRENT" ]; then
  echo "== no ranking pipeline in $REGISTRY yet: training small ones (${TRAIN_MIN} min per sequence model)"
  "$BIN/streamrec" train --models sasrec,gru4rec --dataset ml-1m --max-len 50 --budget-min "$TRAIN_MIN" \
    --registry "$REGISTRY" -q
  "$BIN/streamrec" train-ranker --dataset ml-1m --sources sasrec,gru4rec,itemknn,mf,content,pop \
    --no-ablation --epochs 3 --registry "$REGISTRY" -q
else
  echo "== using the pipeline already in $REGISTRY (delete $REGISTRY/deepfm to retrain)"
fi

echo "== starting the session worker (log: $log)"
: > "$log"
"$BIN/streamrec" worker > "$log" 2>&1 &
worker=$!
server=
stop() {
  for pid in $server $worker; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT
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

echo "== starting the gRPC server (log: $serve_log)"
"$BIN/streamrec" serve --registry "$REGISTRY" > "$serve_log" 2>&1 &
server=$!
sessions=$("$BIN/streamrec" sessions list --json --limit 2 | "$BIN/python" -c \
  'import json, sys; print(" ".join(s["session_id"] for s in json.load(sys.stdin)))')
for session in $sessions; do
  for _ in $(seq 1 360); do
    # the server listens at once and answers from popularity until its models are loaded and checked
    "$BIN/streamrec" recommend --session "$session" --k 10 > var/logs/demo-recommend.txt 2>&1 &&
      ! grep -q "from no model" var/logs/demo-recommend.txt && break
    kill -0 $server 2>/dev/null || { echo "the server exited:"; tail -30 "$serve_log"; exit 1; }
    sleep 0.5
  done
  echo "== live recommendations for session $session"
  cat var/logs/demo-recommend.txt
done

echo "== stopping the server and the worker; Kafka and Redis stay up (make infra-down stops them)"
