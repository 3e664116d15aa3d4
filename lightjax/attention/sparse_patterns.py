"""Sparse attention patterns: which keys each query may see, stated densely.

WHY: a sparse pattern is a connectivity set Omega_i (Child et al. 2019,
"Generating Long Sequences with Sparse Transformers", sec. 4.2, eq. 2-3: S_i
= the indices query i attends to). `lightjax.attention.sparse` computes only
the blocks a pattern keeps; this file states the same patterns the obvious way,
as a boolean [L, L] "allowed" matrix, so tests can check the block-sparse
kernels against `dense.dense_attention(..., allowed_LxS=mask)`. The dense
masks are written from the papers' per-position definitions, independently of
the block layouts, so a wrong gather (a missing or doubly counted key) shows up
as a mismatch. They are O(L^2) and meant for tests and plots only.

Also here: the block-layout helpers both sides share (block-size clamping,
sliding-window block tables) and BigBird's random-block draw, so the dense
reference and the kernel see the same random blocks.

Each pattern is also stated as an elementwise rule `<pattern>_rule(i, j, ...)`
over broadcastable integer arrays of positions, written only with operators
numpy and jax.numpy share (`//`, `%`, `abs`, comparisons): the dense masks
apply it to the [L, L] grid, and incremental decoding
(`sparse._SparseAttention.decode_step`) to one query row (i = the traced
decode index, j = the cached key positions), so the pattern is written once.
The rules use the configured block size: clamping it to a shorter sequence
(`clamp_block_size`) changes no entry with i, j < length (one block of
`length` tokens keeps what one padded block would), so a row of the rule does
not depend on how long the sequence is.

Conventions: i = query position, j = key position, block size b, block index
i // b. Every mask is the bidirectional pattern intersected with j <= i when
`causal` (the papers' causal patterns are exactly that; their bidirectional
versions mirror the causal ones, see each function).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

PATTERNS = ("local", "strided", "fixed", "bigbird", "longformer")


def num_blocks(length: int, block_size: int) -> int:
  """ceil(length / block_size): the last block may be partial (padded)."""
  return -(-length // block_size)


def clamp_block_size(length: int, block_size: int) -> int:
  """Block size actually used for a sequence of `length` tokens.

  When length <= block_size everything is one block; shrinking the block to
  the sequence avoids padding work and leaves every pattern here unchanged (one
  block of `length` tokens keeps exactly what one padded block would).
  """
  if block_size < 1:
    raise ValueError(f"block size must be >= 1, got {block_size}")
  return max(1, min(block_size, length))


def window_block_table(n_blocks: int, num_neighbor_blocks: int,
                       causal: bool) -> np.ndarray:
  """[n_blocks, slots] int32 key-block indices of a sliding window of blocks.

  Row i lists blocks i - w .. i + w (causal: i - w .. i); out-of-range slots
  are -1 (empty). w is clamped to n_blocks - 1 (a wider window sees nothing
  more).
  """
  w = max(0, min(num_neighbor_blocks, n_blocks - 1))
  offsets = np.arange(-w, 1 if causal else w + 1)
  table = np.arange(n_blocks)[:, None] + offsets[None, :]
  return np.where((table >= 0) & (table < n_blocks), table, -1).astype(np.int32)


def longformer_block_size(length: int, window: int,
                          block_size: int = 0) -> int:
  """Block size of Longformer's block-wise sliding window.

  Default (block_size=0): the one-sided radius window // 2 (at least 16), so a
  query block needs its own block and one neighbour on each side.
  """
  if block_size <= 0:
    block_size = max(window // 2, 16)
  return clamp_block_size(length, block_size)


def bigbird_random_blocks(
    key: jax.Array,
    n_blocks: int,
    num_random_blocks: int,
    num_global_blocks: int = 1,
    num_neighbor_blocks: int = 1,
    causal: bool = False,
) -> jax.Array:
  """Draws BigBird's random key blocks (Zaheer et al. 2020, sec. 2, "r").

  For each query block i, `num_random_blocks` distinct blocks chosen uniformly
  among those the rest of the pattern does not already give it: not global
  (j >= g), outside its window (|i - j| > w; causal: j < i - w, i.e. strictly
  in the past, so causal random blocks are never wasted). Global query blocks
  (i < g) already see everything and get none. When fewer candidates exist
  than asked for, the remaining slots are -1 (empty).

  Args:
    key: a jax PRNG key (the draw is a pure function of it).
    n_blocks: number of blocks of the sequence.
    num_random_blocks: r, random key blocks per query block.
    num_global_blocks: g, the first g blocks are global.
    num_neighbor_blocks: w, window blocks on each side.
    causal: draw past-only blocks (for causal attention).
  Returns:
    int32 [n_blocks, num_random_blocks], -1 = empty slot.
  """
  r, g = num_random_blocks, num_global_blocks
  w = max(0, min(num_neighbor_blocks, n_blocks - 1))
  if r <= 0 or n_blocks <= 0:
    return jnp.full((n_blocks, max(r, 0)), -1, jnp.int32)
  i = np.arange(n_blocks)[:, None]
  j = np.arange(n_blocks)[None, :]
  candidate = (j >= g) & (i >= g)
  candidate &= (j < i - w) if causal else (np.abs(i - j) > w)
  score = jnp.where(candidate, jax.random.uniform(key, (n_blocks, n_blocks)),
                    -1.0)
  top, idx = jax.lax.top_k(score, min(r, n_blocks))
  idx = jnp.where(top >= 0, idx, -1).astype(jnp.int32)
  if idx.shape[1] < r:
    idx = jnp.pad(idx, ((0, 0), (0, r - idx.shape[1])), constant_values=-1)
  return idx


def _ij(length: int) -> tuple[np.ndarray, np.ndarray]:
  return np.arange(length)[:, None], np.arange(length)[None, :]


def _causal(allowed: np.ndarray, causal: bool) -> np.ndarray:
  i, j = _ij(allowed.shape[0])
  return allowed & (j <= i) if causal else allowed


def local_rule(i, j, block_size: int, num_neighbor_blocks: int = 1):
  """|block(i) - block(j)| <= w: the bidirectional blocked window."""
  return abs(i // block_size - j // block_size) <= num_neighbor_blocks


def local_mask(length: int, block_size: int, num_neighbor_blocks: int = 1,
               causal: bool = False) -> np.ndarray:
  """Blocked sliding window: |block(i) - block(j)| <= w (causal: and j <= i).

  E.g. the local attention of Parmar et al. 2018 ("Image Transformer",
  sec. 3.2) / the window part of BigBird (Zaheer et al. 2020, fig. 1b).
  """
  i, j = _ij(length)
  allowed = local_rule(i, j, clamp_block_size(length, block_size),
                       num_neighbor_blocks)
  return _causal(allowed, causal)


def strided_rule(i, j, stride: int):
  """|i - j| <= l or (i - j) mod l = 0 (`strided_mask`)."""
  d = i - j
  return (abs(d) <= stride) | (d % stride == 0)


def strided_mask(length: int, stride: int, causal: bool = True) -> np.ndarray:
  """Child et al. 2019 strided pattern (sec. 4.2-4.3, fig. 3b), heads merged.

  A_i^(1) = {t, ..., i}, t = max(0, i - l) and A_i^(2) = {j : (i - j) mod l
  = 0}; their union (the "merged head" of sec. 5.1) is |i - j| <= l or
  (i - j) mod l = 0 (j = i - l satisfies both). Causal: j <= i, as in the
  paper. Bidirectional (our mirror): the same two conditions on |i - j|.
  """
  i, j = _ij(length)
  return _causal(strided_rule(i, j, stride), causal)


def fixed_rule(i, j, stride: int, summary: int = 1):
  """Own block of l positions, or one of a block's last c (`fixed_mask`)."""
  c = min(summary, stride)
  return (i // stride == j // stride) | (j % stride >= stride - c)


def fixed_mask(length: int, stride: int, summary: int = 1,
               causal: bool = True) -> np.ndarray:
  """Child et al. 2019 fixed pattern (sec. 4.2-4.3, fig. 3c), heads merged.

  A_i^(1) = {j : floor(j / l) = floor(i / l)} (own block of l positions) and
  A_i^(2) = {j : j mod l in {l - c, ..., l - 1}} (the last c "summary"
  positions of every block); c = `summary`, clamped to l. Causal: j <= i as in
  the paper. Bidirectional (our mirror): both sets without the j <= i cut, so
  every block's summary is seen by every query.
  """
  i, j = _ij(length)
  return _causal(fixed_rule(i, j, stride, summary), causal)


def bigbird_rule(i, j, block_size: int, num_global_blocks: int,
                 num_neighbor_blocks: int, random_blocks):
  """Window, global or random block (`bigbird_mask`), elementwise.

  `random_blocks` is an int [rows, r] numpy or jax array; a query block past
  its last row has no random blocks, entries -1 (or >= the number of blocks)
  match no key block.
  """
  bi, bj = i // block_size, j // block_size
  allowed = abs(bi - bj) <= num_neighbor_blocks
  allowed = allowed | (bi < num_global_blocks) | (bj < num_global_blocks)
  rows = random_blocks.shape[0]
  if rows and random_blocks.shape[1]:
    row = random_blocks[bi % rows]  # [..., r]; rows past the table: below
    hit = (row == bj[..., None]).any(-1) & (bi < rows)
    allowed = allowed | hit
  return allowed


def bigbird_mask(length: int, block_size: int, num_global_blocks: int,
                 num_neighbor_blocks: int, random_blocks, causal: bool = False
                 ) -> np.ndarray:
  """BigBird (Zaheer et al. 2020, sec. 2, fig. 1d) at block granularity.

  Block i sees blocks j with |i - j| <= w (window), i < g or j < g (global:
  attends to all, attended by all; ITC form, the first g blocks), or j in
  random_blocks[i] (entries -1 or >= n_blocks are ignored). Causal: j <= i
  position-wise.

  Args:
    random_blocks: int [>= n_blocks, r] table, e.g. from
      `bigbird_random_blocks` or a BigBird module's stored table.
  """
  i, j = _ij(length)
  allowed = bigbird_rule(i, j, clamp_block_size(length, block_size),
                         num_global_blocks, num_neighbor_blocks,
                         np.asarray(random_blocks))
  return _causal(allowed, causal)


def longformer_rule(i, j, window: int, num_global_tokens: int = 1):
  """|i - j| <= window // 2, or i or j a global token (`longformer_mask`)."""
  g = num_global_tokens
  return (abs(i - j) <= window // 2) | (i < g) | (j < g)


def longformer_mask(length: int, window: int, num_global_tokens: int = 1,
                    causal: bool = False) -> np.ndarray:
  """Longformer (Beltagy et al. 2020, sec. 3.1, fig. 2b and 2d).

  Sliding window of `window` tokens, window // 2 on each side (|i - j| <=
  window // 2), plus symmetric global attention of the first g tokens (i < g
  or j < g; e.g. a CLS token). Causal: j <= i (the window becomes its left
  half).
  """
  i, j = _ij(length)
  return _causal(longformer_rule(i, j, window, num_global_tokens), causal)


def dense_mask(pattern: str, length: int, causal: bool = False,
               random_blocks=None, **options) -> np.ndarray:
  """Boolean [length, length] allowed matrix of a registered sparse pattern.

  Args:
    pattern: one of PATTERNS.
    length: sequence length L.
    causal: intersect with j <= i.
    random_blocks: BigBird only: the random block table the kernel uses.
    **options: the pattern's module options (`weighting` is ignored).
  """
  options.pop("weighting", None)
  if pattern == "local":
    return local_mask(length, causal=causal, **options)
  if pattern == "strided":
    return strided_mask(length, causal=causal, **options)
  if pattern == "fixed":
    return fixed_mask(length, causal=causal, **options)
  if pattern == "longformer":
    options.pop("block_size", None)  # Layout only, not part of the pattern.
    return longformer_mask(length, causal=causal, **options)
  if pattern == "bigbird":
    if random_blocks is None:
      raise ValueError("bigbird's dense mask needs the kernel's random_blocks")
    options.pop("num_random_blocks", None)
    return bigbird_mask(length, random_blocks=random_blocks, causal=causal,
                        **options)
  raise ValueError(f"unknown sparse pattern {pattern!r}; valid: {PATTERNS}")
