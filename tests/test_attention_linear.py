"""Tests for linear attention (Katharopoulos et al. 2020).

Linear attention is neither exact nor a stated softmax approximation, so the
contract suite (tests/test_attention_contract.py) skips its dense check; here
its formula is checked against a naive O(N^2) evaluation written in this file:
out_i = sum_j sim(i, j) v_j / max(sum_j sim(i, j), eps), sim = phi(q_i).phi(k_j)
restricted to visible keys, for every feature map and for causal chunk sizes
that do and do not divide L. Shape/dtype, padding, causal leaks, decoding vs
the parallel form and bf16 at N = 4096 are the contract's. Tolerances: forward
1e-5 (fp32), gradients 1e-4.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import attention
from lightjax.attention import linear
from tests.attention_inputs import padding_mask, qkv

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


# L = 13: not a multiple of the chunk sizes below; d = 4 keeps compiles small.
_qkv = functools.partial(qkv, l=13, d=4)


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
  mask = padding_mask([13, 7], 13) if use_mask else None
  out = _fast(q, k, v, mask, False, feature_map)
  want = _naive(q, k, v, mask, False, feature_map)
  np.testing.assert_allclose(out, want, atol=1e-5, rtol=1e-5)


# L = 13 is not a multiple of 4 or 5; 64 > L.
@pytest.mark.parametrize("chunk_size,use_mask", [
    (1, True), (4, False), (5, True), (64, False)])
def test_causal_matches_naive(chunk_size, use_mask):
  q, k, v = _qkv(1)
  mask = padding_mask([13, 6], 13) if use_mask else None
  out = _fast(q, k, v, mask, True, "elu", chunk_size)
  want = _naive(q, k, v, mask, True)
  np.testing.assert_allclose(out, want, atol=1e-5, rtol=1e-5)


def test_cross_lengths_noncausal():
  q, k, v = _qkv(2, l=5, length_k=9)
  np.testing.assert_allclose(_fast(q, k, v), _naive(q, k, v), atol=1e-5,
                             rtol=1e-5)


def test_decode_state_is_constant_size():
  """The recurrent state (S, Z) does not grow with max_len (the RNN form).

  That decoding equals the parallel causal forward is the contract's check.
  """
  kernel = attention.build("linear", {}, num_heads=2, head_dim=4, max_len=11,
                           rngs=nnx.Rngs(0))
  for max_len in (11, 4096):
    cache = kernel.init_cache(2, max_len, jnp.float32)
    assert cache["s"].shape == (2, 2, 4, 4) and cache["s"].dtype == jnp.float32
    assert cache["z"].shape == (2, 2, 4)


@pytest.mark.parametrize("causal", [False, True])
def test_grads_finite_and_match_naive(causal):
  q, k, v = _qkv(8)
  mask = padding_mask([13, 9], 13)
  cot = _qkv(9)[0]

  def loss(fn, q, k, v):
    return jnp.sum(fn(q, k, v, mask=mask, causal=causal) * cot)

  fast = functools.partial(linear.linear_attention, chunk_size=4)
  g = jax.jit(jax.grad(functools.partial(loss, fast), argnums=(0, 1, 2)))(
      q, k, v)
  g_naive = jax.jit(jax.grad(functools.partial(loss, naive_linear_attention),
                           argnums=(0, 1, 2)))(q, k, v)
  for a, b in zip(g, g_naive):
    assert bool(jnp.all(jnp.isfinite(a)))
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


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
  mask = padding_mask([13, 4], 13)
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
