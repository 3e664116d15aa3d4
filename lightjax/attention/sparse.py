"""Block-sparse attention that computes only the blocks a pattern keeps.

WHY: Long Range Arena (Tay et al. 2021) evaluated sparse Transformers by
masking a dense [L, L] score matrix, so "sparse" models paid the full O(L^2)
time and memory of softmax attention. Here each pattern is a block layout and
only the kept blocks are ever formed: queries are cut into blocks,
[B, nb, bs, H, D], and each query block is scored against the keys gathered
for it, [B, nb, K, H, D] with K independent of L for a fixed window, so time
and memory grow linearly in L (O(L^1.5) for Child et al.'s strided/fixed with
stride ~ sqrt(L), as in the paper).

Formulation (Child et al. 2019, "Generating Long Sequences with Sparse
Transformers", sec. 4.2, eq. 2-3): with a connectivity set Omega_i per query,

  a(x_i, Omega_i) = softmax((W_q x_i) K_{Omega_i}^T / sqrt(d)) V_{Omega_i}.

One machinery (`_block_sparse`) serves every pattern; each pattern function
states its Omega_i as a `KeySet`. Omega_i is the disjoint union of up to
three kinds of key sets, joined under ONE softmax (a shared row max and
denominator), so the result equals dense masked attention:
  * gathered keys, per query block: key blocks from a block table (window
    blocks and global blocks as static slices, BigBird's random blocks by a
    gather; a block listed twice counts once) followed by a few shared key
    positions (Longformer global tokens, Child et al.'s "summary" columns),
    with an elementwise rule inside them (token windows, causality).
  * same offset: keys j = i (mod bs) from every block: Child et al.'s strided
    columns. They admit no per-block gather (each query of a block needs a
    different column), so the keys are read in the [nb, bs] layout with the
    in-block offset as a batch axis: O(L * L / bs), the paper's O(L sqrt(L))
    for bs ~ sqrt(L), and no copies.
  * global rows: the first R queries attend to every key (BigBird / Longformer
    global queries), R dense rows, O(R L), written over the block result.

`weighting="uniform_sqrt"` replaces the softmax weights with the fixed weight
1 / sqrt(|Omega_i|) on every kept key (|Omega_i| counted after padding and
causality): out_i = sum_{j in Omega_i} v_j / sqrt(|Omega_i|). It is the
uniform-weight variant of the seed formulation above (a(x_i, Omega_i) with
the query-key scores dropped). It is NOT normalised: the weights sum to
sqrt(|Omega_i|), not 1. Rows with no visible key give zeros in both modes.

Incremental decoding (`init_cache` / `decode_step`, one query at position
`index`): the query attends, under the same softmax (or uniform_sqrt)
weighting, to the cached keys its pattern allows, stated by the pattern's
elementwise rule (`sparse_patterns.<pattern>_rule`) at row i = index. WHY two
cache shapes: a sliding window never looks further back than a fixed
distance, so `local` (w + 1 blocks) and `longformer` (window // 2 + 1 tokens,
plus its g global tokens kept apart) keep a ring buffer of that many keys and
values, slot = position mod size: constant memory however long the
generation (the point of a local pattern at inference). `strided`, `fixed`
and `bigbird` reach arbitrarily far back (strided columns, summary columns,
global and random blocks), so they keep a full cache of max_len positions,
as softmax does, and a step costs O(max_len) like softmax's; the rule just
masks more of it. One code path serves both: a full cache is a ring buffer
of max_len slots that never wraps.

Patterns (dense definitions and citations in `sparse_patterns.py`): `local`,
`strided`, `fixed` (Child et al. 2019, sec. 4.2-4.3, fig. 3), `bigbird`
(Zaheer et al. 2020, fig. 1), `longformer` (Beltagy et al. 2020, fig. 2). All
are self-attention: k and v have the queries' length. The public functions
take static ints (jit with functools.partial) and are differentiable.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lightjax.attention import sparse_patterns as patterns
from lightjax.attention.base import AttentionKernel
from lightjax.attention.block_sparse import (WEIGHTINGS, KeySet, _block_sparse,
                                             _decode_row)
from lightjax.attention.registry import register


def local_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                    mask: jax.Array | None = None, causal: bool = False,
                    block_size: int = 64, num_neighbor_blocks: int = 1,
                    weighting: str = "softmax") -> jax.Array:
  """Blocked sliding-window attention (`sparse_patterns.local_mask`).

  Args:
    q, k, v: [batch, length, heads, head_dim]; length need not divide by
      block_size (padded internally, pads masked).
    block_size: tokens per block (static int; clamped to the length).
    num_neighbor_blocks: w, blocks seen on each side of a query's own block
      (causal: only the w earlier ones, and within its own block j <= i).
    causal: restrict to keys j <= i.
    mask: optional boolean [batch, length] key-padding mask, True = real.
    weighting: "softmax" or "uniform_sqrt" (module docstring).
  Returns:
    [batch, length, heads, head_dim] in q.dtype. Cost O(L (2w + 1) bs).
  """
  n = q.shape[1]
  bs = patterns.clamp_block_size(n, block_size)
  table = patterns.window_block_table(patterns.num_blocks(n, bs),
                                      num_neighbor_blocks, causal)
  return _block_sparse(q, k, v, KeySet(bs, block_table=table), mask=mask,
                       causal=causal, weighting=weighting)


def strided_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                      mask: jax.Array | None = None, causal: bool = False,
                      stride: int = 64,
                      weighting: str = "softmax") -> jax.Array:
  """Child et al. 2019 strided attention (sec. 4.2-4.3, fig. 3b), merged heads.

  Query i sees j with |i - j| <= stride or (i - j) mod stride = 0
  (`sparse_patterns.strided_mask`); causal (the paper's form) keeps j <= i,
  bidirectional mirrors both sets. Block form with bs = stride: the window
  |i - j| < stride lies in blocks b - 1, b, b + 1 (gathered blocks); the
  strided columns are the keys with the query's in-block offset in every block
  ("same offset" part, read in the [nb, stride] layout, no per-query copy).
  Cost O(L (3 stride + L / stride)), O(L^1.5) for stride ~ sqrt(L).

  Args:
    q, k, v: [batch, length, heads, head_dim].
    stride: l (static int), ~sqrt(length) in the paper.
    causal: restrict to keys j <= i (the paper's form: pass causal=True).
    mask: optional boolean [batch, length] key-padding mask, True = real.
    weighting: "softmax" or "uniform_sqrt".
  """
  n = q.shape[1]
  bs = patterns.clamp_block_size(n, stride)  # bs < stride only if nb == 1.
  table = patterns.window_block_table(patterns.num_blocks(n, bs), 1, causal)

  def window(qp, kp):  # Disjoint from the strided columns: d mod l != 0.
    return (qp != kp) & (jnp.abs(qp - kp) < stride)

  keys = KeySet(bs, block_table=table, block_rule=window, same_offset=True)
  return _block_sparse(q, k, v, keys, mask=mask, causal=causal,
                       weighting=weighting)


def fixed_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                    mask: jax.Array | None = None, causal: bool = False,
                    stride: int = 64, summary: int = 1,
                    weighting: str = "softmax") -> jax.Array:
  """Child et al. 2019 fixed attention (sec. 4.2-4.3, fig. 3c), merged heads.

  Query i sees its own block of `stride` positions and the last `summary`
  positions of every block (`sparse_patterns.fixed_mask`); causal (the paper's
  form) keeps j <= i, bidirectional sees every block's summary. Block form:
  the own block is one block-table slot; the summary positions of the other
  blocks, L / stride * summary of them, are shared keys appended to every
  query block: O(L^2 summary / stride) in all, the paper's O(L sqrt(L)) for
  stride ~ sqrt(L).

  Args:
    q, k, v: [batch, length, heads, head_dim].
    stride: block length l (static int).
    summary: c, summary positions per block (the paper uses c in {8, 16, 32}
      for l = 128); clamped to stride.
    causal: restrict to keys j <= i (the paper's form: pass causal=True).
    mask: optional boolean [batch, length] key-padding mask, True = real.
    weighting: "softmax" or "uniform_sqrt".
  """
  n = q.shape[1]
  bs = patterns.clamp_block_size(n, stride)
  c = min(summary, stride)
  pos = np.arange(n)
  shared = pos[pos % stride >= stride - c]  # Summary columns, all blocks.

  def other_block(qp, kp):  # The own block is the gathered part.
    return qp // bs != kp // bs

  keys = KeySet(bs, block_table=np.arange(patterns.num_blocks(n, bs))[:, None],
                shared_keys=shared, shared_rule=other_block)
  return _block_sparse(q, k, v, keys, mask=mask, causal=causal,
                       weighting=weighting)


def bigbird_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                      mask: jax.Array | None = None, causal: bool = False,
                      block_size: int = 64, num_global_blocks: int = 1,
                      num_random_blocks: int = 2, num_neighbor_blocks: int = 1,
                      random_blocks: jax.Array | np.ndarray | None = None,
                      seed: int = 0, weighting: str = "softmax") -> jax.Array:
  """BigBird block-sparse attention (Zaheer et al. 2020, sec. 2, fig. 1).

  Window (the own block and w neighbours on each side) + g global blocks (the
  first g blocks attend to all keys and every query attends to them) + r
  random key blocks per query block (`sparse_patterns.bigbird_mask`). Causal:
  all of it intersected with j <= i (random blocks drawn from the past).

  Args:
    q, k, v: [batch, length, heads, head_dim].
    block_size: tokens per block (static int; clamped to the length).
    num_global_blocks: g.
    num_random_blocks: r (ignored when random_blocks is given).
    num_neighbor_blocks: w.
    random_blocks: optional int [>= nb, r'] table of random key blocks per
      query block (-1 = none), e.g. a module's stored draw; None draws one from
      `seed` with `sparse_patterns.bigbird_random_blocks`.
    seed: int seed of the draw when random_blocks is None.
    causal: restrict to keys j <= i.
    mask: optional boolean [batch, length] key-padding mask, True = real.
    weighting: "softmax" or "uniform_sqrt".
  """
  n = q.shape[1]
  bs = patterns.clamp_block_size(n, block_size)
  nb = patterns.num_blocks(n, bs)
  g = min(num_global_blocks, nb)
  if random_blocks is None:
    random_blocks = patterns.bigbird_random_blocks(
        jax.random.key(seed), nb, num_random_blocks, g, num_neighbor_blocks,
        causal)
  random_blocks = jnp.asarray(random_blocks, jnp.int32)
  if random_blocks.shape[0] < nb:
    raise ValueError(f"random_blocks has {random_blocks.shape[0]} rows, the"
                     f" sequence has {nb} blocks")
  # Key blocks per query block: the g global blocks, the window, the random
  # ones (as in BigBird's own block-sparse code); repeats count once.
  table = np.concatenate([
      np.broadcast_to(np.arange(g, dtype=np.int32), (nb, g)),
      patterns.window_block_table(nb, num_neighbor_blocks, causal)], axis=1)
  keys = KeySet(bs, block_table=table, random_table=random_blocks[:nb],
                global_rows=min(g * bs, n))
  return _block_sparse(q, k, v, keys, mask=mask, causal=causal,
                       weighting=weighting)


def longformer_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                         mask: jax.Array | None = None, causal: bool = False,
                         window: int = 128, num_global_tokens: int = 1,
                         block_size: int = 0,
                         weighting: str = "softmax") -> jax.Array:
  """Longformer attention (Beltagy et al. 2020, sec. 3.1, fig. 2b, 2d).

  Sliding window |i - j| <= window // 2 plus symmetric global attention of the
  first `num_global_tokens` tokens (`sparse_patterns.longformer_mask`).
  Block-wise: queries in blocks of block_size, each gathers its own block and
  ceil((window // 2) / block_size) neighbours per side, and an elementwise
  rule keeps the exact token window; global tokens are shared keys (every
  query sees them) and dense rows (they see every key).

  Args:
    q, k, v: [batch, length, heads, head_dim].
    window: w, total window width (w // 2 tokens on each side).
    num_global_tokens: g, global tokens at the start (e.g. CLS).
    causal: restrict to keys j <= i (the window's left half).
    mask: optional boolean [batch, length] key-padding mask, True = real.
    block_size: query block size, 0 = max(window // 2, 16).
    weighting: "softmax" or "uniform_sqrt".
  """
  n = q.shape[1]
  radius = window // 2
  bs = patterns.longformer_block_size(n, window, block_size)
  table = patterns.window_block_table(patterns.num_blocks(n, bs),
                                      -(-radius // bs), causal)
  g = min(num_global_tokens, n)

  def band(qp, kp):
    return (jnp.abs(qp - kp) <= radius) & (kp >= g)

  keys = KeySet(bs, block_table=table, block_rule=band,
                shared_keys=np.arange(g), global_rows=g)
  return _block_sparse(q, k, v, keys, mask=mask, causal=causal,
                       weighting=weighting)


class RandomBlocks(nnx.Variable):
  """BigBird's random block table: drawn once at init, never trained."""


class _SparseAttention(AttentionKernel):
  """Shared constructor/call of the registered sparse patterns.

  Built by `attention.build`, which hands over every option (defaults filled
  in, values checked).
  """

  option_choices = {"weighting": WEIGHTINGS}
  positive_options = ("block_size", "stride", "summary")

  def __init__(self, *, num_heads, head_dim, max_len, rngs, dtype=jnp.float32,
               weighting: str = "softmax", **options):
    del rngs, dtype
    self.num_heads, self.head_dim, self.max_len = num_heads, head_dim, max_len
    self.weighting = weighting
    # Pattern options, minus weighting. Stored as sorted items: module
    # attributes that are not arrays become part of the (hashable) graphdef.
    self._option_items = tuple(sorted(options.items()))

  @property
  def options(self) -> dict:
    return dict(self._option_items)

  # The pattern's kernel function (`local_attention`, ...), called with the
  # module's options.
  function = None

  def _attend(self, q, k, v, mask, causal):
    return type(self).function(q, k, v, mask=mask, causal=causal,
                               weighting=self.weighting, **self.options)

  def __call__(self, q, k, v, *, mask=None, causal=False, deterministic=True):
    del deterministic
    return self._attend(q, k, v, mask, causal)

  def allowed_mask(self, length: int, causal: bool = False) -> np.ndarray:
    """Dense boolean [length, length] pattern this kernel computes (tests)."""
    return patterns.dense_mask(self.registry_name, length, causal,
                               **self.options)

  # --- Incremental decoding (module docstring) ---------------------------

  supports_decode = True

  def rule(self, i, j):
    """Whether query i may see key j: the pattern's elementwise rule."""
    raise NotImplementedError

  def cache_size(self, max_len: int) -> int:
    """Key slots of the ring buffer: max_len (a full cache) unless a window
    bounds how far back a query looks."""
    return max_len

  def num_global_keys(self) -> int:
    """Leading positions every query sees, cached apart from the ring."""
    return 0

  def init_cache(self, batch_size, max_len, dtype=jnp.float32):
    """Ring buffer {"k", "v"}: [B, cache_size(max_len), H, D], plus the global
    tokens' keys and values {"global_k", "global_v"}: [B, g, H, D]."""
    h, d = self.num_heads, self.head_dim
    slots = max(1, min(self.cache_size(max_len), max_len))
    cache = {"k": jnp.zeros((batch_size, slots, h, d), dtype),
             "v": jnp.zeros((batch_size, slots, h, d), dtype)}
    g = min(self.num_global_keys(), max_len)
    if g:
      cache["global_k"] = jnp.zeros((batch_size, g, h, d), dtype)
      cache["global_v"] = jnp.zeros((batch_size, g, h, d), dtype)
    return cache

  def decode_step(self, q_Bx1xHxD, k_Bx1xHxD, v_Bx1xHxD, cache, index):
    """Writes k, v at slot index mod S; attends to the allowed cached keys.

    Slot s holds position index - ((index - s) mod S), the latest position
    <= index written there (negative: not written yet), so the rule is
    applied to true positions whether or not the buffer has wrapped.
    """
    slots = cache["k"].shape[1]
    slot = index % slots
    k_BxSxHxD = jax.lax.dynamic_update_slice_in_dim(
        cache["k"], k_Bx1xHxD.astype(cache["k"].dtype), slot, 1)
    v_BxSxHxD = jax.lax.dynamic_update_slice_in_dim(
        cache["v"], v_Bx1xHxD.astype(cache["v"].dtype), slot, 1)
    new_cache = {"k": k_BxSxHxD, "v": v_BxSxHxD}
    pos_S = index - (index - jnp.arange(slots)) % slots
    # i as a [1] array: the rules broadcast i against j (rank-matched).
    i_1 = jnp.reshape(index, (1,))
    allowed_S = (pos_S >= 0) & self.rule(i_1, pos_S)
    if "global_k" in cache:  # Longformer's global tokens, cached apart.
      g = cache["global_k"].shape[1]
      at = jnp.minimum(index, g - 1)
      write = index < g
      for name, x in (("global_k", k_Bx1xHxD), ("global_v", v_Bx1xHxD)):
        new_cache[name] = jnp.where(write, jax.lax.dynamic_update_slice_in_dim(
            cache[name], x.astype(cache[name].dtype), at, 1), cache[name])
      allowed_S &= pos_S >= g  # Those keys are the global slots'.
      gpos_G = jnp.arange(g)
      allowed_G = (gpos_G <= index) & self.rule(i_1, gpos_G)
      k_BxSxHxD = jnp.concatenate([new_cache["global_k"], k_BxSxHxD], axis=1)
      v_BxSxHxD = jnp.concatenate([new_cache["global_v"], v_BxSxHxD], axis=1)
      allowed_S = jnp.concatenate([allowed_G, allowed_S])
    out_Bx1xHxD = _decode_row(q_Bx1xHxD, k_BxSxHxD, v_BxSxHxD, allowed_S,
                              self.weighting)
    return out_Bx1xHxD, new_cache


@register("local")
class LocalAttention(_SparseAttention):
  """Blocked sliding window (`local_attention`)."""

  function = staticmethod(local_attention)

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    return {"block_size": 64, "num_neighbor_blocks": 1, "weighting": "softmax"}

  def rule(self, i, j):
    o = self.options
    return patterns.local_rule(i, j, o["block_size"], o["num_neighbor_blocks"])

  def cache_size(self, max_len):
    """Causal query i sees back to the start of block(i) - w: at most
    (w + 1) * block_size keys, itself included."""
    o = self.options
    return (o["num_neighbor_blocks"] + 1) * o["block_size"]


@register("strided")
class StridedAttention(_SparseAttention):
  """Child et al. 2019 strided pattern (`strided_attention`)."""

  function = staticmethod(strided_attention)

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    return {"stride": 64, "weighting": "softmax"}

  def rule(self, i, j):
    return patterns.strided_rule(i, j, self.options["stride"])


@register("fixed")
class FixedAttention(_SparseAttention):
  """Child et al. 2019 fixed pattern (`fixed_attention`)."""

  function = staticmethod(fixed_attention)

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    return {"stride": 64, "summary": 1, "weighting": "softmax"}

  def rule(self, i, j):
    o = self.options
    return patterns.fixed_rule(i, j, o["stride"], o["summary"])


@register("longformer")
class LongformerAttention(_SparseAttention):
  """Longformer window + global tokens (`longformer_attention`)."""

  function = staticmethod(longformer_attention)
  positive_options = ("window",)  # block_size 0 = automatic

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    # block_size: query block of the block-wise window, 0 = auto
    # (max(window // 2, 16)); it changes the cost, never the pattern.
    return {"window": 128, "num_global_tokens": 1, "block_size": 0,
            "weighting": "softmax"}

  def rule(self, i, j):
    o = self.options
    return patterns.longformer_rule(i, j, o["window"], o["num_global_tokens"])

  def cache_size(self, max_len):
    """The causal band: keys i - window // 2 .. i."""
    return self.options["window"] // 2 + 1

  def num_global_keys(self):
    return self.options["num_global_tokens"]


@register("bigbird")
class BigBirdAttention(_SparseAttention):
  """BigBird window + global + random blocks (`bigbird_attention`).

  The random blocks are drawn once here from `rngs.params()` for
  ceil(max_len / block_size) blocks, one table for bidirectional and one
  (past-only) for causal calls, and stored as non-trainable `RandomBlocks`
  variables. Shorter inputs use the table's first rows; draws pointing past
  the input's last block are dropped.
  """

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    return {"block_size": 64, "num_global_blocks": 1, "num_random_blocks": 2,
            "num_neighbor_blocks": 1, "weighting": "softmax"}

  def __init__(self, *, num_heads, head_dim, max_len, rngs, dtype=jnp.float32,
               weighting="softmax", **options):
    super().__init__(num_heads=num_heads, head_dim=head_dim, max_len=max_len,
                     rngs=None, dtype=dtype, weighting=weighting, **options)
    options = self.options
    bs = patterns.clamp_block_size(max_len, options["block_size"])
    nb = patterns.num_blocks(max_len, bs)
    draw = {c: patterns.bigbird_random_blocks(
        key, nb, options["num_random_blocks"],
        min(options["num_global_blocks"], nb),
        options["num_neighbor_blocks"], causal=c)
            for c, key in zip((False, True), jax.random.split(rngs.params()))}
    self.random_blocks = RandomBlocks(draw[False])
    self.causal_random_blocks = RandomBlocks(draw[True])

  def _table(self, causal):
    return (self.causal_random_blocks if causal else self.random_blocks)[...]

  def _attend(self, q, k, v, mask, causal):
    if q.shape[1] > self.max_len:
      raise ValueError(f"bigbird built for max_len={self.max_len}, got length"
                       f" {q.shape[1]}")
    opts = {k_: v_ for k_, v_ in self.options.items()
            if k_ != "num_random_blocks"}
    return bigbird_attention(q, k, v, random_blocks=self._table(causal),
                             causal=causal, mask=mask,
                             weighting=self.weighting, **opts)

  def allowed_mask(self, length: int, causal: bool = False) -> np.ndarray:
    return patterns.dense_mask("bigbird", length, causal,
                               random_blocks=np.asarray(self._table(causal)),
                               **self.options)

  def rule(self, i, j):
    """Decoding is causal: the causal (past-only) random table."""
    o = self.options
    return patterns.bigbird_rule(i, j, o["block_size"], o["num_global_blocks"],
                                 o["num_neighbor_blocks"], self._table(True))
