"""Block-sparse attention equals dense attention under the pattern's mask.

The kernels in `lightjax.attention.sparse` form only the blocks a pattern
keeps; here each one is checked against `dense.dense_attention` with the
dense [L, L] mask of `sparse_patterns` (written independently from the paper
definitions), and their compiled memory is checked to really be sub-quadratic.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import attention
from lightjax.attention import dense
from lightjax.attention import sparse
from lightjax.attention import sparse_patterns as patterns
from tests.attention_inputs import padding_mask, qkv

H, D, MAX_LEN = 2, 8, 32
# Small blocks so that L = 32 has several blocks and the patterns are sparse.
VARIANTS = {
    "local": {"block_size": 8, "num_neighbor_blocks": 1},
    "strided": {"stride": 8},
    "fixed": {"stride": 8, "summary": 2},
    "bigbird": {"block_size": 4, "num_global_blocks": 1,
                "num_random_blocks": 2, "num_neighbor_blocks": 1},
    "longformer": {"window": 6, "num_global_tokens": 2, "block_size": 4},
}
NAMES = sorted(VARIANTS)
LENGTHS = (32, 29)  # A multiple and not a multiple of every block size.


def _kernel(name, max_len=MAX_LEN, weighting="softmax", seed=0, **options):
  opts = {**VARIANTS[name], "weighting": weighting, **options}
  return attention.build(name, opts, num_heads=H, head_dim=D,
                         max_len=max_len, rngs=nnx.Rngs(seed))


def _qkv(n, seed=0, batch=2):
  return qkv(seed, batch, n, H, D)


def _mask(n, seed=1):
  """[3, n]: row 0 no padding, row 1 a padded suffix, row 2 random holes.

  Sparse-specific on top of `padding_mask`: the holes in row 2 mask keys
  inside blocks and some global tokens / summary positions (token 0 always),
  which a padded suffix never reaches.
  """
  holes = np.random.default_rng(seed).random(n) < 0.7
  holes[0] = False
  return jnp.concatenate([padding_mask([n, n - 5], n),
                          jnp.asarray(holes)[None]])


# XLA's CPU compile dominates these tests: every program is compiled once, with
# cheap backend optimisation (tiny shapes; numerics are unaffected).
_FAST_COMPILE = {"xla_backend_optimization_level": 0,
                 "xla_llvm_disable_expensive_passes": True}


@functools.partial(jax.jit, static_argnames="causal",
                   compiler_options=_FAST_COMPILE)
def _dense_masked(q, k, v, mask, allowed, causal):
  return dense.dense_attention(q, k, v, mask=mask, causal=causal, allowed=allowed)


@functools.partial(jax.jit, static_argnames="causal",
                   compiler_options=_FAST_COMPILE)
def _dense_grads(q, k, v, mask, allowed, cot, causal):
  loss = lambda q, k, v: jnp.sum(dense.dense_attention(
      q, k, v, mask=mask, causal=causal, allowed=allowed) * cot)
  return jax.grad(loss, argnums=(0, 1, 2))(q, k, v)


def _dense(kernel, q, k, v, mask, causal):
  """The dense-mask reference under `kernel`'s pattern."""
  allowed = jnp.asarray(kernel.allowed_mask(q.shape[1], causal))
  return _dense_masked(q, k, v, mask, allowed, causal)


@functools.lru_cache(maxsize=None)
def _program(name, causal, full):
  """One jitted program per config with the outputs the checks below need.

  `full` adds the softmax gradients and the uniform_sqrt output.
  """
  soft, unif = _kernel(name), _kernel(name, weighting="uniform_sqrt")

  def run(q, k, v, mask, cot):
    fwd = lambda q, k, v: soft(q, k, v, mask=mask, causal=causal)
    outs = {}
    if full:  # Gradients of the scalar loss sum(out * cot) wrt q, k, v.
      outs["softmax"], vjp = jax.vjp(fwd, q, k, v)
      outs["grads"] = vjp(cot)
    else:
      outs["softmax"] = fwd(q, k, v)
    if full:
      outs["uniform"] = unif(q, k, v, mask=mask, causal=causal)
    return outs

  return jax.jit(run, compiler_options=_FAST_COMPILE)


