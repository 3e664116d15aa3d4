"""GLUE end to end, tiny: configs/glue.py:<task>,tiny on GLUE-format TSVs
written here (classification, F1, regression), and one CLI run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tokenizers")

from lightjax import evaluate, trainer  # noqa: E402
from tests.helpers import REPO, load_config, read_jsonl, write_glue_tsvs  # noqa: E402

# A WordPiece vocab ([PAD] = 0 would hide pad-id bugs: put it elsewhere).
VOCAB = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "the", "cat", "sat",
         "a", "dog", "ran", "is", "good", "bad", "movie", "."]
@pytest.fixture(scope="module")
def glue_files(tmp_path_factory):
  root = tmp_path_factory.mktemp("glue_train")
  write_glue_tsvs(root / "glue", 40)
  (root / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB),
                                  encoding="utf-8")
  return root


def _config(task, root, **overrides):
  c = load_config(f"configs/glue.py:{task},tiny")
  c.data_dir = str(root / "data")
  c.task.glue_dir = str(root / "glue")
  c.task.tokenizer = str(root / "vocab.txt")
  for k, v in overrides.items():
    c[k] = v
  return c


def _check_records(workdir, metric_names):
  recs = read_jsonl(workdir / "metrics.jsonl")
  assert {r["split"] for r in recs} >= {"train", "validation", "test"}
  for r in recs:
    if r["split"] != "train":
      assert list(r["metrics"]) == list(metric_names)
  return recs


def test_sst2_classification_reports_accuracy(tmp_path, glue_files):
  c = _config("sst2", glue_files)
  assert c.model.norm_position == "post" and c.model.pooler
  assert c.task.name == "glue_sst2" and c.optim.schedule == "linear"
  summary = trainer.train_and_evaluate(c, str(tmp_path))
  assert summary["selection"] == "accuracy"
  assert list(summary["test_metrics"]) == ["accuracy"]
  assert summary["test_metrics"]["accuracy"] == pytest.approx(
      summary["test_accuracy"], abs=1e-6)
  assert 0 <= summary["best_val_score"] <= 1
  _check_records(tmp_path, ["accuracy"])
  on_disk = json.loads((tmp_path / "summary.json").read_text())
  assert on_disk["test_metrics"] == summary["test_metrics"]


def test_mrpc_reports_f1(tmp_path, glue_files):
  summary = trainer.train_and_evaluate(_config("mrpc", glue_files),
                                       str(tmp_path))
  m = summary["test_metrics"]
  assert list(m) == ["f1", "accuracy"]
  assert 0 <= m["f1"] <= 1
  assert m["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)


def test_stsb_regression_reports_pearson_spearman(tmp_path, glue_files):
  summary = trainer.train_and_evaluate(_config("stsb", glue_files),
                                       str(tmp_path))
  assert summary["selection"] == "pearson"
  assert summary["test_accuracy"] is None
  assert -1 <= summary["best_val_score"] <= 1  # the best validation Pearson
  m = summary["test_metrics"]
  assert list(m) == ["pearson", "spearman"]
  for v in m.values():
    assert v is None or -1 <= v <= 1
  recs = _check_records(tmp_path, ["pearson", "spearman"])
  train = [r for r in recs if r["split"] == "train"]
  assert "accuracy" not in train[0] and np.isfinite(train[-1]["loss"])


def test_mnli_reports_matched_and_mismatched(tmp_path, glue_files):
  summary = trainer.train_and_evaluate(_config("mnli", glue_files),
                                       str(tmp_path))
  assert list(summary["test_metrics"]) == ["accuracy"]
  assert list(summary["test_mismatched_metrics"]) == ["accuracy"]
  assert summary["test_mismatched_accuracy"] == pytest.approx(
      summary["test_mismatched_metrics"]["accuracy"], abs=1e-6)
  recs = read_jsonl(tmp_path / "metrics.jsonl")
  mismatched = [r for r in recs if r["split"] == "test_mismatched"]
  assert len(mismatched) == 1 and mismatched[0]["examples"] == 10


def test_cli_sst2(tmp_path, glue_files):
  env = {**os.environ, "LIGHTJAX_DATA_DIR": str(glue_files / "data")}
  r = subprocess.run(
      [sys.executable, "-m", "lightjax.train", "--config",
       "configs/glue.py:sst2,tiny", "--workdir", str(tmp_path / "run"),
       f"--config.task.glue_dir={glue_files / 'glue'}",
       f"--config.task.tokenizer={glue_files / 'vocab.txt'}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["task"] == "glue_sst2"
  assert "accuracy" in summary["test_metrics"]


@pytest.mark.parametrize("task", ["glue_mrpc", "glue_cola", "glue_stsb"])
def test_task_metrics_from_sums_match_glue_metrics(task):
  """The streamed sums give what glue_metrics.compute gives on all rows."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lightjax import objectives  # pylint: disable=g-import-not-at-top
  from lightjax.metrics import glue_metrics  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  n, regression = 37, task == "glue_stsb"
  logits = rng.normal(size=(n, 1 if regression else 2)).astype(np.float32)
  labels = (rng.uniform(0, 5, n).astype(np.float32) if regression
            else rng.integers(0, 2, n).astype(np.int32))
  kind = "regression" if regression else "classification"
  names = glue_metrics.TASK_METRICS[task]
  totals, preds = None, []
  for lo in range(0, n, 8):  # batches of 8, the last padded with weight 0
    w = np.zeros(8, np.float32)
    w[:min(8, n - lo)] = 1
    idx = np.minimum(np.arange(lo, lo + 8), n - 1)
    sums, p = objectives.METRIC_SUMS[kind](
        jnp.asarray(logits[idx]), jnp.asarray(labels[idx]), jnp.asarray(w))
    preds.append(np.asarray(p))
    totals = sums if totals is None else {
        k: totals[k] + sums[k] for k in totals}
  got = evaluate.task_metrics(names, totals, np.concatenate(preds)[:n], labels)
  want = glue_metrics.compute(
      task, logits[:, 0] if regression else logits.argmax(-1), labels)
  assert list(got) == list(want)
  for k in want:
    assert got[k] == pytest.approx(want[k], abs=1e-5), k
