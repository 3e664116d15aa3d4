"""Tests for Performer / FAVOR+ attention (Choromanski et al. 2021).

Only what is Performer's own; shape/dtype, padding, causal leaks, finite
gradients, the stated softmax tolerance and bf16 at N = 4096 are checked for
every variant by tests/test_attention_contract.py.

Tolerances: the chunked form equals a naive O(N^2) evaluation of the same
features to 1e-5; 1e-6 when a later key's feature logit is >= 100 above all
others (the causal key stabiliser is a prefix max, so no future key enters an
earlier output, not even through the stabiliser), and when such a key is
padding (padded keys enter no stabiliser max); approximation of softmax
attention: mean |error| with 4096 features at most half of that with 16,
averaged over 2 seeds; orthogonal blocks orthonormal to 1e-5.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import attention
from lightjax.attention import dense, performer
from tests.attention_inputs import padding_mask, qkv


def _w(seed, m, d=8):
  """iid N(0, 1) projection from numpy (jax.random compiles per shape)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal((m, d)),
                     jnp.float32)


_STATIC = ("causal", "chunk_size")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _fast(q, k, v, w, mask=None, causal=False, chunk_size=64):
  """Positional shorthand for the keyword-only kernel signature."""
  return performer.performer_attention(q, k, v, mask=mask, causal=causal,
                                       projection=w, chunk_size=chunk_size)


@jax.jit
def _dense_causal(q, k, v):
  return dense.dense_attention(q, k, v, causal=True)


@jax.jit
def _dense(q, k, v):
  return dense.dense_attention(q, k, v)


def _naive_from_features(q, k, v, w, mask, causal):
  """Naive O(N^2) evaluation from the same features, in exact-math form.

  sim(i, j) = phi(q_i) . psi(k_j) exp(s_j - M_i), M_i = max of s_j over the
  keys query i sees: the true feature exp(s_j) psi(k_j) up to a per-query
  constant (which cancels), so no stabiliser is shared across queries.
  """
  phi_q, _ = performer.favor_features(q, w)
  psi_k, s_k = performer.favor_features(k, w)
  l, s = q.shape[1], k.shape[1]
  allowed = jnp.ones((1, 1, l, s), bool)
  if causal:
    allowed = allowed & jnp.tril(jnp.ones((l, s), bool))[None, None]
  if mask is not None:
    allowed = allowed & mask[:, None, None, :]
  log_BxHxLxS = jnp.where(allowed, s_k.transpose(0, 2, 1)[:, :, None, :],
                          -jnp.inf)
  max_BxHxLx1 = jnp.max(log_BxHxLxS, axis=-1, keepdims=True)
  max_BxHxLx1 = jnp.where(jnp.isfinite(max_BxHxLx1), max_BxHxLx1, 0.0)
  sim = jnp.einsum("blhm,bshm->bhls", phi_q, psi_k)
  sim = sim * jnp.exp(log_BxHxLxS - max_BxHxLx1)
  num = jnp.einsum("bhls,bshd->blhd", sim, v)
  return num / jnp.maximum(sim.sum(-1), 1e-6).transpose(0, 2, 1)[..., None]


_naive = jax.jit(_naive_from_features, static_argnums=(5,))


@pytest.mark.parametrize("causal", [False, True])
def test_matches_naive_same_features(causal):
  q, k, v = qkv(0)
  w = _w(0, 64)
  mask = padding_mask([12, 7], 12)
  out = _fast(q, k, v, w, mask, causal, 5)  # 12 % 5 != 0.
  want = _naive(q, k, v, w, mask, causal)
  np.testing.assert_allclose(out, want, atol=1e-5, rtol=1e-5)


def _with_huge_key(seed, t, norm=20.0):
  """Inputs, and a projection whose row 0 has norm `norm`; key t lies on it.

  k_t = a u with u = row 0 / |row 0| and a d^{-1/4} = norm maximises key t's
  logit on feature 0: norm^2 / 2 = 200 for norm 20, while ordinary keys'
  logits stay in the tens.
  """
  d = 8
  q, k, v = qkv(seed)
  w_np = np.random.default_rng(seed).standard_normal((64, d)).astype(
      np.float32)
  w_np[0] *= norm / np.linalg.norm(w_np[0])
  k_np = np.array(k)
  k_np[:, t] = w_np[0] * d ** 0.25  # a u with a = norm * d^{1/4}.
  return q, jnp.asarray(k_np), v, jnp.asarray(w_np)


