"""Width pruning: fewer channels in the residual stream (Minitron).

`prune_width` (Muralidharan et al. 2024, "Compact Language Models via
Pruning and Knowledge Distillation", sec. 2.2; Sreenivas et al. 2024, "LLM
Pruning and Distillation in Practice: The Minitron Approach", sec. 2)
scores each of the `embed_dim` channels of the residual stream by its
activation importance on a calibration batch, F_i = sum over every
LayerNorm of agg |LN(X)_i| (`importance`, "activation"), and keeps the most
important ones: "smaller embeddings", the axis head and MLP pruning leave
alone. Options (`config.shrink.prune_width`):
  fraction      of the channels to remove, in (0, 1); rounded to a whole
                number of channels, at least 1
  embed_dim     instead of `fraction`: the student's width (0 = use
                `fraction`)
  num_examples  calibration examples (the first of `split`, default train)

The student is the teacher's config with `embed_dim` changed (heads, head
dim, MLP widths, per-layer `layers` specs, ranks and depth as they were), so
it saves, reloads, resumes, exports and is pruned further like any model;
its weights are the teacher's with every dimension that is the residual
width cut to the kept channels. What a dimension is comes from the
parameter's logical axis names (`shrink.axes_of`: "embed", and "norm" for a
LayerNorm's), so one rule (`shrink.slice_axes`) cuts the token, position
and segment embeddings (ALBERT's factorised table stays; its projection
loses columns), the embedding LayerNorm, every block's q/k/v kernel rows,
out kernel columns and bias, ln1/ln2, fc1 rows, fc2 columns and bias (and
their low-rank factors: the `down` rows of q/k/v/fc1, the `up` columns of
out/fc2), the final LayerNorm, the "cls" vector, the pooler (rows and
columns), the classifier's input rows, an MLM head's transform and its
LayerNorm, and the dual encoder's [u, v, u*v, u-v] input (a dimension k
times the width: the kept channels of each part). head_dim is its own field
and stays; no attention variant has a parameter of the residual width (a
kernel sees [B, L, H, head_dim]: Linformer's E/F project the length,
Performer's features are head_dim wide), so every variant keeps its own.

A sentence encoder's output is its pooled residual stream, which comes out
E' wide: it could no longer be compared with (or distilled toward) the
teacher's E-dim embeddings. So a student of a teacher without a projection
gets one, E' -> E, set to the selection matrix (kernel [E', E], 1 at
(j, kept[j]), bias 0): before any training its pooled vector lands in the
teacher's coordinates, the removed channels 0, and the embedding MSE and
cosine to the teacher are defined. This is TinyBERT's W_h (Jiao et al.
2020, "TinyBERT: Distilling BERT for Natural Language Understanding",
eq. 8: a learnable map of the narrower student's hidden states into the
teacher's space), kept as part of the model; it is also
sentence-transformers' Dense module, so the student saves back as a
sentence-transformers directory (2_Dense). A teacher that already
projects keeps its projection with the rows of the removed channels cut
(its input axis is "embed"; its output, "projection", is not the
residual width). The projection adds E' * E + E parameters outside the
blocks. Head, MLP and layer pruning leave it as it is.

Not exact, by design: a LayerNorm normalises by the mean and variance over
the channels it sees, and over fewer channels those change, so removing
even channels whose weights are all zero changes the function; Minitron
recovers with distillation (sec. 3; here `num_train_steps`, or the distill
recipe with `student_from`). What is exact (tests/test_shrink_width.py):
keeping every channel in any order (a permutation of the residual stream is
a symmetry of the Transformer, LayerNorm included), and removing the copies
of a stream whose every channel was duplicated and whose copies are read by
zero weights (duplication keeps every LayerNorm's mean and variance).

Refused in one line: sinusoidal positions (a narrower sinusoidal table has
other frequencies, not a slice of the teacher's), and a low-rank factor of
a rank above the new width.

`details` (shrink.json): the kept channels (original indices, ascending),
the removed ones, every channel's score, the teacher's and student's width,
whether the selection projection was added.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lightjax import models
from lightjax.models import weights as weights_lib
from lightjax.shrink import importance
from lightjax.shrink.base import (METHODS, Context, Shrunk, axes_of,
                                  build_with, model_config, params_of,
                                  slice_axes)
from lightjax.shrink.heads import check_fraction, check_int

# The logical axes that are the residual width (`sharding.LOGICAL_AXES`):
# "embed" on embeddings, projections and heads, "norm" on LayerNorms.
RESIDUAL_AXES = ("embed", "norm")


def check_channels(kept: Sequence[int], embed_dim: int) -> list[int]:
  """`kept`: distinct channel indices in 0..embed_dim-1, at least one, in
  the order given (a permutation is allowed)."""
  idx = [int(i) for i in kept]
  if not idx or len(set(idx)) != len(idx) or any(
      not 0 <= i < embed_dim for i in idx):
    raise ValueError(f"the teacher has {embed_dim} channels (indices"
                     f" 0..{embed_dim - 1}); kept channels {idx} must be at"
                     " least one distinct index in that range")
  return idx


def slice_width(weights: dict, axes: dict, kept: Sequence[int],
                embed_dim: int) -> dict:
  """The teacher's parameters with every residual dimension ("embed",
  "norm") cut to channels `kept`; a dimension k * embed_dim wide (k parts
  side by side) keeps the kept channels of each part."""
  kept_K = np.asarray(kept, int)

  def index_of(path, axis, size):
    if axis not in RESIDUAL_AXES:
      return None
    if size % embed_dim:
      raise ValueError(f"{weights_lib.name(path)} has a residual dimension"
                       f" of {size}, not a multiple of embed_dim {embed_dim}")
    return np.concatenate([kept_K + part * embed_dim
                           for part in range(size // embed_dim)])
  return slice_axes(weights, axes, index_of)


def _student_config(cfg, width: int):
  """The teacher's config.model at `width` channels (an embedding model
  projected back to the teacher's width, `_needs_projection`), or one line
  why not."""
  if models.as_model_config(cfg).pos_embedding == "sinusoidal":
    raise ValueError("prune_width: the teacher's positions are sinusoidal; a"
                     " narrower sinusoidal table has other frequencies, not a"
                     " slice of the teacher's (width-prune a model with"
                     " pos_embedding='learned')")
  changes = {"embed_dim": width}
  if _needs_projection(cfg):
    changes["projection_dim"] = int(cfg.embed_dim)
  try:
    return model_config(cfg, **changes)
  except ValueError as e:  # a low-rank factor wider than the new width
    raise ValueError(f"prune_width to embed_dim {width}: {e}") from None


def _needs_projection(cfg) -> bool:
  """An embedding model (its output is the residual width) without a
  projection to the teacher's width of its own."""
  m = models.as_model_config(cfg)
  return ("embedding" in (models.task_kinds(m.name) or ())
          and not m.projection_dim)


