#!/usr/bin/env bash
# Full-accuracy training on a GPU machine: SASRec, BERT4Rec, GRU4Rec (padded, with the settings
# `streamrec tune` found on ML-1M's validation cases) and SR-GNN on ML-1M (protocol A, leave-one-out,
# full ranking), trained side by side until early stopping or the budget, then every ranker
# architecture over all generators, the best by held-out lists published. Everything lands in a
# fresh registry and a log folder.
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
gru4rec_tuned=(--set gru4rec.training=padded --set gru4rec.hidden_size=256 --set gru4rec.n_layers=1
               --set gru4rec.dropout_embed=0.45 --set gru4rec.dropout_hidden=0.05 --lr 0.0095 --batch-size 128)
for model in sasrec bert4rec gru4rec srgnn; do
  extra=()
  [ "$model" = gru4rec ] && extra=("${gru4rec_tuned[@]}")
  streamrec train --models "$model" --dataset "$dataset" --budget-min "$budget" --patience 20 "${extra[@]}" \
    --registry "$registry" -q > "$out/logs/train-$model.log" 2>&1 &
done
wait
timeout "${RANKER_TIMEOUT_S:-900}" "$py" -m streamrec train-ranker --dataset "$dataset" \
  --sources sasrec,gru4rec,bert4rec,srgnn,itemknn,mf,pop --no-ablation --arch all \
  --registry "$registry" --json "$out/logs/pipeline.json" -q > "$out/logs/train-ranker.log" 2>&1
tail -n 25 "$out"/logs/*.log
