r"""Prune MLP units (structured FFN neuron pruning) by importance.

  python -m lightjax.train --config configs/listops.py --workdir runs/listops
  python -m lightjax.shrink --config configs/shrink/prune_ffn.py \
      --workdir runs/shrink/prune_ffn --config.init_from=runs/listops
  # after head pruning (its student as the teacher):
  python -m lightjax.shrink --config configs/shrink/prune_ffn.py \
      --workdir ... --config.init_from=runs/shrink/prune_heads
  # a BERT fine-tuned on SST-2 (docs/shrink.md):
  python -m lightjax.shrink --config configs/shrink/prune_ffn.py:sst2 \
      --workdir ... --config.init_from=runs/bert_sst2 \
      --config.task.glue_dir=/data/glue

Removes `fraction` of all MLP units (ListOps' 2 x 128: 128 of 256) in
`iterations` rounds, each removing the units with the lowest first-order
Taylor importance |dL/dg_j| (a gate on the unit's activation; Molchanov et
al. 2017), normalised per layer and ranked over all layers, so layers end
with their own widths (`model.mlp_dims_per_layer`) and physically sliced
fc1 columns / fc2 rows (lightjax/shrink/heads.py). Then fine-tunes
(`num_train_steps`; ListOps: 500). `importance="activation"` ranks by
Minitron's activation norms instead (no labels), `compare_importance=True`
records how the two rankings agree. ARG: see `lightjax.shrink.recipe`.
"""

from lightjax import shrink


def get_config(arg=None):
  return shrink.recipe(__file__, arg, "prune_ffn", fraction=0.5,
                       mlp_dims_per_layer=(), iterations=2, num_examples=512,
                       split="train", min_units_per_layer=0,
                       importance="gradient", compare_importance=False)
