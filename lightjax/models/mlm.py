"""BERT's masked-language-model head on the shared encoder `Backbone`.

Masked LM (Devlin et al. 2019 sec. 3.1, "Task #1: Masked LM") predicts the
vocabulary token at every position from the bidirectional encoding. BERT's
head (`cls.predictions` in Hugging Face checkpoints) is

    h = LayerNorm(act(dense(x)))          # the "transform", E -> E
    logits = h @ token_table^T + bias     # decoder tied to the input table

The decoder reuses the input token embedding (Press & Wolf 2017, "Using the
Output Embedding to Improve Language Models"): the V x E table is one
parameter read twice, so the head costs E*E + 2E + E + V parameters instead
of another V x E, and a gradient to the output also trains the input table.
Only the output bias [V] is the head's own. With ALBERT's factorised
embedding (`embed_factor_dim`) the tied output goes back through the
projection (`Backbone.token_logits`), so it stays tied there too.

The blocks and their options are `EncoderClassifier`'s, so an imported
`BertForMaskedLM` (`lightjax.hf.from_pretrained(path, head="mlm")`)
runs any registered attention variant as the classifier does.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from lightjax.attention import param_axes
from lightjax.models import transformer
from lightjax.models.config import as_model_config


class EncoderMLM(nnx.Module):
  """Bidirectional encoder + BERT's masked-LM head, logits at every position.

  Parameters besides the backbone: `transform` (dense E -> E), `transform_ln`
  (its LayerNorm, eps `layer_norm_eps`) and `output_bias` [V]; the decoder
  weight is `backbone.token_embed` itself (tied, Press & Wolf 2017).
  """

  task_kinds = ("lm",)  # what it outputs: vocabulary logits per position

  def __init__(self, cfg, *, vocab_size: int, max_len: int, rngs: nnx.Rngs,
               dtype=jnp.float32, num_classes: int = 0):
    del num_classes  # the output is the vocabulary
    cfg = as_model_config(cfg)
    self.activation = cfg.activation
    self.backbone = transformer.Backbone(cfg, vocab_size=vocab_size,
                                         max_len=max_len, rngs=rngs,
                                         dtype=dtype)
    e = cfg.embed_dim
    # The backbone's own dense and LayerNorm builders (same init and eps).
    self.transform = transformer._dense(  # pylint: disable=protected-access
        e, e, rngs, dtype, axes=("embed", "embed"))
    self.transform_ln = transformer._layer_norm(cfg, e, rngs, dtype)  # pylint: disable=protected-access
    # BERT initialises the output bias to zeros (HF `BertLMPredictionHead`).
    self.output_bias = nnx.Param(jnp.zeros((vocab_size,), jnp.float32),
                                 **param_axes("vocab"))

  def encode(self, tokens_BxL, *, segment_ids_BxL=None, deterministic=True,
             pad_id=0):
    """The encoder's last hidden states [B, L, E] (padding masked out)."""
    bb = self.backbone
    mask_BxL = tokens_BxL != pad_id
    x_BxLxE = bb.embed(tokens_BxL, segment_ids_BxL=segment_ids_BxL)
    return bb.run_blocks(x_BxLxE, mask_BxL=mask_BxL, causal=False,
                         deterministic=deterministic)

  def predict(self, x_BxLxE):
    """BERT's `cls.predictions` on hidden states: logits [B, L, V] float32."""
    act = transformer.ACTIVATIONS.get(self.activation)
    h_BxLxE = self.transform_ln(act(self.transform(x_BxLxE)))
    logits_BxLxV = self.backbone.token_logits(h_BxLxE).astype(jnp.float32)
    bias_1x1xV = self.output_bias[...].astype(jnp.float32)[None, None]
    return logits_BxLxV + bias_1x1xV

  def __call__(self, tokens_BxL, *, segment_ids_BxL=None, deterministic=True,
               pad_id=0):
    """Masked-LM logits [B, L, V] (float32) at every position.

    Args:
      tokens_BxL: token ids with [MASK] where a prediction is wanted; `pad_id`
        marks padding (masked out of attention; its logits are meaningless).
      segment_ids_BxL: token types (sentence A/B); all zeros when omitted,
        ignored without segment embeddings (`type_vocab_size=0`).
      deterministic: False applies dropout (needs the "dropout" rng stream).
      pad_id: the padding token id.
    """
    return self.predict(self.encode(
        tokens_BxL, segment_ids_BxL=segment_ids_BxL,
        deterministic=deterministic, pad_id=pad_id))
