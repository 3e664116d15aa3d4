"""Model registry: `config.model.name` -> model class. The one place a model is chosen."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from lightjax.models.embeddings import POSITION_EMBEDDINGS
from lightjax.models.hf import from_pretrained  # Hugging Face checkpoints
from lightjax.models.mlm import EncoderMLM
from lightjax.models.retrieval import DualEncoderClassifier
from lightjax.models.theseus import TheseusClassifier
from lightjax.models.transformer import (ACTIVATIONS, NORM_POSITIONS,
                                         OPTION_DEFAULTS, POOLS, DecoderLM,
                                         EncoderClassifier)
from lightjax.registry import Registry

MODELS: Registry[type] = Registry("model")
MODELS.register("encoder_classifier", EncoderClassifier)
MODELS.register("encoder_mlm", EncoderMLM)  # BERT's masked-LM head, tied
MODELS.register("decoder_lm", DecoderLM)
# Trained while its layers replace a predecessor's (BERT-of-Theseus).
MODELS.register("theseus_classifier", TheseusClassifier)
# Two documents, one shared encoder, [u, v, u*v, u-v] (LRA Retrieval).
MODELS.register("dual_encoder_classifier", DualEncoderClassifier)
register, get, names = MODELS.register, MODELS.get, MODELS.names

# Compute dtypes (`config.model.dtype`); parameters always stay float32.
DTYPES: Registry = Registry("dtype")
DTYPES.register("float32", jnp.float32)
DTYPES.register("bfloat16", jnp.bfloat16)


def trainable(model) -> nnx.filterlib.Filter:
  """What training updates: a model's `trainable` filter (Theseus freezes
  its predecessor), else every `nnx.Param`."""
  return getattr(model, "trainable", nnx.Param)


def build_model(cfg, *, vocab_size: int, num_classes: int, max_len: int,
                rngs: nnx.Rngs):
  """Builds `cfg.name` with compute dtype `cfg.dtype` (params stay float32)."""
  return get(cfg.name)(cfg, vocab_size=vocab_size, num_classes=num_classes,
                       max_len=max_len, rngs=rngs, dtype=DTYPES.get(cfg.dtype))
