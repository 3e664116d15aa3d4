r"""Prune attention heads by importance (Michel et al. 2019, "Are Sixteen
Heads Really Better than One?").

  python -m lightjax.train --config configs/listops.py --workdir runs/listops
  python -m lightjax.shrink --config configs/shrink/prune_heads.py \
      --workdir runs/shrink/prune_heads --config.init_from=runs/listops
  # a fixed count per layer instead of a fraction; one scoring round:
  python -m lightjax.shrink --config configs/shrink/prune_heads.py \
      --workdir ... --config.init_from=runs/listops \
      --config.shrink.prune_heads.heads_per_layer='(3, 1)' \
      --config.shrink.prune_heads.iterations=1
  # a BERT fine-tuned on SST-2 (docs/shrink.md):
  python -m lightjax.shrink --config configs/shrink/prune_heads.py:sst2 \
      --workdir ... --config.init_from=runs/bert_sst2 \
      --config.task.glue_dir=/data/glue

Removes `fraction` of all heads (ListOps' 2 layers x 4 heads: 4 of 8) in
`iterations` rounds, each removing the lowest-importance heads over all
layers (I_h = E_x |dL/dxi_h|, eq. 2, normalised per layer) and re-scoring
the pruned model; layers end with their own head counts
(`model.heads_per_layer`) and physically sliced q/k/v/out projections
(lightjax/shrink/heads.py). Then fine-tunes (`num_train_steps`; ListOps:
500). `importance="activation"` ranks by Minitron's activation norms instead
(no labels), `compare_importance=True` records how the two rankings
agree. ARG: see `lightjax.shrink.recipe` (a GLUE task, "tiny").
"""

from lightjax import shrink


def get_config(arg=None):
  return shrink.recipe(__file__, arg, "prune_heads", fraction=0.5,
                       heads_per_layer=(), iterations=2, num_examples=512,
                       split="train", min_heads_per_layer=0,
                       importance="gradient", compare_importance=False)
