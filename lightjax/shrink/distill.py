"""The student of a distillation run (DistilBERT, Sanh et al. 2019, sec. 3).

The shrink step builds the student; the recovery run trains it with
`objectives.distillation` (soft targets at temperature T from the teacher's
logits + the labels' cross-entropy; `config.train_objective =
"distillation"`, `config.objective_options.distillation`). Where the student comes from:

  init="teacher"   DistilBERT's initialisation: the teacher with one layer
                   of every two kept (`num_layers` of them, evenly spaced
                   from the bottom: 0, 2, 4, ...), weights copied.
  init="scratch"   the same architecture freshly initialised: the baseline a
                   distilled student has to beat (train it with
                   `train_objective=""` for plain labels).
  student_from     a model to start from instead (a lightjax workdir such as
                   a prune_heads run, or hf:...): a pruned teacher as the
                   student, the original as the teacher. With init="scratch"
                   its architecture, freshly initialised.
"""

from __future__ import annotations

import numpy as np

import ml_collections

from lightjax import init_from
from lightjax.shrink import layers
from lightjax.shrink.base import METHODS, Context, Shrunk


def student_layers(n: int, keep: int) -> list[int]:
  """`keep` of `n` layers, one of every n/keep from the bottom (DistilBERT
  keeps 0, 2, 4, ... of BERT's 12)."""
  if not 0 < keep <= n:
    raise ValueError(f"distill.num_layers must be in 1..{n}, got {keep}")
  step = n / keep
  return sorted({int(np.floor(i * step)) for i in range(keep)})


def distill(teacher, ctx: Context) -> Shrunk:
  opts = ctx.options
  if opts.get("student_from"):
    model, source = init_from.load_model(opts["student_from"],
                                         seed=ctx.config.seed)
    if (source.vocab_size, source.num_classes) != (ctx.vocab_size,
                                                   ctx.num_classes):
      raise ValueError(f"distill.student_from={opts['student_from']} has"
                       f" vocabulary {source.vocab_size} and"
                       f" {source.num_classes} classes; the teacher"
                       f" {ctx.vocab_size} and {ctx.num_classes}")
    cfg = ml_collections.ConfigDict(source.model)
    init = opts.get("init", "teacher")
    if init == "scratch":  # the baseline: that architecture, fresh weights
      model = ctx.build(cfg)
    elif init != "teacher":
      raise ValueError(f"distill.init must be 'teacher' or 'scratch', got"
                       f" {init!r}")
    return Shrunk(model, cfg, {"student_from": opts["student_from"],
                               "init": init})
  n = ctx.teacher_cfg.num_layers
  keep = int(opts.get("num_layers") or max(1, n // 2))
  kept = student_layers(n, keep)
  out = layers.keep_layers(teacher, ctx, kept)
  init = opts.get("init", "teacher")
  if init == "scratch":
    out = Shrunk(ctx.build(out.model_cfg), out.model_cfg,
                 {"kept_layers": kept})
  elif init != "teacher":
    raise ValueError(f"distill.init must be 'teacher' or 'scratch', got {init!r}")
  out.details["init"] = init
  return out


METHODS.register("distill", distill)
