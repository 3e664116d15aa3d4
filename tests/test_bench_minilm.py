"""The peer benchmark on a real model (`configs/bench.py:minilm`,
`lightjax.bench.minilm`) end to end, in process, at its tiny size
(`minilm_tiny`) on the tiny BERT fixture read as a sentence-transformers
directory.

No timing is compared (the machine is shared): what is checked is that every
lightjax row was timed at the three inputs and scored against the float32
teacher (its own JAX row exactly, the ONNX fp32 export to float rounding,
int8 a little off), that the optional rows are skipped with their reasons
where torch / the peer file are absent, and that the records and bench.md
say what ran, with which threads.
"""

import csv
import importlib.util
import os

import jax
import pytest

from lightjax import bench
from lightjax.bench import minilm
from tests.helpers import load_config, read_jsonl, write_st_dir

ROWS = ["transformers fp32", "peer int8 ONNX", "lightjax JAX jit",
        "lightjax ONNX fp32", "lightjax ONNX int8",
        "lightjax ONNX int8 (smoothquant_fp32_down)"]
LIGHTJAX = ROWS[2:]


def _have_torch() -> bool:
  return all(importlib.util.find_spec(m) for m in ("torch", "transformers"))


def test_minilm_tiny_end_to_end(tmp_path):
  jax.devices()  # the backend runs already, as in any test session
  config = load_config("configs/bench.py:minilm_tiny")
  config.minilm.dir = write_st_dir(tmp_path / "st", max_seq_length=32)
  # Sentences of a text file (the stdlib corpus is tested in
  # test_data_corpus; its extraction would cost this test seconds).
  text = tmp_path / "sentences.txt"
  text.write_text("".join(f"The bench reads sentence {i} of {n} words here.\n"
                          for i in range(1600) for n in [4 + i % 9]))
  config.minilm.source = str(text)
  config.minilm.data_dir = str(tmp_path / "data")
  bench.check(config)
  out = tmp_path / "out"
  recs = bench.run(config, str(out), command="pytest")
  meta, rows = recs[0], recs[1:]
  by = {r["row"]: r for r in rows}
  assert list(by) == ROWS

  # Optional rows: skipped, each with its reason.
  peer = by["peer int8 ONNX"]
  assert peer["status"] == "skipped" and "get_minilm.sh --peer" in peer["reason"]
  if not _have_torch():
    assert by["transformers fp32"]["status"] == "skipped"
    assert "not installed" in by["transformers fp32"]["reason"]
    assert all(r["x_vs_transformers_fixed"] is None for r in rows)

  # Fidelity to the float32 teacher.
  teacher = by["lightjax JAX jit"]
  assert teacher["mean_cosine"] == pytest.approx(1.0, abs=1e-12)
  assert teacher["top10"] == teacher["top1"] == 1.0
  assert by["lightjax ONNX fp32"]["mean_cosine"] >= 0.9999
  int8 = by["lightjax ONNX int8"]
  assert int8["status"] == "ok" and int8["mean_cosine"] < 1.0
  assert 0.0 <= int8["top10"] <= 1.0

  c = config.minilm
  for name in LIGHTJAX:
    r = by[name]
    assert r["status"] == "ok", r
    assert r["params"] == teacher["params"] > 0
    assert r["file_bytes"] > 0
    for kind in minilm.KINDS:
      assert 0 < r[f"{kind}_p50_s"] <= r[f"{kind}_p90_s"], (name, kind)
    assert len(r["real_times_s"]) == c.repeats_real * c.real_sentences
    assert len(r["batch_times_s"]) == c.repeats_batch
    assert r["sentences_per_s"] == pytest.approx(
        c.batch_size / r["batch_p50_s"])
  assert int8["file_bytes"] < by["lightjax ONNX fp32"]["file_bytes"]
  # The second recipe keeps the narrowing MatMuls in float32: a bigger file.
  down = by["lightjax ONNX int8 (smoothquant_fp32_down)"]
  assert int8["file_bytes"] < down["file_bytes"] < by["lightjax ONNX fp32"][
      "file_bytes"]

  # What ran: inputs, threads (JAX cannot be pinned in this process).
  i = meta["inputs"]
  assert i["sentences"] == c.num_sentences
  assert i["fixed_length"] == c.length and i["batch_shape"] == [c.batch_size,
                                                                c.length]
  assert len(i["real_lengths"]) == c.real_sentences
  assert all(4 <= n <= c.length for n in i["real_lengths"])
  assert meta["threads"]["jax"].startswith("NOT pinned")
  assert "intra_op_num_threads=1" in meta["threads"]["onnxruntime"]

  lines = read_jsonl(out / "bench.jsonl")
  assert lines[0]["benchmark"] == "meta" and lines[0]["command"] == "pytest"
  assert [r["row"] for r in lines[1:]] == ROWS
  with open(out / "bench.csv") as f:
    assert [r["row"] for r in csv.DictReader(f)] == ROWS
  assert (out / minilm.PARETO_PNG).stat().st_size > 0
  md = (out / "bench.md").read_text()
  assert "- threads: jax: NOT pinned" in md
  table = md.split("## Rows\n")[1].split("\n## ")[0]
  assert "| row | runtime | params | size MB | B=1 real lengths p50 / p90 ms |" \
      in table
  assert "x vs transformers fp32 (real / 16 / B=4)" in table
  assert "| lightjax ONNX int8 | onnxruntime" in table
  assert f"| {teacher['params']:,} |" in table
  skipped = md.split("## Not measured\n")[1]
  assert "| peer int8 ONNX | skipped |" in skipped


