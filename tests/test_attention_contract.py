"""The contract every registered attention variant keeps, checked automatically.

The suite is parametrized over `lightjax.attention.names()` at collection
time and driven only by what each kernel class declares
(`attention/base.py`): `supports_causal`, `supports_decode`, `exact` /
`softmax_tolerance`, `allowed_mask`. A newly registered variant therefore
gets every check without anyone writing a line; `ToyPreviousToken` below is
registered inside this module exactly the way a user registers a variant, and
is collected like the shipped ones.

Checks: output shape and dtype; padded keys change nothing; no causal leak
(perturbing a later token leaves earlier outputs unchanged) or a clear error
for non-causal variants; finite gradients; float32 equality with the dense
reference under the variant's own `allowed_mask` (exact variants) or its
stated tolerance against softmax (approximate ones); jit + bfloat16 at
N = 4096 without NaN; incremental decoding equal to the parallel causal
forward.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import attention
from lightjax.attention import AttentionKernel, dense
from tests.attention_inputs import padding_mask, qkv

TOY = "toy_previous_token"


class ToyPreviousToken(AttentionKernel):
  """Each query sees itself and its neighbours (only the previous one if causal).

  A real, minimal variant: a width-3 band computed densely, with a decode
  state holding the previous token's key and value.
  """

  supports_decode = True

  def __init__(self, *, num_heads, head_dim, max_len, rngs, dtype=jnp.float32):
    del max_len, rngs, dtype
    self.num_heads, self.head_dim = num_heads, head_dim

  def allowed_mask(self, length, causal=False):
    i, j = np.arange(length)[:, None], np.arange(length)[None, :]
    return (i - j == 0) | (i - j == 1) | ((j - i == 1) & (not causal))

  def __call__(self, q, k, v, *, mask=None, causal=False, deterministic=True):
    del deterministic
    allowed = jnp.asarray(self.allowed_mask(q.shape[1], causal))
    return dense.dense_attention(q, k, v, mask=mask, allowed=allowed)

  def init_cache(self, batch_size, max_len, dtype=jnp.float32):
    shape = (batch_size, 1, self.num_heads, self.head_dim)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}

  def decode_step(self, q_Bx1xHxD, k_Bx1xHxD, v_Bx1xHxD, cache, index):
    k_Bx2xHxD = jnp.concatenate([cache["k"], k_Bx1xHxD], axis=1)
    v_Bx2xHxD = jnp.concatenate([cache["v"], v_Bx1xHxD], axis=1)
    visible_Bx2 = jnp.broadcast_to(jnp.array([index > 0, True]),
                                   (q_Bx1xHxD.shape[0], 2))
    out = dense.dense_attention(q_Bx1xHxD, k_Bx2xHxD, v_Bx2xHxD,
                                mask=visible_Bx2)
    return out, {"k": k_Bx1xHxD, "v": v_Bx1xHxD}


# Registered the way a user registers a variant, then collected below like
# every shipped one. It is taken out again right after collection, and put
# back only while this module's tests run (fixture below), so other test
# modules see the registry as shipped.
attention.register(TOY)(ToyPreviousToken)
VARIANTS = attention.names()
attention.VARIANTS.unregister(TOY)


@pytest.fixture(autouse=True, scope="module")
def _toy_registered():
  attention.register(TOY)(ToyPreviousToken)
  yield
  attention.VARIANTS.unregister(TOY)


B, L, H, D = 2, 300, 2, 16  # L: several blocks of every pattern's default size
LENGTHS = (300, 183)        # per-row real tokens (row 1 padded)


def _cls(name):
  return attention.get(name)


def _kernel(name, max_len=L, seed=0, num_heads=H, head_dim=D):
  return attention.build(name, {}, num_heads=num_heads, head_dim=head_dim,
                         max_len=max_len, rngs=nnx.Rngs(seed))


def _causal_cases(name):
  return [False, True] if _cls(name).supports_causal else [False]


def _run(kernel, q, k, v, mask=None, causal=False):
  return jax.jit(lambda q, k, v, m: kernel(q, k, v, mask=m, causal=causal))(
      q, k, v, mask)


def test_toy_variant_is_collected_like_a_shipped_one():
  assert TOY in VARIANTS
  assert {"softmax", "linear", "performer", "linformer", "local", "strided",
          "fixed", "bigbird", "longformer", "none"} <= set(VARIANTS)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16],
                         ids=["f32", "bf16"])
@pytest.mark.parametrize("name", VARIANTS)
def test_output_shape_and_dtype(name, dtype):
  kernel = _kernel(name)
  q, k, v = qkv(0, B, L, H, D, dtype=dtype)
  for causal in _causal_cases(name):
    out = _run(kernel, q, k, v, padding_mask(LENGTHS, L), causal)
    assert out.shape == (B, L, H, D) and out.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(out.astype(jnp.float32))))


@pytest.mark.parametrize("name", VARIANTS)
def test_padded_keys_change_nothing(name):
  kernel = _kernel(name)
  q, k, v = qkv(1, B, L, H, D)
  mask = padding_mask(LENGTHS, L)
  pad_BxLx1x1 = ~mask[:, :, None, None]
  noise_k, noise_v = (10.0 * x for x in qkv(2, B, L, H, D)[1:])
  k2 = jnp.where(pad_BxLx1x1, noise_k, k)
  v2 = jnp.where(pad_BxLx1x1, noise_v, v)
  real_BxLx1x1 = mask[:, :, None, None]
  for causal in _causal_cases(name):
    out = _run(kernel, q, k, v, mask, causal)
    out2 = _run(kernel, q, k2, v2, mask, causal)
    np.testing.assert_allclose(jnp.where(real_BxLx1x1, out2, 0),
                               jnp.where(real_BxLx1x1, out, 0), atol=1e-5,
                               err_msg=f"{name} causal={causal}")


@pytest.mark.parametrize("name", VARIANTS)
def test_no_causal_leak(name):
  kernel = _kernel(name)
  q, k, v = qkv(3, B, L, H, D)
  if not _cls(name).supports_causal:
    with pytest.raises(ValueError, match="cannot be causal"):
      _run(kernel, q, k, v, None, True)
    return
  out = _run(kernel, q, k, v, None, True)
  for t in (1, 64, 150, L - 1):  # block starts, middles and the last token
    later = (jnp.arange(L) >= t)[None, :, None, None]
    q2, k2, v2 = (jnp.where(later, x + 3.0 * y, x)
                  for x, y in zip((q, k, v), qkv(4 + t, B, L, H, D)))
    out2 = _run(kernel, q2, k2, v2, None, True)
    np.testing.assert_allclose(out2[:, :t], out[:, :t], atol=1e-6,
                               err_msg=f"{name}: token {t} leaked backwards")


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_are_finite(name):
  kernel = _kernel(name)
  q, k, v = qkv(5, B, L, H, D)
  mask = padding_mask(LENGTHS, L)
  cot = qkv(6, B, L, H, D)[0]
  for causal in _causal_cases(name):
    grads = jax.jit(jax.grad(
        lambda q, k, v: jnp.sum(kernel(q, k, v, mask=mask, causal=causal)
                                * cot), argnums=(0, 1, 2)))(q, k, v)
    for g in grads:
      assert bool(jnp.all(jnp.isfinite(g))), f"{name} causal={causal}"


@pytest.mark.parametrize("name", VARIANTS)
def test_matches_dense_reference_or_stated_softmax_tolerance(name):
  cls = _cls(name)
  kernel = _kernel(name)
  mask = padding_mask(LENGTHS, L)
  real_BxLx1x1 = mask[:, :, None, None]
  q, k, v = qkv(11, B, L, H, D)
  has_dense_form = kernel.dense_equivalent(q, k, v, mask=mask) is not None
  if not (cls.exact or has_dense_form or cls.softmax_tolerance is not None):
    pytest.skip(f"{name} declares no exactness, dense form or softmax"
                " tolerance; its own test file checks its formula")
  for causal in _causal_cases(name):
    if has_dense_form:  # float32 equality with its explicit O(L S) form
      np.testing.assert_allclose(
          jnp.where(real_BxLx1x1, _run(kernel, q, k, v, mask, causal), 0),
          jnp.where(real_BxLx1x1, kernel.dense_equivalent(
              q, k, v, mask=mask, causal=causal), 0),
          atol=2e-5, err_msg=f"{name} causal={causal} vs its dense form")
    if cls.exact:
      q, k, v = qkv(7, B, L, H, D)
      want = dense.dense_attention(
          q, k, v, mask=mask, allowed=kernel.allowed_mask(L, causal))
      np.testing.assert_allclose(
          _run(kernel, q, k, v, mask, causal), want, atol=2e-5,
          err_msg=f"{name} causal={causal} vs its dense-mask reference")
    elif cls.softmax_tolerance is not None:
      # Approximates softmax: mean abs error, q/k of std 0.5 (base.py).
      q, k, v = qkv(8, B, L, H, D, scale=0.5)
      want = dense.dense_attention(q, k, v, mask=mask, causal=causal)
      abs_err = jnp.abs(jnp.where(real_BxLx1x1,
                                  _run(kernel, q, k, v, mask, causal) - want, 0))
      err = abs_err.sum() / (mask.sum() * H * D)
      assert err <= cls.softmax_tolerance, (name, causal, float(err))


@pytest.mark.parametrize("name", VARIANTS)
def test_bf16_long_sequence_is_finite(name):
  n = 4096
  kernel = _kernel(name, max_len=n, num_heads=1, head_dim=64)
  q, k, v = qkv(9, 1, n, 1, 64, dtype=jnp.bfloat16)
  mask = padding_mask([n - 100], n)
  for causal in _causal_cases(name):
    out = _run(kernel, q, k, v, mask, causal)
    assert out.dtype == jnp.bfloat16
    assert bool(jnp.all(jnp.isfinite(out.astype(jnp.float32)))), (name, causal)


@pytest.mark.parametrize("name", VARIANTS)
def test_decode_equals_parallel_causal_forward(name):
  cls = _cls(name)
  if not cls.supports_decode:
    kernel = _kernel(name)
    with pytest.raises(NotImplementedError, match="no incremental decoding"):
      kernel.init_cache(B, 8)
    return
  n = 80  # more than one chunk of the chunked causal forms (64 by default)
  kernel = _kernel(name, max_len=n)
  q, k, v = qkv(10, B, n, H, D)
  want = _run(kernel, q, k, v, None, True)

  @jax.jit
  def decode(q, k, v):
    def step(cache, t):
      xs = [jax.lax.dynamic_slice_in_dim(x, t, 1, axis=1) for x in (q, k, v)]
      out_Bx1xHxD, cache = kernel.decode_step(*xs, cache, t)
      return cache, out_Bx1xHxD[:, 0]
    _, out_LxBxHxD = jax.lax.scan(step, kernel.init_cache(B, n),
                                  jnp.arange(n))
    return jnp.swapaxes(out_LxBxHxD, 0, 1)

  np.testing.assert_allclose(decode(q, k, v), want, atol=1e-5)


def _kernel_signature_ok(fn, first=("q", "k", "v")) -> list[str]:
  """Problems with `fn`'s signature against the one kernel signature."""
  params = list(inspect.signature(fn).parameters.values())
  if params and params[0].name == "self":
    params = params[1:]
  problems = []
  if [p.name for p in params[:3]] != list(first):
    problems.append(f"first arguments {[p.name for p in params[:3]]}")
  by_name = {p.name: p for p in params}
  for name, default in (("mask", None), ("causal", False)):
    p = by_name.get(name)
    if p is None or p.kind is not p.KEYWORD_ONLY or p.default is not default:
      problems.append(f"{name} is not keyword-only with default {default!r}")
  return problems


def test_every_kernel_has_the_one_signature():
  """(q, k, v, *, mask=None, causal=False, ...): functions and modules."""
  functions = [n for n in attention.__all__ if n.endswith("_attention")]
  assert len(functions) >= 11
  bad = {n: _kernel_signature_ok(getattr(attention, n)) for n in functions}
  bad.update({f"{n}.__call__": _kernel_signature_ok(_cls(n).__call__)
              for n in VARIANTS})
  assert not {n: p for n, p in bad.items() if p}
