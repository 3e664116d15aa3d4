"""Models, train states and random batches for one (variant, length) point.

Everything is built through the same registries and helpers as training
(`models.build_model`, `optim.make_optimizer`, `nnx.Optimizer`, `nnx.split`),
so the program a benchmark times is the one `lightjax.train` runs. Inputs are
random tokens (no padding) and labels: speed and memory depend on shapes, not
on data, so no dataset is needed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from lightjax import models, optim
from lightjax.metrics.params import count_params

# The optimizer's schedule length: irrelevant to the cost of one step.
_SCHEDULE_STEPS = 1000


def model_config(config: ml_collections.ConfigDict, variant: str,
                 model_name: str = "encoder_classifier"
                 ) -> ml_collections.ConfigDict:
  """A copy of `config.model` for `variant` (its options from the config)."""
  m = ml_collections.ConfigDict(config.model.to_dict())
  m.name = model_name
  m.attention.name = variant
  return m


@dataclasses.dataclass
class Built:
  """A split model (and optimizer): graphdefs + device state + param count."""
  graphdefs: dict[str, Any]
  state: dict[str, Any]
  num_params: int


def build(config: ml_collections.ConfigDict, variant: str, max_len: int, *,
          model_name: str = "encoder_classifier",
          with_optimizer: bool = True) -> Built:
  """Builds model (+ AdamW state) exactly as the trainer does, then splits it."""
  rngs = nnx.Rngs(params=config.seed, dropout=config.seed + 1)
  model = models.build_model(
      model_config(config, variant, model_name), vocab_size=config.vocab_size,
      num_classes=config.num_classes, max_len=max_len, rngs=rngs)
  num_params = count_params(model)["total"]
  gd_model, model_state = nnx.split(model)
  graphdefs, state = {"model": gd_model}, {"model": model_state}
  if with_optimizer:
    tx, _ = optim.make_optimizer(config.optim, _SCHEDULE_STEPS)
    gd_opt, opt_state = nnx.split(nnx.Optimizer(model, tx, wrt=nnx.Param))
    graphdefs["opt"], state["opt"] = gd_opt, opt_state
  return Built(graphdefs, jax.device_put(state), num_params)


def random_batch(config: ml_collections.ConfigDict, batch_size: int,
                 seq_len: int) -> dict[str, jax.Array]:
  """Classification batch of random non-pad tokens (the trainer's layout)."""
  k_tok, k_lab = jax.random.split(jax.random.key(config.seed + 2))
  return jax.device_put({
      "inputs": jax.random.randint(k_tok, (batch_size, seq_len), 1,
                                   config.vocab_size, jnp.int32),
      "targets": jax.random.randint(k_lab, (batch_size,), 0,
                                    config.num_classes, jnp.int32),
      "weights": jnp.ones((batch_size,), jnp.float32),
  })