@pytest.mark.parametrize("t", [2, 7])  # In the first chunk / a later one.
def test_causal_outputs_ignore_a_huge_future_key(t):
  q, k, v, w = _with_huge_key(11, t)
  _, k_plain, _ = qkv(11)
  # The large logit exists: key t's stabiliser s_t is >= 100 above every
  # other key's, so a stabiliser shared by all keys (the authors' code and
  # this module before the prefix max) underflows every earlier key's
  # features, exp(s_j - s_t) == 0 in float32, and zeroes the outputs < t.
  _, s_k = performer.favor_features(k, w)
  others = jnp.max(jnp.delete(s_k, t, axis=1), axis=1)
  assert bool(jnp.all(s_k[:, t] - others >= 100.0)), s_k[:, t] - others
  assert bool(jnp.all(jnp.exp(s_k[:, :t] - s_k[:, t:t + 1]) == 0.0))

  out = _fast(q, k_plain, v, w, None, True, 5)
  out_huge = _fast(q, k, v, w, None, True, 5)
  diff = float(jnp.max(jnp.abs(out_huge[:, :t] - out[:, :t])))
  print(f"\nhuge key at t={t}: max |diff| of outputs < t = {diff:.3g}")
  assert diff <= 1e-6
  assert bool(jnp.all(jnp.isfinite(out_huge)))
  assert not np.allclose(out_huge[:, t], out[:, t])  # t itself does see it.
  np.testing.assert_allclose(out_huge, _naive(q, k, v, w, None, True),
                             atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_a_huge_padded_key_changes_nothing(causal):
  # The contract's padding noise has a large norm, hence very negative
  # feature logits (-|x|^2 / 2 dominates): it cannot show that padded keys
  # enter no stabiliser max. A padded key on a feature direction can: were it
  # in the max, every real key's features would underflow. It is a hole, not
  # a padded suffix, so that real causal queries after it have it in their
  # prefix.
  t = 7
  q, k, v, w = _with_huge_key(11, t)
  _, k_plain, _ = qkv(11)
  mask = padding_mask([12, 10], 12) & (jnp.arange(12) != t)[None]
  out_huge = _fast(q, k, v, w, mask, causal, 5)
  np.testing.assert_allclose(out_huge, _fast(q, k_plain, v, w, mask, causal, 5),
                             atol=1e-6)
  np.testing.assert_allclose(out_huge, _naive(q, k, v, w, mask, causal),
                             atol=1e-5, rtol=1e-5)


def test_grads_finite_with_a_huge_key():
  q, k, v, w = _with_huge_key(12, 7)
  cot = qkv(13)[0]
  loss = lambda q, k, v: jnp.sum(_fast(q, k, v, w, None, True, 5) * cot)
  for g in jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v):
    assert bool(jnp.all(jnp.isfinite(g)))


def test_grads_finite_and_match_naive():
  q, k, v = qkv(9, l=11)
  w = _w(9, 32)
  mask = padding_mask([11, 8], 11)
  cot = qkv(10, l=11)[0]

  def grads(fn):
    loss = lambda q, k, v: jnp.sum(fn(q, k, v) * cot)
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)

  g = grads(lambda q, k, v: performer.performer_attention(
      q, k, v, mask=mask, causal=True, projection=w, chunk_size=4))
  g_naive = grads(lambda q, k, v: _naive_from_features(q, k, v, w, mask, True))
  for a, b in zip(g, g_naive):
    assert bool(jnp.all(jnp.isfinite(a)))
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_approaches_softmax_as_features_grow(causal):
  dense = _dense_causal if causal else _dense
  errors = {16: [], 4096: []}
  for seed in range(2):
    q, k, v = qkv(seed, l=16, scale=0.5)
    ref = dense(q, k, v)
    for m in errors:
      w = performer.draw_projection(jax.random.PRNGKey(seed), m, 8)
      out = _fast(q, k, v, w, None, causal)
      errors[m].append(float(jnp.mean(jnp.abs(out - ref))))
  e16, e4096 = np.mean(errors[16]), np.mean(errors[4096])
  print(f"\nperformer causal={causal}: mean |err| 16 features {e16:.4f},"
        f" 4096 features {e4096:.4f}")
  assert e4096 < 0.5 * e16


