#!/usr/bin/env bash
# Students of all-MiniLM-L6-v2 distilled on the stdlib corpus (docs/real-model.md).
#
#   scripts/get_minilm.sh --peer ~/.cache/lightjax/minilm
#   experiments/minilm_students.sh [RUNS_DIR] [STEPS]     # default runs/minilm, 600
#
# Every student keeps at most half of the teacher's transformer-block
# parameters. Each run embeds the corpus with its teacher once (cached under
# the data dir, so the students of one teacher share it).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-runs/minilm}"
STEPS="${2:-600}"
M="hf:${LIGHTJAX_MINILM_DIR:-$HOME/.cache/lightjax/minilm}"
shrink() { python -m lightjax.shrink --config "configs/shrink/$1.py:sentences" \
  --config.init_from="$2" --workdir "$RUNS/$3" "${@:4}"; }

# Depth: every other layer (0, 2, 4) - cut only, distilled, and from scratch.
shrink distill "$M" drop3 --config.shrink.distill.num_layers=3 --config.num_train_steps=0
shrink distill "$M" distill3 --config.shrink.distill.num_layers=3 \
  --config.num_train_steps="$STEPS"
shrink distill "$M" scratch3 --config.shrink.distill.num_layers=3 \
  --config.shrink.distill.init=scratch --config.num_train_steps="$STEPS"
# Width of the blocks: half the heads, then half the MLP units (activation
# importance), all 6 layers kept; then distilled from the original teacher.
shrink prune_heads "$M" heads50 --config.num_train_steps=0
shrink prune_ffn "$RUNS/heads50" heads50_ffn50 --config.num_train_steps=0
shrink distill "$M" heads50_ffn50_distill \
  --config.shrink.distill.student_from="$RUNS/heads50_ffn50" \
  --config.num_train_steps="$STEPS"
shrink distill "$M" heads50_ffn50_scratch \
  --config.shrink.distill.student_from="$RUNS/heads50_ffn50" \
  --config.shrink.distill.init=scratch --config.num_train_steps="$STEPS"
# The best student so far: the same half-heads / half-MLP student, distilled
# longer at a higher learning rate, in two cycles of 1,500 steps (the second
# restarts the schedule from the first's best checkpoint).
shrink distill "$M" heads50_ffn50_long \
  --config.shrink.distill.student_from="$RUNS/heads50_ffn50" \
  --config.num_train_steps=1500 --config.optim.learning_rate=5e-4 \
  --config.eval_every=250 --config.checkpoint_every=250
shrink distill "$M" heads50_ffn50_long2 \
  --config.shrink.distill.student_from="$RUNS/heads50_ffn50_long" \
  --config.num_train_steps=1500 --config.optim.learning_rate=3e-4 \
  --config.eval_every=250 --config.checkpoint_every=250
