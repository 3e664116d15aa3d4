"""Two-tower (dual encoder) classifier for document pairs: LRA Retrieval.

Tay et al. 2021 ("Long Range Arena"), the byte-level document retrieval
task: two documents are encoded separately by ONE shared encoder, with no
attention across the pair, so the task measures how well an efficient
attention compresses a long sequence into one vector. Each tower's pooled
vector (u for document 1, v for document 2) is combined as

  features = [u, v, u * v, u - v]                       [B, 4E]

(the "NLI" interaction of LRA's `common_layers.classifier_head_dual`; Mou et
al. 2016's heuristic matching of two sentence vectors), followed by
LRA's MLP: Dense(h) -> act -> Dense(h // 2) -> act -> Dense(num_classes),
h = `classifier_hidden_dim` (LRA: the model's mlp_dim, 512, with ReLU);
`classifier_hidden_dim=0` gives one linear layer on the features.

What differs from LRA's released code, and why:
  * LRA's `matching/train.py` builds `TransformerDualEncoder` without
    `interaction`, so its runs concatenate only [u, v]; the [u, v, u*v, u-v]
    features, which the dual-head code offers, are used here.
  * LRA's shared encoder is built without its classifier flag, so its "CLS"
    pooling reads position 0 of the document itself (the first byte), and
    its "MEAN" averages padding too. Here `pool` means what it means for
    `EncoderClassifier`: "cls" a learned vector prepended to each document,
    "mean" the average over real bytes, "first" position 0 (LRA's literal
    behaviour).

Input layout (`lightjax.data.lra_retrieval`): one int32 row [B, 2L] per
pair, document 1 then document 2, each padded to L with `pad_id`; the model
is built with `max_len` = 2L (the task's `max_len`), splits every row in
half, and each tower sees length L (+1 with "cls"). The call signature is
`EncoderClassifier`'s, so the trainer needs no branch.

The attention inside the towers is whatever `attention.name` registers
(`Backbone` builds it); both halves go through the backbone as one batch of
2B documents, so the towers cannot drift apart and run as one program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lightjax.attention import param_axes
from lightjax.models.config import as_model_config
from lightjax.models.transformer import (ACTIVATIONS, Backbone,
                                         EncoderClassifier, _dense)


class DualEncoderClassifier(nnx.Module):
  """Shared-encoder two-tower classifier over [document 1 | document 2] rows.

  Modules: `backbone` (the one shared encoder: embeddings, blocks, final
  LayerNorm), `cls` (pool="cls"), `pooler` (BERT's tanh pooler, optional),
  `head_hidden` [4E, h], `head_hidden2` [h, h // 2], `head` [h // 2 or 4E,
  num_classes]. The names `cls`, `pooler` and `head*` are those of
  `EncoderClassifier`, so parameter groups (`lightjax.metrics.params`) and
  checkpoint code read them alike.
  """

  task_kinds = ("classification", "regression")  # one output per pair

  def __init__(self, cfg, *, vocab_size: int, num_classes: int, max_len: int,
               rngs: nnx.Rngs, dtype=jnp.float32):
    """`max_len` is the pair's length 2L: each tower encodes L tokens."""
    if max_len % 2:
      raise ValueError(
          f"dual_encoder_classifier: max_len {max_len} must be even (two"
          " documents of max_len / 2 tokens each)")
    cfg = as_model_config(cfg)
    self.pool = cfg.pool
    self.doc_len = max_len // 2
    self.activation = cfg.head_activation
    hidden = cfg.classifier_hidden_dim
    if hidden == 1 or hidden < 0:
      raise ValueError(
          "dual_encoder_classifier: classifier_hidden_dim must be 0 (a linear"
          f" head) or >= 2 (layers of h and h // 2 units), got {hidden}")
    extra = 1 if cfg.pool == "cls" else 0
    self.backbone = Backbone(cfg, vocab_size=vocab_size,
                             max_len=self.doc_len + extra, rngs=rngs,
                             dtype=dtype)
    e = cfg.embed_dim
    if self.pool == "cls":
      self.cls = nnx.Param(
          nnx.initializers.normal(0.02)(rngs.params(), (1, 1, e)),
          **param_axes(None, None, "embed"))
    self.pooler = (_dense(e, e, rngs, dtype, axes=("embed", "embed"))
                   if cfg.pooler else None)
    self.head_hidden = (_dense(4 * e, hidden, rngs, dtype,
                               axes=("embed", "mlp")) if hidden else None)
    self.head_hidden2 = (_dense(hidden, hidden // 2, rngs, dtype,
                                axes=("mlp", "mlp")) if hidden else None)
    self.head = _dense(hidden // 2 if hidden else 4 * e, num_classes, rngs,
                       dtype, axes=("mlp" if hidden else "embed", "classes"))

  # One tower: the pooled vector [B, E] of each document, pooled exactly as
  # `EncoderClassifier` pools ("cls" a learned vector prepended and read
  # out, "mean" the average over real tokens, "first" position 0), then
  # BERT's pooler if configured. The same function, not a copy.
  encode = EncoderClassifier.encode
  encode_sequence = EncoderClassifier.encode_sequence
  pool_sequence = EncoderClassifier.pool_sequence

  def encode_pair(self, tokens_Bx2L, *, segment_ids_BxL=None,
                  deterministic=True, pad_id=0) -> tuple[jax.Array, jax.Array]:
    """(u [B, E], v [B, E]): the two documents of each row, one encoder.

    Both halves are stacked into one batch of 2B documents, so one set of
    weights (and one compiled pass) encodes both; dropout draws differ per
    document as for any batch.
    """
    b, length = tokens_Bx2L.shape
    if length % 2:
      raise ValueError(f"dual_encoder_classifier: input length {length} is"
                       " not two equal documents")
    half = length // 2

    def stack(x_Bx2L):
      return jnp.concatenate([x_Bx2L[:, :half], x_Bx2L[:, half:]], 0)

    segments_2BxL = (None if segment_ids_BxL is None
                     else stack(segment_ids_BxL))
    pooled_2BxE = self.encode(stack(tokens_Bx2L),
                              segment_ids_BxL=segments_2BxL,
                              deterministic=deterministic, pad_id=pad_id)
    return pooled_2BxE[:b], pooled_2BxE[b:]

  def classify(self, u_BxE, v_BxE) -> jax.Array:
    """Logits [B, num_classes] (float32) from the two towers' vectors."""
    features_Bx4E = jnp.concatenate(
        [u_BxE, v_BxE, u_BxE * v_BxE, u_BxE - v_BxE], -1)
    h_BxH = features_Bx4E
    if self.head_hidden is not None:
      act = ACTIVATIONS.get(self.activation)
      h_BxH = act(self.head_hidden2(act(self.head_hidden(h_BxH))))
    return self.head(h_BxH).astype(jnp.float32)

  def __call__(self, tokens_BxL, *, segment_ids_BxL=None, deterministic=True,
               pad_id=0):
    """Logits [B, num_classes] (float32) of pairs laid out [doc 1 | doc 2].

    Args:
      tokens_BxL: int ids [B, 2L], document 1 in [:, :L], document 2 in
        [:, L:], each padded with `pad_id` (masked out of attention).
      segment_ids_BxL: token types [B, 2L] in the same layout; ignored
        without segment embeddings (`type_vocab_size=0`).
      deterministic: False applies dropout (needs the "dropout" rng stream).
      pad_id: the padding token id.
    """
    u_BxE, v_BxE = self.encode_pair(
        tokens_BxL, segment_ids_BxL=segment_ids_BxL,
        deterministic=deterministic, pad_id=pad_id)
    return self.classify(u_BxE, v_BxE)
