"""Tests for linear attention (Katharopoulos et al. 2020).

Ground truth is a naive O(N^2) evaluation of the same formula written here:
out_i = sum_j sim(i, j) v_j / max(sum_j sim(i, j), eps), sim = phi(q_i).phi(k_j)
restricted to visible keys. Tolerances: forward 1e-5 (fp32), gradients 1e-4,
decode vs parallel 1e-4, causality / padding invariance 1e-6.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import attention
from lightjax.attention import linear

EPS = 1e-6
NAIVE_FEATURE_MAPS = {
    "elu": lambda x: jnp.where(x > 0, x + 1.0, jnp.exp(x)),
    "relu": lambda x: jnp.maximum(x, 0.0),
    "softplus": lambda x: jnp.log1p(jnp.exp(x)),
}


def naive_linear_attention(q, k, v, mask=None, causal=False, feature_map="elu"):
  phi = NAIVE_FEATURE_MAPS[feature_map]
  sim_BxHxLxS = jnp.einsum("blhd,bshd->bhls", phi(q), phi(k))
  l, s = q.shape[1], k.shape[1]
  allowed = jnp.ones((1, 1, l, s), bool)
  if causal:
    allowed &= jnp.tril(jnp.ones((l, s), bool))[None, None]
  if mask is not None:
    allowed = allowed & mask[:, None, None, :]
  sim_BxHxLxS = jnp.where(allowed, sim_BxHxLxS, 0.0)
  num = jnp.einsum("bhls,bshd->blhd", sim_BxHxLxS, v)
  den = jnp.sum(sim_BxHxLxS, -1).transpose(0, 2, 1)
  return num / jnp.maximum(den, EPS)[..., None]


def _qkv(seed, b=2, l=13, h=2, d=4, scale=1.0, dtype=jnp.float32):
  # numpy RNG: eager jax.random would compile once per shape (slow tests).
  rng = np.random.default_rng(seed)
  return tuple(jnp.asarray(scale * rng.standard_normal((b, l, h, d)), dtype)
               for _ in range(3))


def _mask(b, l, lengths):
  del b
  return jnp.asarray(np.arange(l)[None, :] < np.asarray(lengths)[:, None])


_STATIC = ("causal", "feature_map", "chunk_size")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _fast(q, k, v, mask=None, causal=False, feature_map="elu", chunk_size=64):
  """Positional shorthand for the keyword-only kernel signature."""
  return linear.linear_attention(q, k, v, mask=mask, causal=causal,
                                 feature_map=feature_map,
                                 chunk_size=chunk_size)


_naive = jax.jit(naive_linear_attention, static_argnames=_STATIC[:2])


@pytest.mark.parametrize("feature_map,use_mask", [
    ("elu", False), ("relu", True), ("softplus", True)])
def test_noncausal_matches_naive(feature_map, use_mask):
  q, k, v = _qkv(0)
  mask = _mask(2, 13, [13, 7]) if use_mask else None
  out = _fast(q, k, v, mask, False, feature_map)
  ref = _naive(q, k, v, mask, False, feature_map)
  np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


# L = 13 is not a multiple of 4 or 5; 64 > L.
@pytest.mark.parametrize("chunk_size,use_mask", [
    (1, True), (4, False), (5, True), (64, False)])
def test_causal_matches_naive(chunk_size, use_mask):
  q, k, v = _qkv(1)
  mask = _mask(2, 13, [13, 6]) if use_mask else None
  out = _fast(q, k, v, mask, True, "elu", chunk_size)
  ref = _naive(q, k, v, mask, True)
  np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_cross_lengths_noncausal():
  q, _, _ = _qkv(2, l=5)
  _, k, v = _qkv(3, l=9)
  np.testing.assert_allclose(_fast(q, k, v), _naive(q, k, v), atol=1e-5,
                             rtol=1e-5)


@pytest.mark.parametrize("t", [0, 5, 8, 12])  # Chunk starts/middles/end.
def test_causal_leaks_nothing_from_future(t):
  q, k, v = _qkv(4)
  out = _fast(q, k, v, None, True, "elu", 4)
  bump_np = np.zeros(q.shape, np.float32)
  bump_np[:, t] = 5.0
  bump = jnp.asarray(bump_np)
  out2 = _fast(q + bump, k - bump, v + bump, None, True, "elu", 4)
  np.testing.assert_allclose(out2[:, :t], out[:, :t], atol=1e-6, rtol=0)
  assert not np.allclose(out2[:, t], out[:, t])


@pytest.mark.parametrize("causal", [False, True])
def test_padding_invariance(causal):
  q, k, v = _qkv(5, l=10)
  qx, kx, vx = _qkv(6, l=7, scale=100.0)  # Garbage in the padded slots.
  cat = lambda a, b: jnp.concatenate([a, b], axis=1)
  mask = _mask(2, 17, [10, 10])
  out = _fast(q, k, v, None, causal, "elu", 4)
  out_padded = _fast(cat(q, qx), cat(k, kx), cat(v, vx), mask, causal, "elu", 4)
  np.testing.assert_allclose(out_padded[:, :10], out, atol=1e-6, rtol=1e-6)


def test_decode_matches_parallel_causal():
  b, l, h, d = 2, 11, 2, 4
  kernel = attention.build("linear", {"chunk_size": 4}, num_heads=h,
                           head_dim=d, max_len=l, rngs=nnx.Rngs(0))
  assert kernel.supports_decode
  q, k, v = _qkv(7, b, l, h, d)
  parallel = jax.jit(lambda q, k, v: kernel(q, k, v, causal=True))(q, k, v)
  cache = kernel.init_cache(b, l, jnp.float32)
  assert cache["s"].shape == (b, h, d, d) and cache["s"].dtype == jnp.float32
  assert cache["z"].shape == (b, h, d)
  step = jax.jit(kernel.decode_step)
  outs = []
  for i in range(l):
    out_i, cache = step(q[:, i:i + 1], k[:, i:i + 1], v[:, i:i + 1], cache, i)
    outs.append(out_i)
  np.testing.assert_allclose(jnp.concatenate(outs, 1), parallel, atol=1e-4,
                             rtol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_grads_finite_and_match_naive(causal):
  q, k, v = _qkv(8)
  mask = _mask(2, 13, [13, 9])
  cot = _qkv(9)[0]

  def loss(fn, q, k, v):
    return jnp.sum(fn(q, k, v, mask=mask, causal=causal) * cot)

  fast = functools.partial(linear.linear_attention, chunk_size=4)
  g = jax.jit(jax.grad(functools.partial(loss, fast), argnums=(0, 1, 2)))(
      q, k, v)
  g_ref = jax.jit(jax.grad(functools.partial(loss, naive_linear_attention),
                           argnums=(0, 1, 2)))(q, k, v)
  for a, b in zip(g, g_ref):
    assert bool(jnp.all(jnp.isfinite(a)))
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_bf16_long_sequence_is_finite(causal):
  q, k, v = _qkv(10, b=1, l=4096, h=1, d=64, scale=3.0, dtype=jnp.bfloat16)
  out = _fast(q, k, v, None, causal)
  assert out.dtype == jnp.bfloat16 and out.shape == q.shape
  assert bool(jnp.all(jnp.isfinite(out.astype(jnp.float32))))


def test_relu_all_zero_features_give_zeros_not_nan():
  q, k, v = _qkv(11)
  out = _fast(-jnp.abs(q), -jnp.abs(k), v, None, True, "relu")
  assert bool(jnp.all(out == 0.0))


def test_causal_compiled_memory_far_below_dense_softmax():
  spec = jax.ShapeDtypeStruct((1, 4096, 1, 64), jnp.float32)

  def temp_bytes(fn):
    compiled = jax.jit(fn).lower(spec, spec, spec).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  lin = temp_bytes(lambda q, k, v: attention.linear_attention(
      q, k, v, causal=True))
  dense = temp_bytes(lambda q, k, v: attention.softmax_attention(
      q, k, v, causal=True))
  print(f"\ncausal N=4096 d=64 temp bytes: linear={lin} dense softmax={dense}")
  assert lin < dense / 4


def test_registry_build_and_module_matches_function():
  assert "linear" in attention.names()
  kernel = attention.build("linear", {"feature_map": "relu", "chunk_size": 3},
                           num_heads=2, head_dim=4, max_len=13,
                           rngs=nnx.Rngs(0), dtype=jnp.float32)
  assert isinstance(kernel, linear.LinearAttention)
  q, k, v = _qkv(12)
  mask = _mask(2, 13, [13, 4])
  call = jax.jit(lambda q, k, v, m: kernel(q, k, v, mask=m, causal=True))
  np.testing.assert_allclose(
      call(q, k, v, mask),
      _naive(q, k, v, mask, True, "relu"), atol=1e-5,
      rtol=1e-5)
  assert attention.default_options()["linear"] == {
      "feature_map": "elu", "chunk_size": 64, "eps": 1e-6}


def test_registry_rejects_unknown_option_and_feature_map():
  with pytest.raises(ValueError, match="valid options: chunk_size, eps, "
                                       "feature_map"):
    attention.build("linear", {"nope": 1}, num_heads=1, head_dim=4,
                    max_len=8, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="elu, relu, softplus"):
    attention.build("linear", {"feature_map": "tanh"}, num_heads=1,
                    head_dim=4, max_len=8, rngs=nnx.Rngs(0))
