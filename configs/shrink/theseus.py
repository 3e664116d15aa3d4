r"""BERT-of-Theseus: compress by progressive module replacing (Xu et al. 2020).

  python -m lightjax.train --config configs/listops.py --workdir runs/listops
  python -m lightjax.shrink --config configs/shrink/theseus.py \
      --workdir runs/shrink/theseus --config.init_from=runs/listops
  # the curriculum instead of a constant rate (p = min(1, slope * t + rate)):
  python -m lightjax.shrink --config configs/shrink/theseus.py --workdir ... \
      --config.init_from=runs/listops --config.shrink.theseus.rate_slope=0.002 \
      --config.shrink.theseus.replace_rate=0.3

Phase 1 (`replacing_steps`, default num_train_steps, in <workdir>/replacing):
successor layers (half the teacher's, initialised from its first layers)
replace groups of the frozen teacher's layers with probability
`replace_rate`; phase 2 (`num_train_steps`): the successor alone is
fine-tuned. lightjax/shrink/theseus.py, lightjax/models/theseus.py.
"""

from lightjax import shrink


def get_config(arg=None):
  return shrink.recipe(__file__, arg, "theseus", successor_layers=0,
                       replace_rate=0.5, rate_slope=0.0, replacing_steps=0)
