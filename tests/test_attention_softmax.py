"""The softmax baseline (Vaswani et al. 2017, eq. 1) that every variant is
compared with: against a direct numpy computation, across its implementations
and on fully-masked rows. KV-cache decoding, padding, causality and gradients
are in the contract suite (test_attention_contract.py)."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import attention
from lightjax.attention import softmax

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
  """softmax(q k^T / sqrt(d)) v, one (batch, head, query) row at a time.

  Causal: query i (of L) sees keys j <= i + S - L (queries are the last L).
  """
  lq, s = q.shape[1], k.shape[1]
  out = np.zeros_like(q)
  for b in range(q.shape[0]):
    for h in range(q.shape[2]):
      for i in range(lq):
        keys = [j for j in range(s)
                if (mask is None or mask[b, j]) and (not causal
                                                     or j <= i + s - lq)]
        if not keys:
          continue
        x = np.array([q[b, i, h] @ k[b, j, h] for j in keys]) / np.sqrt(D)
        w = np.exp(x - x.max())
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
      mask=None if mask is None else jnp.asarray(mask), causal=causal)
  np.testing.assert_allclose(
      out, _numpy_softmax_attention(q, k, v, mask, causal), atol=1e-5)


@pytest.mark.parametrize("implementation", ["xla", "auto"])
def test_implementations_equal_einsum_path(implementation):
  q, k, v = (jnp.asarray(x) for x in _qkv(1))
  mask = jnp.asarray(_mask())
  for causal in (False, True):
    for m in (None, mask):
      ref = attention.softmax_attention(q, k, v, mask=m, causal=causal,
                                        implementation="einsum")
      out = attention.softmax_attention(q, k, v, mask=m, causal=causal,
                                        implementation=implementation)
      np.testing.assert_allclose(out, ref, atol=1e-5)
  with pytest.raises(ValueError, match="implementation 'flash'; valid: auto"):
    attention.softmax_attention(q, k, v, implementation="flash")


def test_auto_is_xla_on_cpu():
  q = jnp.zeros((1, 4, 1, 8), jnp.bfloat16)
  assert softmax.resolve_implementation("auto", q) == "xla"
  assert softmax.resolve_implementation("einsum", q) == "einsum"


@pytest.mark.parametrize("implementation", ["einsum", "xla"])
def test_fully_masked_rows_give_zeros(implementation):
  q, k, v = (jnp.asarray(x) for x in _qkv(2))
  mask = np.ones((B, L), bool)
  mask[0] = False  # Sequence 0: no visible key at all.
  mask[1, 0] = False  # Causal query 0 of sequence 1 sees only masked key 0.
  mask = jnp.asarray(mask)
  out = attention.softmax_attention(q, k, v, mask=mask, causal=True,
                                    implementation=implementation)
  assert np.isfinite(np.asarray(out)).all()
  np.testing.assert_array_equal(out[0], 0.0)
  np.testing.assert_array_equal(out[1, 0], 0.0)
  assert np.abs(np.asarray(out[1, 1:])).sum() > 0


def test_registry_builds_softmax_with_its_options():
  build = functools.partial(attention.build, num_heads=H, head_dim=D,
                            max_len=L, rngs=nnx.Rngs(0))
  q, k, v = (jnp.asarray(x) for x in _qkv(4))
  assert build("softmax", {}).implementation == "auto"
  ref = build("softmax", {"implementation": "einsum"})(q, k, v, causal=True)
  xla = build("softmax", {})(q, k, v, causal=True)
  np.testing.assert_allclose(xla, ref, atol=1e-5)
  with pytest.raises(ValueError, match="unknown option"):
    build("softmax", {"block_size": 4})
  with pytest.raises(ValueError, match="valid: auto, xla, cudnn, einsum"):
    build("softmax", {"implementation": "fast"})


@pytest.mark.parametrize("implementation", ["auto", "xla"])
def test_causal_with_fewer_queries_than_keys(implementation):
  """Queries are the last L of S positions (decoding with a cache): the
  causal mask is aligned at the end in every implementation."""
  q = jnp.asarray(_qkv(5, length=4)[0])
  k, v = (jnp.asarray(x) for x in _qkv(6, length=L)[1:])
  mask = jnp.asarray(_mask())
  for m in (None, mask):
    out = attention.softmax_attention(q, k, v, mask=m, causal=True,
                                      implementation=implementation)
    want = _numpy_softmax_attention(np.asarray(q), np.asarray(k),
                                    np.asarray(v), m, causal=True)
    np.testing.assert_allclose(out, want, atol=1e-5)

