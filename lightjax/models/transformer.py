"""Transformer blocks and the encoder classifier (the decoder LM: decoder.py).

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

Every layer receives the typed `ModelConfig` (lightjax/models/config.py),
never the run's ConfigDict; a top-level model given a ConfigDict or a dict
converts it once (`as_model_config`).

The options a shrinking recipe produces or needs are config fields too, again
with defaults that leave the model unchanged (same parameters, paths and
outputs):
  layers              one `LayerSpec` per layer: its head count (Michel et
                      al. 2019 prune whole heads; 0 allowed), MLP width
                      (structured FFN neuron pruning; 0 allowed) and
                      low-rank ranks (below).
  layerdrop           LayerDrop (Fan et al. 2020): skip whole blocks in
                      training, so any sub-network of layers works at test.
  embed_factor_dim    ALBERT's factorised token embedding (Lan et al. 2020
                      sec. 3.1): V x E table then an E -> embed_dim map.
  share_layers        ALBERT's all-shared blocks: one block, num_layers uses.
  LayerSpec.ranks     low-rank block projections W [in, out] = down [in, r]
                      @ up [r, out] (`LowRankLinear`; Denton et al. 2014
                      sec. 3.2, what an SVD of a trained kernel gives,
                      `lightjax.shrink.lowrank`).
Head importance (Michel et al. 2019 sec. 4) needs no option: set
`attn.head_gate = HeadGate(jnp.ones(h))` on a built model and differentiate
with respect to the gates.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from lightjax import attention as attention_lib
from lightjax import sharding
from lightjax.attention import param_axes
from lightjax.models.config import (ACTIVATIONS, LayerSpec, ModelConfig,
                                    as_model_config)
from lightjax.models.embeddings import PositionEmbedding

_XAVIER = nnx.initializers.xavier_uniform()


def _DENSE_INIT(key, shape, dtype=jnp.float32):
  """Xavier uniform; a zero-width kernel (a layer pruned to 0 heads or 0 MLP
  units) is empty, where Xavier's fan computation would divide by zero."""
  if 0 in shape:
    return jnp.zeros(shape, dtype)
  return _XAVIER(key, shape, dtype)

class NormPosition(NamedTuple):
  """Where the LayerNorms sit (Xiong et al. 2020, fig. 1)."""
  post: bool        # LN after each residual add, not before each sublayer
  embed_norm: bool  # a LayerNorm on the embeddings (BERT's embeddings.LayerNorm)
  final_norm: bool  # a LayerNorm after the last block


def norm_layout(norm_position: str) -> NormPosition:
  """Where the LayerNorms sit for `ModelConfig.norm_position`.

  "pre": x + Drop(Attn(LN(x))), x + Drop(MLP(LN(x))), final LN: trains
  without warm-up. "post": LN(x + Drop(Attn(x))), LN(x + Drop(MLP(x)))
  after an embedding LN: BERT's (and Vaswani et al. 2017's) placement,
  needed to load its weights.
  """
  if norm_position == "post":
    return NormPosition(post=True, embed_norm=True, final_norm=False)
  return NormPosition(post=False, embed_norm=False, final_norm=True)


def _layer_norm(cfg: ModelConfig, dim: int, rngs: nnx.Rngs, dtype
                ) -> nnx.LayerNorm:
  return nnx.LayerNorm(dim, epsilon=cfg.layer_norm_eps, dtype=dtype,
                       rngs=rngs, scale_metadata=param_axes("norm"),
                       bias_metadata=param_axes("norm"))


def _dense(din: int, dout: int, rngs: nnx.Rngs, dtype, *,
           axes: tuple[str | None, str | None]) -> nnx.Linear:
  """A dense layer whose kernel [din, dout] has the logical `axes`
  (`attention.param_axes`; the bias has the output's)."""
  return nnx.Linear(din, dout, kernel_init=_DENSE_INIT, dtype=dtype,
                    param_dtype=jnp.float32, rngs=rngs,
                    kernel_metadata=param_axes(*axes),
                    bias_metadata=param_axes(axes[1]))


