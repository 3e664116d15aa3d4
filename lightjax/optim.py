"""Optimizer and learning-rate schedules: AdamW + global-norm clipping.

Schedules are a name -> function registry. "rsqrt" is Long Range Arena's
`constant * linear_warmup * rsqrt_decay` (lra_benchmarks/utils/train_utils.py):
lr(t) = base * min(1, t / warmup) / sqrt(max(t, warmup)).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from lightjax.registry import Registry


def _rsqrt(base: float, warmup: int, total: int) -> optax.Schedule:
  del total
  warmup = max(warmup, 1)

  def schedule(step):
    t = jnp.asarray(step, jnp.float32) + 1.0
    return base * jnp.minimum(1.0, t / warmup) / jnp.sqrt(jnp.maximum(t, warmup))

  return schedule


def _cosine(base: float, warmup: int, total: int) -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(
      0.0, base, max(warmup, 1), max(total, warmup + 1), end_value=0.0)


def _linear(base: float, warmup: int, total: int) -> optax.Schedule:
  return optax.join_schedules(
      [optax.linear_schedule(0.0, base, max(warmup, 1)),
       optax.linear_schedule(base, 0.0, max(total - warmup, 1))], [warmup])


def _constant(base: float, warmup: int, total: int) -> optax.Schedule:
  del total
  return optax.join_schedules(
      [optax.linear_schedule(0.0, base, max(warmup, 1)),
       optax.constant_schedule(base)], [warmup])


SCHEDULES: Registry[Callable[[float, int, int], optax.Schedule]] = Registry(
    "schedule")
for _name, _fn in (("rsqrt", _rsqrt), ("cosine", _cosine), ("linear", _linear),
                   ("constant", _constant)):
  SCHEDULES.register(_name, _fn)


def make_schedule(cfg, total_steps: int) -> optax.Schedule:
  return SCHEDULES.get(cfg.schedule)(cfg.learning_rate, cfg.warmup_steps,
                                     total_steps)


def _decay_mask(params):
  """Weight decay on matrices only: not on biases, LayerNorm scales or 1-D tables."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(cfg, total_steps: int) -> tuple[optax.GradientTransformation,
                                                   optax.Schedule]:
  schedule = make_schedule(cfg, total_steps)
  parts = []
  if cfg.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2,
                           weight_decay=cfg.weight_decay, mask=_decay_mask))
  return optax.chain(*parts), schedule