def _uniform_sqrt_dense(allowed_LxS, mask_BxS, v):
  """out_i = sum_{j in Omega_i} v_j / sqrt(|Omega_i|), not normalised."""
  omega_BxLxS = allowed_LxS[None] & np.asarray(mask_BxS)[:, None]
  count_BxL = omega_BxLxS.sum(-1)
  out = np.einsum("bls,bshd->blhd", omega_BxLxS.astype(np.float32),
                  np.asarray(v))
  return out / np.sqrt(np.maximum(count_BxL, 1))[:, :, None, None]


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("name", NAMES)
def test_block_sparse_equals_dense_mask_reference(name, n, causal):
  """Outputs, uniform_sqrt, gradients and causality vs the dense-mask reference.

  The padding mask's row 0 has no padding, so each call covers the unpadded
  and padded cases; the mask=None path is covered by the small-max_len test.
  Gradients are checked at the length that is not a multiple of the block
  sizes (the harder case: internal padding), and uniform_sqrt there too.
  """
  kernel = _kernel(name)
  full = n % 8 != 0
  q, k, v = _qkv(n, batch=3)
  mask = _mask(n)
  cot = qkv(3, 3, n, H, D)[0]
  program = _program(name, causal, full)
  outs = program(q, k, v, mask, cot)
  out = outs["softmax"]
  assert out.shape == q.shape and out.dtype == q.dtype
  np.testing.assert_allclose(out, _dense(kernel, q, k, v, mask, causal),
                             atol=1e-5, rtol=1e-5)

  if full:
    allowed = kernel.allowed_mask(n, causal)
    np.testing.assert_allclose(outs["uniform"],
                               _uniform_sqrt_dense(allowed, mask, v),
                               atol=1e-5, rtol=1e-5, err_msg="uniform_sqrt")
    expected = _dense_grads(q, k, v, mask, jnp.asarray(allowed), cot, causal)
    for g, e, label in zip(outs["grads"], expected, "qkv"):
      assert np.isfinite(np.asarray(g)).all(), label
      np.testing.assert_allclose(g, e, atol=1e-4, rtol=1e-4,
                                 err_msg=f"d/d{label}")

  if causal:  # Perturbing tokens >= t changes nothing before t.
    t = n // 2 + 1
    bump = lambda x: x.at[:, t:].add(3.0)
    outs2 = program(bump(q), bump(k), bump(v), mask, cot)
    for key in outs:
      if key != "grads":
        np.testing.assert_allclose(outs2[key][:, :t], outs[key][:, :t],
                                   atol=1e-6, err_msg=key)
    assert not np.allclose(outs2["softmax"][0, t], out[0, t])


@pytest.mark.parametrize("name", NAMES)
def test_patterns_are_really_sparse(name):
  """The equality tests above would be vacuous on an all-True pattern."""
  for causal in (False, True):
    allowed = _kernel(name).allowed_mask(32, causal)
    full = np.tril(np.ones((32, 32), bool)) if causal else np.ones((32, 32))
    assert allowed.sum() < 0.85 * full.sum(), (name, causal, allowed.mean())


def test_public_functions_jit_and_match_modules():
  n = 29
  q, k, v = _qkv(n, seed=6, batch=3)
  mask = _mask(n)
  calls = {
      "local": functools.partial(attention.local_attention, block_size=8),
      "strided": functools.partial(attention.strided_attention, stride=8),
      "fixed": functools.partial(attention.fixed_attention, stride=8,
                                 summary=2),
      "longformer": functools.partial(attention.longformer_attention,
                                      window=6, num_global_tokens=2,
                                      block_size=4),
  }

  def run(q, k, v, mask):
    return {name: fn(q, k, v, mask=mask, causal=True)
            for name, fn in calls.items()}

  got = jax.jit(run, compiler_options=_FAST_COMPILE)(q, k, v, mask)
  for name in calls:
    want = _dense(_kernel(name), q, k, v, mask, True)
    np.testing.assert_allclose(got[name], want, atol=1e-5, err_msg=name)


def test_bigbird_function_draws_from_seed_or_takes_table():
  """Bidirectional with a seeded draw; causal with a given (traced) table."""
  n, bs = 29, 4
  q, k, v = _qkv(n, seed=7)
  # Repeats and window/global overlaps: each key must still count once.
  odd = jnp.asarray([[0, 5]] * 4 + [[3, 3]] * 4, jnp.int32)

  def run(q, k, v, table):
    fn = functools.partial(attention.bigbird_attention, block_size=bs)
    return (fn(q, k, v, num_random_blocks=2, seed=3),
            fn(q, k, v, random_blocks=table, causal=True))

  seeded, given = jax.jit(run, compiler_options=_FAST_COMPILE)(q, k, v, odd)
  drawn = patterns.bigbird_random_blocks(jax.random.key(3), 8, 2, 1, 1, False)
  for out, table, causal in ((seeded, drawn, False), (given, odd, True)):
    allowed = patterns.bigbird_mask(n, bs, 1, 1, np.asarray(table), causal)
    want = dense.dense_attention(q, k, v, causal=causal,
                                 allowed=jnp.asarray(allowed))
    np.testing.assert_allclose(out, want, atol=1e-5, err_msg=str(causal))


