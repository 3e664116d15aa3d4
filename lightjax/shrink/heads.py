"""Physical head pruning and structured FFN neuron pruning.

`prune_heads` (Michel et al. 2019, "Are Sixteen Heads Really Better than
One?", sec. 4): heads are ranked by their importance I_h = E_x |dL/dxi_h|
(eq. 2), normalised per layer by the l2 norm (sec. 4.2;
`lightjax.shrink.importance`), and the least important are removed; the
ranking is global over all layers, so layers end with uneven head counts
(an important layer keeps more). Options (`config.shrink.prune_heads`):
  fraction             of all heads to remove, in (0, 1); rounded to a
                       whole number of heads, at least 1
  heads_per_layer      instead of `fraction`: the count each layer keeps
                       (the most important heads within the layer)
  iterations           n rounds; each removes an equal share of the target
                       and the remaining model is re-scored before the next
                       (Michel et al. sec. 4.2 prune iteratively; 1 = score
                       once)
  num_examples         examples the scores are computed on (first of the
                       train split, `split` to change)
  min_heads_per_layer  a layer never drops below this many heads (default
                       0: Michel et al. allow emptying a layer; its
                       attention sublayer then outputs its bias alone)
  importance           "gradient" (the default, above) or "activation":
                       the l2 norm of each head's output on the same
                       examples, no labels needed (Minitron, Muralidharan
                       et al. 2024 sec. 2.2; `lightjax.shrink.importance`)
  compare_importance   also score the teacher by the other kind and record
                       how the rankings agree (Spearman's rho, overlap of
                       the removed set) as `importance_agreement`

`prune_ffn`: the same procedure for MLP units (the structured neuron
pruning TextPruner and nn_pruning apply to the FFN), scored by the same
first-order Taylor criterion on a gate per unit (|dL/dg_j| = |sum_tokens
a_j dL/da_j|; Molchanov et al. 2017) and normalised per layer, ranked
globally across layers (so layers end with different widths, like heads).
Options: `fraction` (of all MLP units) or `mlp_dims_per_layer`,
`iterations`, `num_examples`, `split`, `min_units_per_layer` (default 0),
`importance` ("activation": the mean |act(x W_1)_j|, Minitron) and
`compare_importance`.

The student is physically smaller: it is the teacher's config with
`heads_per_layer` / `mlp_dims_per_layer`, built with `shrink.build_with`
from the teacher's weights sliced to the kept heads (head h occupies columns
h*head_dim:(h+1)*head_dim of the query/key/value kernels and biases, and the
same rows of the out kernel; `MultiHeadAttention._heads`) or kept units
(fc1 columns and bias, fc2 rows), by `shrink.slice_axes` on the "heads" /
"mlp" dimensions of a block's projections (width pruning cuts "embed" the
same way, width.py). Before any fine-tuning it computes what
the teacher computes with the removed heads' gates (units' fc2 rows) at 0.
No attention variant has per-head parameters (Linformer's E/F project the
sequence axis and are shared by a layer's heads; Performer's features and
BigBird's random blocks are per head_dim / per block), so a layer's kernel
parameters are kept whole; a layer left with no heads has none (its kernel
is the parameter-free identity).

`details` (shrink.json) record the kept heads (units) of every layer as
original indices, the removed ones, and every round's normalised scores.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, Sequence

import numpy as np
from flax import nnx

from lightjax.models import weights as weights_lib
from lightjax import models
from lightjax.shrink import importance
from lightjax.shrink.base import (METHODS, Context, Shrunk, axes_of,
                                  build_with, model_config, params_of,
                                  slice_axes)

# --- checks ---------------------------------------------------------------------------


def check_fraction(method: str, fraction) -> float:
  """`fraction` as a float in the open interval (0, 1), else one line."""
  if (isinstance(fraction, bool) or not isinstance(fraction, numbers.Real)
      or not 0.0 < float(fraction) < 1.0):
    raise ValueError(f"{method}.fraction must be in (0, 1) (exclusive), got"
                     f" {fraction!r}")
  return float(fraction)


def check_int(method: str, name: str, value, lo: int, hi: int | None = None
               ) -> int:
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or value < lo or (hi is not None and value > hi)):
    valid = f"{lo}..{hi}" if hi is not None else f">= {lo}"
    raise ValueError(f"{method}.{name} must be an integer in {valid}, got"
                     f" {value!r}")
  return int(value)


def _check_teacher(cfg, method: str) -> None:
  if models.as_model_config(cfg).share_layers:
    raise ValueError(f"{method}: the teacher shares one block across layers"
                     " (share_layers), so every layer must keep the same"
                     " heads and units; per-layer pruning needs separate"
                     " layers")
  if any(s.ranks for s in models.as_model_config(cfg).layers):
    raise ValueError(f"{method}: the teacher has factorised (low-rank)"
                     " projections; prune heads and units before factorising")


def check_kept(kept: Sequence[Sequence[int]], sizes: Sequence[int],
               what: str) -> list[list[int]]:
  """`kept[l]`: distinct indices into layer l's `sizes[l]` heads/units."""
  if len(kept) != len(sizes):
    raise ValueError(f"kept {what} are given for {len(kept)} layers; the"
                     f" model has {len(sizes)}")
  out = []
  for layer, (idx, size) in enumerate(zip(kept, sizes)):
    idx = [int(i) for i in idx]
    if len(set(idx)) != len(idx) or any(not 0 <= i < size for i in idx):
      raise ValueError(f"layer {layer} has {size} {what} (indices"
                       f" 0..{size - 1}); kept {what} {idx} must be distinct"
                       " indices in that range")
    out.append(sorted(idx))
  return out


