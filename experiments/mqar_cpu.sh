#!/bin/bash
# MQAR, multi-query associative recall (Arora et al. 2023, "Zoology", sec. 3):
# softmax vs linear attention on a CPU, with the same model, data, steps and
# learning rate (configs/mqar.py:cpu: length 64, 8 key-value pairs,
# vocabulary 128, a 2-layer width-64 one-head decoder, 2000 steps at batch 64,
# lr 3e-3). About 4 minutes per variant on 2 shared CPU cores.
# Measured results: results/mqar_cpu/README.md.
# Usage: bash experiments/mqar_cpu.sh [runs dir] [results dir]
set -euo pipefail
RUNS=${1:-runs/mqar_cpu}
OUT=${2:-results/mqar_cpu}
for v in softmax linear; do
  nice python -m lightjax.train --config configs/mqar.py:cpu,$v --workdir "$RUNS/$v"
done
python -m lightjax.report "$RUNS" --out "$OUT"
