"""The summary.json schema (lightjax.summary): every committed summary reads,
write/read round-trips, and files from before a rename still read."""

import glob
import json
import os

import pytest

from lightjax import checkpointing
from lightjax import summary as summary_lib
from tests.helpers import REPO

COMMITTED = sorted(glob.glob(os.path.join(REPO, "results", "**", "summary.json"),
                             recursive=True))


def test_there_are_committed_summaries():
  assert len(COMMITTED) > 10


@pytest.mark.parametrize("path", COMMITTED,
                         ids=lambda p: os.path.relpath(p, REPO))
def test_every_committed_summary_reads_and_round_trips(path, tmp_path):
  s = summary_lib.read(path)
  assert s.task and s.config_name and s.num_params["total"] > 0
  assert s.best_step is not None and s.num_train_steps is not None
  # Every committed run classifies, but the sentence encoders' distillation
  # runs (selected on cosine to the teacher).
  assert s.selection == ("cosine" if s.task == "sentences" and s.best_step
                         else "accuracy")
  with open(path) as f:
    raw = json.load(f)
  assert s.best_val_score == raw.get("best_val_score",
                                     raw.get("best_val_accuracy"))
  summary_lib.write(str(tmp_path / "summary.json"), s)
  assert summary_lib.read(str(tmp_path / "summary.json")) == s
  written = json.loads((tmp_path / "summary.json").read_text())
  # Same record, less the old name (and plus what read filled in for it).
  assert {k: v for k, v in raw.items() if k != "best_val_accuracy"} == {
      k: v for k, v in written.items() if k in raw}


def _training_summary(**changes):
  fields = dict(
      config_name="glue_mnli:tiny", task="glue_mnli", attention="softmax",
      num_params={"total": 10, "attention": 4, "embedding": 3},
      best_step=20, num_train_steps=30, test_accuracy=0.5, test_loss=1.1,
      selection="accuracy", best_val_score=0.6,
      test_metrics={"accuracy": 0.5},
      further_tests={"test_mismatched": {"accuracy": 0.4, "loss": 1.2,
                                         "metrics": {"accuracy": 0.4}}},
      wall_time_s=12.5, device={"kind": "cpu", "count": 1},
      cost={"train_flops_per_example": 1e6})
  fields.update(changes)
  return summary_lib.Summary(**fields)


def test_write_read_round_trip_and_flat_layout(tmp_path):
  path = str(tmp_path / "summary.json")
  s = _training_summary()
  summary_lib.write(path, s)
  assert summary_lib.read(path) == s
  on_disk = json.loads(open(path).read())
  # A further split is flat, as the trainer always wrote it.
  assert on_disk["test_mismatched_accuracy"] == 0.4
  assert on_disk["test_mismatched_loss"] == 1.2
  assert on_disk["test_mismatched_metrics"] == {"accuracy": 0.4}
  assert "further_tests" not in on_disk
  # No shrink fields on a training run; no old name.
  assert "method" not in on_disk and "deploy" not in on_disk
  assert "best_val_accuracy" not in on_disk


def test_optional_groups_are_left_out_when_unset(tmp_path):
  """A student scored without fine-tuning (shrink, 0 steps) has no timing,
  device, cost or task metrics; its shrink fields are all written, None
  ones too."""
  path = str(tmp_path / "summary.json")
  s = _training_summary(test_metrics=None, further_tests={}, wall_time_s=None,
                        device=None, cost=None, method="drop_layers",
                        accuracy_kept=None)
  summary_lib.write(path, s)
  on_disk = json.loads(open(path).read())
  for key in ("test_metrics", "wall_time_s", "device", "cost"):
    assert key not in on_disk, key
  assert on_disk["method"] == "drop_layers"
  assert "accuracy_kept" in on_disk and on_disk["accuracy_kept"] is None
  assert summary_lib.read(path) == s


def test_old_name_best_val_accuracy_reads_as_best_val_score(tmp_path):
  path = tmp_path / "summary.json"
  # Before "selection" existed: best_val_accuracy was the only score.
  path.write_text(json.dumps({"task": "listops", "best_val_accuracy": 0.4,
                              "best_step": 3}))
  s = summary_lib.read(str(path))
  assert s.best_val_score == 0.4 and s.selection == "accuracy"
  assert not hasattr(s, "best_val_accuracy")
  # Both names (a regression run: accuracy None, the score its Pearson).
  path.write_text(json.dumps({"selection": "pearson", "best_val_score": 0.8,
                              "best_val_accuracy": None}))
  s = summary_lib.read(str(path))
  assert s.best_val_score == 0.8 and s.selection == "pearson"
  summary_lib.write(str(path), s)
  assert "best_val_accuracy" not in json.loads(path.read_text())


def test_unknown_keys_and_non_objects_are_refused(tmp_path):
  path = tmp_path / "summary.json"
  path.write_text(json.dumps({"task": "listops", "tset_accuracy": 0.5}))
  with pytest.raises(ValueError, match="tset_accuracy"):
    summary_lib.read(str(path))
  path.write_text("[1, 2]")
  with pytest.raises(ValueError, match="JSON object"):
    summary_lib.read(str(path))


def test_checkpoint_meta_old_name_is_read_as_best_val_score():
  meta = checkpointing._meta({"best_val_accuracy": 0.7, "best_step": 5,
                              "elapsed_s": 1.0})
  assert meta == {"best_val_score": 0.7, "best_step": 5, "elapsed_s": 1.0}
  assert checkpointing._meta({"best_val_score": 0.2}) == {"best_val_score": 0.2}