class LowRankLinear(nnx.Module):
  """x @ down @ up + b: a dense layer [in, out] of rank <= r in two factors.

  Parameters r * (in + out) + out instead of in * out + out: fewer when
  r < in * out / (in + out). Low-rank approximation of the weight matrices
  of a trained network (Denton et al. 2014, "Exploiting Linear Structure
  Within Convolutional Networks for Efficient Evaluation", sec. 3.2) is a
  product of two thinner layers, which is what this module runs: `down`
  [in, r] has no bias, `up` [r, out] holds the original layer's bias. Two
  nnx.Linear layers, so dtype handling is `_dense`'s and a factorised
  model exports like any other.
  """

  def __init__(self, din: int, dout: int, rank: int, rngs: nnx.Rngs, dtype,
               *, axes: tuple[str | None, str | None]):
    """`axes`: the full layer's; the factors meet on "rank"."""
    self.down = nnx.Linear(din, rank, use_bias=False, kernel_init=_DENSE_INIT,
                           dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                           kernel_metadata=param_axes(axes[0], "rank"))
    self.up = _dense(rank, dout, rngs, dtype, axes=("rank", axes[1]))

  def __call__(self, x_BxLxI) -> jax.Array:
    return self.up(self.down(x_BxLxI))


def _dense_or_low_rank(din: int, dout: int, rank: int, rngs: nnx.Rngs, dtype,
                       *, axes: tuple[str | None, str | None]
                       ) -> nnx.Linear | LowRankLinear:
  """`_dense` (rank 0: full, same parameters and rng draws as before) or a
  rank-`rank` `LowRankLinear`."""
  if rank:
    return LowRankLinear(din, dout, rank, rngs, dtype, axes=axes)
  return _dense(din, dout, rngs, dtype, axes=axes)


def _bias_only(linear: nnx.Linear, x_BxLxI) -> jax.Array:
  """What `linear` returns on a zero-width input: its bias, broadcast.

  A layer pruned to 0 heads (or 0 MLP units) has kernels [0, E]; the sum over
  an empty input is 0, so the sublayer outputs only this bias. Written out
  rather than as an empty matmul, so no attention kernel runs for nothing.
  """
  bias_E = linear.bias[...].astype(linear.dtype or linear.bias[...].dtype)
  return jnp.broadcast_to(bias_E, (*x_BxLxI.shape[:-1], bias_E.shape[0]))


class HeadGate(nnx.Variable):
  """Per-head multipliers xi_h on attention outputs (Michel et al. 2019 sec. 4).

  Not a parameter and absent by default: a caller sets
  `attn.head_gate = HeadGate(jnp.ones(num_heads))` on a built model, and the
  importance of head h is |dL/dxi_h| at xi = 1, e.g. from
  `nnx.grad(loss, argnums=nnx.DiffState(0, HeadGate))`. Gates of 0 remove heads
  without changing shapes (the masked model physical pruning must equal).
  With `share_layers` the one block's gate scales its heads in every use.
  """


# The kernel of a layer pruned to 0 heads: it is never called (the layer
# outputs `out`'s bias) but keeps `attn.kernel` usable by code that walks the
# blocks (decode caches, `supports_decode`). The parameter-free identity
# variant, so an empty layer holds no attention parameters (a Linformer E/F
# would otherwise remain).
_EMPTY_LAYER_KERNEL = "none"


