"""The launcher as users run it: config errors, Ctrl-C + resume, 8 fake devices."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lightjax import attention, config_lib
from tests.helpers import REPO, load_config, read_jsonl, set_fields


def _run(args, data_dir, env=None, **kw):
  env = {**os.environ, "LIGHTJAX_DATA_DIR": data_dir, **(env or {})}
  return subprocess.run([sys.executable, "-m", "lightjax.train", *args],
                        cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300, **kw)


def test_unknown_attention_name_lists_valid_ones(tmp_path, data_dir):
  r = _run(["--config", "configs/listops.py:tiny", "--workdir", str(tmp_path),
            "--config.model.attention.name=nope"], data_dir)
  assert r.returncode != 0
  assert "nope" in r.stderr
  for name in attention.names():
    assert name in r.stderr
  assert not os.path.exists(tmp_path / "checkpoints")


def test_unknown_config_key_lists_valid_fields(tmp_path, data_dir):
  r = _run(["--config", "configs/listops.py:tiny", "--workdir", str(tmp_path),
            "--config.model.nosuchkey=1"], data_dir)
  assert r.returncode == 2
  assert "nosuchkey" in r.stderr
  assert "num_layers" in r.stderr and "embed_dim" in r.stderr


def test_unknown_config_argument_lists_variants(tmp_path, data_dir):
  r = _run(["--config", "configs/listops.py:bogus", "--workdir", str(tmp_path)],
           data_dir)
  assert r.returncode != 0
  assert "bogus" in r.stderr and "softmax" in r.stderr and "tiny" in r.stderr


def test_wrong_type_fails(tmp_path, data_dir):
  r = _run(["--config", "configs/listops.py:tiny", "--workdir", str(tmp_path),
            "--config.model.num_layers=two"], data_dir)
  assert r.returncode != 0 and "num_layers" in r.stderr


def _stderr_lines(r):
  return [l for l in r.stderr.splitlines() if l.strip()]


def test_bad_flag_value_is_one_line(tmp_path, data_dir):
  """absl's parser error was a 44-line traceback; now one line, exit 2."""
  r = _run(["--config", "configs/listops.py:tiny", "--workdir", str(tmp_path),
            "--config.num_train_steps=abc"], data_dir)
  assert r.returncode == 2
  assert _stderr_lines(r) == ["lightjax.train: bad value for"
                              " --config.num_train_steps: expected int, got"
                              " 'abc'"], r.stderr
  r = _run(["--config", "configs/listops.py:tiny"], data_dir)
  assert r.returncode == 2
  assert _stderr_lines(r) == ["lightjax.train: missing required flag"
                              " --workdir"], r.stderr
  assert not os.listdir(tmp_path)


def test_unusable_workdir_is_one_line(tmp_path, data_dir):
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  for workdir, why in ((a_file, "is a file, not a directory"),
                       (a_file / "run", "cannot be created: Not a directory")):
    r = _run(["--config", "configs/listops.py:tiny", "--workdir", str(workdir)],
             data_dir)
    assert r.returncode == 2
    assert _stderr_lines(r) == [f"lightjax.train: --workdir {workdir} {why}"], \
        r.stderr


@pytest.mark.parametrize("field,value,message", [
    ("model.attention.softmax.implementation", "bogus",
     "unknown softmax implementation 'bogus'; valid: auto, xla, cudnn, einsum"),
    ("model.attention.local.weighting", "x",
     "unknown local weighting 'x'; valid: softmax, uniform_sqrt"),
    ("model.attention.linformer.sharing", "heads",
     "unknown linformer sharing 'heads'; valid: none, kv, layer"),
    ("model.attention.linear.feature_map", "tanh",
     "unknown linear feature_map 'tanh'; valid: elu, relu, softplus"),
    ("model.attention.performer.num_features", 0,
     "option num_features must be an integer >= 1, got 0"),
    ("model.pool", "sum", "unknown pool 'sum'; valid: cls, first, max, mean"),
    ("model.pos_embedding", "rope",
     "unknown position embedding 'rope'; valid: learned, sinusoidal"),
])
def test_bad_option_values_fail_validation(field, value, message):
  """Checked before anything is built, with the valid values listed."""
  c = set_fields(load_config("configs/listops.py:tiny"), {field: value})
  if ".attention." in field:
    c.model.attention.name = field.split(".")[-2]
  with pytest.raises(ValueError) as e:
    config_lib.validate(c)
  assert message in str(e.value)


def test_bad_option_value_is_one_line_and_writes_nothing(tmp_path, data_dir):
  workdir = tmp_path / "run"
  r = _run(["--config", "configs/listops.py:tiny", "--workdir", str(workdir),
            "--config.model.attention.softmax.implementation=bogus"], data_dir)
  assert r.returncode == 2
  assert _stderr_lines(r) == [
      "lightjax.train: invalid config: unknown softmax implementation"
      " 'bogus'; valid: auto, xla, cudnn, einsum"], r.stderr
  assert not workdir.exists()


def test_validate_rejects_bad_values():
  c = load_config("configs/listops.py:tiny")
  c.model.dropout_rate = 1.5
  with pytest.raises(ValueError, match="dropout_rate"):
    config_lib.validate(c)
  c = load_config("configs/listops.py:tiny")
  c.optim.schedule = "warp"
  with pytest.raises(ValueError, match="cosine.*rsqrt"):
    config_lib.validate(c)


def test_sigint_saves_and_rerun_resumes(tmp_path, data_dir):
  """Ctrl-C (SIGINT) mid-run: a checkpoint, its one line once (issue 20
  item 9), exit 130; the rerun resumes. SIGTERM takes the same path
  (`PreemptionGuard`): test_trainer sends it in process, test_sweep to a
  sweep's trial."""
  args = ["--config", "configs/listops.py:tiny", "--workdir", str(tmp_path),
          "--config.num_train_steps=300", "--config.log_every=10",
          "--config.checkpoint_every=500", "--config.eval_every=1000"]
  env = {**os.environ, "LIGHTJAX_DATA_DIR": data_dir}
  proc = subprocess.Popen([sys.executable, "-m", "lightjax.train", *args],
                          cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  metrics = tmp_path / "metrics.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline:  # wait until it is training, then stop it
    if metrics.exists() and len(read_jsonl(metrics)) >= 2:
      break
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.1)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGINT, err
  steps = [int(s) for s in os.listdir(tmp_path / "checkpoints")]
  assert len(steps) == 1 and 0 < steps[0] < 300
  assert err.strip().splitlines() == [  # once, and nothing else
      f"lightjax.train: interrupted by signal {int(signal.SIGINT)} at step"
      f" {steps[0]}; a checkpoint was saved, rerun the same command to"
      " resume"], err
  assert not (tmp_path / "summary.json").exists()

  r = _run(args, data_dir)
  assert r.returncode == 0, r.stderr
  assert f"Resumed from {tmp_path}/checkpoints at step {steps[0]}" in r.stdout
  train = [x for x in read_jsonl(metrics) if x["split"] == "train"]
  first_after = [x["step"] for x in train if x["step"] > steps[0]][0]
  assert first_after <= steps[0] + 10  # continued, not restarted from 0
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["num_train_steps"] == 300