# --- choosing what to remove ------------------------------------------------------------


def schedule(total: int, iterations: int) -> list[int]:
  """`total` removals in `iterations` equal shares (earlier rounds take the
  remainder): 5 in 2 -> [3, 2]."""
  return [total // iterations + (1 if i < total % iterations else 0)
          for i in range(iterations)]


def lowest_global(scores: Sequence[np.ndarray], count: int,
                  floor: int) -> list[tuple[int, int]]:
  """The `count` lowest-scored (layer, position) pairs over all layers,
  never taking a layer below `floor` entries; ties go to the lower layer,
  then the lower position (a deterministic order)."""
  order = sorted((float(s), layer, pos) for layer, layer_scores
                 in enumerate(scores) for pos, s in enumerate(layer_scores))
  left = [len(s) for s in scores]
  out = []
  for _, layer, pos in order:
    if len(out) == count:
      break
    if left[layer] > floor:
      left[layer] -= 1
      out.append((layer, pos))
  return out


def lowest_per_layer(scores: Sequence[np.ndarray],
                     counts: Sequence[int]) -> list[tuple[int, int]]:
  """The `counts[l]` lowest-scored positions of each layer l."""
  return [(layer, int(pos)) for layer, (s, k) in enumerate(zip(scores, counts))
          for pos in np.argsort(s, kind="stable")[:k]]


# --- slicing weights --------------------------------------------------------------------


def _in_sublayer(path, sublayer: str) -> int | None:
  """The layer of a parameter of a block's `sublayer` ("attn"/"mlp"), else
  None."""
  where = weights_lib.block_of(path)
  return where[0] if where is not None and where[1][:1] == (sublayer,) else None


def slice_heads(weights: dict, axes: dict, kept: Sequence[Sequence[int]],
                head_dim: int) -> dict:
  """The teacher's parameters with layer l's attention cut to heads
  `kept[l]`: the "heads" dimension (q/k/v kernel columns and biases, out
  kernel rows) of its projections (`shrink.slice_axes`). Kernel (variant)
  parameters of a layer left with no heads are dropped (an empty layer's
  kernel is the parameter-free identity)."""
  def index_of(path, axis, size):
    layer = _in_sublayer(path, "attn")
    if axis != "heads" or layer is None:
      return None
    return np.concatenate([np.arange(h * head_dim, (h + 1) * head_dim)
                           for h in kept[layer]] + [np.zeros(0, int)])
  def emptied(path):
    layer = _in_sublayer(path, "attn")
    return (layer is not None and weights_lib.is_kernel_param(path)
            and not kept[layer])
  return {p: v for p, v in slice_axes(weights, axes, index_of).items()
          if not emptied(p)}


def slice_units(weights: dict, axes: dict, kept: Sequence[Sequence[int]]
                ) -> dict:
  """The teacher's parameters with layer l's MLP cut to units `kept[l]`:
  the "mlp" dimension (fc1 kernel columns and bias, fc2 kernel rows; fc2's
  bias stays) of that block's MLP."""
  def index_of(path, axis, size):
    layer = _in_sublayer(path, "mlp")
    return None if axis != "mlp" or layer is None else kept[layer]
  return slice_axes(weights, axes, index_of)


