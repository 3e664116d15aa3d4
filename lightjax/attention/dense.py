"""Dense attention: the O(L*S) ground truth every variant is checked against.

`dense_attention` materialises the full [L, S] score matrix and applies an
arbitrary boolean "allowed" pattern. It is O(L*S) in time and memory on
purpose: simple enough to be obviously right, so block-sparse and linear
kernels can be checked against it (the contract suite asserts equality under
each exact variant's `allowed_mask`). Softmax's `implementation="einsum"`
runs it; the default softmax path is XLA's fused kernel (`softmax.py`).

`masked_softmax` is the one masked softmax of the package (the block-sparse
kernels use it on their gathered key slots too).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_NEG_INF = -1e30  # Finite, so fully-masked rows stay NaN-free.


def masked_softmax(logits: jax.Array, allowed: jax.Array | None,
                   axis: int = -1) -> jax.Array:
  """softmax(logits) over the allowed entries of `axis`; 0 elsewhere.

  Rows with no allowed entry give all zeros (not a uniform average of masked
  values), so padded or fully-masked queries never leak anything. The row
  max is a stop-gradient constant (it cancels exactly).
  """
  if allowed is None:
    return jax.nn.softmax(logits, axis=axis)
  masked = jnp.where(allowed, logits, _NEG_INF)
  row_max = jax.lax.stop_gradient(masked.max(axis, keepdims=True))
  e = jnp.where(allowed, jnp.exp(masked - row_max), 0.0)
  den = e.sum(axis, keepdims=True)
  return e / jnp.where(den > 0, den, 1.0)


def combine_masks(
    length_q: int,
    length_k: int,
    mask_BxS: jax.Array | None = None,
    causal: bool = False,
    allowed_LxS: jax.Array | None = None,
) -> jax.Array | None:
  """Returns a boolean [B or 1, 1, L, S] mask (True = attend), or None."""
  mask = None
  if allowed_LxS is not None:
    mask = jnp.asarray(allowed_LxS, bool)[None, None]
  if causal:
    tri = jnp.tril(jnp.ones((length_q, length_k), bool), length_k - length_q)
    mask = tri[None, None] if mask is None else mask & tri[None, None]
  if mask_BxS is not None:
    pad = mask_BxS[:, None, None, :].astype(bool)
    mask = pad if mask is None else mask & pad
  return mask


def dense_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    mask: jax.Array | None = None,
    causal: bool = False,
    allowed: jax.Array | None = None,
) -> jax.Array:
  """softmax(Q K^T / sqrt(d) + mask) V (Vaswani et al. 2017, eq. 1), dense.

  Args:
    q: [B, L, H, D]; k, v: [B, S, H, D].
    mask: optional boolean [B, S] key-padding mask, True = keep.
    causal: query i sees keys j <= i + (S - L) (aligned at the end).
    allowed: optional boolean [L, S] pattern (a sparse variant's
      connectivity sets).
  Returns:
    [B, L, H, D] in q.dtype; queries with no visible key give zeros.
  """
  d = q.shape[-1]
  logits_BxHxLxS = jnp.einsum(
      "blhd,bshd->bhls", q, k, preferred_element_type=jnp.float32,
  ) / jnp.sqrt(jnp.float32(d))
  allowed_BxHxLxS = combine_masks(q.shape[1], k.shape[1], mask, causal,
                                  allowed)
  probs_BxHxLxS = masked_softmax(logits_BxHxLxS, allowed_BxHxLxS)
  out = jnp.einsum("bhls,bshd->blhd", probs_BxHxLxS.astype(v.dtype), v,
                   preferred_element_type=jnp.float32)
  return out.astype(q.dtype)
