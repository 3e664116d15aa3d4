"""Model registry: `config.model.name` -> model class. The one place a model is chosen.

Every model is built from a typed `ModelConfig` (lightjax/models/config.py);
`build_model` converts a run config's `model` section into one at the edge.
Hugging Face checkpoints are read and written by `lightjax.hf`, which builds
on this package (never the reverse).
"""

from __future__ import annotations

from flax import nnx

from lightjax import attention
from lightjax.models.config import (ACTIVATIONS, DTYPES, LayerSpec,
                                    ModelConfig, as_model_config)
from lightjax.models.mlm import EncoderMLM
from lightjax.models.retrieval import DualEncoderClassifier
from lightjax.models.theseus import TheseusClassifier
from lightjax.models.decoder import DecoderLM
from lightjax.models.sentence import SentenceEncoder
from lightjax.models.transformer import EncoderClassifier
from lightjax.registry import Registry

MODELS: Registry[type] = Registry("model")
MODELS.register("encoder_classifier", EncoderClassifier)
MODELS.register("encoder_mlm", EncoderMLM)  # BERT's masked-LM head, tied
MODELS.register("decoder_lm", DecoderLM)
# Trained while its layers replace a predecessor's (BERT-of-Theseus).
MODELS.register("theseus_classifier", TheseusClassifier)
# Two documents, one shared encoder, [u, v, u*v, u-v] (LRA Retrieval).
MODELS.register("dual_encoder_classifier", DualEncoderClassifier)
# Pooled (and optionally L2-normalised) sentence embeddings (Sentence-BERT).
MODELS.register("sentence_encoder", SentenceEncoder)
register, get, names = MODELS.register, MODELS.get, MODELS.names


def trainable(model) -> nnx.filterlib.Filter:
  """What training updates: a model's `trainable` filter (Theseus freezes
  its predecessor), else every `nnx.Param`."""
  return getattr(model, "trainable", nnx.Param)


def task_kinds(name: str) -> tuple[str, ...] | None:
  """The task kinds registered model `name` can run (its class's
  `task_kinds`: what it outputs), or None where it does not say."""
  return getattr(get(name), "task_kinds", None)


def check(cfg) -> ModelConfig:
  """`cfg` as a checked `ModelConfig`: its own fields (`ModelConfig.validate`)
  and, across registries, a registered model whose attention can be causal
  where the model is."""
  cfg = as_model_config(cfg)
  model_cls = get(cfg.name)
  name = cfg.attention["name"]
  if getattr(model_cls, "causal", False) and not attention.get(
      name).supports_causal:
    causal = [n for n in attention.names() if attention.get(n).supports_causal]
    raise ValueError(f"attention {name!r} cannot be causal, and model"
                     f" {cfg.name!r} is; valid: {', '.join(causal)}")
  return cfg


def build_model(cfg, *, vocab_size: int, num_classes: int, max_len: int,
                rngs: nnx.Rngs):
  """Builds `cfg.name` (a ModelConfig, or a run config's `model` section)
  with compute dtype `cfg.dtype` (params stay float32)."""
  cfg = as_model_config(cfg)
  return get(cfg.name)(cfg, vocab_size=vocab_size, num_classes=num_classes,
                       max_len=max_len, rngs=rngs, dtype=DTYPES[cfg.dtype])
