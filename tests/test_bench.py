"""lightjax.bench end to end on the cpu_tiny preset, plus its small parts.

The end-to-end run is one test on purpose: it compiles a handful of XLA
programs (seconds each on CPU), and pytest-xdist would repeat a shared
fixture on every worker that runs one of its tests. No timing is asserted
(the machine is shared and noisy); what is checked is structure, same-run
ratios, compiled memory (deterministic) and failure handling.
"""

import csv
import math
import os
import subprocess
import sys

import pytest

from lightjax import benchlib, paper
from lightjax.benchlib import failures, peak, plan, records
from tests.helpers import REPO, load_config, read_jsonl

REQUIRED = ("benchmark", "variant", "seq_len", "median_s", "speedup_vs_softmax",
            "peak_bytes", "flops", "batch_size", "repeats", "min_s", "max_s",
            "iqr_s", "compile_s", "status", "device",
            "memory_ratio_vs_softmax", "steps_per_s", "tokens_per_s")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_cpu_tiny_end_to_end(tmp_path):
  config = load_config("configs/bench.py:cpu_tiny")
  longest = max(config.lengths)
  # A real failure, no mocks: a model built for `longest` positions cannot
  # take twice as many tokens (its position table is too short). Those points
  # must be recorded as errors and the sweep (decode) must carry on.
  too_long = 2 * longest
  with config.unlocked():
    config.max_len = longest
    config.lengths = tuple(config.lengths) + (too_long,)
  out = str(tmp_path / "bench")
  benchlib.run(config, out, command="pytest")

  for name in benchlib.OUTPUTS:
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  lines = read_jsonl(os.path.join(out, "bench.jsonl"))
  meta, recs = lines[0], lines[1:]
  assert meta["benchmark"] == "meta" and meta["jax"] and meta["command"]
  assert meta["matmul_peak"] is None  # CPU: no peak, MFU is null
  for r in recs:
    missing = [k for k in REQUIRED if k not in r]
    assert not missing, (r["benchmark"], r["variant"], missing)
    assert r["benchmark"] in {"train_step", "forward", "decode", "latency_b1"}

  by = {(r["benchmark"], r["variant"], r["seq_len"]): r for r in recs}
  for bench in ("train_step", "forward", "latency_b1"):
    for v in config.variants:
      for n in config.lengths:
        assert (bench, v, n) in by, (bench, v, n)
  for v in ("softmax", "linear"):
    for t in config.decode.contexts:
      rec = by[("decode", v, t)]
      assert rec["status"] == "ok" and rec["tokens_per_s"] > 0

  ok = [r for r in recs if r["status"] == "ok"]
  for r in ok:
    assert r["median_s"] > 0 and r["min_s"] <= r["median_s"] <= r["max_s"]
    assert r["mfu"] is None
    if r["variant"] == "softmax":
      assert r["speedup_vs_softmax"] == 1.0
      assert r["memory_ratio_vs_softmax"] == 1.0
    else:
      base = by[(r["benchmark"], "softmax", r["seq_len"])]
      assert math.isclose(r["speedup_vs_softmax"],
                          base["median_s"] / r["median_s"])
  for r in recs:
    if r["seq_len"] == too_long and r["benchmark"] != "decode":
      assert r["status"] == "error", r
      assert "slice" in r["error"] and r["error_at"], r["error"]
      assert r["speedup_vs_softmax"] is None
    else:
      assert r["status"] == "ok", r

  # Compiled memory is deterministic: linear's train step needs less.
  lin = by[("train_step", "linear", longest)]["peak_bytes"]
  soft = by[("train_step", "softmax", longest)]["peak_bytes"]
  assert 0 < lin < soft

  with open(os.path.join(out, "bench.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == len(recs)
  assert set(REQUIRED) <= set(rows[0])

  with open(os.path.join(out, "bench.md")) as f:
    md = f.read()
  assert "LRA 4K" in md and "softmax (transformer)" in md
  assert "1.4 (1.0x)" in md  # the paper's Transformer, 4K steps/s
  assert "8 (5.7x)" in md    # the paper's Performer speed-up at 4K
  assert "9.48" in md        # the paper's Transformer, 4K memory (GB)
  for title in ("Decode", "latency", "Failed measurements", "pytest"):
    assert title in md, title
  for name in ("steps_per_s_vs_length.png", "memory_vs_length.png",
               "decode_tokens_per_s.png"):
    with open(os.path.join(out, name), "rb") as f:
      data = f.read()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000, name


def test_cli_rejects_unknown_config_field(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "lightjax.bench",
       "--config", "configs/bench.py:cpu_tiny", "--out", str(tmp_path),
       "--config.nosuchfield=1"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert "nosuchfield" in proc.stderr
  assert not os.listdir(tmp_path)


def test_presets_and_overrides():
  for preset in ("cpu_quick", "cpu_tiny", "lra_text"):
    cfg = load_config(f"configs/bench.py:{preset}")
    plan.check(cfg)
    assert plan.variants(cfg)[0] == "softmax"
  quick = load_config("configs/bench.py:cpu_quick")
  assert max(quick.lengths) == 8192
  assert {"softmax", "linear", "performer", "linformer", "local",
          "bigbird"} <= set(quick.variants)
  assert plan.decode_variants(quick) == ["softmax", "linear"]
  with quick.unlocked():
    quick.variants = ("linear,local",)  # what --config.variants=linear,local gives
  assert plan.variants(quick) == ["softmax", "linear", "local"]
  with pytest.raises(ValueError, match="bench preset"):
    load_config("configs/bench.py:nosuchpreset")
  with quick.unlocked():
    quick.variants = ("nosuchvariant",)
  with pytest.raises(ValueError, match="valid choices"):
    plan.check(quick)


def test_failures_are_classified():
  assert failures.classify(MemoryError("x")) == "oom"
  assert failures.classify(RuntimeError(
      "RESOURCE_EXHAUSTED: Out of memory while trying to allocate")) == "oom"
  assert failures.classify(ValueError("linformer length 9 > 8")) == "error"
  with pytest.raises(MemoryError, match="not run"):
    failures.check_host_memory(10**9, fraction=1e-9)
  failures.check_host_memory(1, fraction=0.8)  # fits: no error


def test_ratios_need_both_sides():
  base = {"status": "ok", "median_s": 2.0, "peak_bytes": 100}
  rec = records.add_ratios({"status": "ok", "median_s": 0.5,
                            "peak_bytes": 25}, base)
  assert rec["speedup_vs_softmax"] == 4.0
  assert rec["memory_ratio_vs_softmax"] == 0.25
  rec = records.add_ratios({"status": "ok", "median_s": 0.5}, {"status": "oom"})
  assert rec["speedup_vs_softmax"] is None


def test_paper_loader_reads_lra_table2():
  rows = paper.load_csv("lra_table2_speed_memory.csv")
  by = {r["model"]: r for r in rows}
  assert by["transformer"]["steps_4k"] == 1.4
  assert by["performer"]["mem_1k"] == 0.37
  assert len(rows) == 9
  assert any("Long Range Arena" in c
             for c in paper.comments("lra_table2_speed_memory.csv"))
  with pytest.raises(FileNotFoundError, match="lra_table2"):
    paper.load_csv("nosuch.csv")


def test_matmul_peak_and_mfu():
  # The accelerator path, exercised on CPU with a tiny matmul.
  p = peak.measure_matmul(64, "bfloat16", repeats=2)
  assert p["peak_flops"] > 0 and p["dtype"] == "bfloat16"
  assert peak.mfu(p["peak_flops"], 2.0, p) == 0.5
  assert peak.mfu(1e9, 1.0, None) is None
