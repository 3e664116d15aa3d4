"""The bench's edge benchmark end to end: JAX-jit vs ONNX fp32 / int8 in
onnxruntime at batch 1, on a tiny model and a shrunk run directory.

One run of the real thing (`bench.run`, what `python -m lightjax.bench`
calls): export, quantization and three runtimes per point. No timing is
compared (the machine is shared): what is checked is that each runtime was
timed, the files and the 8-bit share, that the ONNX graphs compute the JAX
logits, and that a run directory is measured as the model it describes.
"""

import csv
import json
import os

import ml_collections
import pytest
from flax import nnx

from lightjax import bench, models
from lightjax.bench import plan, records
from lightjax.metrics.params import count_params
from tests.helpers import REPO, load_config, read_jsonl

LENGTH = 64
SHRUNK = "pruned_1head"  # the run directory's name: its row label


def _tiny_edge_config(model_dir: str) -> ml_collections.ConfigDict:
  config = load_config("configs/bench.py:edge")
  with config.unlocked():
    config.variants = ("linear",)  # + softmax and none, always measured
    config.lengths = (LENGTH,)
    config.edge.update(dict(warmup=1, repeats=3, models=(model_dir,)))
    config.model.update(dict(num_layers=1, embed_dim=32, num_heads=2,
                             head_dim=16, mlp_dim=64, classifier_hidden_dim=0))
  return config


def _write_run(directory, config) -> dict:
  """A shrink run's config.json: the model with one head and half the MLP
  left (what `lightjax.shrink` writes, a full model section)."""
  model = {**config.model.to_dict(), "heads_per_layer": [1],
           "mlp_dims_per_layer": [32]}
  os.makedirs(directory)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump({"model": model, "task": {"name": "listops"}}, f)
  return model


def test_edge_end_to_end(tmp_path):
  run_dir = str(tmp_path / SHRUNK)
  config = _tiny_edge_config(run_dir)
  shrunk_model = _write_run(run_dir, config)
  plan.check(config)
  out = str(tmp_path / "bench")
  bench.run(config, out, command="pytest")

  lines = read_jsonl(os.path.join(out, "bench.jsonl"))
  recs = lines[1:]
  assert [r["variant"] for r in recs] == ["softmax", "none", "linear", SHRUNK]
  by = {r["variant"]: r for r in recs}
  for r in recs:
    assert r["status"] == "ok", r
    assert (r["benchmark"], r["seq_len"], r["batch_size"]) == (
        "edge", LENGTH, 1)
    for prefix in ("", "onnx_fp32_", "onnx_int8_"):
      p50, p95 = r[prefix + "median_s"], r[prefix + "p95_s"]
      assert 0 < p50 <= p95, (r["variant"], prefix)
    assert r["int8_speedup_vs_jax"] == pytest.approx(
        r["median_s"] / r["onnx_int8_median_s"])
    assert 0 < r["onnx_int8_bytes"] < r["onnx_fp32_bytes"]
    assert r["int8_size_ratio"] == pytest.approx(
        r["onnx_int8_bytes"] / r["onnx_fp32_bytes"])
    # The timed graph is the JAX model: float rounding apart in fp32.
    assert r["onnx_fp32_max_abs_diff"] < 1e-4, r["variant"]
    assert (r["warmup"], r["repeats"], r["ort_threads"]) == (1, 3, 1)
  assert by["softmax"]["int8_weight_share"] > 0.9

  # The run directory's row is its own, smaller model.
  shrunk = by[SHRUNK]
  assert shrunk["model_dir"] == run_dir
  want = count_params(models.build_model(
      ml_collections.ConfigDict(shrunk_model), vocab_size=config.vocab_size,
      num_classes=config.num_classes, max_len=LENGTH,
      rngs=nnx.Rngs(0)))["total"]
  assert shrunk["num_params"] == want < by["softmax"]["num_params"]
  assert shrunk["onnx_fp32_bytes"] < by["softmax"]["onnx_fp32_bytes"]

  with open(os.path.join(out, "bench.csv")) as f:
    rows = list(csv.DictReader(f))
  assert set(records.EDGE_COLUMNS) <= set(rows[0])
  assert [r["variant"] for r in rows] == list(by)

  with open(os.path.join(out, "bench.md")) as f:
    md = f.read()
  assert "## Edge: batch-1 latency" in md
  assert "## Train step" not in md  # only what this run measured
  table = md.split("## Edge")[1].split("\n## ")[0]
  assert "| variant / model | L | params | JAX jit p50 / p95 ms |" in table
  assert f"| {SHRUNK} | {LENGTH} | {shrunk['num_params']:,} |" in table
  assert "intra-op threads: 1." in table  # the thread setting, recorded


def test_edge_preset_and_bad_model_dirs(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)  # the preset's run directories are repo-relative
  config = load_config("configs/bench.py:edge")
  plan.check(config)  # its run directories exist in the repository
  jobs = plan.jobs(config)
  assert {j.benchmark for j in jobs} == {"edge"}
  assert {j.batch_size for j in jobs} == {1}
  assert sorted({j.seq_len for j in jobs}) == [128, 512]
  assert config.model.pool == "cls" and config.vocab_size == 16
  labels = [j.variant for j in jobs if j.seq_len == 128]
  assert labels[:2] == ["softmax", "none"]
  assert labels[-5:] == ["teacher", "prune_heads_5of8", "low_rank_1000",
                         "distill_pruned_1500", "drop_layers"]
  pruned = next(j for j in jobs if j.variant == "prune_heads_5of8")
  assert os.path.isfile(os.path.join(pruned.model_dir, "config.json"))

  with config.unlocked():
    config.edge.models = (str(tmp_path),)  # no config.json
  with pytest.raises(ValueError, match="has no config.json"):
    plan.check(config)
  os.makedirs(tmp_path / "softmax")
  with open(tmp_path / "softmax" / "config.json", "w") as f:
    json.dump({"model": {}}, f)
  with config.unlocked():
    config.edge.models = (str(tmp_path / "softmax"),)  # a variant's label
  with pytest.raises(ValueError, match="not unique"):
    plan.check(config)
