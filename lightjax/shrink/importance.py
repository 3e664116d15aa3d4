"""Which attention heads, MLP units, residual channels and blocks a trained
model needs: first-order Taylor importance of a multiplicative gate on each
head and unit ("gradient"), or the size of what each produces on a
calibration batch ("activation", below).

Heads (Michel et al. 2019, "Are Sixteen Heads Really Better than One?",
sec. 4, eq. 2). Every head h's output is multiplied by a gate xi_h
(`transformer.HeadGate`, all ones, so the model is unchanged) and

    I_h = E_x | dL(x) / d xi_h |,

the expected absolute change of the loss when the head is scaled, to first
order the loss change of removing it (xi_h: 1 -> 0). The absolute value is
taken per example, as eq. 2 is written (the authors' code and HF's
bertology take it per batch): per-example gradients come from a `jax.vmap`
of `jax.grad`, which costs one batched forward and backward pass.

MLP units: the same criterion on a gate g_j on unit j's activation a_j,
fc2(g * act(fc1(x))), as structured pruning uses (Molchanov et al. 2017,
"Pruning Convolutional Neural Networks for Resource Efficient Inference",
eq. 7 applied to units rather than feature maps). No gate module is needed:
with fc2 = a W2 + b2 (W2 [M, E]), a gate on unit j is the same function as
scaling row j of W2 by g_j, so by the chain rule

    dL/dg_j |_{g=1} = sum_e W2[j, e] dL/dW2[j, e]
                    = sum_tokens a_j dL/da_j,

the row-wise dot product of fc2's kernel with its gradient (the second line
is the "activation x gradient" form; both are exact, not approximations).
We differentiate with respect to per-row scales of W2 directly, inside the
loss, on a merged copy of the model: the teacher is never modified.

Normalisation (Michel et al. 2019 sec. 4.2, after Molchanov et al. 2017):
each layer's scores are divided by their l2 norm, so heads (units) of
different layers compare on one scale and a global ranking prunes layers
unevenly.

Data: `lightjax.shrink` methods score on the first `num_examples` of the
train split (`Context.batches`), a fixed subset, in eval mode (no dropout).
The validation split is what the run reports before fine-tuning and what
selects the fine-tuned checkpoint, so scoring on it by default would tune the
pruning to the number it is judged by; `split="validation"` scores on
held-out data instead (Michel et al. use held-out data in sec. 4.2).

Activations (Muralidharan et al. 2024, "Compact Language Models via Pruning
and Knowledge Distillation" (Minitron), sec. 2.2): no labels and no
backward pass, one forward pass over the calibration batch with every
module's output captured (`nnx.capture`), reduced inside one jitted program:

    head h     F_h = agg || Attn(X W_Q,h, X W_K,h, X W_V,h) ||_2   (the
               head's output before the out projection)
    unit j     F_j = agg | act(X W_1)_j |     (after the nonlinearity)
    channel i  F_i = sum over every LayerNorm of  agg | LN(X)_i |
    block l    BI_l = 1 - E_{X,t} cos(x_l,t, x_l+1,t)   (Block Importance,
               Men et al. 2024 "ShortGPT" sec. 3.1, Minitron's
               perplexity-free depth score: a block that barely turns its
               input matters little)

`agg` is the aggregation Minitron's ablation of aggregation functions
found best (mean over the sequence, l2 norm over the batch): the mean over
a sequence's real positions (pad positions never count; the "cls" vector
does), then the l2 norm over examples (here its root mean square, so the
scale does not grow with `num_examples`). The absolute value makes a
channel's score its magnitude, not a sum that cancels. Head and unit scores
are normalised per layer like the gradient ones, so the same global ranking
applies; `agreement` compares the two kinds' rankings. A head whose value
weights are zero outputs zeros and scores 0; a unit whose fc1 column is zero
outputs act(0) = 0 for the GELUs and ReLU and scores 0.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lightjax import objectives, steps
from lightjax.metrics import glue_metrics
from lightjax.models import transformer


def _blocks(model) -> list:
  """The model's blocks; refuses a model whose layers share one block (one
  gate per block would score all its uses together)."""
  blocks = list(model.backbone.blocks)
  if len(blocks) > 1 and len({id(b) for b in blocks}) < len(blocks):
    raise ValueError("the model shares one block across layers (share_layers):"
                     " per-layer head and unit importance is undefined; score"
                     " a model with separate layers")
  return blocks


def gradient_fn(model, kind: str, pad_id: int):
  """A jitted `(batch) -> (head_grads, unit_grads)` for `model`.

  head_grads[l]: [B, H_l] per-example dL/dxi_h at xi = 1 (Michel et al.
  2019 eq. 2, before the absolute value); unit_grads[l]: [B, M_l]
  per-example dL/dg_j at g = 1. `kind` is the task's kind
  (`objectives.get(kind)` is the loss: cross-entropy for classification,
  squared error for regression, next-token for lm), `batch` a dict of
  numpy arrays as `Context.batches` yields (inputs, targets, and
  segment_ids where the task has them).
  """
  objective = objectives.get(kind)
  blocks = _blocks(model)
  graphdef, state = nnx.split(model)
  gates_ones = [jnp.ones(b.attn.num_heads, jnp.float32) for b in blocks]
  scales_ones = [jnp.ones(b.mlp.mlp_dim, jnp.float32) for b in blocks]

  def example_loss(gates, scales, state, example):
    # Fresh Variables of this trace (copy=True): mutable here, and the
    # caller's model is never touched.
    copy = nnx.merge(graphdef, state, copy=True)
    for block, gate_H, scale_M in zip(copy.backbone.blocks, gates, scales):
      block.attn.head_gate = transformer.HeadGate(gate_H)
      fc2 = block.mlp.fc2
      # Scaling row j of W2 = gating unit j's activation (module docstring).
      fc2.kernel[...] = fc2.kernel[...] * scale_M[:, None]
    batch = {k: v[None] for k, v in example.items()}
    logits = steps.apply_model(copy, batch, deterministic=True,
                               pad_id=pad_id)
    return objective(logits, batch["targets"], jnp.ones((1,)))["loss_sum"]

  grad_one = jax.grad(example_loss, argnums=(0, 1))

  @jax.jit
  def grads(state, batch):
    return jax.vmap(lambda ex: grad_one(gates_ones, scales_ones, state, ex)
                    )(batch)

  return lambda batch: grads(state, {k: jnp.asarray(v)
                                     for k, v in batch.items()})


def raw_importance(model, batches: Iterable[dict[str, np.ndarray]], *,
                   kind: str, pad_id: int) -> dict[str, list[np.ndarray]]:
  """{"heads": [I_h per layer], "units": [I_j per layer], "num_examples"}:
  mean over examples of |dL/dxi| (eq. 2) and |dL/dg|, not normalised."""
  fn = gradient_fn(model, kind, pad_id)
  heads = units = None
  n = 0
  for batch in batches:
    head_grads, unit_grads = fn(batch)
    h = [np.abs(np.asarray(g)).sum(0) for g in head_grads]
    u = [np.abs(np.asarray(g)).sum(0) for g in unit_grads]
    heads = h if heads is None else [a + b for a, b in zip(heads, h)]
    units = u if units is None else [a + b for a, b in zip(units, u)]
    n += len(batch["targets"])
  if not n:
    raise ValueError("importance needs at least one example; num_examples"
                     " must be >= 1")
  return {"heads": [h / n for h in heads], "units": [u / n for u in units],
          "num_examples": n}


def normalise_per_layer(scores: list[np.ndarray]) -> list[np.ndarray]:
  """Each layer's scores over their l2 norm (Michel et al. 2019 sec. 4.2;
  Molchanov et al. 2017), so one ranking can span layers. An empty layer
  stays empty; an all-zero one stays zero."""
  return [s / (np.linalg.norm(s) + 1e-20) for s in scores]


# --- activation importance (Minitron) ------------------------------------------------

KINDS = ("gradient", "activation")


def check_kind(method: str, kind) -> str:
  """`kind` if it names an importance ("gradient" | "activation"), else
  one line with the valid ones."""
  if kind not in KINDS:
    raise ValueError(f"{method}.importance {kind!r} is unknown; valid:"
                     f" {', '.join(KINDS)}")
  return kind


def _real_positions(tokens_BxL, pad_id: int, length: int) -> jax.Array:
  """[B, length]: True at non-pad tokens and at positions the model puts
  before the tokens (the "cls" vector), which its own mask counts."""
  real_BxL = tokens_BxL != pad_id
  extra_BxP = jnp.ones((real_BxL.shape[0], length - real_BxL.shape[1]), bool)
  return jnp.concatenate([extra_BxP, real_BxL], 1)


def _position_mean(x_BxLxK, real_BxL) -> jax.Array:
  """Per example, the mean of `x` over its real positions: [B, K] (in
  float32 whatever the compute dtype)."""
  x_BxLxK = x_BxLxK.astype(jnp.float32)
  w_BxL = real_BxL.astype(jnp.float32)
  return (x_BxLxK * w_BxL[..., None]).sum(1) / jnp.maximum(
      w_BxL.sum(1, keepdims=True), 1.0)


def _capture_paths(model) -> dict[str, Any]:
  """Where the activations are in `nnx.capture`'s output (the path of each
  module's `__call__` output), found by walking the modules, so no
  parameter path is spelled here: every LayerNorm's output, and per
  (distinct) block its attention kernel's per-head output [B, L, H, D],
  fc1's pre-activation [B, L, M] with the MLP's activation, its output and
  the first block's input (the embeddings after their norm)."""
  where = {id(m): tuple(p) + ("__call__",) for p, m in nnx.iter_modules(model)}
  blocks = list(model.backbone.blocks)
  distinct = len({id(b) for b in blocks}) == len(blocks)
  return {
      "norms": [where[id(m)] for _, m in nnx.iter_modules(model)
                if isinstance(m, nnx.LayerNorm)],
      "blocks": [{"kernel": where[id(b.attn.kernel)],
                  "fc1": where[id(b.mlp.fc1)],
                  "activation": b.mlp.activation, "out": where[id(b)]}
                 for b in blocks] if distinct else [],
      "first_input": where[id(model.backbone.embed_dropout)]}


