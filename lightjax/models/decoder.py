"""The causal decoder language model, from the encoder's blocks.

Shares `transformer.Backbone` (embeddings, blocks, norms) with the encoder
classifier; only the causal mask, the tied output layer and incremental
decoding are its own.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from lightjax.models import transformer


class DecoderLM(nnx.Module):
  """Causal language model from the same blocks, with incremental decoding.

  The output projection is tied to the token embedding (Press & Wolf 2017),
  which saves vocab x embed_dim parameters; with factorised embeddings it
  goes back through the projection, logits = (x @ W_proj^T) @ table^T
  (`Backbone.token_logits`). Every BERT-style option applies
  (post-LN included, in training and in incremental decoding); segment
  embeddings, if configured, are all segment 0.
  """

  causal = True  # config_lib.validate: its attention must support causal
  task_kinds = ("lm",)  # what it outputs: next-token logits per position


  def __init__(self, cfg, *, vocab_size: int, max_len: int, rngs: nnx.Rngs,
               dtype=jnp.float32, num_classes: int = 0):
    del num_classes
    self.backbone = transformer.Backbone(cfg, vocab_size=vocab_size, max_len=max_len,
                             rngs=rngs, dtype=dtype)
    self.max_len = max_len

  def _logits(self, x_BxLxE):
    return self.backbone.token_logits(x_BxLxE).astype(jnp.float32)

  def __call__(self, tokens_BxL, *, deterministic=True, pad_id=0):
    mask_BxL = tokens_BxL != pad_id
    x = self.backbone.run_blocks(
        self.backbone.embed(tokens_BxL), mask_BxL=mask_BxL, causal=True,
        deterministic=deterministic,
    )
    return self._logits(x)

  def init_cache(self, batch_size: int, max_len: int | None = None,
                 dtype=None) -> list:
    """Every layer's decode state, in the compute dtype unless `dtype`."""
    max_len = max_len or self.max_len
    dtype = self.backbone.dtype if dtype is None else dtype
    return [blk.attn.kernel.init_cache(batch_size, max_len, dtype)
            for blk in self.backbone.blocks]

  def decode_step(self, tokens_B, cache: list, index):
    """One token per sequence at position `index` -> (logits [B, V], cache)."""
    x = self.backbone.embed_norm(
        self.backbone.embed(tokens_B[:, None], offset=index))
    new_cache = []
    for blk, c in zip(self.backbone.blocks, cache):
      x, c = blk.decode_step(x, c, index)
      new_cache.append(c)
    return self._logits(self.backbone.final_norm(x))[:, 0], new_cache
