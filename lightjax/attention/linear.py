"""Linear attention: kernelised attention with O(N) time and memory.

Katharopoulos et al. 2020, "Transformers are RNNs: Fast Autoregressive
Transformers with Linear Attention". Replacing the softmax similarity by a
kernel sim(q, k) = phi(q)^T phi(k) lets the sum over keys be factored out
(eq. 4-6):

  V'_i = phi(Q_i)^T (sum_j phi(K_j) V_j^T) / (phi(Q_i)^T sum_j phi(K_j)),

so a [M, D] state S = sum_j phi(K_j) V_j^T and a [M] normaliser
Z = sum_j phi(K_j) replace the N x N attention matrix. With the causal
(autoregressive) mask the sums run over j <= i (sec. 3.3.1, eq. 8-10), which
is the recurrence of sec. 3.4 (an RNN with state S_i = S_{i-1} + phi(K_i)
V_i^T, Z_i = Z_{i-1} + phi(K_i)); `LinearAttention.decode_step` is that
recurrence, O(1) per token.

WHY chunked: the naive causal forward either materialises N x N scores or the
per-position prefix states S_i (O(N M D) memory, the cost the paper's custom
CUDA kernel avoids). We split the sequence into chunks of `chunk_size` c:
inside a chunk the c x c masked similarity is formed explicitly (quadratic but
only in c), and across chunks the per-chunk [M, D] states are combined with an
exclusive prefix sum. Memory is O(N c + (N / c) M D) and no future token ever
enters a past output (the intra-chunk mask is a select, not a multiply).

`linear_attention_from_features` is the feature-space core: any kernel that
supplies non-negative phi(Q), phi(K) (e.g. Performer's FAVOR+ in
`performer.py`) reuses it, so the prefix-sum machinery exists once.

WHY an optional per-key log-scale: exponential features (FAVOR+) overflow
unless each is divided by a stabiliser. A stabiliser shared by all keys (one
max over the whole sequence) makes the causal output depend on the future: a
later key with a huge logit drives every earlier key's exp(logit - max) to 0.
So a caller may pass features psi(K_j) <= 1 with their log-scales s_j (the
true feature is exp(s_j) psi(K_j)); every query i then measures the keys it
sees relative to their prefix max M_i = max_{j <= i} s_j, and the chunk
states are combined with a running-max rescale. The stabilisers cancel
exactly in num / den and are stop-gradient; they only keep every exp(.) <= 1.

Numerics: features, states and normalisers are float32 whatever the input
dtype, and the denominator is guarded by max(den, eps) (the authors' code adds
eps); with non-negative features |num / den| <= max |v|, so bf16 inputs on long
sequences give no NaN/Inf. Outputs are cast back to q.dtype.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from lightjax.attention import dense
from lightjax.attention.base import AttentionKernel
from lightjax.attention.registry import register
from lightjax.registry import Registry


def _elu_plus_one(x: jax.Array) -> jax.Array:
  """phi(x) = elu(x) + 1, the paper's choice (Section 3.2.1): positive."""
  return jax.nn.elu(x) + 1.0


# Non-negative feature maps phi: [..., D] -> [..., M] (here M = D). Only maps
# with phi >= 0 are offered: the normaliser phi(q)^T sum_j phi(k_j) must be a
# sum of non-negative similarities for the output to be a convex combination.
FEATURE_MAPS: Registry[Callable[[jax.Array], jax.Array]] = Registry(
    "linear-attention feature_map")
FEATURE_MAPS.register("elu", _elu_plus_one)
FEATURE_MAPS.register("relu", jax.nn.relu)
FEATURE_MAPS.register("softplus", jax.nn.softplus)
_feature_map = FEATURE_MAPS.get


def _guarded_divide(num: jax.Array, den: jax.Array, eps: float) -> jax.Array:
  """num / max(den, eps)[..., None]; den >= 0 for non-negative features."""
  return num / jnp.maximum(den, eps)[..., None]


def _finite_or_zero(x: jax.Array) -> jax.Array:
  """A stabiliser with nothing under it (-inf: only padded keys) becomes 0."""
  return jnp.where(jnp.isfinite(x), x, 0.0)


