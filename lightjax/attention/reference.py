"""Dense-mask reference attention: the ground truth the fast variants are tested against.

`dense_attention` materialises the full [L, S] score matrix and applies an
arbitrary boolean "allowed" pattern. It is O(L*S) in time and memory on
purpose: simple enough to be obviously right, so block-sparse and linear
kernels can be checked against it (tests assert equality under the same mask).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_NEG_INF = -1e30  # Finite, so fully-masked rows give a uniform (not NaN) softmax.


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
    mask = allowed_LxS[None, None]
  if causal:
    tri = jnp.tril(jnp.ones((length_q, length_k), bool), length_k - length_q)
    mask = tri[None, None] if mask is None else mask & tri[None, None]
  if mask_BxS is not None:
    pad = mask_BxS[:, None, None, :].astype(bool)
    mask = pad if mask is None else mask & pad
  return mask


def dense_attention(
    q_BxLxHxD: jax.Array,
    k_BxSxHxD: jax.Array,
    v_BxSxHxD: jax.Array,
    mask_BxS: jax.Array | None = None,
    causal: bool = False,
    allowed_LxS: jax.Array | None = None,
) -> jax.Array:
  """softmax(Q K^T / sqrt(d) + mask) V (Vaswani et al. 2017, eq. 1), dense.

  Rows whose every key is masked return zeros rather than an average of
  masked values, so padded queries never leak anything.
  """
  d = q_BxLxHxD.shape[-1]
  logits_BxHxLxS = jnp.einsum(
      "blhd,bshd->bhls", q_BxLxHxD, k_BxSxHxD,
      preferred_element_type=jnp.float32,
  ) / jnp.sqrt(jnp.float32(d))
  mask = combine_masks(
      q_BxLxHxD.shape[1], k_BxSxHxD.shape[1], mask_BxS, causal, allowed_LxS
  )
  if mask is not None:
    logits_BxHxLxS = jnp.where(mask, logits_BxHxLxS, _NEG_INF)
  probs = jax.nn.softmax(logits_BxHxLxS, axis=-1)
  if mask is not None:
    probs = jnp.where(mask.any(-1, keepdims=True), probs, 0.0)
  out = jnp.einsum("bhls,bshd->blhd", probs.astype(v_BxSxHxD.dtype), v_BxSxHxD)
  return out.astype(q_BxLxHxD.dtype)
