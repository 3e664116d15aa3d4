"""The whole benchmark: plan, measure each point, write jsonl/csv/md/png.

`run(config, out_dir)` is what `python -m lightjax.bench` calls, so tests run
the real thing in-process. A measurement that fails is recorded (status
"oom" or "error", with the message, also printed) and the sweep goes on.
"""

from __future__ import annotations

import datetime
import gc
import os
import platform
import sys
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections

from lightjax import files, writers
from lightjax.attention.softmax import resolve_implementation
from lightjax.bench import measure, minilm, plan, plots, records, render

OUTPUTS = ("bench.jsonl", "bench.csv", "bench.md", "steps_per_s_vs_length.png",
           "memory_vs_length.png", "decode_tokens_per_s.png")


def metadata(config: ml_collections.ConfigDict,
             command: str | None) -> dict[str, Any]:
  d = jax.devices()
  m = config.model
  # The kernel the baseline's implementation option resolves to here.
  q = jnp.zeros((1, 1, 1, m.head_dim), m.dtype)
  return {
      "benchmark": "meta",
      "preset": config.config_name,
      "command": command or " ".join(["python -m lightjax.bench"]
                                     + sys.argv[1:]),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      "device": d[0].device_kind, "platform": d[0].platform,
      "device_count": len(d), "host": platform.node(),
      "cpu_count": os.cpu_count(), "python": platform.python_version(),
      "jax": jax.__version__, "flax": flax.__version__,
      "softmax_kernel": resolve_implementation(
          m.attention.softmax.implementation, q),
      "config": config.to_dict(),
  }


def _planned(config, job: measure.Job) -> dict[str, int]:
  """Warm-up / repeats asked for (a measurement overrides with what it did)."""
  c = {"decode": config.decode, "latency_b1": config.latency,
       "edge": config.edge}.get(job.benchmark, config)
  return {"warmup": int(c.warmup), "repeats": int(c.repeats)}


def check(config: ml_collections.ConfigDict) -> None:
  """Fails fast (ValueError, one line) before anything compiles: the
  `minilm` benchmark's own checks, or every planned point's."""
  if minilm.asked(config):
    minilm.check(config)
  else:
    plan.check(config)


def run(config: ml_collections.ConfigDict, out_dir: str,
        command: str | None = None) -> list[dict[str, Any]]:
  """Runs every planned measurement; returns the records (meta first).
  The `minilm` benchmark is a run of its own (`lightjax.bench.minilm`)."""
  if minilm.asked(config):
    return minilm.run(config, out_dir, command)
  files.check_output_dir(out_dir)
  jobs = plan.jobs(config)
  os.makedirs(out_dir, exist_ok=True)
  meta = metadata(config, command)
  meta["matmul_peak"] = measure.matmul_peak(config.mfu)
  writers.say(f"{meta['preset']}: {len(jobs)} measurements on"
              f" {meta['device_count']}x {meta['device']} ({meta['platform']}),"
              f" jax {meta['jax']}; writing {out_dir}")
  jsonl = records.JsonlWriter(os.path.join(out_dir, "bench.jsonl"))
  jsonl.write(meta)
  common = {"device": meta["device"], "platform": meta["platform"],
            "preset": meta["preset"]}
  groups: dict[tuple, list[dict[str, Any]]] = {}
  progress, out = plan.Progress(jobs), []
  memo: measure.Memo = {}
  t0 = time.perf_counter()
  for i, job in enumerate(jobs):
    if i and (job.variant, job.seq_len) != (jobs[i - 1].variant,
                                            jobs[i - 1].seq_len):
      memo.clear()
      gc.collect()  # free the last point's buffers before the next compile
    rec = {**dict.fromkeys(records.COLUMNS),  # every record has every column
           "benchmark": job.benchmark, "variant": job.variant,
           "seq_len": job.seq_len, "batch_size": job.batch_size,
           **_planned(config, job), **common,
           **measure.attempt(config, job, memo)}
    group = groups.setdefault(records.key(rec), [])
    group.append(rec)
    records.add_ratios(group)
    if job.benchmark != "decode":  # decode FLOPs are per step, not per call
      rec["mfu"] = measure.mfu(rec["flops"], rec["median_s"],
                               meta["matmul_peak"], rec.get("devices") or 1)
    jsonl.write(rec)
    out.append(rec)
    progress.say(i, job, rec)
  jsonl.close()
  meta["wall_s"] = time.perf_counter() - t0
  write_outputs(out_dir, meta, out)
  bad = [r for r in out if r["status"] != "ok"]
  writers.say(f"Done in {meta['wall_s']:.0f} s: {len(out) - len(bad)} ok,"
              f" {len(bad)} failed; tables in"
              f" {os.path.join(out_dir, 'bench.md')}")
  return [meta] + out


def write_outputs(out_dir: str, meta: dict[str, Any],
                  recs: list[dict[str, Any]]) -> None:
  """bench.jsonl (rewritten: wall time, ratios filled in since), bench.csv,
  bench.md, PNGs."""
  jsonl = records.JsonlWriter(os.path.join(out_dir, "bench.jsonl"))
  for r in [meta] + recs:
    jsonl.write(r)
  jsonl.close()
  records.write_csv(os.path.join(out_dir, "bench.csv"), recs)
  with open(os.path.join(out_dir, "bench.md"), "w") as f:
    f.write(render.markdown(meta, recs))
  plots.write_all(out_dir, recs)
