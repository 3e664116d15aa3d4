"""BERT-of-Theseus (Xu et al. 2020, "Compressing BERT by Progressive Module
Replacing"): the model trained while successor layers replace the
predecessor's.

The predecessor's `n` blocks are cut into `m` modules of n/m consecutive
blocks; module i has one successor block. In training, each module's
output comes from its successor with probability p and from its
predecessor blocks otherwise (one Bernoulli draw per module per step, sec.
3.1), so the successor learns to stand in for the module inside the
predecessor's own computation, with no extra loss. p follows their
curriculum (sec. 3.2): p(t) = min(1, slope * t + rate), t the train step
(`slope = 0`: the constant rate of their main experiments). The predecessor
blocks are frozen (`trainable` excludes them; the trainer's optimizer and
gradients follow that filter); the embeddings and the classifier are shared
and trained. Evaluation runs the successor alone, so validation scores (and
the checkpoint kept) are the compact model's. `lightjax.shrink.theseus`
then extracts it as a plain `encoder_classifier` of m layers.

Config (`config.model`, besides the usual fields): `num_layers` = m (the
successor's depth), `theseus_predecessor_layers` = n (a multiple of m),
`theseus_replace_rate`, `theseus_rate_slope`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lightjax import sharding
from lightjax.models import transformer
from lightjax.models.config import as_model_config


class TheseusStep(nnx.Variable):
  """Train steps seen (the curriculum's t); state, not a parameter."""


class TheseusBackbone(transformer.Backbone):
  """The successor's backbone plus the frozen predecessor blocks."""

  def __init__(self, cfg, *, vocab_size: int, max_len: int, rngs: nnx.Rngs,
               dtype):
    cfg = as_model_config(cfg)
    super().__init__(cfg, vocab_size=vocab_size, max_len=max_len, rngs=rngs,
                     dtype=dtype)
    n, m = int(cfg.theseus_predecessor_layers), cfg.num_layers
    if n <= 0 or n % m:
      raise ValueError(f"theseus_predecessor_layers ({n}) must be a positive"
                       f" multiple of num_layers ({m}), the successor's depth")
    if not cfg.uniform:
      raise ValueError("Theseus needs uniform layers; per-layer sizes or"
                       " ranks (heads_per_layer, mlp_dims_per_layer,"
                       " low_rank_ranks) are set")
    self.predecessor = nnx.List(
        [transformer.Block(cfg, max_len, rngs=rngs, dtype=dtype, shared={})
         for _ in range(n)])
    self.replace_rate = float(cfg.theseus_replace_rate)
    self.rate_slope = float(cfg.theseus_rate_slope)
    self.theseus_step = TheseusStep(jnp.zeros((), jnp.int32))
    self.theseus_rngs = rngs["dropout"].fork()

  def replace_probability(self):
    t = self.theseus_step[...].astype(jnp.float32)
    return jnp.minimum(1.0, self.rate_slope * t + self.replace_rate)

  def run_blocks(self, x, *, mask_BxL, causal, deterministic):
    x = self.embed_dropout(self.embed_norm(x), deterministic=deterministic)
    k = len(self.predecessor) // len(self.blocks)

    def successor(succ, preds, x):
      del preds
      return succ(x, mask_BxL=mask_BxL, causal=causal,
                  deterministic=deterministic)

    def predecessor(succ, preds, x):
      del succ
      for block in preds:
        x = block(x, mask_BxL=mask_BxL, causal=causal,
                  deterministic=deterministic)
      return x

    p = None if deterministic else self.replace_probability()
    for i, succ in enumerate(self.blocks):
      x = sharding.constrain(x, transformer.RESIDUAL_AXES)
      preds = nnx.List(list(self.predecessor[i * k:(i + 1) * k]))
      if deterministic:
        x = successor(succ, preds, x)
      else:
        use_successor = jax.random.uniform(self.theseus_rngs()) < p
        x = nnx.cond(use_successor, successor, predecessor, succ, preds, x)
    if not deterministic:
      self.theseus_step[...] = self.theseus_step[...] + 1
    return self.final_norm(x)


class TheseusClassifier(transformer.EncoderClassifier):
  """`encoder_classifier` whose backbone is a `TheseusBackbone`."""

  backbone_cls = TheseusBackbone
  # What the optimizer updates: everything but the predecessor.
  trainable = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("predecessor")))
