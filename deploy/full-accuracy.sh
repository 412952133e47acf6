#!/usr/bin/env bash
# Full-accuracy training on a GPU machine: SASRec, BERT4Rec and GRU4Rec on ML-1M (protocol A,
# leave-one-out, full ranking), trained side by side until early stopping or the budget, then the
# DeepFM ranker over all generators. Everything lands in a fresh registry and a log folder.
#
#   deploy/full-accuracy.sh OUT_DIR [BUDGET_MIN]
#
# It needs only python3 with torch, onnx, onnxruntime, numpy, pandas, pyarrow, scipy, matplotlib
# and tqdm (no Kafka or Redis), and data/cache/<dataset> from an earlier `streamrec` run.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: deploy/full-accuracy.sh OUT_DIR [BUDGET_MIN]}
budget=${2:-5}
dataset=${DATASET:-ml-1m}
py=${PYTHON:-python3}
registry="$out/registry"
mkdir -p "$registry" "$out/logs"
export STREAMREC_HOME="$out/home" OMP_NUM_THREADS=4 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
streamrec() { "$py" -m streamrec "$@"; }

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$out/logs/gpu.txt" 2>&1
for model in sasrec bert4rec gru4rec; do
  streamrec train --models "$model" --dataset "$dataset" --budget-min "$budget" --patience 20 \
    --registry "$registry" -q > "$out/logs/train-$model.log" 2>&1 &
done
wait
timeout "${RANKER_TIMEOUT_S:-600}" "$py" -m streamrec train-ranker --dataset "$dataset" --sources sasrec,gru4rec,bert4rec,itemknn,mf,pop --no-ablation \
  --registry "$registry" --json "$out/logs/pipeline.json" -q > "$out/logs/train-ranker.log" 2>&1
tail -n 25 "$out"/logs/*.log
