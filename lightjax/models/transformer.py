"""Transformer blocks, an encoder classifier and a causal decoder LM.

The blocks follow Vaswani et al. 2017. By default they use the pre-LN
placement of Xiong et al. 2020 ("On Layer Normalization in the Transformer
Architecture"), which trains without the warm-up sensitivity of post-LN. The
options a pretrained BERT (Devlin et al. 2019) needs are config fields whose
defaults leave this model unchanged: `norm_position="post"` (BERT's post-LN
blocks, an embedding LayerNorm and no final one), `activation="gelu"` (exact
erf GELU, Hendrycks & Gimpel 2016, where the default is its tanh
approximation), `layer_norm_eps` (BERT: 1e-12), `type_vocab_size` (segment
embeddings), `pool="first"` (read the [CLS] vocabulary token at position 0)
and `pooler` (BERT's dense + tanh on it). Module names (`token_embed`,
`pos_embed`, `type_embed`, `embed_ln`, `blocks[i].attn.query/key/value/out`,
`blocks[i].ln1/ln2`, `mlp.fc1/fc2`, `pooler`, `head`) are the targets of a
checkpoint's weight mapping.

The token-mixing rule inside `MultiHeadAttention` is whatever
`lightjax.attention` builds for `attention.name`; nothing here knows variant
names, so a BERT-style model runs with any registered variant.

`embed_dim`, `num_heads`, `head_dim`, `mlp_dim` and `num_layers` are separate
knobs (head_dim is not forced to embed_dim / num_heads) so shrinking recipes
can change each one alone.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from lightjax import attention as attention_lib
from lightjax.models.embeddings import PositionEmbedding
from lightjax.registry import Registry

_DENSE_INIT = nnx.initializers.xavier_uniform()

# The BERT-style options and the values that leave the model as it was; a
# config without these fields (an older one) builds exactly that model.
OPTION_DEFAULTS = {
    "norm_position": "pre",
    "activation": "gelu_tanh",
    "layer_norm_eps": 1e-6,  # flax's LayerNorm default
    "type_vocab_size": 0,
    "pooler": False,
}


def option(cfg, name: str):
  """`cfg.<name>`, or its default when the config predates the field."""
  return cfg.get(name, OPTION_DEFAULTS[name])


# `config.model.activation` choices (the MLP's and the hidden head's).
ACTIVATIONS: Registry[Callable] = Registry("activation")
# tanh approximation of GELU (jax.nn.gelu's default); Hendrycks & Gimpel 2016 sec. 2.
ACTIVATIONS.register("gelu_tanh", functools.partial(jax.nn.gelu, approximate=True))
# exact x * Phi(x) with the erf, what BERT (Devlin et al. 2019) was trained with.
ACTIVATIONS.register("gelu", functools.partial(jax.nn.gelu, approximate=False))


class NormPosition(NamedTuple):
  """Where the LayerNorms sit (Xiong et al. 2020, fig. 1)."""
  post: bool        # LN after each residual add, not before each sublayer
  embed_norm: bool  # a LayerNorm on the embeddings (BERT's embeddings.LayerNorm)
  final_norm: bool  # a LayerNorm after the last block


# `config.model.norm_position` choices.
NORM_POSITIONS: Registry[NormPosition] = Registry("norm position")
# x + Drop(Attn(LN(x))), x + Drop(MLP(LN(x))), final LN: trains without warm-up.
NORM_POSITIONS.register("pre", NormPosition(False, False, True))
# LN(x + Drop(Attn(x))), LN(x + Drop(MLP(x))) after an embedding LN: BERT's
# (and Vaswani et al. 2017's) placement, needed to load its weights.
NORM_POSITIONS.register("post", NormPosition(True, True, False))


def _layer_norm(cfg, dim: int, rngs: nnx.Rngs, dtype) -> nnx.LayerNorm:
  return nnx.LayerNorm(dim, epsilon=option(cfg, "layer_norm_eps"), dtype=dtype,
                       rngs=rngs)


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
  """fc2(act(fc1(x))), act one of `ACTIVATIONS` (kept by name: a static field)."""

  def __init__(self, embed_dim: int, mlp_dim: int, *, rngs, dtype,
               activation: str = "gelu_tanh"):
    ACTIVATIONS.get(activation)
    self.activation = activation
    self.fc1 = _dense(embed_dim, mlp_dim, rngs, dtype)
    self.fc2 = _dense(mlp_dim, embed_dim, rngs, dtype)

  def __call__(self, x):
    return self.fc2(ACTIVATIONS.get(self.activation)(self.fc1(x)))


class Block(nnx.Module):
  """Pre-LN: x + Drop(Attn(LN1(x))); x + Drop(MLP(LN2(x))).

  Post-LN (`norm_position="post"`, BERT): x = LN1(x + Drop(Attn(x)));
  x = LN2(x + Drop(MLP(x))). Same parameters either way, so `ln1`/`ln2` map
  to BERT's attention.output.LayerNorm / output.LayerNorm.
  """

  def __init__(self, cfg, max_len: int, *, rngs: nnx.Rngs, dtype,
               shared: dict | None = None):
    e = cfg.embed_dim
    self.post_ln = NORM_POSITIONS.get(option(cfg, "norm_position")).post
    self.ln1 = _layer_norm(cfg, e, rngs, dtype)
    self.attn = MultiHeadAttention(
        e, cfg.num_heads, cfg.head_dim, max_len, cfg.attention.to_dict(),
        rngs=rngs, dtype=dtype, shared=shared,
    )
    self.ln2 = _layer_norm(cfg, e, rngs, dtype)
    self.mlp = Mlp(e, cfg.mlp_dim, rngs=rngs, dtype=dtype,
                   activation=option(cfg, "activation"))
    self.dropout = nnx.Dropout(cfg.dropout_rate, rngs=rngs)

  def __call__(self, x, *, mask_BxL=None, causal=False, deterministic=True):
    def attn(h):
      return self.attn(h, mask_BxL=mask_BxL, causal=causal,
                       deterministic=deterministic)
    drop = functools.partial(self.dropout, deterministic=deterministic)
    if self.post_ln:
      x = self.ln1(x + drop(attn(x)))
      return self.ln2(x + drop(self.mlp(x)))
    x = x + drop(attn(self.ln1(x)))
    return x + drop(self.mlp(self.ln2(x)))

  def decode_step(self, x, cache, index):
    if self.post_ln:
      y, cache = self.attn.decode_step(x, cache, index)
      x = self.ln1(x + y)
      return self.ln2(x + self.mlp(x)), cache
    y, cache = self.attn.decode_step(self.ln1(x), cache, index)
    x = x + y
    return x + self.mlp(self.ln2(x)), cache


class Backbone(nnx.Module):
  """Embeddings + `num_layers` blocks (+ LayerNorms), shared by both heads.

  Pre-LN: a final LayerNorm `ln_final`. Post-LN: an embedding LayerNorm
  `embed_ln` instead (each post-LN block already ends in one). With
  `type_vocab_size > 0`, segment embeddings `type_embed` are added to the
  token embeddings (BERT's token types: sentence A = 0, B = 1).
  """

  def __init__(self, cfg, *, vocab_size: int, max_len: int, rngs: nnx.Rngs,
               dtype):
    norm = NORM_POSITIONS.get(option(cfg, "norm_position"))
    type_vocab_size = option(cfg, "type_vocab_size")
    self.token_embed = nnx.Embed(
        vocab_size, cfg.embed_dim, dtype=dtype,
        embedding_init=nnx.initializers.normal(stddev=0.02), rngs=rngs,
    )
    self.pos_embed = PositionEmbedding(max_len, cfg.embed_dim,
                                       cfg.pos_embedding, rngs=rngs)
    self.type_embed = nnx.Embed(
        type_vocab_size, cfg.embed_dim, dtype=dtype,
        embedding_init=nnx.initializers.normal(stddev=0.02), rngs=rngs,
    ) if type_vocab_size > 0 else None
    self.embed_ln = (_layer_norm(cfg, cfg.embed_dim, rngs, dtype)
                     if norm.embed_norm else None)
    self.embed_dropout = nnx.Dropout(cfg.dropout_rate, rngs=rngs)
    shared: dict = {}  # cross-layer sharing hook for attention kernels
    self.blocks = nnx.List(
        [Block(cfg, max_len, rngs=rngs, dtype=dtype, shared=shared)
         for _ in range(cfg.num_layers)]
    )
    self.ln_final = (_layer_norm(cfg, cfg.embed_dim, rngs, dtype)
                     if norm.final_norm else None)
    self.dtype = dtype

  def embed_tokens(self, tokens_BxL, segment_ids_BxL=None):
    """Token (+ segment) embeddings; no segment ids = all segment 0, as HF."""
    x_BxLxE = self.token_embed(tokens_BxL)
    if self.type_embed is not None:
      if segment_ids_BxL is None:
        segment_ids_BxL = jnp.zeros_like(tokens_BxL)
      x_BxLxE = x_BxLxE + self.type_embed(segment_ids_BxL)
    return x_BxLxE

  def embed(self, tokens_BxL, offset=0, segment_ids_BxL=None):
    x = self.embed_tokens(tokens_BxL, segment_ids_BxL)
    return x + self.pos_embed(tokens_BxL.shape[1], offset)[None].astype(x.dtype)

  def embed_norm(self, x):
    """Post-LN's embedding LayerNorm; identity for pre-LN."""
    return x if self.embed_ln is None else self.embed_ln(x)

  def final_norm(self, x):
    """Pre-LN's final LayerNorm; identity for post-LN."""
    return x if self.ln_final is None else self.ln_final(x)

  def run_blocks(self, x, *, mask_BxL, causal, deterministic):
    x = self.embed_dropout(self.embed_norm(x), deterministic=deterministic)
    for block in self.blocks:
      x = block(x, mask_BxL=mask_BxL, causal=causal,
                deterministic=deterministic)
    return self.final_norm(x)


# `config.model.pool` choices of the encoder classifier.
POOLS: Registry[str] = Registry("pool")
POOLS.register("cls", "a learned vector prepended, read out after the blocks")
POOLS.register("mean", "average over the non-padded positions")
POOLS.register("first", "the input's position 0 (BERT's [CLS] vocabulary token)")


class EncoderClassifier(nnx.Module):
  """Bidirectional encoder + pooling + classifier (LRA's classification setup).

  Pooling: "cls" prepends a learned vector (not a vocabulary token, so data
  pipelines stay model-agnostic) and reads it out; "mean" averages the
  non-padded positions; "first" reads position 0 of the input as it is,
  which is BERT's [CLS] token when the tokenizer put it there (Devlin et al.
  2019 sec. 3). `pooler=True` adds BERT's pooler, tanh(dense(pooled)),
  before the head (`classifier_hidden_dim=0` then gives BERT's classifier).
  """

  def __init__(self, cfg, *, vocab_size: int, num_classes: int, max_len: int,
               rngs: nnx.Rngs, dtype=jnp.float32):
    POOLS.get(cfg.pool)
    self.pool = cfg.pool
    self.activation = option(cfg, "activation")
    ACTIVATIONS.get(self.activation)
    extra = 1 if cfg.pool == "cls" else 0
    self.backbone = Backbone(cfg, vocab_size=vocab_size,
                             max_len=max_len + extra, rngs=rngs, dtype=dtype)
    if self.pool == "cls":
      self.cls = nnx.Param(
          nnx.initializers.normal(0.02)(rngs.params(), (1, 1, cfg.embed_dim))
      )
    hidden = cfg.classifier_hidden_dim
    self.pooler = (_dense(cfg.embed_dim, cfg.embed_dim, rngs, dtype)
                   if option(cfg, "pooler") else None)
    self.head_hidden = _dense(cfg.embed_dim, hidden, rngs, dtype) if hidden else None
    self.head = _dense(hidden or cfg.embed_dim, num_classes, rngs, dtype)

  def __call__(self, tokens_BxL, *, segment_ids_BxL=None, deterministic=True,
               pad_id=0):
    """Logits [B, num_classes] (float32).

    Args:
      tokens_BxL: token ids; `pad_id` marks padding (masked out of attention).
      segment_ids_BxL: token types (BERT's sentence A/B); ignored without
        segment embeddings (`type_vocab_size=0`), all zeros when omitted.
      deterministic: False applies dropout (needs the "dropout" rng stream).
      pad_id: the padding token id.
    """
    mask_BxL = tokens_BxL != pad_id
    b = tokens_BxL.shape[0]
    x_BxLxE = self.backbone.embed_tokens(tokens_BxL, segment_ids_BxL)
    if self.pool == "cls":
      cls_Bx1xE = jnp.broadcast_to(self.cls[...], (b, 1, x_BxLxE.shape[-1]))
      x_BxLxE = jnp.concatenate([cls_Bx1xE.astype(x_BxLxE.dtype), x_BxLxE], 1)
      mask_BxL = jnp.concatenate([jnp.ones((b, 1), bool), mask_BxL], 1)
    pos_LxE = self.backbone.pos_embed(x_BxLxE.shape[1])
    x_BxLxE = x_BxLxE + pos_LxE[None].astype(x_BxLxE.dtype)
    x_BxLxE = self.backbone.run_blocks(
        x_BxLxE, mask_BxL=mask_BxL, causal=False, deterministic=deterministic
    )
    if self.pool in ("cls", "first"):  # the prepended vector / input token 0
      pooled_BxE = x_BxLxE[:, 0]
    else:
      w_BxL = mask_BxL.astype(x_BxLxE.dtype)
      pooled_BxE = (x_BxLxE * w_BxL[..., None]).sum(1) / jnp.maximum(
          w_BxL.sum(1, keepdims=True), 1)
    if self.pooler is not None:
      pooled_BxE = jnp.tanh(self.pooler(pooled_BxE))
    if self.head_hidden is not None:
      pooled_BxE = ACTIVATIONS.get(self.activation)(self.head_hidden(pooled_BxE))
    return self.head(pooled_BxE).astype(jnp.float32)


class DecoderLM(nnx.Module):
  """Causal language model from the same blocks, with incremental decoding.

  The output projection is tied to the token embedding (Press & Wolf 2017),
  which saves vocab x embed_dim parameters. Every BERT-style option applies
  (post-LN included, in training and in incremental decoding); segment
  embeddings, if configured, are all segment 0.
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
    x = self.backbone.embed_norm(
        self.backbone.embed(tokens_B[:, None], offset=index))
    new_cache = []
    for blk, c in zip(self.backbone.blocks, cache):
      x, c = blk.decode_step(x, c, index)
      new_cache.append(c)
    return self._logits(self.backbone.final_norm(x))[:, 0], new_cache
