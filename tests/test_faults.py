"""Faults a user meets: unreadable checkpoints, a workdir two runs share."""

import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from lightjax import checkpointing, trainer
from tests.helpers import REPO, load_config


def _config(data_dir, **overrides):
  c = load_config("configs/listops.py:tiny")
  c.data_dir = data_dir
  c.update(overrides)
  return c


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, fs in os.walk(root) for f in fs)


def test_unreadable_checkpoints_fall_back_and_are_moved_aside(tmp_path, data_dir,
                                                              capfd, caplog):
  """Latest train checkpoint and best/ corrupted: resume from the one before.

  Both in one rerun to keep the suite short; each has its own warning.
  """
  kw = dict(num_train_steps=10, log_every=5, eval_every=10, checkpoint_every=5)
  first = trainer.train_and_evaluate(_config(data_dir, **kw), str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "5"]
  assert os.listdir(tmp_path / "best") == ["10"]
  latest, best = tmp_path / "checkpoints" / "10", tmp_path / "best" / "10"
  latest_files, best_files = _files(latest), _files(best)
  for name in latest_files:  # a copy cut short: every file empty
    open(latest / name, "w").close()
  for name in best_files:  # bit rot: garbage
    (best / name).write_bytes(b"\x00garbage\xff")
  (tmp_path / "summary.json").unlink()
  capfd.readouterr()
  caplog.clear()

  again = trainer.train_and_evaluate(_config(data_dir, **kw), str(tmp_path))
  out, err = capfd.readouterr()
  assert f"Resumed from {tmp_path}/checkpoints at step 5." in out
  aside = tmp_path / "unreadable_checkpoints"
  warnings = err.splitlines()  # one line each and nothing else
  assert len(warnings) == 2, err
  # Nor orbax's own ERROR lines on the same files (pytest captures logging,
  # so they would not reach `err`; on a terminal they would).
  errors = [r.getMessage()[:200] for r in caplog.records
            if r.levelno >= logging.ERROR]
  assert not errors, errors
  assert (f"checkpoint {latest} is unreadable (" in warnings[0]
          and f"moved it to {aside / '10'} (not deleted)" in warnings[0]
          and "resumed from step 5" in warnings[0]), warnings[0]
  assert (f"best-validation checkpoint {best} is unreadable (" in warnings[1]
          and f"moved it to {aside / 'best-10'}" in warnings[1]), warnings[1]

  # Nothing deleted: the corrupted files are all there, moved aside.
  assert _files(aside / "10") == latest_files
  assert all(os.path.getsize(aside / "10" / f) == 0 for f in latest_files)
  assert _files(aside / "best-10") == best_files
  # Steps 6..10 retrained and saved again at the same step numbers, with the
  # same numbers as the first time (data order is a function of the step).
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "5"]
  assert os.listdir(tmp_path / "best") == ["10"]
  for k in ("best_val_score", "best_step", "test_accuracy", "test_loss"):
    np.testing.assert_allclose(again[k], first[k], rtol=1e-5)
  # The workdir lock was released on return.
  checkpointing.WorkdirLock(str(tmp_path)).acquire().release()


def test_truncated_array_data_falls_back_with_one_warning_line(tmp_path,
                                                                data_dir):
  """Latest checkpoint's array data files cut to half: one stderr line, exit 0.

  A subprocess, since what went wrong here was on the process's stderr: a
  failed restore closed orbax's event loop under the reads still in flight,
  and each printed a `RuntimeError: Event loop is closed` traceback
  (hundreds of lines before the warning).
  """
  trainer.train_and_evaluate(_config(data_dir), str(tmp_path))  # tiny: 10, 20
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "20"]
  latest = tmp_path / "checkpoints" / "20"
  data = [f for f in _files(latest) if "/d/" in f"/{f}"]  # tensorstore chunks
  assert data and all(f.startswith("state/") for f in data), _files(latest)
  sizes = {}
  for name in data:
    sizes[name] = os.path.getsize(latest / name) // 2
    os.truncate(latest / name, sizes[name])
  latest_files = _files(latest)
  (tmp_path / "summary.json").unlink()

  r = subprocess.run(
      [sys.executable, "-m", "lightjax.train", "--config",
       "configs/listops.py:tiny", "--workdir", str(tmp_path)],
      cwd=REPO, env={**os.environ, "LIGHTJAX_DATA_DIR": data_dir},
      capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  aside = tmp_path / "unreadable_checkpoints"
  lines = r.stderr.splitlines()
  assert len(lines) == 1, f"{len(lines)} stderr lines:\n" + r.stderr[-3000:]
  assert (lines[0].startswith(f"warning: checkpoint {latest} is unreadable (")
          and f"moved it to {aside / '20'} (not deleted)" in lines[0]
          and lines[0].endswith("resumed from step 10")), lines[0]
  assert f"Resumed from {tmp_path}/checkpoints at step 10." in r.stdout
  # Nothing deleted: the truncated files are there, as they were.
  assert _files(aside / "20") == latest_files
  assert {f: os.path.getsize(aside / "20" / f) for f in data} == sizes
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "20"]
  assert (tmp_path / "summary.json").exists()


def test_no_readable_checkpoint_refuses_and_moves_nothing(tmp_path, data_dir):
  broken = tmp_path / "checkpoints" / "7"
  broken.mkdir(parents=True)
  (broken / "_CHECKPOINT_METADATA").write_bytes(b"")
  with pytest.raises(checkpointing.NoReadableCheckpoint) as info:
    trainer.train_and_evaluate(_config(data_dir), str(tmp_path))
  msg = str(info.value)
  assert "\n" not in msg and f"{broken} (" in msg
  assert "refusing to start over" in msg
  assert info.value.exit_code == 1
  assert _files(broken) == ["_CHECKPOINT_METADATA"]
  assert not (tmp_path / "unreadable_checkpoints").exists()


def test_second_run_on_a_workdir_in_use_refuses_at_once(tmp_path, data_dir):
  env = {**os.environ, "LIGHTJAX_DATA_DIR": data_dir}
  with checkpointing.WorkdirLock(str(tmp_path)):  # a run in this process
    r = subprocess.run(
        [sys.executable, "-m", "lightjax.train", "--config",
         "configs/listops.py:tiny", "--workdir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert r.returncode == 3, r.stderr
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert lines == [
      f"lightjax.train: workdir {tmp_path} is in use by pid {os.getpid()} on"
      f" host {os.uname().nodename} (lock {tmp_path}/.lock); wait for it to"
      " finish or use another --workdir"], r.stderr
  assert os.listdir(tmp_path) == [".lock"]  # the second run wrote nothing


def test_lock_left_by_a_dead_process_does_not_block(tmp_path):
  # The holder takes the lock, writes its pid, and is killed: the file stays.
  holder = subprocess.Popen([sys.executable, "-c", (
      "import os, sys; from lightjax import checkpointing;"
      f"lock = checkpointing.WorkdirLock({str(tmp_path)!r}).acquire();"
      "print(os.getpid(), flush=True); sys.stdin.read()")],
      cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  pid = int(holder.stdout.readline())
  with pytest.raises(checkpointing.WorkdirInUse, match=f"pid {pid} on host"):
    checkpointing.WorkdirLock(str(tmp_path)).acquire()
  holder.send_signal(signal.SIGKILL)
  holder.wait(timeout=60)
  assert (tmp_path / ".lock").read_text().split()[0] == str(pid)  # stale file
  with checkpointing.WorkdirLock(str(tmp_path)):
    assert (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())