@pytest.mark.parametrize("m,d", [(16, 8), (200, 64)])  # 200 % 64 != 0.
def test_orthogonal_features_are_orthogonal_within_blocks(m, d):
  # (16, 8) is the shape compiled for the approximation test above.
  w = performer.draw_projection(jax.random.PRNGKey(1), m, d, ortho=True)
  assert w.shape == (m, d)
  for start in range(0, m, d):
    block = w[start:start + d]
    unit = block / jnp.linalg.norm(block, axis=-1, keepdims=True)
    np.testing.assert_allclose(unit @ unit.T, np.eye(len(block)), atol=1e-5)


def _lapack_calls(lowered_text):
  return [t for t in re.findall(r"custom_call\s*@([\w.]+)", lowered_text)
          if "lapack" in t.lower()]


def test_no_lapack_call_when_redrawing_features():
  # LAPACK custom calls (QR's geqrf/orgqr) running concurrently can deadlock
  # XLA's CPU thread pool (see performer.py); the train-time redraw and its
  # gradient must lower to plain XLA ops. The detector itself finds QR's.
  assert _lapack_calls(jax.jit(jnp.linalg.qr).lower(
      jnp.zeros((2, 8, 8))).as_text())
  kernel = _build(redraw=True)
  q, k, v = qkv(14)

  def loss(kernel, q, k, v):
    return jnp.sum(kernel(q, k, v, causal=True, deterministic=False))

  graphdef, state = nnx.split(kernel)
  step = lambda state, q, k, v: nnx.grad(loss, argnums=1)(
      nnx.merge(graphdef, state), q, k, v)
  text = jax.jit(step).lower(state, q, k, v).as_text()
  assert "rng_bit_generator" in text or "threefry" in text  # It does redraw.
  assert not _lapack_calls(text)


def _build(redraw, seed=0, **options):
  return attention.build("performer", {"num_features": 32, "redraw": redraw,
                                       **options},
                         num_heads=2, head_dim=8, max_len=12,
                         rngs=nnx.Rngs(seed))


@nnx.jit(static_argnames=("deterministic",))
def _call(kernel, q, k, v, deterministic):
  return kernel(q, k, v, deterministic=deterministic)


@pytest.mark.parametrize("redraw", [False, True],
                         ids=["redraw=False", "redraw=True"])
def test_training_calls_draw_fresh_features_only_with_redraw(redraw):
  kernel = _build(redraw=redraw)
  q, k, v = qkv(6)
  init = _fast(q, k, v, kernel.projection[...], None, False)
  train = [_call(kernel, q, k, v, False) for _ in range(2)]
  # Deterministic calls always use the features drawn at init; training
  # calls too unless `redraw`, which draws fresh ones on each call.
  same = [_call(kernel, q, k, v, True) for _ in range(2)]
  for out in same + ([] if redraw else train):
    np.testing.assert_array_equal(out, init)
  if redraw:
    assert not np.allclose(*train)


def test_projection_is_not_a_param():
  kernel = _build(redraw=True)
  assert isinstance(kernel.projection, performer.RandomFeatures)
  assert not isinstance(kernel.projection, nnx.Param)
  assert not jax.tree.leaves(nnx.state(kernel, nnx.Param))
  stored = nnx.state(kernel, performer.RandomFeatures)
  assert jax.tree.leaves(stored)[0].shape == (32, 8)
  # Same seed, same init features, whatever `redraw` says.
  np.testing.assert_array_equal(kernel.projection[...],
                                _build(redraw=False).projection[...])


def test_registry_build_and_unknown_option():
  assert "performer" in attention.names()
  assert attention.default_options()["performer"] == {
      "num_features": 256, "redraw": True, "ortho": True, "chunk_size": 64,
      "eps": 1e-6}
  kernel = _build(redraw=False, ortho=False, chunk_size=5)
  assert isinstance(kernel, performer.PerformerAttention)
  q, k, v = qkv(8)
  out = _call(kernel, q, k, v, True)
  assert out.shape == q.shape
  with pytest.raises(ValueError, match="valid options: chunk_size, eps, "
                                       "num_features, ortho, redraw"):
    attention.build("performer", {"features": 3}, num_heads=1, head_dim=8,
                    max_len=8, rngs=nnx.Rngs(0))
