"""BERT-of-Theseus (Xu et al. 2020): successor layers learn to replace
groups of the teacher's layers inside the teacher, then stand alone.

Phase 1 trains a `theseus_classifier` (lightjax/models/theseus.py): the
teacher's `n` blocks frozen as the predecessor, `m` successor blocks
initialised from the teacher's first m layers (as the authors' code does),
each replacing its group of n/m predecessor blocks with probability
p(t) = min(1, rate_slope * t + replace_rate) (sec. 3.1-3.2), embeddings and
classifier shared and trained, for `replacing_steps` steps. Phase 2 (the
run's recovery fine-tuning, `num_train_steps`) trains the extracted
successor, a plain m-layer `encoder_classifier`, alone.
"""

from __future__ import annotations

import functools

from lightjax.models import weights as weights_lib
from lightjax.shrink.base import (METHODS, Context, Shrunk, build_with,
                                  model_config, params_of)

_THESEUS_FIELDS = ("theseus_predecessor_layers", "theseus_replace_rate",
                   "theseus_rate_slope")


def _successor(ctx: Context, hybrid) -> Shrunk:
  """The trained successor as a plain encoder_classifier."""
  cfg = model_config(ctx.teacher_cfg, num_layers=len(hybrid.backbone.blocks))
  weights = {p: v for p, v in params_of(hybrid).items()
             if p[:len(weights_lib.PREDECESSOR)] != weights_lib.PREDECESSOR}
  return Shrunk(build_with(ctx, cfg, weights), cfg, {})


def theseus(teacher, ctx: Context) -> Shrunk:
  opts, cfg = ctx.options, ctx.teacher_cfg
  if cfg.name != "encoder_classifier":
    raise ValueError(f"theseus replaces the layers of an encoder_classifier;"
                     f" the teacher is a {cfg.name}")
  n = cfg.num_layers
  m = int(opts.get("successor_layers") or max(1, n // 2))
  if not 0 < m < n or n % m:
    raise ValueError(f"theseus.successor_layers must divide the teacher's {n}"
                     f" layers and be fewer, got {m}")
  rate = float(opts.get("replace_rate", 0.5))
  slope = float(opts.get("rate_slope", 0.0))
  if not 0.0 < rate <= 1.0 or slope < 0:
    raise ValueError(f"theseus.replace_rate must be in (0, 1] and rate_slope"
                     f" >= 0, got {rate} and {slope}")
  hybrid_cfg = model_config(
      cfg, name="theseus_classifier", num_layers=m,
      theseus_predecessor_layers=n, theseus_replace_rate=rate,
      theseus_rate_slope=slope)
  weights = {}
  for path, value in params_of(teacher).items():
    layer = weights_lib.block_of(path)
    if layer is not None:
      weights[weights_lib.PREDECESSOR + (layer[0],) + layer[1]] = value
      if layer[0] >= m:
        continue
    weights[path] = value
  model = build_with(ctx, hybrid_cfg, weights)
  steps = int(opts.get("replacing_steps") or ctx.config.num_train_steps)
  return Shrunk(
      model, hybrid_cfg,
      {"successor_layers": m, "predecessor_layers": n, "replace_rate": rate,
       "rate_slope": slope, "replacing_steps": steps},
      prepare_steps=steps, extract=functools.partial(_successor, ctx))


METHODS.register("theseus", theseus)