def selection_projection(kept: Sequence[int], embed_dim: int
                         ) -> dict[str, np.ndarray]:
  """The projection E' -> E that puts the kept channels back where the
  teacher had them (module docstring: TinyBERT's W_h, initialised as the
  selection matrix): kernel [E', E] with 1 at (j, kept[j]), bias 0."""
  kernel_ExD = np.zeros((len(kept), embed_dim), np.float32)
  kernel_ExD[np.arange(len(kept)), np.asarray(kept, int)] = 1.0
  return {"kernel": kernel_ExD, "bias": np.zeros(embed_dim, np.float32)}


def keep_channels(teacher, ctx: Context, kept: Sequence[int]) -> Shrunk:
  """The teacher with only residual channels `kept` (original indices, in
  this order), physically: embed_dim = len(kept). A sentence encoder
  without a projection gets the selection matrix as one (module
  docstring), so it still embeds in the teacher's E dims."""
  embed_dim = int(ctx.teacher_cfg.embed_dim)
  kept = check_channels(kept, embed_dim)
  student_cfg = _student_config(ctx.teacher_cfg, len(kept))
  weights = slice_width(params_of(teacher), axes_of(teacher), kept, embed_dim)
  added = _needs_projection(ctx.teacher_cfg)
  if added:
    for name, value in selection_projection(kept, embed_dim).items():
      weights[weights_lib.PROJECTION + (name,)] = value
  model = build_with(ctx, student_cfg, weights)
  return Shrunk(model, student_cfg, {"kept_channels": kept,
                                     "projection_added": added})


def _width(opts: dict[str, Any], embed_dim: int) -> int:
  """The student's width from `embed_dim` or `fraction`, checked."""
  if opts.get("embed_dim"):
    return check_int("prune_width", "embed_dim", opts["embed_dim"], 1,
                     embed_dim - 1)
  fraction = check_fraction("prune_width", opts.get("fraction", 0.25))
  remove = int(round(fraction * embed_dim))
  if not 1 <= remove < embed_dim:
    raise ValueError(f"prune_width.fraction={fraction} removes {remove} of"
                     f" {embed_dim} channels; remove 1..{embed_dim - 1} (a"
                     f" fraction in [{0.5 / embed_dim:.3g},"
                     f" {1 - 0.5 / embed_dim:.3g}))")
  return embed_dim - remove


def prune_width(teacher, ctx: Context) -> Shrunk:
  """Keeps the most important residual channels (module docstring)."""
  opts = ctx.options
  embed_dim = int(ctx.teacher_cfg.embed_dim)
  width = _width(opts, embed_dim)
  _student_config(ctx.teacher_cfg, width)  # refused before any scoring
  num_examples = check_int("prune_width", "num_examples",
                           opts.get("num_examples", 512), 1)
  split = opts.get("split", "train")
  scores_E = importance.importance(teacher, ctx, num_examples=num_examples,
                                   split=split, kind="activation")["channels"]
  order = np.argsort(-scores_E, kind="stable")  # ties: the lower index first
  kept = sorted(int(i) for i in order[:width])
  out = keep_channels(teacher, ctx, kept)
  out.details.update({
      "removed_channels": sorted(int(i) for i in order[width:]),
      "channel_scores": [float(s) for s in scores_E],
      "teacher_embed_dim": embed_dim, "embed_dim": width,
      "num_examples": num_examples, "split": split})
  return out


METHODS.register("prune_width", prune_width)
