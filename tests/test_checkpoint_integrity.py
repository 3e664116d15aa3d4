"""Issue 20, items 1, 4, 5, 7: a save that fails, an unreadable best/,
flipped bytes, and metrics.jsonl records written twice.

One tiny run is trained once per module (`trained`); each test works on a
copy of it.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from absl import logging as absl_logging

from lightjax import checkpointing, failed_saves, init_from, trainer, writers
from tests.helpers import REPO, load_config, read_jsonl


def _config(data_dir):
  c = load_config("configs/listops.py:tiny")  # 20 steps, checkpoints 10, 20
  c.data_dir = data_dir
  return c


def _train_cli(workdir, data_dir, timeout=120):
  return subprocess.run(
      [sys.executable, "-m", "lightjax.train", "--config",
       "configs/listops.py:tiny", "--workdir", str(workdir)],
      cwd=REPO, env={**os.environ, "LIGHTJAX_DATA_DIR": data_dir},
      capture_output=True, text=True, timeout=timeout)


def _data_files(step_dir):
  """The tensorstore files that hold a checkpoint's array bytes."""
  return sorted(os.path.join(d, f) for d, _, fs in os.walk(step_dir / "state")
                for f in fs if os.path.basename(d) == "d")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
  workdir = tmp_path_factory.mktemp("trained")
  summary = trainer.train_and_evaluate(_config(data_dir), str(workdir))
  return workdir, summary


@pytest.fixture
def workdir(trained, tmp_path):
  w = tmp_path / "w"
  shutil.copytree(trained[0], w)
  return w


def test_checkpoints_path_that_is_a_file_stops_at_once(tmp_path, data_dir):
  """Item 1: the save failed in orbax's thread and the process never ended."""
  (tmp_path / "checkpoints").write_text("x\n")
  t = time.monotonic()
  r = _train_cli(tmp_path, data_dir, timeout=60)
  assert time.monotonic() - t < 60
  assert r.returncode == 2, r.stderr[-3000:]
  assert r.stderr.splitlines() == [
      f"lightjax.train: cannot save checkpoints: {tmp_path}/checkpoints is a"
      " file, not a directory; move it away or use another --workdir"
  ], r.stderr[-3000:]
  # Refused before any output: only the lock and the user's file.
  assert sorted(os.listdir(tmp_path)) == [".lock", "checkpoints"]


def test_save_failing_during_the_run_raises_one_line_error(tmp_path, data_dir,
                                                           monkeypatch, capfd,
                                                           caplog):
  """Item 1, at run time: checkpoints/ turns unusable after the start (a
  full disk would do the same); the failed background save stops the run
  with `CheckpointSaveFailed` (exit 2), naming the path and the cause, and
  is the only thing said: orbax's own ERROR records and tracebacks of it
  (from its save threads and its wait) are held back."""
  c = _config(data_dir)
  c.num_train_steps, c.eval_every, c.checkpoint_every = 10, 10, 5
  real = checkpointing.Checkpointer._save

  def sabotage(self, mgr, step, *a, **kw):
    if step == 5 and mgr is self.last:
      shutil.rmtree(mgr.directory)
      open(str(mgr.directory), "w").close()  # the directory is now a file
    return real(self, mgr, step, *a, **kw)
  monkeypatch.setattr(checkpointing.Checkpointer, "_save", sabotage)
  with pytest.raises(checkpointing.CheckpointSaveFailed) as info:
    trainer.train_and_evaluate(c, str(tmp_path))
  msg = str(info.value)
  assert "\n" not in msg and f"{tmp_path}/checkpoints" in msg, msg
  assert "Not a directory" in msg or "NotADirectory" in msg, msg
  assert info.value.exit_code == 2
  err = capfd.readouterr().err
  assert "Traceback" not in err and "orbax" not in err, err
  assert not [r for r in caplog.records if r.levelname == "ERROR"]
  assert not any(isinstance(f, failed_saves.HeldErrors) for f in
                 absl_logging.get_absl_logger().filters)  # removed


def test_flipped_byte_in_any_array_file_is_detected(workdir):
  """Item 5: one byte flipped anywhere in an array data file (seeded
  offsets, every file) never loads silently: the restore fails (orbax's
  decoder, or a checksum mismatch where the bytes still decode), or the
  byte held no array data and every array restores bit-identical.
  The arrays are zstd-compressed, so their bytes cannot be addressed one
  by one; the flips that decode fine are the silent corruption the issue
  saw, and only the checksums catch them."""
  ckpts = str(workdir / "checkpoints")
  original, _ = checkpointing.restore_any(ckpts, 20)
  want = {k: np.asarray(jax.random.key_data(v) if jax.dtypes.issubdtype(
      v.dtype, jax.dtypes.prng_key) else v)
          for k, v in checkpointing._flat(original).items()}  # pylint: disable=protected-access
  files = _data_files(workdir / "checkpoints" / "20")
  assert files
  rng = np.random.default_rng(0)
  outcomes = {"decode error": 0, "checksum mismatch": 0, "unused byte": 0}
  for path in files:
    blob = bytearray(open(path, "rb").read())
    for offset in rng.choice(len(blob), size=min(len(blob), 4), replace=False):
      flipped = bytearray(blob)
      flipped[offset] ^= 1 << int(rng.integers(8))
      with open(path, "wb") as f:
        f.write(flipped)
      try:
        tree, _ = checkpointing.restore_any(ckpts, 20)
      except checkpointing.ChecksumMismatch:
        outcomes["checksum mismatch"] += 1
        continue
      except Exception:  # pylint: disable=broad-except
        outcomes["decode error"] += 1
        continue
      finally:
        with open(path, "wb") as f:
          f.write(blob)
      got = checkpointing._flat(tree)  # pylint: disable=protected-access
      assert got.keys() == want.keys()
      for k, v in want.items():
        g = got[k]
        if jax.dtypes.issubdtype(g.dtype, jax.dtypes.prng_key):
          g = jax.random.key_data(g)
        assert np.array_equal(np.asarray(g), v), (path, offset, k)
      outcomes["unused byte"] += 1
  print(outcomes)
  assert outcomes["checksum mismatch"] > 0, outcomes
  checkpointing.restore_any(ckpts, 20)  # the restored files read again


