"""Which attention heads and MLP units a trained model needs: first-order
Taylor importance of a multiplicative gate on each.

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
"""

from __future__ import annotations

from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lightjax import objectives, steps
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


def importance(model, ctx, *, num_examples: int = 512,
               split: str = "train") -> dict[str, Any]:
  """Per-layer normalised head and unit importance of `model` on the first
  `num_examples` of `split` of the run's task (module docstring)."""
  raw = raw_importance(model, ctx.batches(split, num_examples),
                       kind=ctx.task.kind, pad_id=ctx.pad_id)
  return {"heads": normalise_per_layer(raw["heads"]),
          "units": normalise_per_layer(raw["units"]),
          "num_examples": raw["num_examples"]}
