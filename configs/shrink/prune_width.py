r"""Prune the width of the residual stream by activation importance
(Minitron: Muralidharan et al. 2024, "Compact Language Models via Pruning
and Knowledge Distillation", sec. 2.2).

  python -m lightjax.train --config configs/listops.py --workdir runs/listops
  python -m lightjax.shrink --config configs/shrink/prune_width.py \
      --workdir runs/shrink/prune_width --config.init_from=runs/listops
  # a fixed width instead of a fraction; after head pruning (chained):
  python -m lightjax.shrink --config configs/shrink/prune_width.py \
      --workdir ... --config.init_from=runs/shrink/prune_heads \
      --config.shrink.prune_width.embed_dim=48
  # then distil from the original teacher into the narrow model:
  python -m lightjax.shrink --config configs/shrink/distill.py --workdir ... \
      --config.init_from=runs/listops \
      --config.shrink.distill.student_from=runs/shrink/prune_width

Removes `fraction` of the embed_dim channels (ListOps' 64: 16, leaving 48),
the ones whose LayerNorm outputs are smallest on `num_examples` training
examples, from every embedding, projection, LayerNorm, the cls vector,
pooler and classifier input (lightjax/shrink/width.py); head_dim, heads and
MLP widths stay. A sentence encoder (ARG "sentences") also gets a projection
back to its teacher's width (`model.projection_dim`, the selection matrix to
start), so its embeddings stay comparable with the teacher's. LayerNorms
over fewer channels compute another function, so the student is recovered
by fine-tuning (`num_train_steps`; ListOps: 500) or distillation. ARG: see `lightjax.shrink.recipe` (a GLUE task,
"tiny").
"""

from lightjax import shrink


def get_config(arg=None):
  return shrink.recipe(__file__, arg, "prune_width", fraction=0.25,
                       embed_dim=0, num_examples=512, split="train")
