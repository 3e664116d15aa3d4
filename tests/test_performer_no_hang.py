"""Performer training never hangs: many real train steps under a timeout.

The bug this guards against: with redraw=True every layer drew orthogonal
features with a batched `jnp.linalg.qr` inside the jitted train step. On a
2-core CPU, two such LAPACK custom calls (jaxlib orgqr -> ParallelBatchMap ->
BlockingCounter::Wait) scheduled concurrently deadlock XLA's CPU thread pool,
and training stops forever without an error (a 4-layer head-dim-64 model hung
within its first 200 steps on 2 of 2 tries). `draw_projection` now uses
Gram-Schmidt in plain jnp ops (see performer.py).

A hang cannot be caught in-process, so the steps run in a subprocess with a
timeout (the conftest's cheaper XLA flags are inherited through the
environment), and a second test checks the cause directly: the lowered train
step has no LAPACK custom call.
"""

import functools
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import config_lib, models, objectives, optim, steps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LENGTH, BATCH, VOCAB, CLASSES = 64, 2, 16, 10
STEPS = 100
TIMEOUT_S = 240


def _train_setup(num_steps):
  """A 4-layer, head-dim-64 Performer (redraw on) classifier's train step.

  The trainer's own `train_step`, split and jitted with donation as in
  `trainer.train_and_evaluate`; returns (jitted step, state).
  """
  cfg = config_lib.base_config()
  cfg.model.num_layers = 4
  cfg.model.num_heads = 2
  cfg.model.head_dim = 64
  cfg.model.attention = config_lib.attention_config("performer")
  assert cfg.model.attention.performer.redraw
  model = models.build_model(cfg.model, vocab_size=VOCAB, num_classes=CLASSES,
                             max_len=LENGTH,
                             rngs=nnx.Rngs(params=0, dropout=1))
  tx, _ = optim.make_optimizer(cfg.optim, num_steps)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  gd_model, model_state = nnx.split(model)
  gd_opt, opt_state = nnx.split(opt)
  graphdefs = {"model": gd_model, "opt": gd_opt}
  state = {"model": model_state, "opt": opt_state}
  step = jax.jit(functools.partial(steps.train_step, graphdefs,
                                   objectives.get("classification")),
                 donate_argnums=(0, 2))
  return step, state


def _batch(rng):
  return {"inputs": jnp.asarray(rng.integers(1, VOCAB, (BATCH, LENGTH)),
                                jnp.int32),
          "targets": jnp.asarray(rng.integers(0, CLASSES, (BATCH,)),
                                 jnp.int32),
          "weights": jnp.ones((BATCH,), jnp.float32)}


def train(num_steps):
  """Runs `num_steps` steps (the subprocess entry point); prints a summary."""
  step, state = _train_setup(num_steps)
  rng = np.random.default_rng(0)
  acc = steps.zero_metrics()
  for _ in range(num_steps):
    state, acc = step(state, _batch(rng), acc)
  acc = jax.device_get(acc)
  print(f"steps={int(acc['steps'])} first_bad_step={int(acc['first_bad_step'])}"
        f" loss={float(acc['loss_sum'] / acc['count']):.4f}")


def test_train_step_has_no_lapack_call():
  step, state = _train_setup(STEPS)
  text = step.lower(state, _batch(np.random.default_rng(0)),
                    steps.zero_metrics()).as_text()
  targets = re.findall(r"custom_call\s*@([\w.]+)", text)
  assert not [t for t in targets if "lapack" in t.lower()], targets


@pytest.mark.slow
def test_performer_training_does_not_hang():
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO,
                                                   env.get("PYTHONPATH")]))
  code = f"from tests.test_performer_no_hang import train; train({STEPS})"
  try:
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired as e:
    pytest.fail(f"{STEPS} Performer train steps did not finish in {TIMEOUT_S}"
                f" s (hung?); stderr so far: {e.stderr or ''!r}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"steps={STEPS} first_bad_step=-1" in proc.stdout, proc.stdout
