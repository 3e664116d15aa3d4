"""A sentence encoder shrunk and distilled on unlabeled text (issue 21): the
shrink run writes the teacher's embeddings as the targets, the student is
trained toward them (`objectives.embedding`), and summary.json reports its
fidelity (mean cosine, retrieval agreement). Run small, in process, on the
tiny BERT fixture read as a sentence-transformers directory and a text
file of real sentences (the stdlib corpus is tested in test_data_corpus)."""

import importlib.util
import json

import jax.numpy as jnp
import numpy as np
import pytest

from lightjax import config_lib, export, hf, init_from, objectives
from lightjax.shrink import run
from tests.helpers import REPO, write_st_dir


def _sentences(path, n=800):
  """Sentence-like lines from a small vocabulary, numbered so none repeats
  (the split is by a hash of the line: about 1 in 20 is a test sentence)."""
  words = ("the model reads every token once and the teacher keeps its"
           " weights while the student learns to place sentences where the"
           " teacher did").split()
  rng = np.random.default_rng(0)
  lines = [" ".join(rng.choice(words, size=int(rng.integers(4, 14))))
           + f" number {i}." for i in range(n)]
  path.write_text("\n".join(lines) + "\n")
  return str(path)


def _stsb_dev(path, n=40):
  """GLUE STS-B's dev.tsv layout; every other pair is one sentence twice
  (gold near 5), the others two sentences (gold near 1)."""
  path.parent.mkdir(parents=True)
  src = path.parent / "pairs.txt"
  _sentences(src, 2 * n)
  rows = src.read_text().splitlines()
  table = ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2"
           "\tsentence1\tsentence2\tscore"]
  for i in range(n):
    a, b = rows[2 * i], rows[2 * i] if i % 2 else rows[2 * i + 1]
    table.append(f"{i}\tmain\tx\t2012\t{i}\tnone\tnone\t{a}\t{b}"
                 f"\t{4.0 * (i % 2) + (i % 7) / 7:.3f}")
  path.write_text("\n".join(table) + "\n")


def _config(tmp_path, recipe, **changes):
  c = config_lib.load_config_file(f"{REPO}/configs/shrink/{recipe}")
  c.init_from = "hf:" + write_st_dir(tmp_path / "teacher", max_seq_length=16)
  c.task.source = _sentences(tmp_path / "sentences.txt")
  c.data_dir = str(tmp_path / "data")
  for key, value in changes.items():
    c[key] = value
  return c


def test_embedding_objective_is_the_mse_and_cosine_its_metric():
  s = jnp.asarray([[1.0, 0.0], [0.0, 2.0]])
  t = jnp.asarray([[1.0, 0.0], [2.0, 0.0]])
  w = jnp.asarray([1.0, 1.0])
  sums = objectives.embedding(s, t, w)
  # mean over D of squared error: row 0 -> 0, row 1 -> (4 + 4) / 2
  assert float(sums["loss_sum"]) == pytest.approx(4.0)
  stats, cos = objectives.cosine_sums(s, t, w)
  np.testing.assert_allclose(np.asarray(cos), [1.0, 0.0], atol=1e-6)
  assert objectives.cosine(stats["cosine_and_count"]) == pytest.approx(0.5)


