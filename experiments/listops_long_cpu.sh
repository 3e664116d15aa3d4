#!/usr/bin/env bash
# Every attention variant on the long CPU preset of ListOps
# (configs/listops.py:long: sequences of 500..1023 tokens, the default 2-layer
# 64-wide model, batch 8, 300 steps) and one table of accuracy next to wall
# time, steps/s (and its ratio to softmax's), FLOPs and memory.
# Run nothing else on the machine meanwhile: the runs are timed one after
# the other. About 30 minutes on 2 CPU cores (softmax ~8).
# Measured results: results/listops_long_cpu/README.md.
# Usage: bash experiments/listops_long_cpu.sh [runs dir] [results dir]
set -euo pipefail
RUNS=${1:-runs/listops_long_cpu}
OUT=${2:-results/listops_long_cpu}
for v in softmax linear performer linformer local strided fixed bigbird longformer; do
  python -m lightjax.train --config configs/listops.py:long,$v --workdir "$RUNS/$v"
done
python -m lightjax.report "$RUNS" --out "$OUT"
mkdir -p "$OUT"
for d in "$RUNS"/*/; do
  name=$(basename "$d")
  mkdir -p "$OUT/$name"
  cp "$d/summary.json" "$d/config.json" "$d/metrics.jsonl" "$OUT/$name/"
done
