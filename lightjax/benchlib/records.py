"""Benchmark records: the common columns, same-run ratios, jsonl and csv.

A record is one flat dict per measurement. `bench.jsonl` holds them one per
line (the run's `meta` record first, `benchmark: "meta"`), `bench.csv` the
same measurement records with the columns below first. Ratios are against
softmax at the same benchmark, length and batch size, measured earlier in the
same run (the runner measures softmax first at every length):

  speedup_vs_softmax       softmax median_s / variant median_s (> 1 = faster)
  memory_ratio_vs_softmax  variant peak_bytes / softmax peak_bytes (< 1 = less)

so machine noise between runs never enters a ratio, and softmax's own
speed-up is exactly 1.0.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Iterable

Record = dict[str, Any]

COLUMNS = (
    "benchmark", "variant", "seq_len", "batch_size", "status", "median_s",
    "min_s", "max_s", "iqr_s", "steps_per_s", "tokens_per_s",
    "speedup_vs_softmax", "memory_ratio_vs_softmax", "flops", "mfu",
    "peak_bytes", "temp_bytes", "argument_bytes", "output_bytes",
    "device_peak_bytes", "compile_s", "warmup", "repeats", "decode_steps",
    "num_params", "same_as", "device", "platform", "preset", "error",
    "error_at", "times_s",
)
BASELINE = "softmax"


def key(rec: Record) -> tuple:
  return rec["benchmark"], rec["seq_len"], rec["batch_size"]


def ok(rec: Record | None) -> bool:
  return bool(rec) and rec.get("status") == "ok"


def add_ratios(rec: Record, baseline: Record | None) -> Record:
  """Sets the two *_vs_softmax fields (None when either side has no value)."""
  speed = mem = None
  if ok(rec) and ok(baseline):
    speed = baseline["median_s"] / rec["median_s"]
    if rec.get("peak_bytes") and baseline.get("peak_bytes"):
      mem = rec["peak_bytes"] / baseline["peak_bytes"]
  rec["speedup_vs_softmax"], rec["memory_ratio_vs_softmax"] = speed, mem
  return rec


class JsonlWriter:
  """Appends records as they are measured, so a killed run keeps its data."""

  def __init__(self, path: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._f = open(path, "w")

  def write(self, rec: Record) -> None:
    self._f.write(json.dumps(rec, default=str) + "\n")
    self._f.flush()

  def close(self) -> None:
    self._f.close()


def read_jsonl(path: str) -> list[Record]:
  with open(path) as f:
    return [json.loads(l) for l in f if l.strip()]


def _csv_cell(v: Any) -> Any:
  if v is None:
    return ""
  if isinstance(v, (list, tuple)):
    return ";".join(f"{x:.6g}" if isinstance(x, float) else str(x) for x in v)
  return v


def write_csv(path: str, records: Iterable[Record]) -> None:
  records = list(records)
  extra = sorted({k for r in records for k in r} - set(COLUMNS))
  cols = list(COLUMNS) + extra
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    for r in records:
      w.writerow({c: _csv_cell(r.get(c)) for c in cols})
