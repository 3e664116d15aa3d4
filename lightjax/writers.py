"""Where metrics go: metrics.jsonl, TensorBoard, and a progress line.

Only process 0 writes (the others get a writer that drops everything), like
big_vision and nanodo. Values arrive as host floats, already fetched at a log
step, so writing never forces a device sync of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any

import jax

from lightjax import files


def fmt_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class MetricWriter:
  """Appends one JSON object per record and mirrors scalars to TensorBoard.

  metrics.jsonl holds each (step, split) once: `resume_at(step)` drops what a
  killed run wrote past the checkpoint it resumes from (the rerun writes
  those steps again), and a record whose (step, split) is already there
  replaces it (a finished run's rerun scores the test split again). Both
  rewrite the file atomically (a temporary file, then os.replace).
  """

  def __init__(self, workdir: str, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.workdir = workdir
    self._jsonl = None
    self._tb = None
    self._keys: set[tuple[int, str]] = set()
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tb"))

  @property
  def path(self) -> str:
    return os.path.join(self.workdir, "metrics.jsonl")

  def _records(self) -> list[dict[str, Any]]:
    """The file's records; a line cut short by a kill is left out."""
    out = []
    with open(self.path) as f:
      for line in f:
        try:
          record = json.loads(line)
        except ValueError:
          continue
        if isinstance(record, dict) and "step" in record and "split" in record:
          out.append(record)
    return out

  def _rewrite(self, records: list[dict[str, Any]]) -> None:
    self._jsonl.close()
    files.atomic_write(self.path, lambda f: f.write(
        "".join(json.dumps(r) + "\n" for r in records)))
    self._jsonl = open(self.path, "a")
    self._keys = {(r["step"], r["split"]) for r in records}

  def resume_at(self, step: int) -> None:
    """Drops the records past `step`, the step the run resumes from (0: a
    fresh start), and makes each (step, split) appear once."""
    if not self.enabled:
      return
    records = {}
    for r in self._records():
      if r["step"] <= step:
        records[(r["step"], r["split"])] = r  # the later of two wins
    self._rewrite(list(records.values()))

  def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "split": split, **metrics}
    if (record["step"], split) in self._keys:  # replaces it, in place
      self._rewrite([record if (r["step"], r["split"]) == (step, split) else r
                     for r in self._records()])
    else:
      self._jsonl.write(json.dumps(record) + "\n")
      self._jsonl.flush()
      self._keys.add((record["step"], split))
    for k, v in metrics.items():
      if isinstance(v, (int, float)):
        self._tb.add_scalar(f"{split}/{k}", v, int(step))

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
      self._tb.close()
      self._jsonl = self._tb = None


def write_json(path: str, obj: Any) -> None:
  """Atomic JSON write (`files.atomic_write`), process 0 only."""
  if jax.process_index() != 0:
    return
  files.atomic_write(path, lambda f: json.dump(obj, f, indent=2,
                                               sort_keys=True, default=str))


def progress_line(step: int, total: int, metrics: dict[str, Any],
                  steps_per_s: float) -> str:
  eta = (total - step) / steps_per_s if steps_per_s > 0 else float("nan")
  parts = [f"step {step:>6d}/{total}"]
  for k in ("loss", "accuracy"):
    if k in metrics:
      parts.append(f"{k[:4]} {metrics[k]:.4f}")
  parts.append(f"{steps_per_s:6.2f} steps/s")
  parts.append(f"ETA {fmt_eta(eta) if eta == eta else '?'}")
  return " | ".join(parts)


def say(msg: str) -> None:
  """A human-facing line on stdout, process 0 only."""
  if jax.process_index() == 0:
    print(msg, file=sys.stdout, flush=True)


def table(rows: list[tuple[str, str]]) -> str:
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


class StepTimer:
  """Wall time of the job and training throughput, with eval/save time left out.

  One object because the loop touches this state in many places (log, eval,
  save, summary) and the rules must agree: steps/s counts only the time spent
  training since the previous log step, so a validation pass or a checkpoint
  does not show up as a slow training interval; elapsed time is the whole job,
  plus whatever earlier runs of a resumed job already spent.
  """

  def __init__(self):
    self.t0 = time.perf_counter()
    self.elapsed_before = 0.0  # seconds spent by earlier runs (from a checkpoint)
    self._last_t, self._last_step, self._paused = self.t0, 0, 0.0
    self._history: list[float] = []

  def start(self, step: int, elapsed_before: float = 0.0) -> None:
    """Marks the start of training at `step` (after restore and compile)."""
    self.elapsed_before = elapsed_before
    self._last_t, self._last_step, self._paused = time.perf_counter(), step, 0.0

  @contextlib.contextmanager
  def pause(self):
    """Time spent in this block is not training time (eval, checkpoint save)."""
    t = time.perf_counter()
    try:
      yield
    finally:
      self._paused += time.perf_counter() - t

  def rate(self, step: int) -> float:
    """Training steps/s since the previous call (or `start`), pauses excluded."""
    now = time.perf_counter()
    sps = (step - self._last_step) / max(now - self._last_t - self._paused, 1e-9)
    self._history.append(sps)
    self._last_t, self._last_step, self._paused = now, step, 0.0
    return sps

  def median_steps_per_s(self) -> float | None:
    """Median over log intervals: robust to the first (warm-up) interval."""
    return float(statistics.median(self._history)) if self._history else None

  def elapsed(self) -> float:
    """Seconds of this job so far, earlier runs of a resumed job included."""
    return self.elapsed_before + time.perf_counter() - self.t0