class MultiHeadAttention(nnx.Module):
  """Projects to heads, mixes tokens with the chosen kernel, projects back.

  `num_heads` may be 0 (every head pruned, Michel et al. 2019): q/k/v are then
  [E, 0], out [0, E], and the sublayer outputs out's bias alone. `ranks`
  ({name: r}, 0 = full) makes a projection a `LowRankLinear`.
  """

  def __init__(self, embed_dim: int, num_heads: int, head_dim: int,
               max_len: int, attention: dict[str, Any], *, rngs: nnx.Rngs,
               dtype=jnp.float32, shared: dict | None = None,
               ranks: dict[str, int] | None = None):
    self.num_heads, self.head_dim = num_heads, head_dim
    inner = num_heads * head_dim
    ranks = ranks or {}
    # Megatron's split (Shoeybi et al. 2019 sec. 3) where "heads" maps to
    # a mesh axis: q, k, v by output columns, out by input rows.
    qkv_axes, out_axes = ("embed", "heads"), ("heads", "embed")
    self.query = _dense_or_low_rank(embed_dim, inner, ranks.get("query", 0),
                                    rngs, dtype, axes=qkv_axes)
    self.key = _dense_or_low_rank(embed_dim, inner, ranks.get("key", 0), rngs,
                                  dtype, axes=qkv_axes)
    self.value = _dense_or_low_rank(embed_dim, inner, ranks.get("value", 0),
                                    rngs, dtype, axes=qkv_axes)
    self.out = _dense_or_low_rank(inner, embed_dim, ranks.get("out", 0), rngs,
                                  dtype, axes=out_axes)
    name = attention["name"] if num_heads else _EMPTY_LAYER_KERNEL
    self.kernel = attention_lib.build(
        name, attention.get(name, {}), num_heads=num_heads, head_dim=head_dim,
        max_len=max_len, rngs=rngs, dtype=dtype, shared=shared,
    )
    # Optional HeadGate [H]; data (not static) so a caller may set one later.
    self.head_gate = nnx.data(None)

  def _heads(self, x_BxLxE, proj: nnx.Linear) -> jax.Array:
    b, l, _ = x_BxLxE.shape
    return proj(x_BxLxE).reshape(b, l, self.num_heads, self.head_dim)

  def _project_out(self, out_BxLxHxD) -> jax.Array:
    """out(concat_h xi_h head_h): the gates, if set, scale each head first."""
    b, l = out_BxLxHxD.shape[:2]
    if self.head_gate is not None:
      gate_1x1xHx1 = self.head_gate[...].reshape(1, 1, self.num_heads, 1)
      out_BxLxHxD = out_BxLxHxD * gate_1x1xHx1.astype(out_BxLxHxD.dtype)
    return self.out(out_BxLxHxD.reshape(b, l, self.num_heads * self.head_dim))

  def __call__(self, x_BxLxE, *, mask_BxL=None, causal=False,
               deterministic=True):
    if self.num_heads == 0:
      return _bias_only(self.out, x_BxLxE)
    out_BxLxHxD = self.kernel(
        self._heads(x_BxLxE, self.query), self._heads(x_BxLxE, self.key),
        self._heads(x_BxLxE, self.value), mask=mask_BxL, causal=causal,
        deterministic=deterministic,
    )
    return self._project_out(out_BxLxHxD)

  def decode_step(self, x_Bx1xE, cache, index):
    if self.num_heads == 0:
      return _bias_only(self.out, x_Bx1xE), cache
    out_Bx1xHxD, cache = self.kernel.decode_step(
        self._heads(x_Bx1xE, self.query), self._heads(x_Bx1xE, self.key),
        self._heads(x_Bx1xE, self.value), cache, index,
    )
    return self._project_out(out_Bx1xHxD), cache


class Mlp(nnx.Module):
  """fc2(act(fc1(x))), act one of `ACTIVATIONS` (kept by name: a static field).

  `mlp_dim` may be 0 (every unit pruned): fc1 is [E, 0], fc2 [0, E], and the
  MLP outputs fc2's bias alone, which is exactly what removing the last
  units' fc1 columns and fc2 rows leaves (so the pruning identity holds down
  to width 0, and the parameter paths stay those of every other layer).
  """

  def __init__(self, embed_dim: int, mlp_dim: int, *, rngs, dtype,
               activation: str = "gelu_tanh",
               ranks: dict[str, int] | None = None):
    """`ranks`: {"fc1"/"fc2": r} makes that layer a `LowRankLinear`."""
    ACTIVATIONS.get(activation)
    self.activation = activation
    self.mlp_dim = mlp_dim
    ranks = ranks or {}
    self.fc1 = _dense_or_low_rank(embed_dim, mlp_dim, ranks.get("fc1", 0), rngs,
                                  dtype, axes=("embed", "mlp"))
    self.fc2 = _dense_or_low_rank(mlp_dim, embed_dim, ranks.get("fc2", 0), rngs,
                                  dtype, axes=("mlp", "embed"))

  def __call__(self, x):
    if self.mlp_dim == 0:
      return _bias_only(self.fc2, x)
    return self.fc2(ACTIVATIONS.get(self.activation)(self.fc1(x)))


