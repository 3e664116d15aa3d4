"""Benchmark records: the common columns, same-run ratios, jsonl and csv.

A record is one flat dict per measurement. `bench.jsonl` holds them one per
line (the run's `meta` record first, `benchmark: "meta"`), `bench.csv` the
same measurement records with the columns below first. Ratios compare records
of the same benchmark, length and batch size, measured minutes apart in the
same run (softmax first at every length, `none` right after it):

  speedup_vs_softmax       softmax median_s / variant median_s (> 1 = faster)
  memory_ratio_vs_softmax  variant peak_bytes / softmax peak_bytes (< 1 = less)
  x_floor_time             variant median_s / none median_s
  x_floor_memory           variant peak_bytes / none peak_bytes

(the edge benchmark's ratios of onnxruntime to JAX are measured within one
record: `EDGE_COLUMNS`)

so machine noise between runs never enters a ratio; softmax's own speed-up
and none's own floor multiples are exactly 1.0. `none` replaces attention by
the identity (out_i = v_i), so a floor multiple of 1.0 means attention costs
nothing and x - 1 is what attention adds to the rest of the model.
"""

from __future__ import annotations

import json
import os
from typing import Any

from lightjax import tables
from lightjax.bench.plan import BASELINE, FLOOR

Record = dict[str, Any]

# The edge benchmark's own fields (`measure.edge`): onnxruntime's timings
# beside the record's JAX ones, the ONNX files and the int8 quantization.
EDGE_COLUMNS = (
    "onnx_fp32_median_s", "onnx_fp32_p95_s", "onnx_int8_median_s",
    "onnx_int8_p95_s", "fp32_speedup_vs_jax", "int8_speedup_vs_jax",
    "onnx_fp32_bytes", "onnx_int8_bytes", "int8_size_ratio",
    "int8_weight_share", "onnx_fp32_max_abs_diff", "onnx_int8_max_abs_diff",
    "ort_threads", "model_dir",
)

COLUMNS = (
    "benchmark", "variant", "seq_len", "batch_size", "status", "median_s",
    "p95_s", "min_s", "max_s", "iqr_s", "steps_per_s", "tokens_per_s",
    "speedup_vs_softmax", "memory_ratio_vs_softmax", "x_floor_time",
    "x_floor_memory", "flops", "mfu", "peak_bytes", "temp_bytes",
    "argument_bytes", "output_bytes", "device_peak_bytes", "compile_s",
    "devices", "warmup", "repeats", "decode_steps", "num_params", "same_as",
    *EDGE_COLUMNS, "device", "platform", "preset", "error", "error_at",
    "times_s",
)


def key(rec: Record) -> tuple:
  """Records with the same key are compared: benchmark, length, batch."""
  return rec["benchmark"], rec["seq_len"], rec["batch_size"]


def ok(rec: Record | None) -> bool:
  return bool(rec) and rec.get("status") == "ok"


def _ratio(num: float | None, den: float | None) -> float | None:
  return num / den if num and den else None


def add_ratios(group: list[Record]) -> None:
  """Sets the four ratio fields of every record of one key, in place.

  Each is None while either side is missing or failed; calling again once
  the floor is measured fills softmax's (measured before it).
  """
  by = {r["variant"]: r for r in group}
  base, floor = by.get(BASELINE), by.get(FLOOR)
  for r in group:
    fine = ok(r)
    b = base if fine and ok(base) else {}
    f = floor if fine and ok(floor) else {}
    r["speedup_vs_softmax"] = _ratio(b.get("median_s"), r.get("median_s"))
    r["memory_ratio_vs_softmax"] = _ratio(r.get("peak_bytes"),
                                          b.get("peak_bytes"))
    r["x_floor_time"] = _ratio(r.get("median_s"), f.get("median_s"))
    r["x_floor_memory"] = _ratio(r.get("peak_bytes"), f.get("peak_bytes"))


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


def write_csv(path: str, recs: list[Record]) -> None:
  """COLUMNS first, then any other field some record has, sorted."""
  extra = sorted({k for r in recs for k in r} - set(COLUMNS))
  tables.write_csv(path, list(COLUMNS) + extra, recs)
