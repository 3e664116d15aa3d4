"""The whole job, small: outputs, learning, resume determinism, NaN stop."""

import json
import re
import os
import shutil
import signal

import jax
import numpy as np
import pytest

from lightjax import resume, trainer, writers
from tests.helpers import load_config, read_jsonl, set_fields


def _config(data_dir, **overrides):
  c = load_config("configs/listops.py:tiny")
  c.data_dir = data_dir
  return set_fields(c, overrides)


def test_tiny_run_writes_everything_and_learns(tmp_path, data_dir):
  c = _config(data_dir, num_train_steps=60, log_every=10, eval_every=30,
              checkpoint_every=30, **{"optim.learning_rate": 3e-3})
  summary = trainer.train_and_evaluate(c, str(tmp_path))

  for name in ("metrics.jsonl", "summary.json", "config.json"):
    assert (tmp_path / name).exists(), name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["30", "60"]
  assert len(os.listdir(tmp_path / "best")) == 1

  recs = read_jsonl(tmp_path / "metrics.jsonl")
  train = [r for r in recs if r["split"] == "train"]
  assert [r["step"] for r in train] == [10, 20, 30, 40, 50, 60]
  for key in ("loss", "accuracy", "learning_rate", "steps_per_s",
              "examples_per_s", "elapsed_s"):
    assert key in train[0], key
  assert train[-1]["loss"] < train[0]["loss"] - 0.1  # it learns something
  assert {r["split"] for r in recs} == {"train", "validation", "test"}

  on_disk = json.loads((tmp_path / "summary.json").read_text())
  assert on_disk == json.loads(json.dumps(summary))
  for key in ("total", "attention", "embedding", "per_layer"):
    assert key in summary["num_params"]
  assert 0.0 <= summary["best_val_score"] <= 1.0
  assert 0.0 <= summary["test_accuracy"] <= 1.0
  assert summary["best_step"] in (30, 60)
  vals = {r["step"]: r["accuracy"] for r in recs if r["split"] == "validation"}
  assert summary["best_val_score"] == max(vals.values())
  assert summary["device"]["count"] == jax.device_count()
  assert summary["config_name"] == "listops:tiny"


def test_test_accuracy_comes_from_best_checkpoint(tmp_path, data_dir):
  """Scoring the best-validation model (not the last) is what LRA got wrong."""
  c = _config(data_dir, num_train_steps=30, eval_every=10, checkpoint_every=10)
  summary = trainer.train_and_evaluate(c, str(tmp_path))
  best = sorted(os.listdir(tmp_path / "best"))
  assert best == [str(summary["best_step"])]
  recs = read_jsonl(tmp_path / "metrics.jsonl")
  test = [r for r in recs if r["split"] == "test"][-1]
  assert test["best_step"] == summary["best_step"]


def test_resume_after_interrupt_matches_uninterrupted(tmp_path, data_dir,
                                                      monkeypatch):
  # Interrupt at step 7: not a log or checkpoint step, so the forced save,
  # the restored metric accumulator and best-val tracking all matter.
  kw = dict(num_train_steps=20, log_every=5, eval_every=7, checkpoint_every=10)
  straight = trainer.train_and_evaluate(_config(data_dir, **kw),
                                        str(tmp_path / "a"))

  # Deliver a real SIGTERM to this process when step 7's validation is written.
  original = writers.MetricWriter.write

  def write_then_signal(self, step, split, metrics):
    original(self, step, split, metrics)
    if split == "validation" and step == 7:
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(writers.MetricWriter, "write", write_then_signal)
  with pytest.raises(trainer.Interrupted) as info:
    trainer.train_and_evaluate(_config(data_dir, **kw), str(tmp_path / "b"))
  assert info.value.step == 7 and info.value.signum == signal.SIGTERM
  assert not (tmp_path / "b" / "summary.json").exists()
  monkeypatch.setattr(writers.MetricWriter, "write", original)

  resumed = trainer.train_and_evaluate(_config(data_dir, **kw),
                                       str(tmp_path / "b"))
  a = read_jsonl(tmp_path / "a" / "metrics.jsonl")
  b = read_jsonl(tmp_path / "b" / "metrics.jsonl")
  key = lambda r: (r["step"], r["split"])
  b_by_key = {key(r): r for r in b}
  assert sorted(b_by_key) == sorted(key(r) for r in a)
  for r in a:
    np.testing.assert_allclose(b_by_key[key(r)]["loss"], r["loss"], rtol=1e-5)
    assert b_by_key[key(r)]["accuracy"] == r["accuracy"]
  for k in ("best_val_score", "best_step", "test_accuracy", "test_loss"):
    np.testing.assert_allclose(resumed[k], straight[k], rtol=1e-5)


def test_nan_loss_stops_with_step_and_keeps_good_checkpoint(tmp_path, data_dir):
  # A learning rate of 1e30 overflows the weights after one Adam step.
  c = _config(data_dir, num_train_steps=20, log_every=1, checkpoint_every=1,
              eval_every=100, **{"optim.learning_rate": 1e30,
                                 "optim.warmup_steps": 1,
                                 "optim.grad_clip_norm": 0.0})
  with pytest.raises(FloatingPointError, match=r"at step (\d+)") as info:
    trainer.train_and_evaluate(c, str(tmp_path))
  bad = int(re.search(r"at step (\d+)", str(info.value)).group(1))
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))
  assert steps and max(steps) < bad
  assert not (tmp_path / "summary.json").exists()


def test_resume_when_best_is_newer_than_last_checkpoint(tmp_path, data_dir):
  """A hard kill can leave best/N without checkpoints/N; resuming must cope."""
  kw = dict(num_train_steps=20, log_every=5, eval_every=5, checkpoint_every=5,
            keep_checkpoints=5)
  first = trainer.train_and_evaluate(_config(data_dir, **kw), str(tmp_path))
  # Drop every train checkpoint from the best step on, and the summary, as if
  # killed right after best/ was written.
  for step in os.listdir(tmp_path / "checkpoints"):
    if int(step) >= first["best_step"]:
      shutil.rmtree(tmp_path / "checkpoints" / step)
  (tmp_path / "summary.json").unlink()
  again = trainer.train_and_evaluate(_config(data_dir, **kw), str(tmp_path))
  assert again["best_step"] == first["best_step"]
  assert again["best_val_score"] == first["best_val_score"]
  assert again["test_accuracy"] == first["test_accuracy"]


def test_resume_refuses_a_different_model(tmp_path, data_dir):
  kw = dict(num_train_steps=10, eval_every=10, checkpoint_every=10)
  trainer.train_and_evaluate(_config(data_dir, **kw), str(tmp_path))
  with pytest.raises(ValueError, match="model differ"):
    trainer.train_and_evaluate(
        _config(data_dir, **kw, **{"model.num_layers": 3}), str(tmp_path))


def test_resume_check_fills_fields_an_older_config_json_lacks():
  """A config.json from before a model field existed resumes (the field's
  default is what the older code built); other variants' options and
  a changed chosen option are told apart."""
  now = json.loads(json.dumps(load_config("configs/listops.py:tiny").to_dict()))
  old = json.loads(json.dumps(now))
  for field in ("norm_position", "activation", "layer_norm_eps", "pooler"):
    old["model"].pop(field, None)
  old["model"]["attention"].pop("none", None)  # variant added later
  old["model"]["attention"]["linear"]["chunk_size"] = 7  # not the chosen one
  view = resume.view
  assert view(old)["model"] == view(now)["model"]
  old["model"]["attention"]["softmax"]["implementation"] = "einsum"
  assert view(old)["model"] != view(now)["model"]