class Block(nnx.Module):
  """Pre-LN: x + Drop(Attn(LN1(x))); x + Drop(MLP(LN2(x))).

  Post-LN (`norm_position="post"`, BERT): x = LN1(x + Drop(Attn(x)));
  x = LN2(x + Drop(MLP(x))). Same parameters either way, so `ln1`/`ln2` map
  to BERT's attention.output.LayerNorm / output.LayerNorm.
  """

  def __init__(self, cfg: ModelConfig, max_len: int, *, rngs: nnx.Rngs,
               dtype, shared: dict | None = None,
               spec: LayerSpec | None = None):
    """`spec`: this layer's sizes and ranks (default: cfg's uniform ones)."""
    e = cfg.embed_dim
    spec = spec or LayerSpec(cfg.num_heads, cfg.mlp_dim)
    ranks = dict(spec.ranks)
    self.post_ln = norm_layout(cfg.norm_position).post
    self.ln1 = _layer_norm(cfg, e, rngs, dtype)
    self.attn = MultiHeadAttention(
        e, spec.num_heads, cfg.head_dim, max_len, dict(cfg.attention),
        rngs=rngs, dtype=dtype, shared=shared, ranks=ranks,
    )
    self.ln2 = _layer_norm(cfg, e, rngs, dtype)
    self.mlp = Mlp(e, spec.mlp_dim, rngs=rngs, dtype=dtype,
                   activation=cfg.activation, ranks=ranks)
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


# The residual stream between blocks [B, L, E]: examples over the batch
# axes, positions over seq, the width whole (what a block reads and adds to
# under tensor parallelism), pinned when the trainer sets a mesh.
RESIDUAL_AXES = ("batch", "length", None)


