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
orthogonal blocks (orthonormalised Gaussian d x d blocks, rows rescaled by
chi-distributed norms so each row is still marginally N(0, I)) lowers the
estimator's variance.

WHY Gram-Schmidt and not `jnp.linalg.qr`: with redraw=True every layer draws
features inside the jitted train step. On CPU, QR is a LAPACK custom call
(geqrf/orgqr) that runs its batch on XLA's CPU thread pool and blocks waiting
for it; two such calls scheduled concurrently (two layers) can deadlock that
pool on a small (2-core) machine, and training hangs forever. We therefore
orthonormalise with classical Gram-Schmidt applied twice (CGS2, "twice is
enough": Giraud et al. 2005) in plain jnp ops inside a `lax.fori_loop`, so no
LAPACK call is left in the Performer path. Gram-Schmidt of a Gaussian matrix
is G = L Q with L lower-triangular with a positive diagonal, hence
GS(G O) = GS(G) O for any orthogonal O, and since G O ~ G, Q is Haar
distributed (no sign fix needed, unlike Householder QR).

WHY a stabiliser: exp overflows for large logits. As in the authors' code we
subtract a stop-gradient max before exponentiating: per query over its
features (a per-row constant, cancels exactly in num / den), and per key over
its features, s_j. The key's scale exp(s_j) is handed to
`linear_attention_from_features` as a log-scale: there every query measures
the keys it sees relative to their max (non-causal: all real keys; causal:
the prefix max M_i = max_{j <= i} s_j, with running-max rescaled chunk
states). A causal output therefore never depends on a future key, not even
through a max: a key with a huge logit after i cannot make the features of
keys before i underflow, which a stabiliser shared by all keys (the authors'
code) does. Padded keys enter no max.

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
from lightjax.attention.linear import (_guarded_divide,
                                       linear_attention_from_features)
from lightjax.attention.registry import register


class RandomFeatures(nnx.Variable):
  """Non-trainable random projection w [M, D] (not an nnx.Param)."""


def _orthonormal_rows(g_NxDxD: jax.Array) -> jax.Array:
  """Orthonormalises the rows of each block by CGS2, without LAPACK.

  Row i is projected off the rows already done (rows not yet done are zero,
  so they project nothing) twice, then normalised: D fori_loop steps of
  O(N D^2) plain matmuls. See the module docstring for why not QR, and why
  the result is Haar distributed.
  """
  _, dim, _ = g_NxDxD.shape

  def body(i, q_NxDxD):
    v_NxD = g_NxDxD[:, i]
    for _ in range(2):  # CGS2: the second pass restores orthogonality.
      coef_NxD = jnp.einsum("nkd,nd->nk", q_NxDxD, v_NxD)
      v_NxD = v_NxD - jnp.einsum("nk,nkd->nd", coef_NxD, q_NxDxD)
    norm_Nx1 = jnp.linalg.norm(v_NxD, axis=-1, keepdims=True)
    v_NxD = v_NxD / jnp.maximum(norm_Nx1, jnp.finfo(jnp.float32).tiny)
    return q_NxDxD.at[:, i].set(v_NxD)

  return jax.lax.fori_loop(0, dim, body, jnp.zeros_like(g_NxDxD))


@functools.partial(jax.jit, static_argnames=("num_features", "dim", "ortho"))
def draw_projection(key: jax.Array, num_features: int, dim: int,
                    ortho: bool = True) -> jax.Array:
  """Draws the FAVOR+ projection w [M, D], rows marginally N(0, I_D).

  Args:
    key: PRNG key.
    num_features: M, the number of random features.
    dim: D, the head dimension.
    ortho: if True, rows within each block of D are exactly orthogonal
      (Gram-Schmidt of a Gaussian block, no LAPACK), rescaled by norms of
      independent Gaussian vectors.
  Returns:
    float32 [M, D].
  """
  if not ortho:
    return jax.random.normal(key, (num_features, dim), jnp.float32)
  num_blocks = -(-num_features // dim)
  # One Gaussian draw split in two (a single RNG op keeps compiles short):
  # the blocks to orthonormalise, and the vectors whose norms rescale the rows.
  block_size = num_blocks * dim * dim
  g = jax.random.normal(key, (block_size + num_features * dim,), jnp.float32)
  g_NxDxD = g[:block_size].reshape(num_blocks, dim, dim)
  g_MxD = g[block_size:].reshape(num_features, dim)
  w_MxD = _orthonormal_rows(g_NxDxD).reshape(num_blocks * dim, dim)
  w_MxD = w_MxD[:num_features]
  norms_M = jnp.linalg.norm(g_MxD, axis=-1)
  return w_MxD * norms_M[:, None]


def favor_features(x_BxLxHxD: jax.Array, w_MxD: jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
  """phi^+(x d^{-1/4}) as a stabilised feature and its log-scale.

  phi^+(x d^{-1/4}) = exp(s) * psi with s = max over the M features of the
  logits (stop-gradient), so every entry of psi is <= 1 / sqrt(M) and cannot
  overflow. Queries drop s (a per-query constant, it cancels in num / den);
  keys hand it to `linear_attention_from_features` (see the module docstring).

  Args:
    x_BxLxHxD: queries or keys.
    w_MxD: the random projection.
  Returns:
    (psi float32 [B, L, H, M], s float32 [B, L, H]).
  """
  d = x_BxLxHxD.shape[-1]
  m = w_MxD.shape[0]
  x_BxLxHxD = x_BxLxHxD.astype(jnp.float32) * jnp.float32(d) ** -0.25
  logits_BxLxHxM = jnp.einsum("blhd,md->blhm", x_BxLxHxD,
                              w_MxD.astype(jnp.float32))
  logits_BxLxHxM -= 0.5 * jnp.sum(jnp.square(x_BxLxHxD), -1, keepdims=True)
  s_BxLxH = jax.lax.stop_gradient(jnp.max(logits_BxLxHxM, axis=-1))
  psi_BxLxHxM = (jnp.exp(logits_BxLxHxM - s_BxLxH[..., None])
                 / jnp.sqrt(jnp.float32(m)))
  return psi_BxLxHxM, s_BxLxH


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
    causal: if True, query i attends to keys j <= i (chunked prefix sums;
      the key stabiliser is a prefix max, so no future key changes it).
    projection: random features w [M, D] (see `draw_projection`).
    chunk_size: chunk length of the causal form.
    eps: lower bound of the (float32) denominator.
  Returns:
    [B, L, H, D], same dtype as q.
  """
  phi_q_BxLxHxM, _ = favor_features(q, projection)
  psi_k_BxSxHxM, s_k_BxSxH = favor_features(k, projection)
  out = linear_attention_from_features(
      phi_q_BxLxHxM, psi_k_BxSxHxM, v, mask=mask, causal=causal,
      chunk_size=chunk_size, eps=eps, log_scale_k_BxSxH=s_k_BxSxH)
  return out.astype(q.dtype)


@register("performer")
class PerformerAttention(AttentionKernel):
  """FAVOR+ attention with a stored (optionally redrawn) random projection.

  Decoding (`init_cache` / `decode_step`) is the unidirectional FAVOR+ of
  Choromanski et al. 2021 (sec. 2.4, "prefix-sum" form, and their fig. 1
  right) read as a recurrence: the prefix sums of phi(k_j) v_j^T and phi(k_j)
  are a running state, O(M D) per layer whatever the length, updated in O(1)
  per token, exactly as linear attention's (Katharopoulos et al. 2020, sec.
  3.4). The state keeps the parallel form's stabiliser: it is held relative
  to the running max M_t = max_{j <= t} s_j of the key log-scales (the
  prefix max the chunked forward uses) and rescaled by exp(M_{t-1} - M_t) <= 1
  when a larger one arrives, so nothing overflows and the step equals the
  parallel causal forward. It uses the stored projection (`self.projection`),
  the one every deterministic call uses, never a redraw.
  """

  supports_decode = True
  exact = False
  # Mean abs error vs softmax on the contract's inputs (base.py), default 256
  # features: measured 0.0065-0.0081 bidirectional, 0.0115-0.0142 causal over
  # 10 seeds. FAVOR+ is unbiased with MSE = exp(|x + y|^2) SM(x, y)^2
  # (1 - exp(-|x + y|^2)) / m, x = q d^(-1/4), y = k d^(-1/4) (Choromanski et
  # al. 2021, Lemma 2): accurate for small-norm queries and keys, worse as
  # they grow.
  softmax_tolerance = 0.02
  positive_options = ("num_features", "chunk_size")

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

  def init_cache(self, batch_size, max_len, dtype=jnp.float32):
    """Prefix state: S [B, H, M, D], Z [B, H, M] relative to the running
    key log-scale max [B, H] (-inf: nothing seen yet). float32, O(1) in
    max_len."""
    del max_len, dtype
    b, h, m, d = batch_size, self.num_heads, self.num_features, self.head_dim
    return {"s": jnp.zeros((b, h, m, d), jnp.float32),
            "z": jnp.zeros((b, h, m), jnp.float32),
            "max": jnp.full((b, h), -jnp.inf, jnp.float32)}

  def decode_step(self, q_Bx1xHxD, k_Bx1xHxD, v_Bx1xHxD, cache, index):
    """S_t = S_{t-1} e^{M_{t-1} - M_t} + e^{s_t - M_t} psi(k_t) v_t^T (and Z
    likewise); out = phi(q_t)^T S_t / max(phi(q_t)^T Z_t, eps)."""
    del index  # The state already summarises every previous position.
    w_MxD = self.projection[...]
    phi_q_Bx1xHxM, _ = favor_features(q_Bx1xHxD, w_MxD)
    psi_k_Bx1xHxM, s_k_Bx1xH = favor_features(k_Bx1xHxD, w_MxD)
    phi_q_BxHxM, psi_k_BxHxM = phi_q_Bx1xHxM[:, 0], psi_k_Bx1xHxM[:, 0]
    s_k_BxH = s_k_Bx1xH[:, 0]
    max_BxH = jnp.maximum(cache["max"], s_k_BxH)
    decay_BxH = jnp.exp(cache["max"] - max_BxH)  # exp(-inf) = 0 at t = 0
    k_BxHxM = psi_k_BxHxM * jnp.exp(s_k_BxH - max_BxH)[..., None]
    v_BxHxD = v_Bx1xHxD[:, 0].astype(jnp.float32)
    s_BxHxMxD = (cache["s"] * decay_BxH[..., None, None]
                 + jnp.einsum("bhm,bhd->bhmd", k_BxHxM, v_BxHxD))
    z_BxHxM = cache["z"] * decay_BxH[..., None] + k_BxHxM
    num_BxHxD = jnp.einsum("bhm,bhmd->bhd", phi_q_BxHxM, s_BxHxMxD)
    den_BxH = jnp.einsum("bhm,bhm->bh", phi_q_BxHxM, z_BxHxM)
    out_BxHxD = _guarded_divide(num_BxHxD, den_BxH, self.eps)
    return (out_BxHxD[:, None].astype(q_Bx1xHxD.dtype),
            {"s": s_BxHxMxD, "z": z_BxHxM, "max": max_BxH})
