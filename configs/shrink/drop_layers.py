r"""Drop layers of a trained model (Sajjad et al. 2020, "Poor Man's BERT").

  python -m lightjax.train --config configs/listops.py --workdir runs/listops
  python -m lightjax.shrink --config configs/shrink/drop_layers.py \
      --workdir runs/shrink/drop_layers --config.init_from=runs/listops
  # another strategy / count; an imported BERT on GLUE SST-2:
  python -m lightjax.shrink --config configs/shrink/drop_layers.py \
      --workdir ... --config.init_from=runs/listops \
      --config.shrink.drop_layers.strategy=contribution
  python -m lightjax.shrink --config configs/shrink/drop_layers.py:sst2 \
      --workdir ... --config.init_from=runs/bert_sst2 \
      --config.task.glue_dir=/data/glue --config.shrink.drop_layers.num_drop=2

Drops `num_drop` blocks chosen by `strategy` (top, bottom, alternate,
symmetric, contribution, block_importance: Minitron's / ShortGPT's
1 - cos(block input, output) on `num_examples` of `split`;
lightjax/shrink/layers.py), keeps the others' weights,
then fine-tunes (`num_train_steps`; ListOps: 500). ARG: see
`lightjax.shrink.recipe` (a GLUE task, "tiny").
"""

from lightjax import shrink


def get_config(arg=None):
  return shrink.recipe(__file__, arg, "drop_layers", strategy="top",
                       num_drop=1, num_examples=256, split="train")