def _block_sums(found, blocks, real_BxL, w_B, first_input) -> dict:
  """Per block: sums over examples (weights `w_B`) of the squared
  per-example position-means of each head's output norm and each unit's
  |activation|, and sum over real tokens of cos(block input, output)."""
  heads, units, cos = [], [], []
  x_in = first_input.astype(jnp.float32)
  for b in blocks:
    if b["kernel"] in found:  # a layer pruned to 0 heads calls no kernel
      norm_BxH = _position_mean(
          jnp.linalg.norm(found[b["kernel"]][0], axis=-1), real_BxL)
      heads.append((w_B[:, None] * norm_BxH ** 2).sum(0))
    else:
      heads.append(jnp.zeros((0,)))
    if b["fc1"] in found:  # nor one pruned to 0 units its fc1
      act = transformer.ACTIVATIONS.get(b["activation"])
      unit_BxM = _position_mean(jnp.abs(act(found[b["fc1"]][0])), real_BxL)
      units.append((w_B[:, None] * unit_BxM ** 2).sum(0))
    else:
      units.append(jnp.zeros((0,)))
    x_out = found[b["out"]][0].astype(jnp.float32)
    cos_BxL = (x_in * x_out).sum(-1) / (
        jnp.linalg.norm(x_in, axis=-1) * jnp.linalg.norm(x_out, axis=-1)
        + 1e-9)
    cos.append((cos_BxL * real_BxL * w_B[:, None]).sum())
    x_in = x_out
  return {"heads": heads, "units": units,
          "block_cos": jnp.stack(cos) if cos else jnp.zeros((0,))}


