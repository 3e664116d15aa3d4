"""Performer (FAVOR+): softmax attention approximated with random features.

Choromanski et al. 2021, "Rethinking Attention with Performers". The softmax
kernel is an expectation over Gaussian w (Lemma 1):

  exp(x^T y) = E_w[ exp(w^T x - |x|^2 / 2) exp(w^T y - |y|^2 / 2) ],
  w ~ N(0, I_d),

so the positive random features

  phi^+(x) = exp(-|x|^2 / 2) / sqrt(m) [exp(w_1^T x), ..., exp(w_m^T x)]

give an unbiased, strictly positive estimate phi^+(x)^T phi^+(y) of
exp(x^T y). Scaling q and k by d^{-1/4} each makes that exp(q^T k / sqrt(d)),
the un-normalised softmax attention weight; the normalisation is the linear
attention one (their eq. for Att^_<-> and the prefix-sum form for causal), so
the whole computation is `linear.linear_attention_from_features` (the causal
chunked prefix sums are not written twice).

WHY orthogonal features (ORFs, Section 3 / Theorem 2): drawing w_1..w_m as
orthogonal blocks (QR of Gaussian d x d blocks, rows rescaled by chi-distributed
norms so each row is still marginally N(0, I)) lowers the estimator's variance.

WHY a stabiliser: exp overflows for large logits. As in the authors' code we
subtract a stop-gradient max before exponentiating: per query over its
features (a per-row constant, cancels exactly in num / den), and for keys over
all real keys and features of one (batch, head) (a constant shared by every
key of that head, so it also cancels in num / den). In the causal mode that
key constant depends on future keys only through floating-point rounding.

The projection is a non-trainable `RandomFeatures` variable (not nnx.Param):
optimizers built with `wrt=nnx.Param` leave it alone and checkpoints keep it.
With `redraw=True`, every training call (deterministic=False) draws a fresh
projection from the module's own rng stream ("performer", else "params");
deterministic calls always use the projection drawn at init.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lightjax.attention.base import AttentionKernel
from lightjax.attention.linear import linear_attention_from_features
from lightjax.attention.registry import register


class RandomFeatures(nnx.Variable):
  """Non-trainable random projection w [M, D] (not an nnx.Param)."""


@functools.partial(jax.jit, static_argnames=("num_features", "dim", "ortho"))
def draw_projection(key: jax.Array, num_features: int, dim: int,
                    ortho: bool = True) -> jax.Array:
  """Draws the FAVOR+ projection w [M, D], rows marginally N(0, I_D).

  Args:
    key: PRNG key.
    num_features: M, the number of random features.
    dim: D, the head dimension.
    ortho: if True, rows within each block of D are exactly orthogonal (QR of
      a Gaussian block), rescaled by norms of independent Gaussian vectors.
  Returns:
    float32 [M, D].
  """
  if not ortho:
    return jax.random.normal(key, (num_features, dim), jnp.float32)
  num_blocks = -(-num_features // dim)
  # One Gaussian draw split in two (a single RNG op keeps compiles short):
  # the QR blocks, and the vectors whose norms rescale the rows.
  block_size = num_blocks * dim * dim
  g = jax.random.normal(key, (block_size + num_features * dim,), jnp.float32)
  g_NxDxD = g[:block_size].reshape(num_blocks, dim, dim)
  g_MxD = g[block_size:].reshape(num_features, dim)
  q_NxDxD, r_NxDxD = jnp.linalg.qr(g_NxDxD)  # Orthonormal columns.
  # Sign fix so each block is Haar-distributed (Householder QR alone biases
  # the signs, which biases the kernel estimate).
  q_NxDxD *= jnp.sign(jnp.diagonal(r_NxDxD, axis1=1, axis2=2))[:, None, :]
  w_MxD = jnp.swapaxes(q_NxDxD, 1, 2).reshape(num_blocks * dim, dim)
  w_MxD = w_MxD[:num_features]
  norms_M = jnp.linalg.norm(g_MxD, axis=-1)
  return w_MxD * norms_M[:, None]


def favor_features(x_BxLxHxD: jax.Array, w_MxD: jax.Array, is_query: bool,
                   mask_BxL: jax.Array | None = None) -> jax.Array:
  """phi^+(x d^{-1/4}) with the max-subtraction stabiliser, float32 [B,L,H,M].

  Args:
    x_BxLxHxD: queries or keys.
    w_MxD: the random projection.
    is_query: queries are stabilised per row; keys per (batch, head).
    mask_BxL: key-padding mask; padded keys are left out of the key max.
  """
  d = x_BxLxHxD.shape[-1]
  m = w_MxD.shape[0]
  x_BxLxHxD = x_BxLxHxD.astype(jnp.float32) * jnp.float32(d) ** -0.25
  logits_BxLxHxM = jnp.einsum("blhd,md->blhm", x_BxLxHxD,
                              w_MxD.astype(jnp.float32))
  logits_BxLxHxM -= 0.5 * jnp.sum(jnp.square(x_BxLxHxD), -1, keepdims=True)
  if is_query:
    stab = jnp.max(logits_BxLxHxM, axis=-1, keepdims=True)
  else:
    masked = logits_BxLxHxM
    if mask_BxL is not None:
      masked = jnp.where(mask_BxL.astype(bool)[:, :, None, None], masked,
                         -jnp.inf)
    stab = jnp.max(masked, axis=(1, 3), keepdims=True)
    stab = jnp.where(jnp.isfinite(stab), stab, 0.0)  # All keys padded.
  stab = jax.lax.stop_gradient(stab)
  return jnp.exp(logits_BxLxHxM - stab) / jnp.sqrt(jnp.float32(m))


def performer_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    mask: jax.Array | None = None,
    causal: bool = False,
    projection: jax.Array,
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> jax.Array:
  """FAVOR+ attention, an unbiased-kernel approximation of softmax attention.

  Args:
    q, k, v: queries, keys, values, [B, L, H, D].
    mask: optional boolean [B, S] key-padding mask, True = keep.
    causal: if True, query i attends to keys j <= i (chunked prefix sums).
    projection: random features w [M, D] (see `draw_projection`).
    chunk_size: chunk length of the causal form.
    eps: lower bound of the (float32) denominator.
  Returns:
    [B, L, H, D], same dtype as q.
  """
  phi_q_BxLxHxM = favor_features(q, projection, is_query=True)
  phi_k_BxSxHxM = favor_features(k, projection, is_query=False, mask_BxL=mask)
  out = linear_attention_from_features(
      phi_q_BxLxHxM, phi_k_BxSxHxM, v, mask_BxS=mask, causal=causal,
      chunk_size=chunk_size, eps=eps)
  return out.astype(q.dtype)


@register("performer")
class PerformerAttention(AttentionKernel):
  """FAVOR+ attention with a stored (optionally redrawn) random projection."""

  exact = False
  # Max abs error vs softmax on the contract's inputs at the default 256
  # features (an unbiased estimate; the error shrinks as 1/sqrt(M)).
  softmax_tolerance = 0.25

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    # num_features: M; redraw: fresh features on every training call;
    # ortho: orthogonal random features; chunk_size / eps: as in "linear".
    return {"num_features": 256, "redraw": True, "ortho": True,
            "chunk_size": 64, "eps": 1e-6}

  def __init__(self, *, num_heads, head_dim, max_len, rngs, dtype=jnp.float32,
               num_features: int = 256, redraw: bool = True,
               ortho: bool = True, chunk_size: int = 64, eps: float = 1e-6):
    del max_len, dtype  # Computes in float32.
    if int(num_features) < 1:
      raise ValueError(f"num_features must be >= 1, got {num_features}")
    if int(chunk_size) < 1:
      raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    self.num_heads, self.head_dim = num_heads, head_dim
    self.num_features = int(num_features)
    self.redraw = bool(redraw)
    self.ortho = bool(ortho)
    self.chunk_size = int(chunk_size)
    self.eps = float(eps)
    self.projection = RandomFeatures(
        draw_projection(rngs.params(), self.num_features, head_dim,
                        self.ortho))
    if self.redraw:
      stream = rngs["performer"] if "performer" in rngs else rngs["params"]
      self.rngs = stream.fork()
    else:
      self.rngs = nnx.data(None)

  def __call__(self, q, k, v, *, mask=None, causal=False, deterministic=True):
    if self.redraw and not deterministic:
      w_MxD = draw_projection(self.rngs(), self.num_features, self.head_dim,
                              self.ortho)
    else:
      w_MxD = self.projection[...]
    return performer_attention(q, k, v, mask=mask, causal=causal,
                               projection=w_MxD, chunk_size=self.chunk_size,
                               eps=self.eps)
