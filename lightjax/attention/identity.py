"""`none`: attention replaced by the identity, the cost floor of a Transformer.

WHY: with no token mixing, only the projections, MLP, norms and embeddings
cost anything, so `lightjax.bench` reports every variant's time and memory
also as a multiple of this floor: how much attention overhead is left to
remove. As a training ablation it is a bag-of-tokens model (use mean
pooling: a CLS position sees nothing).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lightjax.attention.base import AttentionKernel
from lightjax.attention.registry import register


def identity_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                       mask: jax.Array | None = None,
                       causal: bool = False) -> jax.Array:
  """No token mixing: each position returns its own value, out_i = v_i.

  It is attention restricted to the diagonal (Omega_i = {i}), so causal is
  trivially satisfied; padded queries give zeros like every other kernel.
  """
  del causal
  if k.shape[1] != q.shape[1] or v.shape[1] != q.shape[1]:
    raise ValueError("identity attention is self-attention: q, k, v need one"
                     f" length, got {q.shape[1]}, {k.shape[1]}, {v.shape[1]}")
  out = v if mask is None else jnp.where(mask[:, :, None, None], v, 0)
  return out.astype(q.dtype)


@register("none")
class NoAttention(AttentionKernel):
  """`identity_attention` as a variant (module docstring)."""

  supports_decode = True

  def __init__(self, *, num_heads, head_dim, max_len, rngs, dtype=jnp.float32):
    del num_heads, head_dim, max_len, rngs, dtype

  def __call__(self, q, k, v, *, mask=None, causal=False, deterministic=True):
    del deterministic
    return identity_attention(q, k, v, mask=mask, causal=causal)

  def allowed_mask(self, length, causal=False):
    return np.eye(length, dtype=bool)

  def init_cache(self, batch_size, max_len, dtype=jnp.float32):
    del batch_size, max_len, dtype
    return {}

  def decode_step(self, q_Bx1xHxD, k_Bx1xHxD, v_Bx1xHxD, cache, index):
    del k_Bx1xHxD, index
    return v_Bx1xHxD.astype(q_Bx1xHxD.dtype), cache