def test_checksum_mismatch_is_an_unreadable_checkpoint(workdir, capfd):
  """Item 5 on resume: the latest checkpoint with bytes that still decode
  but differ is set aside like an unreadable one, and step 10 is used."""
  tree, _ = checkpointing.restore_any(str(workdir / "checkpoints"), 20)
  target = checkpointing.abstract(tree)
  step = workdir / "checkpoints" / "20"
  for path in _data_files(step):  # the first flip the checksums alone see
    blob = bytearray(open(path, "rb").read())
    blob[len(blob) // 2] ^= 0x01
    with open(path, "wb") as f:
      f.write(blob)
    try:
      checkpointing.restore_any(str(workdir / "checkpoints"), 20)
    except checkpointing.ChecksumMismatch:
      break
    except Exception:  # pylint: disable=broad-except
      pass
    blob[len(blob) // 2] ^= 0x01
    with open(path, "wb") as f:
      f.write(blob)
  else:
    pytest.fail("no single flipped byte decoded")
  capfd.readouterr()
  ckpt = checkpointing.Checkpointer(str(workdir))
  try:
    restored_step, _, _ = ckpt.restore_latest(target)
  finally:
    ckpt.close()
  assert restored_step == 10
  err = capfd.readouterr().err.splitlines()
  assert len(err) == 1 and "ChecksumMismatch" in err[0], err
  assert (workdir / "unreadable_checkpoints" / "20").is_dir()


def test_unreadable_best_falls_back_everywhere(workdir, trained, data_dir,
                                               capfd):
  """Item 4: best/'s data files zeroed. Readers (export, sample,
  save_pretrained, shrink all read through init_from) warn once and use
  the newest train checkpoint; a rerun of the finished run sets best/
  aside with one warning and scores the test split on its final state.
  Item 7: that rerun (of a finished run) leaves each (step, split) once in
  metrics.jsonl: its validation and test records replace the old ones."""
  best = workdir / "best" / "20"
  assert best.is_dir(), os.listdir(workdir / "best")
  for path in _data_files(best):
    with open(path, "r+b") as f:
      f.write(b"\0" * os.path.getsize(path))
  capfd.readouterr()
  weights = init_from.read_workdir_weights(str(workdir))
  err = capfd.readouterr().err.splitlines()
  assert len(err) == 1 and err[0].startswith(
      f"warning: checkpoint {workdir}/best/20 ("), err
  assert err[0].endswith(f"is unreadable; using {workdir}/checkpoints/20"
                         " instead"), err
  assert weights
  assert (workdir / "best" / "20").is_dir()  # a reader moves nothing

  before_records = read_jsonl(workdir / "metrics.jsonl")
  before = [(r["step"], r["split"]) for r in before_records]
  r = _train_cli(workdir, data_dir)
  assert r.returncode == 0, r.stderr[-3000:]
  lines = r.stderr.splitlines()
  assert len(lines) == 1, r.stderr[-3000:]
  assert lines[0].startswith(
      f"warning: best-validation checkpoint {workdir}/best/20 is unreadable"
  ) and "unreadable_checkpoints/best-20" in lines[0], lines[0]
  assert os.listdir(workdir / "best") == ["20"]  # the final state, saved
  # The rerun of a finished run wrote validation @ 20 and test @ 20 again:
  # they replace the records there, nothing is appended.
  after = read_jsonl(workdir / "metrics.jsonl")
  keys = [(r["step"], r["split"]) for r in after]
  assert len(keys) == len(set(keys)), keys
  assert keys == before, (keys, before)
  assert [r for r in after if r["step"] < 20] == [
      r for r in before_records if r["step"] < 20]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["best_step"] == 20  # scored on the final state
  if trained[1]["best_step"] == 20:  # the same model as the first time
    assert summary["test_accuracy"] == pytest.approx(
        trained[1]["test_accuracy"])


def test_resume_drops_records_past_the_checkpoint(tmp_path):
  """Item 7, the writer alone: what a killed run wrote past the restored
  step goes (atomically), a line cut short by the kill too."""
  w = writers.MetricWriter(str(tmp_path), enabled=True)
  for step in (5, 10, 15):
    w.write(step, "train", {"loss": float(step)})
  w.write(10, "validation", {"loss": 1.0})
  w.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 20, "spl')  # killed mid-line
  w = writers.MetricWriter(str(tmp_path), enabled=True)
  w.resume_at(10)
  w.write(15, "train", {"loss": 15.5})
  w.write(10, "validation", {"loss": 2.0})  # replaces, in place
  w.close()
  recs = read_jsonl(tmp_path / "metrics.jsonl")
  assert [(r["step"], r["split"], r["loss"]) for r in recs] == [
      (5, "train", 5.0), (10, "train", 10.0), (10, "validation", 2.0),
      (15, "train", 15.5)]
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
