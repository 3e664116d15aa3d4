"""lightjax.bench end to end on the cpu_tiny preset, plus its small parts.

The end-to-end run is one test on purpose: it compiles a handful of XLA
programs (seconds each on CPU), and pytest-xdist would repeat a shared
fixture on every worker that runs one of its tests. No timing is asserted
(the machine is shared and noisy); what is checked is structure, same-run
ratios (to softmax and to the `none` floor), compiled memory (deterministic)
and failure handling.
"""

import csv
import math
import os
import subprocess
import sys
import time

import pytest

from lightjax import attention, bench, paper
from lightjax.bench import measure, plan, records
from tests.helpers import REPO, load_config, read_jsonl

REQUIRED = ("benchmark", "variant", "seq_len", "median_s", "speedup_vs_softmax",
            "peak_bytes", "flops", "batch_size", "repeats", "min_s", "max_s",
            "iqr_s", "compile_s", "status", "device",
            "memory_ratio_vs_softmax", "x_floor_time", "x_floor_memory",
            "steps_per_s", "tokens_per_s")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EINSUM = "softmax:implementation=einsum"


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
  bench.run(config, out, command="pytest")

  for name in bench.OUTPUTS:
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  lines = read_jsonl(os.path.join(out, "bench.jsonl"))
  meta, recs = lines[0], lines[1:]
  assert meta["benchmark"] == "meta" and meta["jax"] and meta["command"]
  assert meta["matmul_peak"] is None  # CPU: no peak, MFU is null
  assert meta["softmax_kernel"] == "xla"  # what "auto" means on CPU
  for r in recs:
    missing = [k for k in REQUIRED if k not in r]
    assert not missing, (r["benchmark"], r["variant"], missing)
    assert r["benchmark"] in {"train_step", "forward", "decode", "latency_b1"}

  # softmax, then the floor, then the config's entries, at every length.
  variants = plan.variants(config)
  assert variants == ["softmax", "none", EINSUM, "linear"]
  assert [r["variant"] for r in recs[:4 * 3:3]] == variants
  by = {(r["benchmark"], r["variant"], r["seq_len"]): r for r in recs}
  for b in ("train_step", "forward", "latency_b1"):
    for v in variants:
      for n in config.lengths:
        assert (b, v, n) in by, (b, v, n)
  for v in ("softmax", "none", "linear"):
    for t in config.decode.contexts:
      rec = by[("decode", v, t)]
      assert rec["status"] == "ok" and rec["tokens_per_s"] > 0

  ok = [r for r in recs if r["status"] == "ok"]
  for r in ok:
    assert r["median_s"] > 0 and r["min_s"] <= r["median_s"] <= r["max_s"]
    assert r["mfu"] is None
    base = by[(r["benchmark"], "softmax", r["seq_len"])]
    floor = by[(r["benchmark"], "none", r["seq_len"])]
    assert math.isclose(r["speedup_vs_softmax"],
                        base["median_s"] / r["median_s"])
    assert math.isclose(r["memory_ratio_vs_softmax"],
                        r["peak_bytes"] / base["peak_bytes"])
    # softmax's floor multiples are filled in once none is measured.
    assert math.isclose(r["x_floor_time"], r["median_s"] / floor["median_s"])
    assert math.isclose(r["x_floor_memory"],
                        r["peak_bytes"] / floor["peak_bytes"])
  for v, field in (("softmax", "speedup_vs_softmax"),
                   ("none", "x_floor_time")):
    assert by[("train_step", v, longest)][field] == 1.0
  for r in recs:
    if r["seq_len"] == too_long and r["benchmark"] != "decode":
      assert r["status"] == "error", r
      assert "longer than the model's position table" in r["error"] and r[
          "error_at"], r["error"]
      assert r["speedup_vs_softmax"] is None and r["x_floor_time"] is None
    else:
      assert r["status"] == "ok", r

  # Compiled memory is deterministic: linear's train step needs less than
  # softmax's, and more than the attention-free floor's.
  mem = {v: by[("train_step", v, longest)]["peak_bytes"] for v in variants}
  assert 0 < mem["none"] < mem["linear"] < mem["softmax"]
  assert by[("train_step", "softmax", longest)]["x_floor_memory"] > 1

  with open(os.path.join(out, "bench.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == len(recs)
  assert set(REQUIRED) <= set(rows[0])
  assert {r["variant"] for r in rows} == set(variants)

  with open(os.path.join(out, "bench.md")) as f:
    md = f.read()
  assert "LRA 4K" in md and "softmax (transformer)" in md
  assert "1.4 (1.0x)" in md  # the paper's Transformer, 4K steps/s
  assert "8 (5.7x)" in md    # the paper's Performer speed-up at 4K
  assert "9.48" in md        # the paper's Transformer, 4K memory (GB)
  assert "implementation 'auto' (here: xla)" in md
  assert f"| {EINSUM} |" in md
  for title in ("Decode", "latency", "Failed measurements", "pytest",
                "Train step over the floor", "Decode over the floor",
                "replaces attention by the identity"):
    assert title in md, title
  for name in ("steps_per_s_vs_length.png", "memory_vs_length.png",
               "decode_tokens_per_s.png"):
    with open(os.path.join(out, name), "rb") as f:
      data = f.read()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000, name


@pytest.mark.slow
def test_lra_text_shape_runs_in_a_subprocess(tmp_path):
  # The lra_text preset's model (4 layers, 4 heads, embedding 256, MLP 1024)
  # through the real CLI, shrunk in length, batch and repeats. A subprocess
  # with a timeout: a kernel that hangs fails this test instead of CI.
  out = tmp_path / "lra"
  cmd = [sys.executable, "-m", "lightjax.bench",
         "--config", "configs/bench.py:lra_text", "--out", str(out),
         "--config.lengths=128", "--config.batch_size=1",
         "--config.benchmarks=train_step",
         "--config.variants=softmax,performer:num_features=64",
         "--config.warmup=0", "--config.repeats=1"]
  try:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
  except subprocess.TimeoutExpired as e:
    pytest.fail(f"lra_text shape hung (> {e.timeout} s): {e.stdout!r}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = read_jsonl(out / "bench.jsonl")
  meta, recs = lines[0], lines[1:]
  m = meta["config"]["model"]
  assert (m["num_layers"], m["num_heads"], m["embed_dim"], m["mlp_dim"]) == (
      4, 4, 256, 1024)
  assert [(r["variant"], r["status"]) for r in recs] == [
      ("softmax", "ok"), ("none", "ok"), ("performer:num_features=64", "ok")]
  assert recs[2]["speedup_vs_softmax"] > 0 and recs[2]["x_floor_time"] > 0


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
    assert plan.variants(cfg)[:2] == ["softmax", "none"]
    # The baseline is the fastest exact softmax, never a forced kernel.
    assert cfg.model.attention.softmax.implementation == "auto"
  quick = load_config("configs/bench.py:cpu_quick")
  assert max(quick.lengths) == 8192
  assert {"softmax", EINSUM, "linear", "performer", "linformer", "local",
          "bigbird"} <= set(quick.variants)
  assert plan.decode_variants(quick) == list(dict.fromkeys(
      ["softmax", "none"] + attention.base.decoding_variants()))
  lra = load_config("configs/bench.py:lra_text")
  assert set(plan.variants(lra)) == set(attention.names())  # every variant
  with quick.unlocked():
    quick.variants = ("linear,local",)  # what --config.variants=linear,local gives
  assert plan.variants(quick) == ["softmax", "none", "linear", "local"]
  with pytest.raises(ValueError, match="bench preset"):
    load_config("configs/bench.py:nosuchpreset")
  with quick.unlocked():
    quick.variants = ("nosuchvariant",)
  with pytest.raises(ValueError, match="unknown attention 'nosuchvariant'"):
    plan.check(quick)
  with quick.unlocked():
    quick.variants = ("linear",)
    quick.benchmarks = ("train_step", "nosuch")
  with pytest.raises(ValueError, match="unknown benchmark 'nosuch'; valid:"):
    plan.check(quick)


def test_variant_entries_with_options():
  assert plan.parse_variant("linear") == ("linear", ())
  assert plan.parse_variant(EINSUM) == ("softmax",
                                        (("implementation", "einsum"),))
  # Several options with ';' or '+', each read as its default's type.
  for sep in ";+":
    name, options = plan.parse_variant(
        f"performer:num_features=64{sep}redraw=true")
    assert name == "performer"
    assert dict(options) == {"num_features": 64, "redraw": True}
  with pytest.raises(ValueError, match="valid options:.*implementation"):
    plan.parse_variant("softmax:nosuch=1")
  with pytest.raises(ValueError, match="not key=value"):
    plan.parse_variant("softmax:implementation")
  with pytest.raises(ValueError, match="num_features"):
    plan.parse_variant("performer:num_features=many")
  with pytest.raises(ValueError, match="unknown attention 'nosuch'"):
    plan.parse_variant("nosuch:x=1")
  with pytest.raises(ValueError, match="implementation 'bogus'; valid: auto"):
    plan.parse_variant("softmax:implementation=bogus")
  # The job carries the overrides; the model config gets them.
  tiny = load_config("configs/bench.py:cpu_tiny")
  job = next(j for j in plan.jobs(tiny) if j.variant == EINSUM)
  assert (job.attention, job.options) == ("softmax",
                                          (("implementation", "einsum"),))
  m = measure.model_config(tiny, job)
  assert m.attention.name == "softmax"
  assert m.attention.softmax.implementation == "einsum"
  assert tiny.model.attention.softmax.implementation == "auto"  # a copy


def test_cli_reads_entries_with_options():
  # ml_collections reads a tuple override as a Python literal, which
  # `softmax:implementation=einsum` is not; the entry point rewrites it.
  from lightjax.bench import __main__ as cli  # pylint: disable=g-import-not-at-top
  argv = cli._variant_lists([
      "x", f"--config.variants=softmax,{EINSUM},linear",
      "--config.decode.variants=linear", "--config.lengths=128"])
  assert argv[1] == f"--config.variants=('softmax', '{EINSUM}', 'linear')"
  assert argv[2] == "--config.decode.variants=('linear',)"
  assert argv[3] == "--config.lengths=128"


def test_failures_are_classified():
  assert measure.classify(MemoryError("x")) == "oom"
  assert measure.classify(RuntimeError(
      "RESOURCE_EXHAUSTED: Out of memory while trying to allocate")) == "oom"
  assert measure.classify(ValueError("linformer length 9 > 8")) == "error"
  with pytest.raises(MemoryError, match="not run"):
    measure.check_host_memory(10**9, fraction=1e-9)
  measure.check_host_memory(1, fraction=0.8)  # fits: no error


def test_ratios_need_both_sides():
  def rec(variant, **kw):
    return {"benchmark": "train_step", "seq_len": 8, "batch_size": 1,
            "variant": variant, "status": "ok", **kw}
  group = [rec("softmax", median_s=2.0, peak_bytes=100)]
  records.add_ratios(group)
  assert group[0]["speedup_vs_softmax"] == 1.0
  assert group[0]["x_floor_time"] is None  # no floor measured yet
  group.append(rec("none", median_s=0.25, peak_bytes=20))
  group.append(rec("linear", median_s=0.5, peak_bytes=25))
  records.add_ratios(group)
  softmax, _, linear = group
  assert linear["speedup_vs_softmax"] == 4.0
  assert linear["memory_ratio_vs_softmax"] == 0.25
  assert (linear["x_floor_time"], linear["x_floor_memory"]) == (2.0, 1.25)
  assert (softmax["x_floor_time"], softmax["x_floor_memory"]) == (8.0, 5.0)
  group[0] = rec("softmax", status="oom")
  records.add_ratios(group)
  assert linear["speedup_vs_softmax"] is None
  assert linear["x_floor_time"] == 2.0


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
  p = measure.measure_matmul(64, "bfloat16", repeats=2)
  assert p["peak_flops"] > 0 and p["dtype"] == "bfloat16"
  assert measure.mfu(p["peak_flops"], 2.0, p) == 0.5
  assert measure.mfu(1e9, 1.0, None) is None


def test_timing_budget():
  calls = []

  def slow():
    calls.append(1)
    time.sleep(0.02)
    return 0

  t = measure.time_calls(slow, warmup=1, repeats=3)
  assert (t["warmup"], t["repeats"], len(calls)) == (1, 3, 4)
  assert t["min_s"] <= t["median_s"] <= t["max_s"] and t["median_s"] >= 0.02
  # A call as long as the timing budget: its warm-up run is the sample.
  calls.clear()
  t = measure.time_calls(slow, warmup=1, repeats=3, max_timed_s=0.01)
  assert (t["warmup"], t["repeats"], len(calls)) == (0, 1, 1)
  calls.clear()
  t = measure.time_calls(slow, warmup=0, repeats=3, max_timed_s=0.03)
  assert (t["repeats"], len(calls)) == (2, 2)