class Backbone(nnx.Module):
  """Embeddings + `num_layers` blocks (+ LayerNorms), shared by both heads.

  Pre-LN: a final LayerNorm `ln_final`. Post-LN: an embedding LayerNorm
  `embed_ln` instead (each post-LN block already ends in one). With
  `type_vocab_size > 0`, segment embeddings `type_embed` are added to the
  token embeddings (BERT's token types: sentence A = 0, B = 1).

  Compact-model options (all off by default):
  * `embed_factor_dim` F > 0 (ALBERT, Lan et al. 2020 sec. 3.1): the token
    table is V x F and a bias-free linear map `embed_proj` [F, embed_dim]
    lifts it, so the token parameters drop from V*H to V*F + F*H (no bias,
    so that count is exact and the tied output can reuse the map as its
    transpose, `token_logits`). Position and segment embeddings stay
    embed_dim wide: they are small and added after the projection.
  * `share_layers` (ALBERT's "all-shared"): one Block is built and
    `blocks` holds num_layers references to it. NNX keeps shared
    references through `nnx.split`/`nnx.merge`, and `nnx.state` lists a
    shared Variable once, under its first path (`blocks/0/...`), so the
    parameter count, the optimizer state, the gradients (summed over every
    use) and checkpoints all see one block; `for block in self.blocks`
    still runs it num_layers times (forward, decode, hidden states).
  * `heads_per_layer` / `mlp_dims_per_layer`: each layer's own sizes,
    what physical head pruning (Michel et al. 2019) and FFN neuron pruning
    leave; 0 empties a sublayer (it outputs its output bias).
  * `LayerSpec.ranks`: per layer, which projections are `LowRankLinear`
    and their ranks; a factorised projection `query`
    has parameters `query/down/kernel`, `query/up/kernel`, `query/up/bias`
    where a full one has `query/kernel`, `query/bias`, so full-rank
    projections keep their paths (checkpoints, Hugging Face weight maps).
  * `layerdrop` p (Fan et al. 2020, "Reducing Transformer Depth on Demand
    with Structured Dropout", sec. 3): in training (deterministic=False)
    each block application is skipped with probability p, one Bernoulli
    draw per block per step (for the whole batch, as fairseq does), keys
    from a fork of the "dropout" rng stream. The skip is a `jax.lax.cond`,
    so under jit a dropped block is not computed. Kept blocks are not
    rescaled (the paper does not). Deterministic runs every block; pruning
    layers at inference (the paper's "every other" rule) is the shrink
    toolkit's job.
  """

  def __init__(self, cfg, *, vocab_size: int, max_len: int, rngs: nnx.Rngs,
               dtype):
    cfg = as_model_config(cfg)
    norm = norm_layout(cfg.norm_position)
    type_vocab_size = cfg.type_vocab_size
    factor_dim = cfg.embed_factor_dim
    self.token_embed = nnx.Embed(
        vocab_size, factor_dim or cfg.embed_dim, dtype=dtype,
        embedding_init=nnx.initializers.normal(stddev=0.02), rngs=rngs,
        embedding_metadata=param_axes("vocab", None if factor_dim else "embed"),
    )
    self.embed_proj = nnx.Linear(
        factor_dim, cfg.embed_dim, use_bias=False, kernel_init=_DENSE_INIT,
        dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
        kernel_metadata=param_axes("rank", "embed"),
    ) if factor_dim else None
    self.pos_embed = PositionEmbedding(max_len, cfg.embed_dim,
                                       cfg.pos_embedding, rngs=rngs)
    self.type_embed = nnx.Embed(
        type_vocab_size, cfg.embed_dim, dtype=dtype,
        embedding_init=nnx.initializers.normal(stddev=0.02), rngs=rngs,
        embedding_metadata=param_axes(None, "embed"),
    ) if type_vocab_size > 0 else None
    self.embed_ln = (_layer_norm(cfg, cfg.embed_dim, rngs, dtype)
                     if norm.embed_norm else None)
    self.embed_dropout = nnx.Dropout(cfg.dropout_rate, rngs=rngs)
    shared: dict = {}  # cross-layer sharing hook for attention kernels
    if cfg.share_layers:
      block = Block(cfg, max_len, rngs=rngs, dtype=dtype, shared=shared,
                    spec=cfg.layers[0])
      blocks = [block] * cfg.num_layers  # references to one module
    else:
      blocks = [Block(cfg, max_len, rngs=rngs, dtype=dtype, shared=shared,
                      spec=spec) for spec in cfg.layers]
    self.blocks = nnx.List(blocks)
    self.ln_final = (_layer_norm(cfg, cfg.embed_dim, rngs, dtype)
                     if norm.final_norm else None)
    self.dtype = dtype
    self.layerdrop = float(cfg.layerdrop)
    # Forked last, so every other stream (and so the defaults) is unchanged.
    self.layerdrop_rngs = (rngs["dropout"].fork() if self.layerdrop > 0
                           else None)

  def embed_tokens(self, tokens_BxL, segment_ids_BxL=None):
    """Token (+ segment) embeddings; no segment ids = all segment 0, as HF.

    With factorised embeddings the V x F lookup is lifted to embed_dim by
    `embed_proj` first (Lan et al. 2020 sec. 3.1).
    """
    x_BxLxE = self.token_embed(tokens_BxL)
    if self.embed_proj is not None:
      x_BxLxE = self.embed_proj(x_BxLxE)
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

  def token_logits(self, x_BxLxE):
    """The tied output layer (Press & Wolf 2017): x @ token_table^T.

    Factorised: (x @ W_proj^T) @ table^T, the transpose of the input path
    table -> W_proj, so the output costs no parameters either.
    """
    if self.embed_proj is not None:
      w_FxE = self.embed_proj.kernel[...].astype(x_BxLxE.dtype)
      x_BxLxF = x_BxLxE @ w_FxE.T  # any leading dims ([B, E] too)
      return self.token_embed.attend(x_BxLxF)
    return self.token_embed.attend(x_BxLxE)

  def run_blocks(self, x, *, mask_BxL, causal, deterministic):
    x = self.embed_dropout(self.embed_norm(x), deterministic=deterministic)

    def run(block, x):
      x = sharding.constrain(x, RESIDUAL_AXES)
      return block(x, mask_BxL=mask_BxL, causal=causal,
                   deterministic=deterministic)

    for block in self.blocks:
      if self.layerdrop > 0 and not deterministic:
        # LayerDrop (Fan et al. 2020): keep with probability 1 - p.
        keep = jax.random.uniform(self.layerdrop_rngs()) >= self.layerdrop
        x = nnx.cond(keep, run, lambda block, x: x, block, x)
      else:
        x = run(block, x)
    return self.final_norm(x)