@functools.partial(jax.jit, static_argnames=("graphdef", "pad_id"))
def _activation_sums(graphdef, state, batch, w_B, *, pad_id: int):
  """`activation_fn`'s program: jitted on the model's graph (static), so
  every scoring of a model of one structure shares one compilation."""
  copy = nnx.merge(graphdef, state, copy=True)
  paths = _capture_paths(copy)
  _, captured = nnx.capture(
      lambda m: steps.apply_model(m, batch, deterministic=True,
                                  pad_id=pad_id),
      nnx.Intermediate, method_outputs=nnx.Intermediate)(copy)
  found = {tuple(p): v.get_value() for p, v in nnx.to_flat_state(captured)}
  first = found[paths["first_input"]][0]
  real_BxL = _real_positions(batch["inputs"], pad_id, first.shape[1])
  norms_NxE = [(w_B[:, None] * _position_mean(jnp.abs(y), real_BxL) ** 2
                ).sum(0) for path in paths["norms"] for y in found[path]]
  out = _block_sums(found, paths["blocks"], real_BxL, w_B, first)
  return {**out, "norms": jnp.stack(norms_NxE),
          "tokens": (real_BxL * w_B[:, None]).sum(), "examples": w_B.sum()}


def activation_fn(model, pad_id: int):
  """`(batch, weight_B) -> sums` for `model`: one forward pass (eval mode)
  with every module's output captured (`nnx.capture`), reduced in the same
  program to per-head, per-unit, per-channel and per-block sums (module
  docstring, "Activations"). `weight_B` is 1 for a real example, 0 for the
  rows padding the last batch (so one program serves every batch)."""
  graphdef, state = nnx.split(model)
  return lambda batch, w_B: _activation_sums(
      graphdef, state, {k: jnp.asarray(v) for k, v in batch.items()},
      jnp.asarray(w_B), pad_id=pad_id)


