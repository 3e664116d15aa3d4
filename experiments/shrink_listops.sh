#!/usr/bin/env bash
# Every shrinking recipe on the README's default ListOps model, CPU-sized, and
# one combined table + Pareto plot (results/shrink_listops_cpu/).
#
#   bash experiments/shrink_listops.sh [RUNS_DIR] [OUT_DIR]
#
# Each command resumes when rerun (finished runs are only re-scored). About
# an hour on 2 CPU cores.
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
# Students under half the teacher's size, chained (init_from another shrink
# run; num_train_steps=0 runs hand their student on untouched), distilled
# from the original teacher for 1500 steps at the teacher's learning rate.
# Each one's baseline is the same architecture trained from scratch on the
# labels for the same 1500 steps with the same optimiser settings.
D="--config.num_train_steps=1500 --config.optim.learning_rate=1e-3 --config.optim.warmup_steps=100"
SCRATCH="--config.shrink.distill.init=scratch --config.train_objective=classification"
# (a) 2 layers, 2 heads and 32 MLP units each (39,882 parameters, 49%)
$S --config configs/shrink/prune_heads.py --workdir "$RUNS/prune_heads_untuned" --config.init_from="$RUNS/teacher" \
   --config.shrink.prune_heads.heads_per_layer='(2, 2)' --config.shrink.prune_heads.iterations=1 --config.num_train_steps=0
$S --config configs/shrink/prune_ffn.py --workdir "$RUNS/prune_heads_ffn_untuned" --config.init_from="$RUNS/prune_heads_untuned" \
   --config.shrink.prune_ffn.mlp_dims_per_layer='(32, 32)' --config.shrink.prune_ffn.iterations=1 --config.num_train_steps=0
$S --config configs/shrink/distill.py --workdir "$RUNS/distill_pruned_1500" --config.init_from="$RUNS/teacher" \
   --config.shrink.distill.student_from="$RUNS/prune_heads_ffn_untuned" $D
# the same with DistilBERT's cosine loss on the last hidden states
$S --config configs/shrink/distill.py --workdir "$RUNS/distill_pruned_1500_cos" --config.init_from="$RUNS/teacher" \
   --config.shrink.distill.student_from="$RUNS/prune_heads_ffn_untuned" $D --config.objective_options.distillation.cosine=1.0
$S --config configs/shrink/distill.py --workdir "$RUNS/distill_pruned_1500_scratch" --config.init_from="$RUNS/teacher" \
   --config.shrink.distill.student_from="$RUNS/prune_heads_ffn_untuned" $SCRATCH $D
# (b) 1 layer with 2 heads (39,466 parameters, 49%)
$S --config configs/shrink/drop_layers.py --workdir "$RUNS/drop_layers_untuned" --config.init_from="$RUNS/teacher" \
   --config.num_train_steps=0
$S --config configs/shrink/prune_heads.py --workdir "$RUNS/drop_prune_untuned" --config.init_from="$RUNS/drop_layers_untuned" \
   --config.shrink.prune_heads.heads_per_layer='(2,)' --config.shrink.prune_heads.iterations=1 --config.num_train_steps=0
$S --config configs/shrink/distill.py --workdir "$RUNS/distill_small_1500" --config.init_from="$RUNS/teacher" \
   --config.shrink.distill.student_from="$RUNS/drop_prune_untuned" $D
$S --config configs/shrink/distill.py --workdir "$RUNS/distill_small_1500_scratch" --config.init_from="$RUNS/teacher" \
   --config.shrink.distill.student_from="$RUNS/drop_prune_untuned" $SCRATCH $D
$S --config configs/shrink/theseus.py --workdir "$RUNS/theseus" --config.init_from="$RUNS/teacher"
$S --config configs/shrink/low_rank.py --workdir "$RUNS/low_rank" --config.init_from="$RUNS/teacher"
# the same factorisation recovered for 1000 steps at the teacher's learning rate
$S --config configs/shrink/low_rank.py --workdir "$RUNS/low_rank_1000" --config.init_from="$RUNS/teacher" \
   --config.num_train_steps=1000 --config.optim.learning_rate=1e-3 --config.optim.warmup_steps=100

python -m lightjax.report "$RUNS" --out "$OUT"
mkdir -p "$OUT/runs"
for d in "$RUNS"/*/; do
  name=$(basename "$d")
  mkdir -p "$OUT/runs/$name"
  for f in summary.json shrink_report.md config.json; do
    [ -f "$d/$f" ] && cp "$d/$f" "$OUT/runs/$name/"
  done
done
