r"""Cut a LayerDrop-trained model to half its depth, no fine-tuning (Fan et
al. 2020, "Reducing Transformer Depth on Demand with Structured Dropout").

  python -m lightjax.train --config configs/listops.py --workdir runs/listops_ld \
      --config.model.num_layers=4 --config.model.layerdrop=0.2
  python -m lightjax.shrink --config configs/shrink/layerdrop.py \
      --workdir runs/shrink/layerdrop --config.init_from=runs/listops_ld

Keeps `keep` of the teacher's layers by the paper's "every other" rule
(lightjax/shrink/layers.py) and scores the cut model as it is
(`num_train_steps=0`); set num_train_steps to fine-tune after all.
"""

from lightjax import shrink


def get_config(arg=None):
  c = shrink.recipe(__file__, arg, "layerdrop", keep=2)
  c.num_train_steps = 0
  return c