class EncoderClassifier(nnx.Module):
  """Bidirectional encoder + pooling + classifier (LRA's classification setup).

  Pooling: "cls" prepends a learned vector (not a vocabulary token, so data
  pipelines stay model-agnostic) and reads it out; "mean" averages the
  non-padded positions, "max" takes their element-wise maximum; "first"
  reads position 0 of the input as it is,
  which is BERT's [CLS] token when the tokenizer put it there (Devlin et al.
  2019 sec. 3). `pooler=True` adds BERT's pooler, tanh(dense(pooled)),
  before the head (`classifier_hidden_dim=0` then gives BERT's classifier).
  """

  backbone_cls = Backbone  # a subclass may run its blocks otherwise (Theseus)
  task_kinds = ("classification", "regression")  # one output per sequence

  def __init__(self, cfg, *, vocab_size: int, num_classes: int, max_len: int,
               rngs: nnx.Rngs, dtype=jnp.float32):
    cfg = as_model_config(cfg)
    self.pool = cfg.pool
    self.activation = cfg.head_activation
    extra = 1 if cfg.pool == "cls" else 0
    self.backbone = self.backbone_cls(cfg, vocab_size=vocab_size,
                                      max_len=max_len + extra, rngs=rngs,
                                      dtype=dtype)
    if self.pool == "cls":
      self.cls = nnx.Param(
          nnx.initializers.normal(0.02)(rngs.params(), (1, 1, cfg.embed_dim)),
          **param_axes(None, None, "embed"))
    hidden = cfg.classifier_hidden_dim
    self.pooler = (_dense(cfg.embed_dim, cfg.embed_dim, rngs, dtype,
                          axes=("embed", "embed"))
                   if cfg.pooler else None)
    self.head_hidden = (_dense(cfg.embed_dim, hidden, rngs, dtype,
                               axes=("embed", "mlp")) if hidden else None)
    self.head = _dense(hidden or cfg.embed_dim, num_classes, rngs, dtype,
                       axes=("mlp" if hidden else "embed", "classes"))

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
    return self.classify(self.encode(
        tokens_BxL, segment_ids_BxL=segment_ids_BxL,
        deterministic=deterministic, pad_id=pad_id))

  def with_hidden(self, tokens_BxL, *, segment_ids_BxL=None,
                  deterministic=True, pad_id=0):
    """(logits, last hidden states [B, L', E], their mask [B, L']): one
    forward pass, for losses on the hidden states (DistilBERT's cosine
    term, `objectives.distillation`). L' = L + 1 with "cls" pooling (the
    prepended vector is position 0)."""
    x_BxLxE, mask_BxL = self.encode_sequence(
        tokens_BxL, segment_ids_BxL=segment_ids_BxL,
        deterministic=deterministic, pad_id=pad_id)
    return self.classify(self.pool_sequence(x_BxLxE, mask_BxL)), x_BxLxE, mask_BxL

  def classify(self, pooled_BxE) -> jax.Array:
    """The head: pooled vector [B, E] -> logits [B, C] (float32)."""
    if self.head_hidden is not None:
      pooled_BxE = ACTIVATIONS.get(self.activation)(self.head_hidden(pooled_BxE))
    return self.head(pooled_BxE).astype(jnp.float32)

  def encode(self, tokens_BxL, *, segment_ids_BxL=None, deterministic=True,
             pad_id=0) -> jax.Array:
    """The pooled vector [B, E] the head reads (after BERT's pooler, if
    configured). Uses `backbone`, `pool`, `cls` and `pooler` only, so a
    model with those parts shares it (`DualEncoderClassifier`'s towers)."""
    return self.pool_sequence(*self.encode_sequence(
        tokens_BxL, segment_ids_BxL=segment_ids_BxL,
        deterministic=deterministic, pad_id=pad_id))

  def encode_sequence(self, tokens_BxL, *, segment_ids_BxL=None,
                      deterministic=True, pad_id=0):
    """The last layer's hidden states [B, L', E] and their mask [B, L']
    (with "cls" pooling the learned vector is prepended: L' = L + 1)."""
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
    return x_BxLxE, mask_BxL

  def pool_sequence(self, x_BxLxE, mask_BxL) -> jax.Array:
    """`pool` (then BERT's pooler, if configured): [B, L', E] -> [B, E].

    "mean" and "max" read the real tokens only (Reimers & Gurevych 2019,
    Sentence-BERT sec. 3: MEAN and MAX strategies); a row without any gives
    zeros.
    """
    if self.pool in ("cls", "first"):  # the prepended vector / input token 0
      pooled_BxE = x_BxLxE[:, 0]
    elif self.pool == "max":
      real_BxLx1 = mask_BxL[..., None]
      lowest = jnp.finfo(x_BxLxE.dtype).min
      pooled_BxE = jnp.where(real_BxLx1, x_BxLxE, lowest).max(1)
      pooled_BxE = jnp.where(real_BxLx1.any(1), pooled_BxE, 0)
    else:
      w_BxL = mask_BxL.astype(x_BxLxE.dtype)
      pooled_BxE = (x_BxLxE * w_BxL[..., None]).sum(1) / jnp.maximum(
          w_BxL.sum(1, keepdims=True), 1)
    if self.pooler is not None:
      pooled_BxE = jnp.tanh(self.pooler(pooled_BxE))
    return pooled_BxE