def _pad_rows(batch: dict[str, np.ndarray], size: int, pad_id: int
              ) -> dict[str, np.ndarray]:
  """`batch` with rows appended up to `size`: pad tokens, zero elsewhere."""
  out = {}
  for key, value in batch.items():
    fill = pad_id if key == "inputs" else 0
    extra = np.full((size - len(value),) + value.shape[1:], fill, value.dtype)
    out[key] = np.concatenate([value, extra])
  return out


def raw_activation_importance(model, batches: Iterable[dict[str, np.ndarray]],
                              *, pad_id: int) -> dict[str, Any]:
  """{"heads": [F_h per layer], "units": [F_j per layer], "channels": F_c
  [E], "blocks": BI per layer (empty for shared blocks), "num_examples"}:
  the activation scores of the module docstring, not normalised."""
  fn = activation_fn(model, pad_id)
  total, size = None, None
  for batch in batches:
    n = len(batch["inputs"])
    size = size or n  # the first batch is the largest
    w_B = (np.arange(size) < n).astype(np.float32)
    sums = jax.tree.map(np.asarray, fn(_pad_rows(batch, size, pad_id), w_B))
    total = sums if total is None else jax.tree.map(np.add, total, sums)
  if total is None or not total["examples"]:
    raise ValueError("importance needs at least one example; num_examples"
                     " must be >= 1")
  n = float(total["examples"])
  return {"heads": [np.sqrt(h / n) for h in total["heads"]],
          "units": [np.sqrt(u / n) for u in total["units"]],
          "channels": np.sqrt(total["norms"] / n).sum(0),
          "blocks": 1.0 - total["block_cos"] / max(float(total["tokens"]), 1.0),
          "num_examples": int(n)}


# --- both kinds ------------------------------------------------------------------------


def importance(model, ctx, *, num_examples: int = 512, split: str = "train",
               kind: str = "gradient") -> dict[str, Any]:
  """Per-layer normalised head and unit importance of `model` on the first
  `num_examples` of `split` of the run's task, by `kind` ("gradient":
  Michel et al.'s |dL/dxi|; "activation": Minitron's activation norms,
  which also give "channels" and "blocks"; module docstring)."""
  check_kind("importance", kind)
  batches = ctx.batches(split, num_examples)
  if kind == "activation":
    raw = raw_activation_importance(model, batches, pad_id=ctx.pad_id)
  else:
    raw = raw_importance(model, batches, kind=ctx.task.kind, pad_id=ctx.pad_id)
  return {**raw, "heads": normalise_per_layer(raw["heads"]),
          "units": normalise_per_layer(raw["units"])}


def agreement(a: list[np.ndarray], b: list[np.ndarray], count: int
              ) -> dict[str, float]:
  """How two importance scorings of the same heads (units) agree: the
  Spearman rank correlation of all (layer, position) scores, and the share
  of the `count` lowest under `a` that are also among the `count` lowest
  under `b` (what a global prune of `count` would remove either way)."""
  flat_a, flat_b = np.concatenate(a), np.concatenate(b)
  lowest_a = set(np.argsort(flat_a, kind="stable")[:count].tolist())
  lowest_b = set(np.argsort(flat_b, kind="stable")[:count].tolist())
  return {"spearman": glue_metrics.spearman(flat_a, flat_b),
          "count": int(count),
          "overlap": len(lowest_a & lowest_b) / max(count, 1)}
