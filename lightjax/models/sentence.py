"""A sentence-embedding model: the shared encoder, pooled, optionally normalised.

Sentence-BERT (Reimers & Gurevych 2019, "Sentence-BERT: Sentence Embeddings
using Siamese BERT-Networks", sec. 3) turns BERT into a sentence encoder by
pooling its last hidden states into one fixed-size vector: the mean over the
tokens (their default, and all-MiniLM-L6-v2's), the [CLS] token's output, or
the element-wise maximum. Some models then map that vector linearly to
another width (sentence-transformers' `Dense` module, e.g. to a smaller
embedding, Reimers & Gurevych 2020 sec. 4). Models trained for cosine
similarity finally L2-normalise it (sentence-transformers' `Normalize`
module), so a dot product between two embeddings is their cosine.

`SentenceEncoder` is exactly that: `EncoderClassifier`'s `Backbone` (the same
module and parameter paths, so the Hugging Face BERT tensor map, every
shrink method's path helpers in `models.weights` and every attention variant
apply unchanged), pooled by `cfg.pool` ("mean" and "max" over the non-pad
tokens, "first" = the input's [CLS] token, "cls" = a learned vector
prepended), with `cfg.projection_dim` mapped by `projection` (an affine map
E -> D, no activation: Dense with identity activation, the pipeline order
Transformer -> Pooling -> Dense -> Normalize) and, with `cfg.normalize`,
divided by its L2 norm. Width pruning gives a narrower student such a
projection back into its teacher's space (`lightjax.shrink.width`). It has
no pooler and no classifier: the embedding [B, D] (D = projection_dim, else
E) is its output, and it plays the role of "logits" for the trainer and the
objectives (distillation reads it and, through `with_hidden`, the last
hidden states).

`lightjax.hf.from_pretrained(dir)` builds one from a sentence-transformers
directory (`modules.json`, `1_Pooling/config.json`, a Dense module's
folder); `hf.save_pretrained` writes it back as one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lightjax.attention import param_axes
from lightjax.models.config import as_model_config
from lightjax.models.transformer import Backbone, EncoderClassifier, _dense

# torch.nn.functional.normalize's floor on the norm (what sentence-transformers'
# Normalize divides by), so an all-zero embedding stays zero.
NORM_EPS = 1e-12


class SentenceEncoder(nnx.Module):
  """Bidirectional encoder + pooling (+ projection) (+ L2 normalisation):
  embeddings [B, D].

  Parameters: `backbone` (as `EncoderClassifier`'s), with `pool="cls"` the
  learned vector `cls`, and with `projection_dim` the `projection` (kernel
  [E, D] on logical axes ("embed", "projection"): width pruning cuts its
  rows with the residual stream, never its D outputs); nothing else.
  """
  task_kinds = ("embedding",)  # what it outputs: one vector per sentence

  def __init__(self, cfg, *, vocab_size: int, max_len: int, rngs: nnx.Rngs,
               dtype=jnp.float32, num_classes: int = 0):
    del num_classes  # the output is the embedding, E wide
    cfg = as_model_config(cfg)
    self.pool = cfg.pool
    self.normalize = cfg.normalize
    self.pooler = None  # `pool_sequence` is EncoderClassifier's, without one
    extra = 1 if cfg.pool == "cls" else 0
    self.backbone = Backbone(cfg, vocab_size=vocab_size,
                             max_len=max_len + extra, rngs=rngs, dtype=dtype)
    if self.pool == "cls":
      self.cls = nnx.Param(
          nnx.initializers.normal(0.02)(rngs.params(), (1, 1, cfg.embed_dim)),
          **param_axes(None, None, "embed"))
    # In float32, as the pooling: the embedding is compared by cosine.
    self.projection = (_dense(cfg.embed_dim, cfg.projection_dim, rngs,
                              jnp.float32, axes=("embed", "projection"))
                       if cfg.projection_dim else None)

  # The classifier's own sequence encoding and pooling: the same function,
  # not a copy (as `DualEncoderClassifier`'s towers).
  encode_sequence = EncoderClassifier.encode_sequence
  pool_sequence = EncoderClassifier.pool_sequence

  def embedding(self, x_BxLxE, mask_BxL) -> jax.Array:
    """Hidden states [B, L', E] -> the sentence embedding [B, D] (float32):
    pooled in float32, projected if configured (sentence-transformers'
    Dense comes before its Normalize), then L2-normalised if configured."""
    out_BxD = self.pool_sequence(x_BxLxE.astype(jnp.float32), mask_BxL)
    if self.projection is not None:
      out_BxD = self.projection(out_BxD)
    if not self.normalize:
      return out_BxD
    norm_Bx1 = jnp.linalg.norm(out_BxD, axis=-1, keepdims=True)
    return out_BxD / jnp.maximum(norm_Bx1, NORM_EPS)

  def with_hidden(self, tokens_BxL, *, segment_ids_BxL=None,
                  deterministic=True, pad_id=0):
    """(embedding [B, D], last hidden states [B, L', E], their mask [B, L']):
    one forward pass, for losses on the hidden states (`steps.apply_with_hidden`,
    distillation). L' = L + 1 with "cls" pooling."""
    x_BxLxE, mask_BxL = self.encode_sequence(
        tokens_BxL, segment_ids_BxL=segment_ids_BxL,
        deterministic=deterministic, pad_id=pad_id)
    return self.embedding(x_BxLxE, mask_BxL), x_BxLxE, mask_BxL

  def __call__(self, tokens_BxL, segment_ids_BxL=None, *, deterministic=True,
               pad_id=0) -> jax.Array:
    """Sentence embeddings [B, D] (float32; D = projection_dim, else E).

    Args:
      tokens_BxL: token ids, each row one sentence as its tokenizer encodes
        it ([CLS] ... [SEP] for BERT); `pad_id` marks padding, which is
        masked out of attention and of the pooling.
      segment_ids_BxL: token types; all zeros when omitted (what
        sentence-transformers feeds), ignored without segment embeddings.
      deterministic: False applies dropout (needs the "dropout" rng stream).
      pad_id: the padding token id.
    """
    return self.with_hidden(tokens_BxL, segment_ids_BxL=segment_ids_BxL,
                            deterministic=deterministic, pad_id=pad_id)[0]

  def embed(self, tokens_BxL, segment_ids_BxL=None, *, pad_id=0
            ) -> jax.Array:
    """Sentence embeddings [B, D] in eval mode (no dropout): what a user
    calls; `lightjax.hf.sentence_transformers.tokenize` gives the tokens and
    the pad id of a sentence-transformers directory."""
    return self(tokens_BxL, segment_ids_BxL, deterministic=True,
                pad_id=pad_id)
