r"""Low-rank (SVD) factorisation of a trained model's block projections.

  python -m lightjax.train --config configs/listops.py --workdir runs/listops
  python -m lightjax.shrink --config configs/shrink/low_rank.py \
      --workdir runs/shrink/low_rank --config.init_from=runs/listops
  # an energy target instead of one rank (per matrix), or only the MLP:
  python -m lightjax.shrink --config configs/shrink/low_rank.py \
      --workdir ... --config.init_from=runs/listops \
      --config.shrink.low_rank.rank=0 --config.shrink.low_rank.energy=0.9
  python -m lightjax.shrink --config configs/shrink/low_rank.py \
      --workdir ... --config.init_from=runs/listops \
      --config.shrink.low_rank.matrices="('fc1','fc2')"

Replaces each chosen projection W [in, out] (query, key, value, out, fc1,
fc2 of every block) by its balanced truncated SVD, down [in, r] @ up [r, out]
(Eckart-Young optimal; Denton et al. 2014; lightjax/shrink/lowrank.py),
keeps a matrix full where r * (in + out) >= in * out, then fine-tunes
(`num_train_steps`; ListOps: 500). Exactly one of `rank` (> 0) and `energy`
(in (0, 1]) is set. ARG: see `lightjax.shrink.recipe` (a GLUE task, "tiny").

Why rank 24 on the README's ListOps model (81,226 parameters, embed 64, 4
heads of 16, MLP 128, 2 layers): the six block matrices hold 2 x (4 x 64 x
64 + 2 x 64 x 128) = 65,536 weights, 81% of the model (the embedding table,
LayerNorms and head are not factorised). Rank r keeps 2 x r x (4 x 128 + 2 x
192) = 1,792 r of them, so r = 24 removes 22,528 (27.7% of the model) and
r <= 25 is needed for the >= 25% target. The tiny preset (embed 32, MLP 64)
uses rank 8.
"""

from lightjax import shrink


def get_config(arg=None):
  tiny = "tiny" in (arg or "").split(",")
  return shrink.recipe(__file__, arg, "low_rank", rank=8 if tiny else 24,
                       energy=0.0,
                       matrices=("query", "key", "value", "out", "fc1", "fc2"))