def _noncausal(phi_q_BxLxHxM, phi_k_BxSxHxM, v_BxSxHxD, eps,
               log_scale_k_BxSxH=None):
  """Eq. 5-6: one [M, D] state and one [M] normaliser per (batch, head).

  Non-causal, every query sees every key, so the key log-scales are taken
  relative to one max per (batch, head): a constant that cancels in num / den.
  """
  if log_scale_k_BxSxH is not None:
    max_Bx1xH = jax.lax.stop_gradient(_finite_or_zero(
        jnp.max(log_scale_k_BxSxH, axis=1, keepdims=True)))
    phi_k_BxSxHxM = phi_k_BxSxHxM * jnp.exp(
        log_scale_k_BxSxH - max_Bx1xH)[..., None]
  kv_BxHxMxD = jnp.einsum("bshm,bshd->bhmd", phi_k_BxSxHxM, v_BxSxHxD)
  z_BxHxM = jnp.sum(phi_k_BxSxHxM, axis=1)
  num_BxLxHxD = jnp.einsum("blhm,bhmd->blhd", phi_q_BxLxHxM, kv_BxHxMxD)
  den_BxLxH = jnp.einsum("blhm,bhm->blh", phi_q_BxLxHxM, z_BxHxM)
  return _guarded_divide(num_BxLxHxD, den_BxLxH, eps)


def _exclusive_prefix_states(kv_BxNxHxMxD, z_BxNxHxM, max_BxNxH=None):
  """Sums of the chunk states of chunks < n, for every chunk n.

  Without log-scales a plain exclusive cumsum. With them, chunk m's state is
  relative to its own max R_m, so states are combined with a running-max
  rescale (an associative operator, hence `jax.lax.associative_scan`):
  (R, KV, Z) . (R', KV', Z') = (r, KV e^{R - r} + KV' e^{R' - r}, ...),
  r = max(R, R'). Every factor is <= 1, so nothing overflows.

  Returns:
    (prefix KV, prefix Z, prefix max P_n or None); the prefix states are
    relative to P_n (an empty prefix is -inf, with zero states).
  """
  def exclusive(inclusive_BxN, fill):  # Chunk 0 sees nothing.
    x = inclusive_BxN
    first = jnp.full((x.shape[0], 1, *x.shape[2:]), fill, x.dtype)
    return jnp.concatenate([first, x], axis=1)

  if max_BxNxH is None:
    return (exclusive(jnp.cumsum(kv_BxNxHxMxD[:, :-1], axis=1), 0.0),
            exclusive(jnp.cumsum(z_BxNxHxM[:, :-1], axis=1), 0.0), None)

  def combine(a, b):
    r_a, kv_a, z_a = a
    r_b, kv_b, z_b = b
    r = jnp.maximum(r_a, r_b)
    r_safe = _finite_or_zero(r)
    e_a, e_b = jnp.exp(r_a - r_safe), jnp.exp(r_b - r_safe)
    return (r, kv_a * e_a[..., None, None] + kv_b * e_b[..., None, None],
            z_a * e_a[..., None] + z_b * e_b[..., None])

  r_BxNxH, kv_BxNxHxMxD, z_BxNxHxM = jax.lax.associative_scan(
      combine, (max_BxNxH[:, :-1], kv_BxNxHxMxD[:, :-1], z_BxNxHxM[:, :-1]),
      axis=1)
  return (exclusive(kv_BxNxHxMxD, 0.0), exclusive(z_BxNxHxM, 0.0),
          exclusive(r_BxNxH, -jnp.inf))


