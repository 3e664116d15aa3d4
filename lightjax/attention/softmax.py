"""Softmax (scaled dot-product) attention: the O(N^2) baseline.

Vaswani et al. 2017, "Attention Is All You Need", eq. 1:
  Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V.

WHY an `implementation` choice: a speed-up is only meaningful against the
fastest exact softmax a platform has. `"auto"` (the default) picks it at trace
time: cuDNN's fused flash-attention kernel on NVIDIA GPUs for bf16/fp16
self-attention (head_dim a multiple of 8, at most 128; padding masks must be
right padding there, see `softmax_attention`), otherwise XLA's own
`jax.nn.dot_product_attention(implementation="xla")`. `"einsum"` is the plain
dense path of `attention.dense`, the ground truth of the tests;
`"xla"` / `"cudnn"` force one kernel. Measured on the 2-core CPU in the bench
(`configs/bench.py:cpu_quick` records both), see `results/`.

Incremental decoding keeps a KV cache preallocated to `max_len`: each new
token attends over the whole cache (masked past `index`), so a step costs
O(cache length); size the cache to the context you need.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lightjax.attention import dense
from lightjax.attention.base import AttentionKernel
from lightjax.attention.registry import register

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "einsum")


def resolve_implementation(implementation: str, q: jax.Array,
                           k: jax.Array | None = None) -> str:
  """The concrete kernel `implementation` means for these inputs here."""
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(
        f"unknown softmax implementation {implementation!r}; valid:"
        f" {', '.join(IMPLEMENTATIONS)}")
  if implementation != "auto":
    return implementation
  d = q.shape[-1]
  self_attention = k is None or k.shape[1] == q.shape[1]
  if (jax.default_backend() == "gpu" and self_attention
      and q.dtype in (jnp.bfloat16, jnp.float16) and d % 8 == 0 and d <= 128
      and jax.devices()[0].device_kind.lower().startswith("nvidia")):
    return "cudnn"
  return "xla"


def softmax_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    mask: jax.Array | None = None,
    causal: bool = False,
    implementation: str = "auto",
) -> jax.Array:
  """Softmax attention on [batch, length, heads, head_dim] arrays.

  Args:
    q, k, v: queries, keys, values, [B, L, H, D] (k, v may have length S).
    mask: optional boolean [B, S] key-padding mask, True = keep. The cuDNN
      kernel takes it as key lengths, so there it must be right padding (a
      prefix of real tokens, as every lightjax task makes); any other mask
      gives NaN outputs there, never a silently different result.
    causal: if True, query i attends to keys j <= i + (S - L) (queries are
      the last L positions, as in decoding with a cache).
    implementation: "auto" (fastest exact kernel here), "xla", "cudnn" or
      "einsum" (the dense path of `attention.dense`).
  Returns:
    [B, L, H, D], same dtype as q. Queries with no visible key give zeros.
  """
  impl = resolve_implementation(implementation, q, k)
  if impl == "einsum":
    return dense.dense_attention(q, k, v, mask=mask, causal=causal)
  length_q, length_k = q.shape[1], k.shape[1]
  if impl == "cudnn":
    if causal and length_q != length_k:
      raise ValueError("softmax implementation 'cudnn' aligns a causal mask"
                       " at the first query; use 'xla' when queries and keys"
                       f" differ in length ({length_q} vs {length_k})")
    out = _cudnn(q, k, v, mask, causal)
  elif causal and length_q != length_k:
    # jax.nn's is_causal aligns the first query with the first key; the
    # queries here are the last L positions, so the mask is given explicitly.
    allowed = dense.combine_masks(length_q, length_k, mask, causal=True)
    out = jax.nn.dot_product_attention(q, k, v, mask=allowed,
                                       implementation=impl)
  else:
    kv_mask = None if mask is None else mask[:, None, None, :].astype(bool)
    out = jax.nn.dot_product_attention(
        q, k, v, mask=kv_mask, is_causal=causal, implementation=impl)
  if mask is not None:  # as the dense path: no visible key -> zeros.
    if causal:  # query i sees a key iff one of keys <= i + (S - L) is real
      seen_BxS = jnp.cumsum(mask.astype(jnp.int32), axis=1) > 0
      visible_BxL = seen_BxS[:, length_k - length_q:]
    else:
      visible_BxL = jnp.broadcast_to(mask.any(-1, keepdims=True),
                                     mask.shape[:1] + (length_q,))
    out = jnp.where(visible_BxL[:, :, None, None], out, 0)
  return out.astype(q.dtype)


def _cudnn(q, k, v, mask_BxS, causal):
  """cuDNN flash attention; a key-padding mask goes in as key lengths.

  cuDNN rejects a broadcast [B, 1, 1, S] mask, and a full [B, H, L, S] bias
  would cost the O(L S) memory flash attention exists to avoid, so padding
  is given as per-sequence key lengths, which describe right padding only.
  Whether the mask is one is known only at run time: rows whose mask is not
  a prefix come out NaN (an O(B S) check, no second kernel compiled or
  planned), so a misuse fails loudly instead of attending to the wrong keys.
  """
  if mask_BxS is None:
    return jax.nn.dot_product_attention(q, k, v, is_causal=causal,
                                        implementation="cudnn")
  mask_BxS = mask_BxS.astype(bool)
  lengths_B = mask_BxS.sum(-1, dtype=jnp.int32)
  is_prefix_B = jnp.all(
      mask_BxS == (jnp.arange(mask_BxS.shape[1])[None] < lengths_B[:, None]),
      axis=-1)
  out = jax.nn.dot_product_attention(
      q, k, v, is_causal=causal, key_value_seq_lengths=lengths_B,
      implementation="cudnn")
  return jnp.where(is_prefix_B[:, None, None, None], out, jnp.nan)


@register("softmax")
class SoftmaxAttention(AttentionKernel):
  """Full softmax attention with a KV cache for decoding."""

  supports_decode = True

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    # implementation: one of IMPLEMENTATIONS ("auto" = fastest exact kernel).
    return {"implementation": "auto"}

  option_choices = {"implementation": IMPLEMENTATIONS}

  def __init__(self, *, num_heads, head_dim, max_len, rngs, dtype=jnp.float32,
               implementation: str = "auto"):
    del max_len, rngs, dtype
    self.num_heads, self.head_dim = num_heads, head_dim
    self.implementation = implementation

  def __call__(self, q, k, v, *, mask=None, causal=False, deterministic=True):
    del deterministic
    return softmax_attention(q, k, v, mask=mask, causal=causal,
                             implementation=self.implementation)

  def init_cache(self, batch_size, max_len, dtype=jnp.float32):
    shape = (batch_size, max_len, self.num_heads, self.head_dim)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}

  def decode_step(self, q_Bx1xHxD, k_Bx1xHxD, v_Bx1xHxD, cache, index):
    """Appends k, v at `index` to the KV cache and attends over [0, index]."""
    k_cache_BxSxHxD = jax.lax.dynamic_update_slice_in_dim(
        cache["k"], k_Bx1xHxD.astype(cache["k"].dtype), index, 1)
    v_cache_BxSxHxD = jax.lax.dynamic_update_slice_in_dim(
        cache["v"], v_Bx1xHxD.astype(cache["v"].dtype), index, 1)
    visible_BxS = jnp.broadcast_to(
        jnp.arange(k_cache_BxSxHxD.shape[1]) <= index,
        k_cache_BxSxHxD.shape[:2])
    # One query per step: flash attention gains nothing, so "auto" is XLA's.
    impl = "xla" if self.implementation == "auto" else self.implementation
    out_Bx1xHxD = softmax_attention(
        q_Bx1xHxD, k_cache_BxSxHxD.astype(q_Bx1xHxD.dtype),
        v_cache_BxSxHxD.astype(q_Bx1xHxD.dtype), mask=visible_BxS,
        implementation=impl)
    return out_Bx1xHxD, {"k": k_cache_BxSxHxD, "v": v_cache_BxSxHxD}

