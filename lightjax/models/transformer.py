"""Pre-LayerNorm Transformer blocks, an encoder classifier and a causal decoder LM.

The blocks follow Vaswani et al. 2017 with the pre-LN placement of Xiong et al.
2020 ("On Layer Normalization in the Transformer Architecture"), which trains
without the warm-up sensitivity of post-LN. The token-mixing rule inside
`MultiHeadAttention` is whatever `lightjax.attention` builds for
`attention.name`; nothing here knows variant names.

`embed_dim`, `num_heads`, `head_dim`, `mlp_dim` and `num_layers` are separate
knobs (head_dim is not forced to embed_dim / num_heads) so shrinking recipes
can change each one alone.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lightjax import attention as attention_lib
from lightjax.models.embeddings import PositionEmbedding
from lightjax.registry import Registry

_DENSE_INIT = nnx.initializers.xavier_uniform()


def _dense(din: int, dout: int, rngs: nnx.Rngs, dtype) -> nnx.Linear:
  return nnx.Linear(din, dout, kernel_init=_DENSE_INIT, dtype=dtype,
                    param_dtype=jnp.float32, rngs=rngs)


class MultiHeadAttention(nnx.Module):
  """Projects to heads, mixes tokens with the chosen kernel, projects back."""

  def __init__(self, embed_dim: int, num_heads: int, head_dim: int,
               max_len: int, attention: dict[str, Any], *, rngs: nnx.Rngs,
               dtype=jnp.float32, shared: dict | None = None):
    self.num_heads, self.head_dim = num_heads, head_dim
    inner = num_heads * head_dim
    self.query = _dense(embed_dim, inner, rngs, dtype)
    self.key = _dense(embed_dim, inner, rngs, dtype)
    self.value = _dense(embed_dim, inner, rngs, dtype)
    self.out = _dense(inner, embed_dim, rngs, dtype)
    name = attention["name"]
    self.kernel = attention_lib.build(
        name, attention.get(name, {}), num_heads=num_heads, head_dim=head_dim,
        max_len=max_len, rngs=rngs, dtype=dtype, shared=shared,
    )

  def _heads(self, x_BxLxE, proj: nnx.Linear) -> jax.Array:
    b, l, _ = x_BxLxE.shape
    return proj(x_BxLxE).reshape(b, l, self.num_heads, self.head_dim)

  def __call__(self, x_BxLxE, *, mask_BxL=None, causal=False,
               deterministic=True):
    b, l, _ = x_BxLxE.shape
    out_BxLxHxD = self.kernel(
        self._heads(x_BxLxE, self.query), self._heads(x_BxLxE, self.key),
        self._heads(x_BxLxE, self.value), mask=mask_BxL, causal=causal,
        deterministic=deterministic,
    )
    return self.out(out_BxLxHxD.reshape(b, l, -1))

  def decode_step(self, x_Bx1xE, cache, index):
    b = x_Bx1xE.shape[0]
    out_Bx1xHxD, cache = self.kernel.decode_step(
        self._heads(x_Bx1xE, self.query), self._heads(x_Bx1xE, self.key),
        self._heads(x_Bx1xE, self.value), cache, index,
    )
    return self.out(out_Bx1xHxD.reshape(b, 1, -1)), cache


class Mlp(nnx.Module):
  def __init__(self, embed_dim: int, mlp_dim: int, *, rngs, dtype):
    self.fc1 = _dense(embed_dim, mlp_dim, rngs, dtype)
    self.fc2 = _dense(mlp_dim, embed_dim, rngs, dtype)

  def __call__(self, x):
    return self.fc2(jax.nn.gelu(self.fc1(x)))


class Block(nnx.Module):
  """x + Dropout(Attn(LN(x))); x + Dropout(MLP(LN(x)))."""

  def __init__(self, cfg, max_len: int, *, rngs: nnx.Rngs, dtype,
               shared: dict | None = None):
    e = cfg.embed_dim
    self.ln1 = nnx.LayerNorm(e, dtype=dtype, rngs=rngs)
    self.attn = MultiHeadAttention(
        e, cfg.num_heads, cfg.head_dim, max_len, cfg.attention.to_dict(),
        rngs=rngs, dtype=dtype, shared=shared,
    )
    self.ln2 = nnx.LayerNorm(e, dtype=dtype, rngs=rngs)
    self.mlp = Mlp(e, cfg.mlp_dim, rngs=rngs, dtype=dtype)
    self.dropout = nnx.Dropout(cfg.dropout_rate, rngs=rngs)

  def __call__(self, x, *, mask_BxL=None, causal=False, deterministic=True):
    y = self.attn(self.ln1(x), mask_BxL=mask_BxL, causal=causal,
                  deterministic=deterministic)
    x = x + self.dropout(y, deterministic=deterministic)
    y = self.mlp(self.ln2(x))
    return x + self.dropout(y, deterministic=deterministic)

  def decode_step(self, x, cache, index):
    y, cache = self.attn.decode_step(self.ln1(x), cache, index)
    x = x + y
    return x + self.mlp(self.ln2(x)), cache


class Backbone(nnx.Module):
  """Embeddings + `num_layers` blocks + final LayerNorm, shared by both heads."""

  def __init__(self, cfg, *, vocab_size: int, max_len: int, rngs: nnx.Rngs,
               dtype):
    self.token_embed = nnx.Embed(
        vocab_size, cfg.embed_dim, dtype=dtype,
        embedding_init=nnx.initializers.normal(stddev=0.02), rngs=rngs,
    )
    self.pos_embed = PositionEmbedding(max_len, cfg.embed_dim,
                                       cfg.pos_embedding, rngs=rngs)
    self.embed_dropout = nnx.Dropout(cfg.dropout_rate, rngs=rngs)
    shared: dict = {}  # cross-layer sharing hook for attention kernels
    self.blocks = nnx.List(
        [Block(cfg, max_len, rngs=rngs, dtype=dtype, shared=shared)
         for _ in range(cfg.num_layers)]
    )
    self.ln_final = nnx.LayerNorm(cfg.embed_dim, dtype=dtype, rngs=rngs)
    self.dtype = dtype

  def embed(self, tokens_BxL, offset=0):
    x = self.token_embed(tokens_BxL)
    return x + self.pos_embed(tokens_BxL.shape[1], offset)[None].astype(x.dtype)

  def run_blocks(self, x, *, mask_BxL, causal, deterministic):
    x = self.embed_dropout(x, deterministic=deterministic)
    for block in self.blocks:
      x = block(x, mask_BxL=mask_BxL, causal=causal,
                deterministic=deterministic)
    return self.ln_final(x)


# `config.model.pool` choices of the encoder classifier.
POOLS: Registry[str] = Registry("pool")
POOLS.register("cls", "a learned vector prepended, read out after the blocks")
POOLS.register("mean", "average over the non-padded positions")


class EncoderClassifier(nnx.Module):
  """Bidirectional encoder + pooling + classifier (LRA's classification setup).

  Pooling: "cls" prepends a learned vector (not a vocabulary token, so data
  pipelines stay model-agnostic) and reads it out; "mean" averages the
  non-padded positions.
  """

  def __init__(self, cfg, *, vocab_size: int, num_classes: int, max_len: int,
               rngs: nnx.Rngs, dtype=jnp.float32):
    POOLS.get(cfg.pool)
    self.pool = cfg.pool
    extra = 1 if cfg.pool == "cls" else 0
    self.backbone = Backbone(cfg, vocab_size=vocab_size,
                             max_len=max_len + extra, rngs=rngs, dtype=dtype)
    if self.pool == "cls":
      self.cls = nnx.Param(
          nnx.initializers.normal(0.02)(rngs.params(), (1, 1, cfg.embed_dim))
      )
    hidden = cfg.classifier_hidden_dim
    self.head_hidden = _dense(cfg.embed_dim, hidden, rngs, dtype) if hidden else None
    self.head = _dense(hidden or cfg.embed_dim, num_classes, rngs, dtype)

  def __call__(self, tokens_BxL, *, deterministic=True, pad_id=0):
    mask_BxL = tokens_BxL != pad_id
    b = tokens_BxL.shape[0]
    x_BxLxE = self.backbone.token_embed(tokens_BxL)
    if self.pool == "cls":
      cls_Bx1xE = jnp.broadcast_to(self.cls[...], (b, 1, x_BxLxE.shape[-1]))
      x_BxLxE = jnp.concatenate([cls_Bx1xE.astype(x_BxLxE.dtype), x_BxLxE], 1)
      mask_BxL = jnp.concatenate([jnp.ones((b, 1), bool), mask_BxL], 1)
    pos_LxE = self.backbone.pos_embed(x_BxLxE.shape[1])
    x_BxLxE = x_BxLxE + pos_LxE[None].astype(x_BxLxE.dtype)
    x_BxLxE = self.backbone.run_blocks(
        x_BxLxE, mask_BxL=mask_BxL, causal=False, deterministic=deterministic
    )
    if self.pool == "cls":
      pooled_BxE = x_BxLxE[:, 0]
    else:
      w_BxL = mask_BxL.astype(x_BxLxE.dtype)
      pooled_BxE = (x_BxLxE * w_BxL[..., None]).sum(1) / jnp.maximum(
          w_BxL.sum(1, keepdims=True), 1)
    if self.head_hidden is not None:
      pooled_BxE = jax.nn.gelu(self.head_hidden(pooled_BxE))
    return self.head(pooled_BxE).astype(jnp.float32)


class DecoderLM(nnx.Module):
  """Causal language model from the same blocks, with incremental decoding.

  The output projection is tied to the token embedding (Press & Wolf 2017),
  which saves vocab x embed_dim parameters.
  """

  def __init__(self, cfg, *, vocab_size: int, max_len: int, rngs: nnx.Rngs,
               dtype=jnp.float32, num_classes: int = 0):
    del num_classes
    self.backbone = Backbone(cfg, vocab_size=vocab_size, max_len=max_len,
                             rngs=rngs, dtype=dtype)
    self.max_len = max_len

  def _logits(self, x_BxLxE):
    return self.backbone.token_embed.attend(x_BxLxE).astype(jnp.float32)

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
    x = self.backbone.embed(tokens_B[:, None], offset=index)
    new_cache = []
    for blk, c in zip(self.backbone.blocks, cache):
      x, c = blk.decode_step(x, c, index)
      new_cache.append(c)
    return self._logits(self.backbone.ln_final(x))[:, 0], new_cache
