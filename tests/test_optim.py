"""Schedules (LRA's rsqrt included) and what weight decay touches."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from lightjax import optim


def _cfg(**kw):
  c = dict(learning_rate=0.05, schedule="rsqrt", warmup_steps=1000,
           weight_decay=0.1, b1=0.9, b2=0.98, grad_clip_norm=1.0)
  c.update(kw)
  return ml_collections.ConfigDict(c)


def test_rsqrt_is_lra_warmup_then_inverse_sqrt():
  s = optim.make_schedule(_cfg(), total_steps=5000)
  t = np.array([1, 500, 1000, 4000])
  expected = 0.05 * np.minimum(1, t / 1000) / np.sqrt(np.maximum(t, 1000))
  got = np.array([float(s(i - 1)) for i in t])
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert got.argmax() == 2  # peak at the end of warm-up


@pytest.mark.parametrize("name", ["cosine", "linear", "constant"])
def test_warmup_schedules_rise_to_the_base_rate(name):
  s = optim.make_schedule(_cfg(schedule=name, warmup_steps=10, learning_rate=1.0), 100)
  assert float(s(0)) < 0.2 and abs(float(s(10)) - 1.0) < 1e-6


def test_unknown_schedule_lists_valid():
  with pytest.raises(ValueError, match="constant, cosine, linear, rsqrt"):
    optim.make_schedule(_cfg(schedule="nope"), 10)


def test_weight_decay_skips_biases_and_norms():
  model = nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)),
                         nnx.LayerNorm(4, rngs=nnx.Rngs(0)))
  tx, _ = optim.make_optimizer(
      _cfg(schedule="constant", warmup_steps=0, learning_rate=0.1,
           weight_decay=0.5), 10)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  before = nnx.clone(nnx.state(model, nnx.Param))
  zeros = jax.tree.map(jnp.zeros_like, before)
  opt.update(model, zeros)  # zero gradient: only weight decay moves params
  after = nnx.state(model, nnx.Param)
  assert not np.allclose(after["layers"][0]["kernel"][...], before["layers"][0]["kernel"][...])
  np.testing.assert_array_equal(after["layers"][0]["bias"][...], before["layers"][0]["bias"][...])
  np.testing.assert_array_equal(after["layers"][1]["scale"][...], before["layers"][1]["scale"][...])
