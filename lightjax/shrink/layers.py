"""Fewer layers: Poor Man's BERT dropping, and cutting a LayerDrop model.

`drop_layers` (Sajjad et al. 2020, "On the Effect of Dropping Layers of
Pre-trained Transformer Models", sec. 3) removes `num_drop` whole blocks of
a trained model and keeps the rest in order:
  top           the last blocks (nearest the output; their best strategy)
  bottom        the first blocks
  alternate     every other block from the top (n-1, n-3, ...)
  symmetric     from the middle, keeping the bottom and top blocks
  contribution  the blocks that change their input least: highest mean
                cosine similarity between a block's input and output over
                training examples (their contribution-based dropping)
  block_importance  the blocks of lowest Block Importance BI = 1 - E cos(
                input, output) (Men et al. 2024, "ShortGPT", sec. 3.1; the
                perplexity-free depth score of Minitron, Muralidharan et al.
                2024 sec. 2.2), from the activation pass that scores heads,
                units and channels (`importance`, "activation"): the model's
                own forward, so the "cls" vector and segment ids are in it.
                The same quantity as `contribution` (1 - it) where the inputs
                coincide; recorded per block as `block_importance`.

`layerdrop` cuts a model trained with `model.layerdrop > 0` (Fan et al.
2020, "Reducing Transformer Depth on Demand with Structured Dropout") to
`keep` layers without fine-tuning, by their "every other" rule (sec. 4.1):
dropping at rate p = 1 - keep/n removes the layers at depth d (1-based)
with d = 0 mod round(1/p); where that does not give exactly `keep` layers,
evenly spaced ones are kept.

Either way the student is the same model config with `num_layers` (and any
per-layer lists) cut, and its blocks are the kept teacher blocks' weights:
a physically shallower model.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from lightjax.models import weights as weights_lib
from lightjax import models
from lightjax.shrink import importance
from lightjax.shrink.base import (METHODS, Context, Shrunk, build_with,
                                  model_config, params_of)

STRATEGIES = ("top", "bottom", "alternate", "symmetric", "contribution",
              "block_importance")


def _check_count(n: int, num_drop: int) -> None:
  if not 0 < num_drop < n:
    raise ValueError(
        f"cannot drop {num_drop} of {n} layers: drop at least 1 and keep at"
        f" least 1 (num_drop in 1..{n - 1})")


def drop_order(strategy: str, n: int, num_drop: int,
               scores: np.ndarray | None = None) -> list[int]:
  """The 0-based layers `strategy` drops, of `n`; `scores` one per layer:
  the similarities of "contribution" (highest dropped) or the block
  importances of "block_importance" (lowest dropped)."""
  _check_count(n, num_drop)
  if strategy == "top":
    return list(range(n - num_drop, n))
  if strategy == "bottom":
    return list(range(num_drop))
  if strategy == "alternate":
    order = list(range(n - 1, -1, -2)) + list(range(n - 2, -1, -2))
    return sorted(order[:num_drop])
  if strategy == "symmetric":
    lo = (n - num_drop) // 2  # keep `lo` bottom and the rest at the top
    return list(range(lo, lo + num_drop))
  if strategy in ("contribution", "block_importance"):
    if scores is None or len(scores) != n:
      raise ValueError(f"{strategy} dropping needs one score per layer")
    # The layers that do least first: most similar input/output, or least
    # important.
    key = -np.asarray(scores) if strategy == "contribution" else scores
    return sorted(int(i) for i in np.argsort(key, kind="stable")[:num_drop])
  raise ValueError(f"unknown drop strategy {strategy!r}; valid:"
                   f" {', '.join(STRATEGIES)}")


def every_other(n: int, keep: int) -> list[int]:
  """The layers a LayerDrop model keeps at depth `keep` (Fan et al. 2020,
  sec. 4.1 "every other"); evenly spaced where the rule does not fit."""
  if not 0 < keep < n:
    raise ValueError(f"keep must be in 1..{n - 1} for a {n}-layer model, got"
                     f" {keep}")
  k = max(1, round(1 / (1 - keep / n)))
  kept = [i for i in range(n) if (i + 1) % k != 0]
  if len(kept) != keep:
    kept = sorted({int(round(x)) for x in np.linspace(0, n - 1, keep)})
  return kept


def layer_contribution(teacher, ctx: Context,
                       num_examples: int = 256) -> np.ndarray:
  """Mean cosine similarity of each block's input and output over the
  non-pad tokens of `num_examples` training examples (Sajjad et al. 2020)."""
  bb = teacher.backbone
  sims, count = np.zeros(len(bb.blocks)), 0.0

  @nnx.jit
  def per_layer(model, tokens_BxL):
    b = model.backbone
    mask_BxL = tokens_BxL != ctx.pad_id
    x = b.embed_norm(b.embed(tokens_BxL))
    out = []
    for block in b.blocks:
      y = block(x, mask_BxL=mask_BxL, causal=False, deterministic=True)
      cos_BxL = (x * y).sum(-1) / (jnp.linalg.norm(x, axis=-1)
                                   * jnp.linalg.norm(y, axis=-1) + 1e-9)
      out.append((cos_BxL * mask_BxL).sum())
      x = y
    return jnp.stack(out), mask_BxL.sum()

  for batch in ctx.batches("train", num_examples):
    s, c = per_layer(teacher, jnp.asarray(batch["inputs"]))
    sims += np.asarray(s)
    count += float(c)
  return sims / max(count, 1.0)


def _check_separate(cfg) -> None:
  if models.as_model_config(cfg).share_layers:
    raise ValueError("the teacher shares one block across layers"
                     " (share_layers); dropping layers would change nothing"
                     " but its depth: set model.num_layers instead")


def keep_layers(teacher, ctx: Context, kept: list[int]) -> Shrunk:
  """The teacher with only blocks `kept` (in order), weights copied."""
  cfg = ctx.teacher_cfg
  _check_separate(cfg)
  layers = models.as_model_config(cfg).layers
  student_cfg = model_config(cfg, num_layers=len(kept),
                             layers=tuple(layers[i] for i in kept))
  weights = {}
  for path, value in params_of(teacher).items():
    layer = weights_lib.block_of(path)
    if layer is not None:
      if layer[0] not in kept:
        continue
      path = weights_lib.block_path(kept.index(layer[0]), *layer[1])
    weights[path] = value
  model = build_with(ctx, student_cfg, weights)
  return Shrunk(model, student_cfg, {"kept_layers": kept})


def drop_layers(teacher, ctx: Context) -> Shrunk:
  opts = ctx.options
  n = ctx.teacher_cfg.num_layers
  strategy, num_drop = opts.get("strategy", "top"), int(opts["num_drop"])
  num_examples = int(opts.get("num_examples", 256))
  scores = None
  if strategy == "contribution":
    scores = layer_contribution(teacher, ctx, num_examples)
  elif strategy == "block_importance":
    _check_count(n, num_drop)
    _check_separate(ctx.teacher_cfg)  # before scoring
    scores = importance.importance(
        teacher, ctx, num_examples=num_examples,
        split=opts.get("split", "train"), kind="activation")["blocks"]
  dropped = drop_order(strategy, n, num_drop, scores)
  kept = [i for i in range(n) if i not in dropped]
  out = keep_layers(teacher, ctx, kept)
  out.details.update(strategy=strategy, dropped_layers=dropped)
  if scores is not None:
    out.details[strategy] = [float(c) for c in scores]
  return out


def layerdrop(teacher, ctx: Context) -> Shrunk:
  n = ctx.teacher_cfg.num_layers
  keep = int(ctx.options["keep"])
  out = keep_layers(teacher, ctx, every_other(n, keep))
  out.details["teacher_layerdrop"] = float(
      models.as_model_config(ctx.teacher_cfg).layerdrop)
  return out


METHODS.register("drop_layers", drop_layers)
METHODS.register("layerdrop", layerdrop)
