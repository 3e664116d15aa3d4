"""Tests for Linformer attention (Wang et al. 2020, eq. 7).

Tolerances: equality with the formula written here 1e-5 (fp32); padding
invariance 1e-6.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import attention
from lightjax.attention import linformer
from tests.attention_inputs import padding_mask, qkv

H, D, MAX_LEN, K = 2, 8, 16, 4


def _qkv(seed, b=2, l=10, scale=1.0, dtype=jnp.float32):
  q, k, v = qkv(seed, b, l, H, D, dtype=dtype)
  return q * scale, k * scale, v * scale


def _mask(l, lengths):
  return padding_mask(lengths, l)


def _build(sharing="none", proj_len=K, seed=0):
  return attention.build("linformer", {"proj_len": proj_len,
                                       "sharing": sharing},
                         num_heads=H, head_dim=D, max_len=MAX_LEN,
                         rngs=nnx.Rngs(seed))


@nnx.jit
def _call(kernel, q, k, v, mask):
  return kernel(q, k, v, mask=mask)


def _count(kernel):
  return sum(x.size for x in jax.tree.leaves(nnx.state(kernel, nnx.Param)))


def naive_linformer(q, k, v, e, f, mask):
  l = k.shape[1]
  keep = mask[:, :, None, None]
  kp = jnp.einsum("kl,blhd->bkhd", e[:, :l], jnp.where(keep, k, 0.0))
  vp = jnp.einsum("kl,blhd->bkhd", f[:, :l], jnp.where(keep, v, 0.0))
  logits = jnp.einsum("blhd,bkhd->bhlk", q, kp) / np.sqrt(q.shape[-1])
  return jnp.einsum("bhlk,bkhd->blhd", jax.nn.softmax(logits, -1), vp)


def test_shapes_params_and_formula():
  kernel = _build()
  assert isinstance(kernel.e_KxN, nnx.Param)
  assert kernel.e_KxN.shape == (K, MAX_LEN) == kernel.f_KxN.shape
  q, k, v = _qkv(0, l=10)
  mask = _mask(10, [10, 6])
  out = _call(kernel, q, k, v, mask)
  assert out.shape == q.shape and out.dtype == q.dtype
  ref = naive_linformer(q, k, v, kernel.e_KxN[...], kernel.f_KxN[...], mask)
  np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_padding_invariance():
  kernel = _build()
  q, k, v = _qkv(1, l=9)
  qx, kx, vx = _qkv(2, l=5, scale=100.0)  # Garbage in the padded slots.
  cat = lambda a, b: jnp.concatenate([a, b], axis=1)
  out = _call(kernel, q, k, v, None)
  out_padded = _call(kernel, cat(q, qx), cat(k, kx), cat(v, vx),
                     _mask(14, [9, 9]))
  np.testing.assert_allclose(out_padded[:, :9], out, atol=1e-6, rtol=1e-6)


def test_kv_sharing_uses_one_projection():
  separate, shared = _build("none"), _build("kv")
  assert _count(shared) == K * MAX_LEN
  assert _count(separate) == 2 * K * MAX_LEN
  assert _count(shared) < _count(separate)
  q, k, v = _qkv(3)
  e = shared.e_KxN[...]
  np.testing.assert_allclose(
      _call(shared, q, k, v, None),
      linformer.linformer_attention(q, k, v, e_KxN=e, f_KxN=e), atol=1e-6, rtol=1e-6)


def test_causal_and_too_long_raise():
  kernel = _build()
  q, k, v = _qkv(5)
  with pytest.raises(ValueError, match="cannot be causal"):
    kernel(q, k, v, causal=True)
  with pytest.raises(ValueError, match="none, kv, layer"):
    _build("heads")
  q, k, v = _qkv(6, l=MAX_LEN + 1)
  with pytest.raises(ValueError, match="exceeds max_len"):
    kernel(q, k, v)


def test_registry_build_and_unknown_option():
  assert "linformer" in attention.names()
  assert attention.default_options()["linformer"] == {
      "proj_len": 128, "sharing": "none"}
  assert isinstance(_build(), linformer.LinformerAttention)
  with pytest.raises(ValueError, match="valid options: proj_len, sharing"):
    attention.build("linformer", {"k": 3}, num_heads=H, head_dim=D,
                    max_len=MAX_LEN, rngs=nnx.Rngs(0))


def test_layerwise_sharing_is_one_parameter_across_layers():
  """sharing="layer": every layer uses the same E = F (Wang et al. 2020 sec. 4)."""
  from lightjax import config_lib, models
  from lightjax.metrics.params import count_params

  def model(sharing):
    c = config_lib.base_config().model
    c.embed_dim, c.num_heads, c.head_dim, c.mlp_dim, c.num_layers = 16, 2, 8, 32, 3
    c.attention = config_lib.attention_config("linformer")
    c.attention.linformer.proj_len, c.attention.linformer.sharing = K, sharing
    return models.build_model(c, vocab_size=11, num_classes=3, max_len=MAX_LEN,
                              rngs=nnx.Rngs(0))

  shared, kv = model("layer"), model("kv")
  kernels = [b.attn.kernel for b in shared.backbone.blocks]
  assert all(k.e_KxN is kernels[0].e_KxN for k in kernels)
  # kv keeps one E per layer (3 x K x N); layer keeps one in all (1 x K x N).
  saved = count_params(kv)["attention"] - count_params(shared)["attention"]
  assert saved == 2 * K * (MAX_LEN + 1)  # +1: the CLS position
  # Still one parameter after a split/merge round trip (what jit steps do).
  gd, state = nnx.split(shared)
  merged = nnx.merge(gd, state)
  ks = [b.attn.kernel for b in merged.backbone.blocks]
  assert all(k.e_KxN is ks[0].e_KxN for k in ks)
