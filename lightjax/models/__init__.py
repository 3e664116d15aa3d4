"""Model registry: `config.model.name` -> model class. The one place a model is chosen."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from lightjax.models.transformer import DecoderLM, EncoderClassifier

_MODELS = {
    "encoder_classifier": EncoderClassifier,
    "decoder_lm": DecoderLM,
}
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def names() -> list[str]:
  return sorted(_MODELS)


def dtype_names() -> list[str]:
  return sorted(_DTYPES)


def build_model(cfg, *, vocab_size: int, num_classes: int, max_len: int,
                rngs: nnx.Rngs):
  """Builds `cfg.name` with compute dtype `cfg.dtype` (params stay float32)."""
  if cfg.name not in _MODELS:
    raise ValueError(f"unknown model {cfg.name!r}; valid: {', '.join(names())}")
  if cfg.dtype not in _DTYPES:
    raise ValueError(f"unknown dtype {cfg.dtype!r}; valid: {', '.join(dtype_names())}")
  return _MODELS[cfg.name](cfg, vocab_size=vocab_size, num_classes=num_classes,
                           max_len=max_len, rngs=rngs, dtype=_DTYPES[cfg.dtype])
