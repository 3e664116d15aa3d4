"""Linformer: softmax attention over a low-rank projection of the sequence.

Wang et al. 2020, "Linformer: Self-Attention with Linear Complexity", eq. 7:

  head_i = softmax( Q (E K)^T / sqrt(d_k) ) (F V),

where E, F in R^{k x n} are learned projections of the sequence axis (n
tokens -> k = `proj_len` rows). WHY: Theorem 1/2 of the paper show the
attention matrix is approximately low rank, so attending to k projected
"summary" keys costs O(n k) time and memory instead of O(n^2).

Padding: padded keys/values are zeroed BEFORE projecting, so E K and F V only
mix real tokens and padded tokens contribute nothing (all k projected rows
are then valid keys; no mask is needed on them). A sequence shorter than
`max_len` uses the first L columns of E and F, so appending padding leaves the
real positions' outputs unchanged.

Parameter sharing (Section 4, "Additional efficiency techniques"): in this
kernel E and F are always shared across the heads of a layer (the paper's
"headwise" sharing). `sharing="none"` keeps separate E and F; `"kv"` uses
E = F (one projection per layer); `"layer"` uses one E = F for keys, values,
heads and every layer (the paper's "layerwise" sharing, its cheapest): the
model passes all layers the same `shared` dict, the first layer's kernel puts
its nnx.Param there and the others reuse that very object, which NNX keeps as
one parameter (counted, updated and checkpointed once).

Linformer mixes every position into every projected row, so it cannot be
causal; causal=True raises.

E and F are initialised N(0, 1/max_len) (fan-in scaling, so a projected row of
a full-length sequence has roughly unit-variance entries) and stored in
float32; the projections and the softmax are computed in float32 and the
output is cast back to q.dtype.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lightjax.attention.base import AttentionKernel, param_axes
from lightjax.attention.registry import register

_SHARING = ("none", "kv", "layer")


def linformer_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    mask: jax.Array | None = None,
    causal: bool = False,
    e_KxN: jax.Array,
    f_KxN: jax.Array,
) -> jax.Array:
  """softmax(Q (E K)^T / sqrt(d)) (F V), eq. 7 of Wang et al. 2020.

  Args:
    q, k, v: queries, keys, values, [B, L, H, D].
    mask: optional boolean [B, L] key-padding mask, True = keep; padded keys
      and values are zeroed before projecting.
    causal: must be False: E K and F V mix every position (raises).
    e_KxN, f_KxN: sequence projections [k, N] with N >= L; the first L
      columns are used.
  Returns:
    [B, L, H, D], same dtype as q.
  """
  if causal:
    raise ValueError(
        "linformer attention cannot be causal: its projections E K, F V mix"
        " every position; use another variant (e.g. 'linear', 'softmax')"
        " for causal models")
  length = k.shape[1]
  if length > e_KxN.shape[1]:
    raise ValueError(
        f"linformer sequence length {length} exceeds max_len {e_KxN.shape[1]}"
    )
  d = q.shape[-1]
  k_BxLxHxD = k.astype(jnp.float32)
  v_BxLxHxD = v.astype(jnp.float32)
  if mask is not None:
    keep_BxLx1x1 = mask.astype(bool)[:, :, None, None]
    k_BxLxHxD = jnp.where(keep_BxLx1x1, k_BxLxHxD, 0.0)
    v_BxLxHxD = jnp.where(keep_BxLx1x1, v_BxLxHxD, 0.0)
  e_KxL = e_KxN[:, :length].astype(jnp.float32)
  f_KxL = f_KxN[:, :length].astype(jnp.float32)
  kp_BxKxHxD = jnp.einsum("kl,blhd->bkhd", e_KxL, k_BxLxHxD)
  vp_BxKxHxD = jnp.einsum("kl,blhd->bkhd", f_KxL, v_BxLxHxD)
  logits_BxHxLxK = jnp.einsum(
      "blhd,bkhd->bhlk", q.astype(jnp.float32), kp_BxKxHxD
  ) / jnp.sqrt(jnp.float32(d))
  probs_BxHxLxK = jax.nn.softmax(logits_BxHxLxK, axis=-1)
  out_BxLxHxD = jnp.einsum("bhlk,bkhd->blhd", probs_BxHxLxK, vp_BxKxHxD)
  return out_BxLxHxD.astype(q.dtype)


@register("linformer")
class LinformerAttention(AttentionKernel):
  """Linformer with learned sequence projections E, F (nnx.Param)."""

  uses_shared = True
  option_choices = {"sharing": _SHARING}
  positive_options = ("proj_len",)
  supports_causal = False
  exact = False  # attends to k learned mixtures of keys, not to the keys
  softmax_tolerance = None

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    # proj_len: k, the projected sequence length; sharing: "none" (E, F),
    # "kv" (E = F per layer) or "layer" (one E = F for all layers).
    return {"proj_len": 128, "sharing": "none"}

  def __init__(self, *, num_heads, head_dim, max_len, rngs, dtype=jnp.float32,
               proj_len: int = 128, sharing: str = "none",
               shared: dict | None = None):
    del dtype  # Parameters are float32; computes in float32.
    if sharing == "layer" and shared is None:
      raise ValueError("linformer sharing='layer' needs the model's `shared`"
                       " dict (lightjax.models passes one to every layer)")
    self.num_heads, self.head_dim = num_heads, head_dim
    self.max_len, self.proj_len = int(max_len), int(proj_len)
    self.sharing = sharing
    init = jax.nn.initializers.normal(stddev=self.max_len ** -0.5)
    shape = (self.proj_len, self.max_len)
    key = f"linformer_e_{self.proj_len}x{self.max_len}"
    if sharing == "layer" and key in shared:
      self.e_KxN = shared[key]  # the same Param object as the first layer's
    else:
      self.e_KxN = nnx.Param(init(rngs.params(), shape, jnp.float32),
                             **param_axes("rank", None))
      if sharing == "layer":
        shared[key] = self.e_KxN
    if sharing == "none":
      self.f_KxN = nnx.Param(init(rngs.params(), shape, jnp.float32),
                             **param_axes("rank", None))

  def __call__(self, q, k, v, *, mask=None, causal=False, deterministic=True):
    del deterministic
    e_KxN = self.e_KxN[...]
    f_KxN = self.f_KxN[...] if self.sharing == "none" else e_KxN
    return linformer_attention(q, k, v, mask=mask, causal=causal, e_KxN=e_KxN,
                               f_KxN=f_KxN)