def _match_kernel_params(weights: dict, student_cfg, ctx) -> dict:
  """Attention-kernel parameters that moved: a kernel shared by all layers
  (Linformer sharing="layer") is listed under its first user, which is
  another layer once layer 0 is emptied. Each student kernel parameter
  without a weight takes the teacher's of the same name (the shared
  object), and teacher kernel weights with no student parameter go."""
  abstract = nnx.eval_shape(lambda: ctx.build(student_cfg))
  wanted = {tuple(p) for p, _ in nnx.to_flat_state(nnx.state(abstract,
                                                              nnx.Param))}

  def is_kernel(path):
    where = weights_lib.block_of(path)
    return where is not None and where[1][:2] == ("attn", "kernel")

  out = {p: v for p, v in weights.items() if p in wanted or not is_kernel(p)}
  for path in wanted - set(out):
    if is_kernel(path):
      same = [v for p, v in weights.items() if is_kernel(p) and p[5:] == path[5:]]
      if same:
        out[path] = same[0]
  return out


# --- the students ---------------------------------------------------------------------


def _student_config(cfg, method: str, kept: Sequence[Sequence[int]],
                    field: str) -> tuple[Any, list[list[int]]]:
  """The teacher's config.model with each layer's `field` ("num_heads" or
  "mlp_dim") cut to the `kept` indices (checked), and those indices."""
  _check_teacher(cfg, method)
  layers = models.as_model_config(cfg).layers
  kept = check_kept(kept, [getattr(s, field) for s in layers],
                    "heads" if field == "num_heads" else "units")
  return model_config(cfg, layers=tuple(
      dataclasses.replace(s, **{field: len(k)})
      for s, k in zip(layers, kept))), kept


def keep_heads(teacher, ctx: Context, kept: Sequence[Sequence[int]]) -> Shrunk:
  """The teacher with only heads `kept[l]` (original indices) in layer l,
  physically: fewer q/k/v columns and out rows."""
  cfg = ctx.teacher_cfg
  student_cfg, kept = _student_config(cfg, "prune_heads", kept, "num_heads")
  weights = slice_heads(params_of(teacher), axes_of(teacher), kept,
                        cfg.head_dim)
  weights = _match_kernel_params(weights, student_cfg, ctx)
  model = build_with(ctx, student_cfg, weights)
  return Shrunk(model, student_cfg, {"kept_heads": kept})


def keep_units(teacher, ctx: Context, kept: Sequence[Sequence[int]]) -> Shrunk:
  """The teacher with only MLP units `kept[l]` (original indices) in layer
  l, physically: fewer fc1 columns and fc2 rows."""
  student_cfg, kept = _student_config(ctx.teacher_cfg, "prune_ffn", kept,
                                      "mlp_dim")
  model = build_with(ctx, student_cfg, slice_units(
      params_of(teacher), axes_of(teacher), kept))
  return Shrunk(model, student_cfg, {"kept_units": kept})


# --- the methods ------------------------------------------------------------------------


def _targets(method: str, opts: dict, sizes: list[int], what: str,
             per_layer_key: str, floor_key: str) -> tuple[Any, int]:
  """(per-layer removal counts or None, total removed), from `fraction` or
  an explicit per-layer target, checked; one-line errors."""
  total = sum(sizes)
  explicit = tuple(opts.get(per_layer_key) or ())
  floor = check_int(method, floor_key, opts.get(floor_key, 0), 0)
  if explicit:
    if len(explicit) != len(sizes):
      raise ValueError(f"{method}.{per_layer_key} has {len(explicit)} entries;"
                       f" the teacher has {len(sizes)} layers")
    counts = []
    for layer, (want, have) in enumerate(zip(explicit, sizes)):
      check_int(method, f"{per_layer_key}[{layer}]", want, 0)
      if want > have:
        raise ValueError(f"{method}.{per_layer_key}[{layer}] = {want}: layer"
                         f" {layer} has {have} {what}; keep 0..{have}")
      counts.append(have - int(want))
    if not sum(counts):
      raise ValueError(f"{method}.{per_layer_key} = {explicit} keeps every"
                       f" {what[:-1]}: the teacher has {tuple(sizes)}")
    return counts, sum(counts)
  fraction = check_fraction(method, opts.get("fraction", 0.5))
  count = int(round(fraction * total))
  removable = sum(max(0, s - floor) for s in sizes)
  if count < 1:
    raise ValueError(f"{method}.fraction={fraction} removes no {what[:-1]} of"
                     f" {total}; use at least {1 / total:.3g}")
  if count >= total or count > removable:
    limit = min(removable, total - 1)
    raise ValueError(
        f"{method}.fraction={fraction} removes {count} of {total} {what}, but"
        f" at most {limit} can go ({floor_key}={floor}, and at least one"
        f" {what[:-1]} must remain); use a fraction <= {limit / total:.3g}")
  return None, count


