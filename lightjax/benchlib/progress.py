"""One terminal line per measurement, with a running ETA.

  [12/72] train_step linear L=4096 B=1 ... 0.123 s (8.1x) | compile 2.1 s | ETA 03:12

The ETA spreads the elapsed time over the planned jobs' relative costs
(`plan.weight`), so long lengths late in the sweep are not under-estimated
the way a plain per-job average would.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from lightjax import writers
from lightjax.benchlib import plan
from lightjax.benchlib.measure import Job


class Progress:
  """Prints progress lines for `jobs` as they finish."""

  def __init__(self, jobs: Sequence[Job]):
    self.weights = [plan.weight(j) for j in jobs]
    self.total = len(jobs)
    self.t0 = time.perf_counter()
    self.done_weight = 0.0

  def eta_s(self, index: int) -> float:
    elapsed = time.perf_counter() - self.t0
    remaining = sum(self.weights[index + 1:])
    return elapsed / max(self.done_weight, 1e-9) * remaining

  def line(self, index: int, job: Job, rec: dict[str, Any]) -> str:
    self.done_weight += self.weights[index]
    head = (f"[{index + 1}/{self.total}] {job.benchmark} {job.variant}"
            f" L={job.seq_len} B={job.batch_size} ...")
    status = rec.get("status")
    if status == "ok":
      speed = rec.get("speedup_vs_softmax")
      body = f"{rec['median_s']:.4g} s" + (f" ({speed:.1f}x)" if speed else "")
      body += f" | compile {rec.get('compile_s') or 0:.1f} s"
    else:
      body = f"{status.upper()}: {rec.get('error', '')}"
      if rec.get("error_at"):
        body += f" [at {rec['error_at']}]"
    return f"{head} {body} | ETA {writers.fmt_eta(self.eta_s(index))}"

  def say(self, index: int, job: Job, rec: dict[str, Any]) -> None:
    writers.say(self.line(index, job, rec))
