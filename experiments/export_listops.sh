#!/usr/bin/env bash
# Edge export of the README's default ListOps model and of a head-pruned,
# layer-dropped student (from experiments/shrink_listops.sh's runs): ONNX
# (fp32 + int8) and StableHLO, each checked against the JAX model on the whole
# validation split; then the edge benchmark (JAX-jit vs onnxruntime fp32/int8
# latency and file sizes, every variant and the shrunk models).
# Measured results: results/export_listops_cpu/README.md, results/edge_bench_cpu/.
# Usage: bash experiments/export_listops.sh [shrink runs dir] [results dir]
set -euo pipefail
RUNS=${1:-runs/shrink_listops}
OUT=${2:-results/export_listops_cpu}
E="python -m lightjax.export"
for model in teacher prune_heads_5of8 drop_prune_untuned; do
  $E --workdir "$RUNS/$model" --format onnx --int8 --out "$OUT/$model/onnx"
  $E --workdir "$RUNS/$model" --format stablehlo --out "$OUT/$model/stablehlo"
done
python -m lightjax.bench --config configs/bench.py:edge --out results/edge_bench_cpu
