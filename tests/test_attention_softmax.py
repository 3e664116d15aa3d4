"""The softmax baseline (Vaswani et al. 2017, eq. 1) that every variant is
compared with: against a direct numpy computation, across its implementations,
on fully-masked rows, and in KV-cache decoding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import attention

B, L, H, D = 2, 7, 3, 8


def _qkv(seed=0, length=L):
  rng = np.random.default_rng(seed)
  return [rng.standard_normal((B, length, H, D)).astype(np.float32)
          for _ in range(3)]


def _mask():
  m = np.ones((B, L), bool)
  m[1, 4:] = False
  return m


def _numpy_softmax_attention(q, k, v, mask=None, causal=False):
  """softmax(q k^T / sqrt(d)) v, one (batch, head, query) row at a time."""
  out = np.zeros_like(q)
  for b in range(q.shape[0]):
    for h in range(q.shape[2]):
      for i in range(q.shape[1]):
        keys = [j for j in range(k.shape[1])
                if (mask is None or mask[b, j]) and (not causal or j <= i)]
        if not keys:
          continue
        s = np.array([q[b, i, h] @ k[b, j, h] for j in keys]) / np.sqrt(D)
        w = np.exp(s - s.max())
        w /= w.sum()
        out[b, i, h] = sum(wj * v[b, j, h] for wj, j in zip(w, keys))
  return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_softmax_equals_numpy(masked, causal):
  q, k, v = _qkv()
  mask = _mask() if masked else None
  out = attention.softmax_attention(
      jnp.asarray(q), jnp.asarray(k), jnp.asarray(v),
      None if mask is None else jnp.asarray(mask), causal)
  np.testing.assert_allclose(
      out, _numpy_softmax_attention(q, k, v, mask, causal), atol=1e-5)


def test_xla_implementation_equals_einsum_path():
  q, k, v = (jnp.asarray(x) for x in _qkv(1))
  mask = jnp.asarray(_mask())
  for causal in (False, True):
    for m in (None, mask):
      ref = attention.softmax_attention(q, k, v, m, causal)
      xla = attention.softmax_attention(q, k, v, m, causal,
                                        implementation="xla")
      np.testing.assert_allclose(xla, ref, atol=1e-5)
  with pytest.raises(ValueError, match="implementation"):
    attention.softmax_attention(q, k, v, implementation="flash")


def test_fully_masked_rows_give_zeros():
  q, k, v = (jnp.asarray(x) for x in _qkv(2))
  mask = np.ones((B, L), bool)
  mask[0] = False  # Sequence 0: no visible key at all.
  mask[1, 0] = False  # Causal query 0 of sequence 1 sees only masked key 0.
  mask = jnp.asarray(mask)
  for implementation in (None, "xla"):
    out = attention.softmax_attention(q, k, v, mask, causal=True,
                                      implementation=implementation)
    assert np.isfinite(np.asarray(out)).all()
    np.testing.assert_array_equal(out[0], 0.0)
    if implementation is None:  # jax.nn's kernel is not asked to do this.
      np.testing.assert_array_equal(out[1, 0], 0.0)
    assert np.abs(np.asarray(out[1, 1:])).sum() > 0


def test_kv_cache_decoding_equals_causal_forward():
  length = 9
  q, k, v = (jnp.asarray(x) for x in _qkv(3, length))
  kernel = attention.build("softmax", {}, num_heads=H, head_dim=D,
                           max_len=length, rngs=nnx.Rngs(0))
  assert kernel.supports_decode
  full = kernel(q, k, v, causal=True)
  step = jax.jit(kernel.decode_step)
  cache = kernel.init_cache(B, length, jnp.float32)
  outs = []
  for t in range(length):
    out_t, cache = step(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1], cache,
                        jnp.int32(t))
    outs.append(out_t)
  np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=1e-5)


def test_registry_builds_softmax_with_its_options():
  build = functools.partial(attention.build, num_heads=H, head_dim=D,
                            max_len=L, rngs=nnx.Rngs(0))
  q, k, v = (jnp.asarray(x) for x in _qkv(4))
  ref = build("softmax", {})(q, k, v, causal=True)
  xla = build("softmax", {"implementation": "xla"})(q, k, v, causal=True)
  np.testing.assert_allclose(xla, ref, atol=1e-5)
  with pytest.raises(ValueError, match="unknown option"):
    build("softmax", {"block_size": 4})