def test_bigbird_random_blocks_are_seeded_state_not_params():
  kernel = _kernel("bigbird", max_len=64, seed=0)
  assert not jax.tree.leaves(nnx.state(kernel, nnx.Param))
  assert isinstance(kernel.random_blocks, sparse.RandomBlocks)
  assert not isinstance(kernel.random_blocks, nnx.Param)
  table = np.asarray(kernel.random_blocks[...])
  again = np.asarray(_kernel("bigbird", max_len=64, seed=0).random_blocks[...])
  other = np.asarray(_kernel("bigbird", max_len=64, seed=1).random_blocks[...])
  np.testing.assert_array_equal(table, again)
  assert not np.array_equal(table, other)
  nb, (g, w) = 16, (1, 1)
  assert table.shape == (nb, 2)
  causal_table = np.asarray(kernel.causal_random_blocks[...])
  for i in range(nb):
    row = [j for j in table[i] if j >= 0]
    assert len(set(row)) == len(row) == (0 if i < g else 2)
    assert all(j >= g and abs(i - j) > w for j in row)
    past = [j for j in causal_table[i] if j >= 0]
    assert all(g <= j < i - w for j in past)
    assert len(past) == min(2, max(0, i - w - g)) * (i >= g)


@pytest.mark.parametrize("name", NAMES)
def test_default_options_work_for_small_max_len(name):
  """Registered defaults (blocks of 64) at max_len 100 and 16 < block size.

  Also the mask=None path, at a length that is not a multiple of the blocks.
  """
  options = attention.get(name).default_options()
  assert all(isinstance(o, (bool, int, float, str)) for o in options.values())
  kernels = {n: attention.build(name, {}, num_heads=1, head_dim=4, max_len=n,
                                rngs=nnx.Rngs(0)) for n in (100, 16)}
  cases = [(100, True), (16, False)]
  inputs = {n: qkv(8, 1, n, 1, 4) for n in kernels}

  def run(inputs):
    return [kernels[n](*inputs[n], causal=c) for n, c in cases]

  outs = jax.jit(run, compiler_options=_FAST_COMPILE)(inputs)
  for (n, causal), out in zip(cases, outs):
    want = _dense(kernels[n], *inputs[n], None, causal)
    np.testing.assert_allclose(out, want, atol=1e-5, err_msg=f"{n} {causal}")


def test_bad_options_raise():
  with pytest.raises(ValueError, match="weighting"):
    _kernel("local", weighting="uniform")
  q, k, v = _qkv(40)
  with pytest.raises(ValueError, match="max_len"):
    _kernel("bigbird")(q, k, v)


def test_paper_patterns_by_hand():
  # Child et al. 2019 fig. 3b, l = 3: row 7 sees 4..7 (window) and 1, 4, 7.
  assert set(np.flatnonzero(patterns.strided_mask(10, 3, True)[7])) == {
      1, 4, 5, 6, 7}
  # Fig. 3c, l = 4, c = 1: row 9 sees its block (8, 9) and summaries 3, 7.
  assert set(np.flatnonzero(patterns.fixed_mask(12, 4, 1, True)[9])) == {
      3, 7, 8, 9}
  # Longformer, w = 4, one global token: row 6 sees 0 and 4..8; row 0 all.
  lf = patterns.longformer_mask(12, 4, 1, False)
  assert set(np.flatnonzero(lf[6])) == {0, 4, 5, 6, 7, 8} and lf[0].all()


@functools.lru_cache(maxsize=None)
def _temp_bytes(fn, n):
  """Scratch bytes of the compiled forward at N=n, d=64, one head, batch 1."""
  x = jax.ShapeDtypeStruct((1, n, 1, 64), jnp.float32)
  return jax.jit(fn).lower(x, x, x).compile().memory_analysis(
  ).temp_size_in_bytes


_LOCAL = functools.partial(attention.local_attention, block_size=64)
_BIGBIRD = functools.partial(attention.bigbird_attention, block_size=64,
                             num_random_blocks=2)


def test_compiled_memory_is_far_below_dense():
  full = _temp_bytes(attention.softmax_attention, 4096)
  local = _temp_bytes(_LOCAL, 4096)
  bigbird = _temp_bytes(_BIGBIRD, 4096)
  print(f"\ntemp bytes at N=4096, d=64: softmax {full:,}, local {local:,},"
        f" bigbird {bigbird:,}")
  assert local < full / 4, (local, full)
  assert bigbird < full / 4, (bigbird, full)


def test_compiled_memory_grows_linearly():
  local = [_temp_bytes(_LOCAL, n) for n in (4096, 8192)]
  full = [_temp_bytes(attention.softmax_attention, n) for n in (4096, 8192)]
  print(f"\ntemp bytes N=4096 -> 8192: local {local[0]:,} -> {local[1]:,}"
        f" ({local[1] / local[0]:.2f}x), softmax {full[0]:,} ->"
        f" {full[1]:,} ({full[1] / full[0]:.2f}x)")
  assert local[1] < 2.5 * local[0]
  assert full[1] > 3.5 * full[0]
