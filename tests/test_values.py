"""Values out of range are refused at start, one line each, nothing written
(issue 20, item 8): the run's fields (`config_lib.validate`), each task's own
(`data.check_task_config`), shrink's step count and the flags of sample and
export. One subprocess run shows the train entry point's line and exit code.
"""

import os
import subprocess
import sys

import pytest
from flax import nnx

from lightjax import config_lib, data, export, init_from, models, sample
from lightjax.shrink import run as shrink_run
from tests.helpers import REPO, load_config, set_fields

NAN, INF = float("nan"), float("inf")


def _one_line_error(fn, *args, **kw) -> str:
  with pytest.raises(ValueError) as e:
    fn(*args, **kw)
  message = str(e.value)
  assert "\n" not in message and message, message
  return message


@pytest.fixture(scope="module")
def tiny():
  return load_config("configs/listops.py:tiny")


def test_presets_pass(tiny):
  config_lib.validate(tiny)
  config_lib.check_values(set_fields(tiny.copy_and_resolve_references(),
                                     {"num_train_steps": 0}),
                          min_train_steps=0)


@pytest.mark.parametrize("field,value,words", [
    ("optim.learning_rate", NAN, "finite number >= 0"),
    ("optim.learning_rate", INF, "finite number >= 0"),
    ("optim.learning_rate", -1e-3, "finite number >= 0"),
    ("optim.weight_decay", NAN, "finite number >= 0"),
    ("optim.weight_decay", INF, "finite number >= 0"),
    ("optim.weight_decay", -0.1, "finite number >= 0"),
    ("optim.warmup_steps", -1, "integer >= 0"),
    ("optim.b1", -0.1, "[0, 1)"),
    ("optim.b1", 1.0, "[0, 1)"),
    ("optim.b2", 1.5, "[0, 1)"),
    ("optim.b2", NAN, "[0, 1)"),
    ("optim.grad_clip_norm", -1.0, ">= 0"),
    ("optim.grad_clip_norm", INF, ">= 0"),
    ("seed", -1, "[0, 2**32)"),
    ("seed", 2**32, "[0, 2**32)"),
    ("num_train_steps", 0, ">= 1"),
    ("batch_size", 0, "positive"),
    ("task.max_length", 0, "max_length"),
    ("task.num_train", 0, ">= 1"),
    ("task.num_validation", 0, ">= 1"),
    ("task.num_test", -2, ">= 1"),
    ("task.seed", -1, ">= 0"),
])
def test_run_value_out_of_range(tiny, field, value, words):
  c = set_fields(tiny.copy_and_resolve_references(), {field: value})
  message = _one_line_error(config_lib.validate, c)
  assert field.split(".")[-1] in message and words in message, message


@pytest.mark.parametrize("task,changes,words", [
    ("mqar", {"num_train": 0}, "mqar num_train must be an integer >= 1"),
    ("mqar", {"seq_len": 0}, "seq_len"),
    ("mqar", {"seed": -1}, "mqar seed must be an integer >= 0"),
    ("lra_pathfinder", {"num_train": 0}, "num_train must be an integer >= 1"),
    ("lra_pathfinder", {"seed": -1}, "seed must be an integer >= 0"),
    ("lra_retrieval", {"max_length": 0}, "max_length must be an integer >= 1"),
    ("lra_retrieval", {"seed": -1}, "seed must be an integer >= 0"),
    ("lra_text", {"max_length": 0}, "max_length must be an integer >= 1"),
    ("lra_text", {"seed": -1}, "seed must be an integer >= 0"),
    ("lra_image", {"seed": -1}, "seed must be an integer >= 0"),
    ("lra_image", {"validation_fraction": 1.0}, "validation_fraction"),
])
def test_task_value_out_of_range(task, changes, words):
  """Each task's own check runs without building or reading anything."""
  config = {"name": task, **changes}
  message = _one_line_error(data.check_task_config, config)
  assert words in message, message
  data.check_task_config({"name": task})  # the defaults pass


def test_train_entry_point_one_line_exit_2_nothing_written(tmp_path):
  workdir = tmp_path / "run"
  env = {**os.environ, "LIGHTJAX_DATA_DIR": str(tmp_path / "data")}
  r = subprocess.run(
      [sys.executable, "-m", "lightjax.train", "--config",
       "configs/listops.py:tiny", "--workdir", str(workdir),
       "--config.optim.learning_rate=nan"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert r.returncode == 2, r.stderr
  assert lines == ["lightjax.train: invalid config: config.optim.learning_rate"
                   " must be a finite number >= 0, got nan"], r.stderr
  assert not workdir.exists()
  assert not (tmp_path / "data").exists()


def test_shrink_refuses_negative_steps_before_anything(tmp_path):
  c = load_config("configs/shrink/drop_layers.py:tiny")
  c.num_train_steps = -3
  c.init_from = str(tmp_path / "no_teacher")  # never read: refused before
  message = _one_line_error(shrink_run.shrink_and_evaluate, c,
                            str(tmp_path / "out"))
  assert message == ("config.num_train_steps must be an integer >= 0, got"
                     " -3")
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags,words", [
    ((100, 0.8, -3, 0), "--top_k must be >= 0"),
    ((100, -1.0, 0, 0), "--temperature must be a finite number >= 0"),
    ((100, NAN, 0, 0), "--temperature must be a finite number >= 0"),
    ((100, 0.8, 0, -1), "--seed must be in [0, 2**32)"),
    ((-1, 0.0, 0, 0), "--max_new_tokens must be >= 0"),
])
def test_sample_flags(flags, words):
  assert words in _one_line_error(sample.check_flags, *flags)


def test_sample_flags_in_range():
  sample.check_flags(100, 0.8, 40, 0)
  sample.check_top_k(40, 257)
  assert "at most the model's vocabulary size 257" in _one_line_error(
      sample.check_top_k, 300, 257)


def test_export_length_checked_before_writing(tmp_path):
  c = load_config("configs/listops.py:tiny")
  model = models.build_model(c.model, vocab_size=20, num_classes=10,
                             max_len=32, rngs=nnx.Rngs(params=1, dropout=2))
  run = str(tmp_path / "model")
  init_from.save_model(run, model, c.model, vocab_size=20, num_classes=10,
                       max_len=32, pad_id=0)
  out = tmp_path / "out"
  for length, words in ((100_000, "at most the model's max_len 32"),
                        (-1, "--length must be >= 0")):
    message = _one_line_error(export.export_run, run, "stablehlo", str(out),
                              length=length, check=False)
    assert words in message, message
    assert not out.exists()
