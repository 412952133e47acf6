#!/usr/bin/env bash
# `make demo`: models, the session worker and the gRPC server against the local Kafka and Redis, fed
# by a MovieLens-1M replay, then `streamrec live`: held-out test sessions replayed click by click, each
# answer checked against the session's next click, with a running HR@10 and latency.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
EVENTS=${DEMO_EVENTS:-20000}
RATE=${DEMO_RATE:-3000}
TRAIN_MIN=${DEMO_TRAIN_MIN:-1}
LIVE_SESSIONS=${DEMO_LIVE_SESSIONS:-20}
LIVE_RATE=${DEMO_LIVE_RATE:-5}
REGISTRY=${STREAMREC_REGISTRY:-models}
mkdir -p var/logs
log=var/logs/demo-worker.log
serve_log=var/logs/demo-serve.log

current_manifest="$REGISTRY/deepfm/$(cat "$REGISTRY/deepfm/CURRENT" 2>/dev/null || true)/manifest.json"
if [ ! -f "$REGISTRY/deepfm/CURRENT" ] || ! grep -q '"item_table"' "$current_manifest" 2>/dev/null; then
  # (a ranker published before releases were made of artifacts has no item table: train again)
  echo "== no ranking pipeline release in $REGISTRY yet: training small ones (${TRAIN_MIN} min per sequence model)"
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
echo "== live: $LIVE_SESSIONS held-out test sessions, $LIVE_RATE clicks/s, each answer scored by the next click"
# `live` waits until the server reports its pipeline loaded (it answers from popularity before that)
if ! "$BIN/streamrec" live --sessions "$LIVE_SESSIONS" --rate "$LIVE_RATE" --registry "$REGISTRY" --wait-server 600; then
  echo "streamrec live failed; the server's log:"; tail -30 "$serve_log"; exit 1
fi

echo "== stopping the server and the worker; Kafka and Redis stay up (make infra-down stops them)"