def test_minilm_preset_and_refusals(tmp_path):
  config = load_config("configs/bench.py:minilm")
  m = config.minilm
  assert tuple(config.benchmarks) == ("minilm",)
  assert (m.length, m.batch_size, m.threads, m.peer) == (
      128, 32, 1, "peer_int8.onnx")
  assert m.num_sentences >= 256 and m.split == "test"
  m.dir = str(tmp_path / "nothing")
  with pytest.raises(ValueError, match="run scripts/get_minilm.sh"):
    bench.check(config)
  m.dir = write_st_dir(tmp_path / "st")
  bench.check(config)
  m.students = (str(tmp_path / "missing"),)
  with pytest.raises(ValueError, match="is not a directory"):
    bench.check(config)
  m.students = ()
  m.int8_recipes = "smoothquant,fp8"
  with pytest.raises(ValueError, match="unknown recipe 'fp8'; valid: dynamic,"):
    bench.check(config)
  m.int8_recipes = "smoothquant"
  config.benchmarks = ("minilm", "edge")
  with pytest.raises(ValueError, match="runs alone"):
    bench.check(config)


def test_real_sample_takes_the_length_quantiles():
  import numpy as np  # pylint: disable=import-outside-toplevel
  lengths = [3, 9, 5, 7, 4, 8, 6, 10]
  ids = np.zeros((8, 10), np.int32)
  for i, n in enumerate(lengths):
    ids[i, :n] = 7
  sample = minilm.real_sample(ids, 0, 2)
  # Sorted lengths 3..10; quantiles 0.25 and 0.75 -> indices 2 and 6.
  assert [x.shape for x in sample] == [(1, 5), (1, 9)]
  assert all((x != 0).all() for x in sample)
  assert os.path.basename(minilm.GET_MODEL) == "get_minilm.sh"


def test_student_spec_reads_a_shrink_run_without_fine_tuning(tmp_path):
  """A shrink run of 0 steps keeps its student in student/ beside the run's
  config.json, which is not a Hugging Face config: the student is read."""
  from lightjax import init_from  # pylint: disable=import-outside-toplevel
  run = tmp_path / "cut"
  (run / init_from.STUDENT_DIR).mkdir(parents=True)
  (run / init_from.STUDENT_DIR / init_from.MODEL_JSON).write_text("{}")
  (run / "config.json").write_text("{}")
  assert minilm.student_spec(str(run)) == str(run / init_from.STUDENT_DIR)
  st = write_st_dir(tmp_path / "st")
  assert minilm.student_spec(st) == "hf:" + st