def test_drop_a_layer_then_distil_toward_the_teachers_embeddings(tmp_path):
  c = _config(tmp_path, "drop_layers.py:sentences,tiny", num_train_steps=24)
  c.optim.learning_rate = 3e-3
  # GLUE's STS-B dev file in the data dir: the fidelity adds STS-B Spearman.
  _stsb_dev(tmp_path / "data" / "glue" / "STS-B" / "dev.tsv")
  work = tmp_path / "work"
  out = run.shrink_and_evaluate(c, str(work))

  record = json.loads((work / "shrink.json").read_text())
  # The targets are the teacher's own embeddings: it agrees with them fully.
  teacher_cos = record["teacher_eval"]["validation"]["metrics"]["cosine"]
  assert teacher_cos == pytest.approx(1.0, abs=1e-5)
  before = record["student_eval_before"]["test"]["metrics"]["cosine"]
  after = out["test_metrics"]["cosine"]
  assert before < 0.999 and after > before, (before, after)
  fid = out["fidelity"]
  assert fid["mean_cosine"] == pytest.approx(after, abs=1e-4)
  assert set(fid) == {"sentences", "mean_cosine", "top1", "top10",
                      "stsb_spearman", "teacher_stsb_spearman"}
  assert -1.0 <= fid["stsb_spearman"] <= 1.0
  assert -1.0 <= fid["teacher_stsb_spearman"] <= 1.0
  assert 0.0 <= fid["top1"] <= 1.0 and 0.0 <= fid["top10"] <= 1.0
  assert out["selection"] == "cosine"
  assert out["num_params"]["total"] < out["teacher_num_params"]
  report = (work / "shrink_report.md").read_text()
  assert "| test cosine to teacher | top-10 agreement (%) |" in report
  assert f"| {fid['mean_cosine']:.4f} |" in report
  assert f"STS-B dev Spearman (GLUE STS-B files in the data dir): student" \
      f" {fid['stsb_spearman']:.4f}" in report

  # The teacher's embeddings are cached: a second student of this teacher
  # (here scored as cut, no distillation) reuses them.
  cache = tmp_path / "data" / "teacher_targets"
  [stored] = list(cache.iterdir())
  c.num_train_steps = 0
  cut = run.shrink_and_evaluate(c, str(tmp_path / "cut"))
  assert [p.name for p in cache.iterdir()] == [stored.name]
  assert cut["fidelity"]["mean_cosine"] == pytest.approx(before, abs=1e-4)

  # `lightjax.export` of the cut student: the task's sentences (48 tokens;
  # the position table holds 16 here) are fitted to the export length, the
  # smoothquant int8 calibrates on the train split, and the check reports
  # the embeddings' cosine.
  if importlib.util.find_spec("jax2onnx") and importlib.util.find_spec(
      "onnxruntime"):
    record = export.export_run(str(tmp_path / "cut"), "onnx",
                               str(tmp_path / "onnx"), int8=True,
                               data_dir=c.data_dir)
    q = record["int8"]
    assert q["recipe"] == "smoothquant" and q["calibration_examples"] > 0
    assert q["smoothed_inputs"] > 0 and q["tables_int8_per_row"] >= 1
    fp32, int8 = record["check"]["fp32"], record["check"]["int8"]
    assert fp32["data"] == "sentences validation split"
    assert fp32["mean_cosine"] > 0.99999 and fp32["max_abs_logit_diff"] < 1e-4
    assert 0.9 < int8["mean_cosine"] < 1.0

  # The student goes back out as a sentence-transformers directory and
  # reads in again with the same embeddings.
  student, source = init_from.load_model(str(work))
  saved = tmp_path / "student_st"
  hf.save_pretrained(student, source.model, str(saved),
                     tokenizer=source.tokenizer)
  assert (saved / "modules.json").exists()
  again, _ = hf.from_pretrained(str(saved))
  tokens = np.array([[2, 5, 7, 9, 3, 0, 0, 0]], np.int32)
  np.testing.assert_allclose(np.asarray(again(tokens)),
                             np.asarray(student(tokens)), atol=1e-6)


def test_prune_width_student_embeds_in_the_teachers_space_and_learns(tmp_path):
  """Width pruning a sentence encoder (32 -> 24 channels): the student
  carries the selection matrix as a projection 24 -> 32 (a Dense module),
  so it is compared with, and distilled toward, the teacher's 32-dim
  embeddings; training raises its cosine to them."""
  c = _config(tmp_path, "prune_width.py:sentences,tiny", num_train_steps=16)
  c.shrink.prune_width.num_examples = 64
  c.optim.learning_rate = 3e-3
  work = tmp_path / "work"
  out = run.shrink_and_evaluate(c, str(work))
  details = out["shrink_details"]
  assert (details["teacher_embed_dim"], details["embed_dim"]) == (32, 24)
  assert details["projection_added"]
  record = json.loads((work / "shrink.json").read_text())
  before = record["student_eval_before"]["test"]["metrics"]["cosine"]
  after = out["test_metrics"]["cosine"]
  assert 0.0 < before < 0.999 and after > before, (before, after)
  student, source = init_from.load_model(str(work))
  assert (source.model["embed_dim"], source.model["projection_dim"]) == (24, 32)
  tokens = np.array([[2, 5, 7, 9, 3, 0, 0, 0]], np.int32)
  assert student(tokens).shape == (1, 32)