@dataclasses.dataclass(frozen=True)
class _Target:
  """What a pruning method removes: `what` ("heads"/"units", also the
  importance score key), which of `layer_sizes`' (heads, mlp_dim) it
  shrinks, the student builder and the option names."""
  what: str
  size_index: int
  keep_fn: Callable
  per_layer_key: str
  floor_key: str


_TARGETS = {
    "prune_heads": _Target("heads", 0, keep_heads, "heads_per_layer",
                           "min_heads_per_layer"),
    "prune_ffn": _Target("units", 1, keep_units, "mlp_dims_per_layer",
                         "min_units_per_layer"),
}


def _agreement(teacher, ctx: Context, what: str, kind: str, scores,
               count: int, num_examples: int, split: str) -> dict[str, Any]:
  """How the teacher's `what` ranking by `kind` agrees with the other
  kind's (`importance.agreement`, over the `count` removed)."""
  other = "activation" if kind == "gradient" else "gradient"
  other_scores = importance.importance(teacher, ctx, num_examples=num_examples,
                                       split=split, kind=other)[what]
  return {"against": other, **importance.agreement(scores, other_scores,
                                                   count)}


def _prune(teacher, ctx: Context, method: str) -> Shrunk:
  """Both methods' loop: score, remove a share, rebuild, repeat."""
  target, opts = _TARGETS[method], ctx.options
  _check_teacher(ctx.teacher_cfg, method)
  sizes = [(s.num_heads, s.mlp_dim)[target.size_index]
           for s in models.as_model_config(ctx.teacher_cfg).layers]
  what = target.what
  counts, total_remove = _targets(method, opts, sizes, what,
                                  target.per_layer_key, target.floor_key)
  iterations = check_int(method, "iterations", opts.get("iterations", 1), 1,
                         max(counts) if counts else total_remove)
  num_examples = check_int(method, "num_examples",
                           opts.get("num_examples", 512), 1)
  kind = importance.check_kind(method, opts.get("importance", "gradient"))
  if kind == "gradient" and ctx.task.kind == "embedding":
    raise ValueError(
        f"{method}.importance=gradient scores by the loss's gradient, and an"
        " embedding student's loss (its distance to the teacher's"
        " embeddings) is zero at the teacher; use importance=activation")
  split = opts.get("split", "train")
  floor = int(opts.get(target.floor_key, 0))
  kept = [list(range(s)) for s in sizes]
  rounds, out = [], None
  for i in range(iterations):
    # Round i scores the model left by round i - 1 (physically pruned).
    current = teacher if out is None else out.model
    scores = importance.importance(current, ctx, num_examples=num_examples,
                                   split=split, kind=kind)[what]
    if counts is None:
      chosen = lowest_global(scores, schedule(total_remove, iterations)[i],
                             floor)
    else:
      chosen = lowest_per_layer(
          scores, [schedule(c, iterations)[i] for c in counts])
    removed = sorted((layer, kept[layer][pos]) for layer, pos in chosen)
    rounds.append({"kept_before": [list(k) for k in kept],
                   "scores": [[float(x) for x in s] for s in scores],
                   "removed": [list(r) for r in removed]})
    for layer, original in removed:
      kept[layer].remove(original)
    out = target.keep_fn(teacher, ctx, kept)
  out.details.update({
      f"removed_{what}": sorted(r for rnd in rounds for r in rnd["removed"]),
      f"{what}_per_layer": [len(k) for k in kept],
      f"teacher_{what}_per_layer": list(sizes), "importance": kind,
      "rounds": rounds, "num_examples": num_examples, "split": split})
  if opts.get("compare_importance", False):
    first = [np.asarray(s) for s in rounds[0]["scores"]]
    out.details["importance_agreement"] = _agreement(
        teacher, ctx, what, kind, first, total_remove, num_examples, split)
  return out


def prune_heads(teacher, ctx: Context) -> Shrunk:
  return _prune(teacher, ctx, "prune_heads")


def prune_ffn(teacher, ctx: Context) -> Shrunk:
  return _prune(teacher, ctx, "prune_ffn")


METHODS.register("prune_heads", prune_heads)
METHODS.register("prune_ffn", prune_ffn)