def _causal_chunked(phi_q_BxLxHxM, phi_k_BxLxHxM, v_BxLxHxD, chunk_size, eps,
                    log_scale_k_BxLxH=None):
  """Eq. 8-9 evaluated chunk-wise (see the module docstring).

  With log-scales s_j (true key feature exp(s_j) psi_j), query i uses the
  stabiliser M_i = max_{j <= i} s_j (prefix max over earlier chunks P_n and
  its own chunk), so no key after i enters its output even through a max:
    intra-chunk  (phi_q_i . psi_j) exp(s_j - M_i),  j <= i in the chunk,
    inter-chunk  phi_q_i . KV_prefix_n exp(P_n - M_i),
  with chunk states KV_m = sum_{j in m} psi_j exp(s_j - R_m) v_j^T,
  R_m = max_{j in m} s_j (see `_exclusive_prefix_states`).

  Memory: the intra-chunk scores are [B, N/c, H, c, c] (= N c per head) and
  the per-chunk states [B, N/c, H, M, D]; never N x N nor N x M x D.
  """
  b, l, h, m = phi_q_BxLxHxM.shape
  d = v_BxLxHxD.shape[-1]
  c = max(1, min(int(chunk_size), l))
  n = -(-l // c)
  pad = n * c - l
  if pad:  # Zero features at padded positions contribute nothing.
    widths = ((0, 0), (0, pad), (0, 0), (0, 0))
    phi_q_BxLxHxM = jnp.pad(phi_q_BxLxHxM, widths)
    phi_k_BxLxHxM = jnp.pad(phi_k_BxLxHxM, widths)
    v_BxLxHxD = jnp.pad(v_BxLxHxD, widths)
    if log_scale_k_BxLxH is not None:  # ... and enter no max.
      log_scale_k_BxLxH = jnp.pad(log_scale_k_BxLxH, widths[:3],
                                  constant_values=-jnp.inf)
  q_BxNxCxHxM = phi_q_BxLxHxM.reshape(b, n, c, h, m)
  k_BxNxCxHxM = phi_k_BxLxHxM.reshape(b, n, c, h, m)
  v_BxNxCxHxD = v_BxLxHxD.reshape(b, n, c, h, d)

  # Intra-chunk: explicit lower-triangular similarities (j <= i).
  scores_BxNxHxCxC = jnp.einsum("bnihm,bnjhm->bnhij", q_BxNxCxHxM, k_BxNxCxHxM)
  tri_CxC = jnp.tril(jnp.ones((c, c), bool))
  if log_scale_k_BxLxH is None:
    scores_BxNxHxCxC = jnp.where(tri_CxC, scores_BxNxHxCxC, 0.0)
    max_BxNxH = None
  else:
    s_BxNxCxH = log_scale_k_BxLxH.reshape(b, n, c, h)
    max_BxNxH = jax.lax.stop_gradient(jnp.max(s_BxNxCxH, axis=2))  # R_m.
    # Chunk states relative to R_m: exp(s_j - R_m) <= 1.
    k_BxNxCxHxM = k_BxNxCxHxM * jnp.exp(
        s_BxNxCxH - _finite_or_zero(max_BxNxH)[:, :, None])[..., None]
  kv_BxNxHxMxD = jnp.einsum("bnjhm,bnjhd->bnhmd", k_BxNxCxHxM, v_BxNxCxHxD)
  z_BxNxHxM = jnp.sum(k_BxNxCxHxM, axis=2)
  # Inter-chunk: exclusive prefix sums of the per-chunk states (chunks < n).
  prefix_kv_BxNxHxMxD, prefix_z_BxNxHxM, prefix_max_BxNxH = (
      _exclusive_prefix_states(kv_BxNxHxMxD, z_BxNxHxM, max_BxNxH))

  if log_scale_k_BxLxH is not None:
    # M_i = max(P_n, max_{j <= i in the chunk} s_j); every exponent is <= 0.
    m_BxNxCxH = jax.lax.stop_gradient(_finite_or_zero(jnp.maximum(
        prefix_max_BxNxH[:, :, None], jax.lax.cummax(s_BxNxCxH, axis=2))))
    m_BxNxHxCx1 = m_BxNxCxH.transpose(0, 1, 3, 2)[..., None]
    s_BxNxHx1xC = s_BxNxCxH.transpose(0, 1, 3, 2)[..., None, :]
    # The exponent is masked, not the product: exp(s_j - M_i) may overflow
    # for j > i, and inf * 0 would poison the gradient.
    scores_BxNxHxCxC *= jnp.exp(jnp.where(
        tri_CxC, s_BxNxHx1xC - m_BxNxHxCx1, -jnp.inf))
    # Rescale the query's view of the prefix from P_n to M_i (an empty
    # prefix, P_n = -inf, has zero states and gets factor 0, not inf).
    p_BxNx1xH = prefix_max_BxNxH[:, :, None]
    q_BxNxCxHxM = q_BxNxCxHxM * jnp.exp(jnp.where(
        jnp.isfinite(p_BxNx1xH), p_BxNx1xH - m_BxNxCxH, -jnp.inf))[..., None]
  num_BxNxCxHxD = jnp.einsum(
      "bnhij,bnjhd->bnihd", scores_BxNxHxCxC, v_BxNxCxHxD)
  den_BxNxCxH = jnp.sum(scores_BxNxHxCxC, axis=-1).transpose(0, 1, 3, 2)
  num_BxNxCxHxD += jnp.einsum(
      "bnihm,bnhmd->bnihd", q_BxNxCxHxM, prefix_kv_BxNxHxMxD)
  den_BxNxCxH += jnp.einsum("bnihm,bnhm->bnih", q_BxNxCxHxM, prefix_z_BxNxHxM)

  out_BxNxCxHxD = _guarded_divide(num_BxNxCxHxD, den_BxNxCxH, eps)
  return out_BxNxCxHxD.reshape(b, n * c, h, d)[:, :l]


def linear_attention_from_features(
    phi_q_BxLxHxM: jax.Array,
    phi_k_BxSxHxM: jax.Array,
    v_BxSxHxD: jax.Array,
    *,
    mask: jax.Array | None = None,
    causal: bool = False,
    chunk_size: int = 64,
    eps: float = 1e-6,
    log_scale_k_BxSxH: jax.Array | None = None,
) -> jax.Array:
  """Linear attention given (non-negative) feature maps of queries and keys.

  Args:
    phi_q_BxLxHxM: phi(Q), [B, L, H, M].
    phi_k_BxSxHxM: phi(K), [B, S, H, M].
    v_BxSxHxD: values, [B, S, H, D].
    mask: optional boolean key-padding mask, True = real token; padded
      keys get zero features (and values), so they contribute nothing.
    causal: if True, query i sees keys j <= i (requires S == L); chunked.
    chunk_size: chunk length c of the causal form.
    eps: lower bound of the denominator.
    log_scale_k_BxSxH: optional per-key log-scales s_j: the key features are
      exp(s_j) * phi_k_j (see the module docstring). The stabilisers built
      from them are stop-gradient; padded keys enter no max. None = 0 (plain
      linear attention, whose computation it leaves unchanged).
  Returns:
    float32 [B, L, H, D]. Queries with no visible key give zeros.
  """
  phi_q_BxLxHxM = phi_q_BxLxHxM.astype(jnp.float32)
  phi_k_BxSxHxM = phi_k_BxSxHxM.astype(jnp.float32)
  v_BxSxHxD = v_BxSxHxD.astype(jnp.float32)
  if log_scale_k_BxSxH is not None:
    log_scale_k_BxSxH = log_scale_k_BxSxH.astype(jnp.float32)
  if mask is not None:
    keep_BxSx1x1 = mask.astype(bool)[:, :, None, None]
    phi_k_BxSxHxM = jnp.where(keep_BxSx1x1, phi_k_BxSxHxM, 0.0)
    v_BxSxHxD = jnp.where(keep_BxSx1x1, v_BxSxHxD, 0.0)
    if log_scale_k_BxSxH is not None:
      log_scale_k_BxSxH = jnp.where(keep_BxSx1x1[..., 0], log_scale_k_BxSxH,
                                    -jnp.inf)
  if not causal:
    return _noncausal(phi_q_BxLxHxM, phi_k_BxSxHxM, v_BxSxHxD, eps,
                      log_scale_k_BxSxH)
  if phi_q_BxLxHxM.shape[1] != phi_k_BxSxHxM.shape[1]:
    raise ValueError(
        "causal linear attention needs as many queries as keys, got"
        f" {phi_q_BxLxHxM.shape[1]} and {phi_k_BxSxHxM.shape[1]}"
    )
  return _causal_chunked(
      phi_q_BxLxHxM, phi_k_BxSxHxM, v_BxSxHxD, chunk_size, eps,
      log_scale_k_BxSxH)


def linear_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    mask: jax.Array | None = None,
    causal: bool = False,
    feature_map: str = "elu",
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> jax.Array:
  """Linear attention (Katharopoulos et al. 2020, eq. 6; causal: eq. 8-10).

  Same layout as `jax.nn.dot_product_attention`. Jit with
  `static_argnames=("causal", "feature_map", "chunk_size")`.

  Args:
    q, k, v: queries, keys, values, [B, L, H, D] (k, v may have length S when
      causal=False).
    mask: optional boolean [B, S] key-padding mask, True = keep.
    causal: if True, query i attends to keys j <= i.
    feature_map: a key of `FEATURE_MAPS` ("elu" = elu(x) + 1, the paper's).
    chunk_size: chunk length of the causal form.
    eps: lower bound of the (float32) denominator.
  Returns:
    [B, L, H, D], same dtype as q.
  """
  phi = _feature_map(feature_map)
  out = linear_attention_from_features(
      phi(q.astype(jnp.float32)), phi(k.astype(jnp.float32)), v,
      mask=mask, causal=causal, chunk_size=chunk_size, eps=eps)
  return out.astype(q.dtype)


@register("linear")
class LinearAttention(AttentionKernel):
  """Linear attention with a recurrent (RNN) state for decoding (sec. 3.4)."""

  supports_decode = True
  exact = False  # a different similarity than softmax's exp(q.k / sqrt(d))
  softmax_tolerance = None
  option_choices = {"feature_map": tuple(FEATURE_MAPS.names())}
  positive_options = ("chunk_size",)

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    # feature_map: a key of FEATURE_MAPS; chunk_size: causal chunk length c;
    # eps: denominator lower bound.
    return {"feature_map": "elu", "chunk_size": 64, "eps": 1e-6}

  def __init__(self, *, num_heads, head_dim, max_len, rngs, dtype=jnp.float32,
               feature_map: str = "elu", chunk_size: int = 64,
               eps: float = 1e-6):
    del max_len, rngs, dtype  # Parameter-free; computes in float32.
    self.num_heads, self.head_dim = num_heads, head_dim
    self.feature_map = feature_map
    self.chunk_size = int(chunk_size)
    self.eps = float(eps)

  def __call__(self, q, k, v, *, mask=None, causal=False, deterministic=True):
    del deterministic
    return linear_attention(q, k, v, mask=mask, causal=causal,
                            feature_map=self.feature_map,
                            chunk_size=self.chunk_size, eps=self.eps)

  def dense_equivalent(self, q, k, v, *, mask=None, causal=False):
    """Eq. 4 (causal: eq. 8) with the L x S similarity matrix formed."""
    phi = _feature_map(self.feature_map)
    sim_BxHxLxS = jnp.einsum("blhm,bshm->bhls", phi(q.astype(jnp.float32)),
                             phi(k.astype(jnp.float32)))
    allowed = dense.combine_masks(q.shape[1], k.shape[1], mask, causal)
    if allowed is not None:
      sim_BxHxLxS = jnp.where(allowed, sim_BxHxLxS, 0.0)
    num_BxLxHxD = jnp.einsum("bhls,bshd->blhd", sim_BxHxLxS,
                             v.astype(jnp.float32))
    den_BxLxH = jnp.swapaxes(sim_BxHxLxS.sum(-1), 1, 2)
    return _guarded_divide(num_BxLxHxD, den_BxLxH, self.eps).astype(q.dtype)

  def init_cache(self, batch_size, max_len, dtype=jnp.float32):
    """The recurrent state (S, Z) of sec. 3.4: float32, O(1) in max_len."""
    del max_len, dtype
    h, d = self.num_heads, self.head_dim
    return {"s": jnp.zeros((batch_size, h, d, d), jnp.float32),
            "z": jnp.zeros((batch_size, h, d), jnp.float32)}

  def decode_step(self, q_Bx1xHxD, k_Bx1xHxD, v_Bx1xHxD, cache, index):
    """One step of sec. 3.4: S += phi(k) v^T, Z += phi(k); O(1) per token."""
    del index  # The state already summarises every previous position.
    phi = _feature_map(self.feature_map)
    phi_q_BxHxD = phi(q_Bx1xHxD[:, 0].astype(jnp.float32))
    phi_k_BxHxD = phi(k_Bx1xHxD[:, 0].astype(jnp.float32))
    v_BxHxD = v_Bx1xHxD[:, 0].astype(jnp.float32)
    s_BxHxDxD = cache["s"] + jnp.einsum("bhm,bhd->bhmd", phi_k_BxHxD, v_BxHxD)
    z_BxHxD = cache["z"] + phi_k_BxHxD
    num_BxHxD = jnp.einsum("bhm,bhmd->bhd", phi_q_BxHxD, s_BxHxDxD)
    den_BxH = jnp.einsum("bhm,bhm->bh", phi_q_BxHxD, z_BxHxD)
    out_BxHxD = _guarded_divide(num_BxHxD, den_BxH, self.eps)
    return (out_BxHxD[:, None].astype(q_Bx1xHxD.dtype),
            {"s": s_BxHxDxD, "z": z_BxHxD})
