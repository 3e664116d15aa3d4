"""Softmax (scaled dot-product) attention: the O(N^2) baseline.

Vaswani et al. 2017, "Attention Is All You Need", eq. 1:
  Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V.

`implementation=None` uses our einsum path (works everywhere, the reference).
"xla" or "cudnn" route through `jax.nn.dot_product_attention`; cuDNN's fused
flash kernel exists on GPUs only, so it is opt-in and never needed on CPU.
Incremental decoding keeps a KV cache preallocated to `max_len`: each new
token attends over the whole cache (masked past `index`), so a step costs
O(cache length); size the cache to the context you need.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lightjax.attention import reference
from lightjax.attention.base import AttentionKernel
from lightjax.attention.registry import register

_IMPLEMENTATIONS = (None, "xla", "cudnn")


def softmax_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array | None = None,
    causal: bool = False,
    implementation: str | None = None,
) -> jax.Array:
  """Softmax attention on [batch, length, heads, head_dim] arrays.

  Args:
    q, k, v: queries, keys, values, [B, L, H, D] (k, v may have length S).
    mask: optional boolean [B, S] key-padding mask, True = keep.
    causal: if True, query i attends to keys j <= i.
    implementation: None (einsum reference), "xla" or "cudnn"
      (`jax.nn.dot_product_attention`).
  Returns:
    [B, L, H, D], same dtype as q. Queries with no visible key give zeros.
  """
  if implementation not in _IMPLEMENTATIONS:
    raise ValueError(
        f"unknown softmax implementation {implementation!r}; valid:"
        f" {_IMPLEMENTATIONS}"
    )
  if implementation is None:
    return reference.dense_attention(q, k, v, mask, causal)
  kv_mask = None if mask is None else mask[:, None, None, :].astype(bool)
  out = jax.nn.dot_product_attention(
      q, k, v, mask=kv_mask, is_causal=causal, implementation=implementation
  )
  if mask is not None:  # match the reference: no visible key -> zeros.
    out = jnp.where(mask.any(-1)[:, None, None, None], out, 0)
  return out


@register("softmax")
class SoftmaxAttention(AttentionKernel):
  """Full softmax attention with a KV cache for decoding."""

  supports_decode = True

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    # implementation: "" = einsum reference; "xla" / "cudnn" = jax.nn kernel.
    return {"implementation": ""}

  def __init__(self, *, num_heads, head_dim, max_len, rngs, dtype=jnp.float32,
               implementation: str = ""):
    del max_len, rngs, dtype
    self.num_heads, self.head_dim = num_heads, head_dim
    self.implementation = implementation or None
    if self.implementation not in _IMPLEMENTATIONS:
      raise ValueError(
          f"unknown softmax implementation {implementation!r}; valid: '',"
          " 'xla', 'cudnn'"
      )

  def __call__(self, q_BxLxHxD, k_BxLxHxD, v_BxLxHxD, *, mask_BxL=None,
               causal=False, deterministic=True):
    del deterministic
    return softmax_attention(q_BxLxHxD, k_BxLxHxD, v_BxLxHxD, mask_BxL,
                             causal, self.implementation)

  def init_cache(self, batch_size, max_len, dtype=jnp.float32):
    shape = (batch_size, max_len, self.num_heads, self.head_dim)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}

  def decode_step(self, q_Bx1xHxD, k_Bx1xHxD, v_Bx1xHxD, cache, index):
    """Appends k, v at `index` to the KV cache and attends over [0, index]."""
    k_cache = jax.lax.dynamic_update_slice_in_dim(cache["k"], k_Bx1xHxD.astype(cache["k"].dtype), index, 1)
    v_cache = jax.lax.dynamic_update_slice_in_dim(cache["v"], v_Bx1xHxD.astype(cache["v"].dtype), index, 1)
    visible_BxS = jnp.broadcast_to(
        jnp.arange(k_cache.shape[1]) <= index, k_cache.shape[:2]
    )
    out = reference.dense_attention(q_Bx1xHxD, k_cache, v_cache, visible_BxS)
    return out, {"k": k_cache, "v": v_cache}
