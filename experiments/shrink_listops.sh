#!/usr/bin/env bash
# Every shrinking recipe on the README's default ListOps model, CPU-sized, and
# one combined table + Pareto plot (results/shrink_listops_cpu/).
#
#   bash experiments/shrink_listops.sh [RUNS_DIR] [OUT_DIR]
#
# Each command resumes when rerun (finished runs are only re-scored). About
# 40 minutes on 2 CPU cores.
set -euo pipefail
RUNS=${1:-runs/shrink_listops}
OUT=${2:-results/shrink_listops_cpu}
T="python -m lightjax.train --config configs/listops.py"
S="python -m lightjax.shrink"

# Teachers: the default model, and a 4-layer one trained with LayerDrop
# p = 0.5 (Fan et al. 2020 prune at the rate they train with).
$T --workdir "$RUNS/teacher"
$T --workdir "$RUNS/teacher_layerdrop" --config.model.num_layers=4 --config.model.layerdrop=0.5

$S --config configs/shrink/prune_heads.py --workdir "$RUNS/prune_heads" --config.init_from="$RUNS/teacher"
# 5 of 8 heads: over half, so the global importance ranking must leave the
# layers uneven (at 4 of 8 it happened to take two from each).
$S --config configs/shrink/prune_heads.py --workdir "$RUNS/prune_heads_5of8" --config.init_from="$RUNS/teacher" \
   --config.shrink.prune_heads.fraction=0.625
$S --config configs/shrink/prune_ffn.py --workdir "$RUNS/prune_ffn" --config.init_from="$RUNS/teacher"
$S --config configs/shrink/drop_layers.py --workdir "$RUNS/drop_layers" --config.init_from="$RUNS/teacher"
$S --config configs/shrink/layerdrop.py --workdir "$RUNS/layerdrop_cut" --config.init_from="$RUNS/teacher_layerdrop"
$S --config configs/shrink/distill.py --workdir "$RUNS/distill" --config.init_from="$RUNS/teacher"
$S --config configs/shrink/distill.py --workdir "$RUNS/distill_scratch_baseline" --config.init_from="$RUNS/teacher" \
   --config.shrink.distill.init=scratch --config.train_objective=classification --config.optim.learning_rate=1e-3 \
   --config.optim.warmup_steps=100
# Chained (init_from another shrink run): the 1-layer drop_layers student
# with half its heads removed (no recovery of its own), then distilled from
# the original teacher: under half the teacher's parameters. Its baseline is
# that architecture trained from scratch, on labels, with the teacher's
# optimiser settings, for as many steps as the chained student trained after
# leaving the teacher (500 drop_layers recovery + 500 distillation).
$S --config configs/shrink/prune_heads.py --workdir "$RUNS/drop_then_prune_heads" --config.init_from="$RUNS/drop_layers" \
   --config.shrink.prune_heads.heads_per_layer='(2,)' --config.shrink.prune_heads.iterations=1 --config.num_train_steps=0
$S --config configs/shrink/distill.py --workdir "$RUNS/distill_small" --config.init_from="$RUNS/teacher" \
   --config.shrink.distill.student_from="$RUNS/drop_then_prune_heads"
$S --config configs/shrink/distill.py --workdir "$RUNS/distill_small_scratch_baseline" --config.init_from="$RUNS/teacher" \
   --config.shrink.distill.student_from="$RUNS/drop_then_prune_heads" --config.shrink.distill.init=scratch \
   --config.train_objective=classification --config.num_train_steps=1000 --config.optim.learning_rate=1e-3 \
   --config.optim.warmup_steps=100
$S --config configs/shrink/theseus.py --workdir "$RUNS/theseus" --config.init_from="$RUNS/teacher"
$S --config configs/shrink/low_rank.py --workdir "$RUNS/low_rank" --config.init_from="$RUNS/teacher"

python -m lightjax.report "$RUNS" --out "$OUT"
mkdir -p "$OUT/runs"
for d in "$RUNS"/*/; do
  name=$(basename "$d")
  mkdir -p "$OUT/runs/$name"
  for f in summary.json shrink_report.md config.json; do
    [ -f "$d/$f" ] && cp "$d/$f" "$OUT/runs/$name/"
  done
done
