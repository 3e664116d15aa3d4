"""Wall-clock timing of one compiled call: warm-up, repeats, median and spread.

WHY the median with min / IQR / max: on a shared, noisy machine single runs
are skewed by other jobs (always upwards), so the median is the robust centre
and the spread says how far to trust it. Every timed call is closed by
`jax.block_until_ready`, since JAX dispatches asynchronously and an unblocked
timer measures only the dispatch.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np


def summarize(times_s: list[float], warmup: int = 0) -> dict[str, Any]:
  """Median, min, max and interquartile range of per-call seconds."""
  t = np.asarray(times_s, np.float64)
  q25, med, q75 = np.percentile(t, [25, 50, 75])
  return {"median_s": float(med), "min_s": float(t.min()),
          "max_s": float(t.max()), "iqr_s": float(q75 - q25),
          "times_s": [float(x) for x in t], "warmup": int(warmup),
          "repeats": len(t)}


def time_calls(call: Callable[[], Any], warmup: int, repeats: int,
               max_timed_s: float = 0.0) -> dict[str, Any]:
  """Runs `call()` warmup times untimed, then up to `repeats` times timed.

  Args:
    call: does one unit of work (it may carry state across calls, e.g. a
      train step feeding its donated state back) and returns what it
      computed, which is blocked on before the clock stops.
    warmup: untimed calls first (first-run allocation, caches).
    repeats: timed calls.
    max_timed_s: if > 0, stop repeating once the timed calls add up to this
      (at least one timed call): a 40 s softmax step at 8K tokens needs no
      third sample to be told apart from a 0.4 s one, and the sweep has a
      time budget. The record's `repeats` is the number actually timed.
  """
  if repeats < 1:
    raise ValueError(f"repeats must be >= 1, got {repeats}")
  for _ in range(max(warmup, 0)):
    jax.block_until_ready(call())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - t0)
    if max_timed_s > 0 and sum(times) >= max_timed_s:
      break
  return summarize(times, warmup)
