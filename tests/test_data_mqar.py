"""Tests for the MQAR generator (Arora et al. 2023, Zoology), its cache, and a
tiny decoder-LM training run on it through the real trainer."""

import importlib.util
import os

import ml_collections
import numpy as np
import pytest

from lightjax import data, objectives
from lightjax.data import mqar
from tests.helpers import check_seeded_task

SMALL = dict(name="mqar", vocab_size=64, seq_len=48, num_kv_pairs=6,
             power_a=0.01, random_non_queries=True, num_train=300,
             num_validation=50, num_test=50, seed=0)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  return data.load_task(SMALL, str(tmp_path_factory.mktemp("mqar")))


def bound_values(inputs_L, num_kv_pairs):
  """key -> value read off the kv block (the first 2K tokens), independently
  of the generator's own bookkeeping."""
  k = num_kv_pairs
  return dict(zip(inputs_L[0:2 * k:2].tolist(), inputs_L[1:2 * k:2].tolist()))


def test_task_metadata(task):
  assert task.name == "mqar" and task.kind == "lm"
  assert task.vocab_size == len(task.vocab) == SMALL["vocab_size"]
  assert task.pad_id == 0 and task.vocab[0] == "<pad>"
  assert task.max_len == SMALL["seq_len"]
  for split in mqar.SPLITS:
    s = task.splits[split]
    assert set(s) == {"inputs", "targets"}
    n = SMALL[f"num_{split}"]
    assert s["inputs"].shape == s["targets"].shape == (n, SMALL["seq_len"])
    assert s["inputs"].dtype == s["targets"].dtype == np.int32


def test_kv_block_keys_and_values_distinct_and_in_range(task):
  k, v = SMALL["num_kv_pairs"], SMALL["vocab_size"]
  for s in task.splits.values():
    keys, values = s["inputs"][:, 0:2 * k:2], s["inputs"][:, 1:2 * k:2]
    assert ((keys >= 1) & (keys < v // 2)).all()
    assert ((values >= v // 2) & (values < v)).all()
    for row in range(len(keys)):
      assert len(set(keys[row].tolist())) == k
      assert len(set(values[row].tolist())) == k


def test_every_key_queried_once_with_its_bound_value(task):
  k = SMALL["num_kv_pairs"]
  for s in task.splits.values():
    for inputs, targets in zip(s["inputs"], s["targets"]):
      bound = bound_values(inputs, k)
      scored = np.flatnonzero(targets != 0)
      assert len(scored) == k  # one answer per key ...
      assert sorted(inputs[scored].tolist()) == sorted(bound)  # ... each key
      for t in scored:
        assert t >= 2 * k and (t - 2 * k) % 2 == 0  # after the kv block
        assert targets[t] == bound[inputs[t]]  # the value bound earlier
      # Targets are ignored (pad) everywhere else, the kv block included.
      assert (np.delete(targets, scored) == 0).all()


def test_no_target_or_input_is_pad(task):
  for s in task.splits.values():
    assert (s["inputs"] != 0).all()  # random fillers avoid the pad id
    answers = s["targets"][s["targets"] != 0]
    assert (answers >= SMALL["vocab_size"] // 2).all()  # value ids, never 0


def test_without_random_fillers_non_queries_are_pad():
  out = mqar.generate_split(20, split="test", seed=3, vocab_size=40,
                            seq_len=24, num_kv_pairs=3, power_a=0.5,
                            random_non_queries=False)
  inputs = out["inputs"]
  targets = mqar.targets_from_answers(out["answer_positions"], out["answers"],
                                      24)
  query = targets != 0
  assert (inputs[:, :6] != 0).all()
  assert (inputs[:, 6:][~query[:, 6:]] == 0).all()
  assert (inputs[query] != 0).all() and (targets[query] >= 20).all()


def test_power_law_puts_queries_early_after_the_kv_block():
  """p(slot i) ~ i^(a-1): with Zoology's a = 0.01 the first slot after the
  kv block is by far the most frequent query position; a = 1 is uniform."""
  k, n, space = 2, 44, 20
  rng = np.random.default_rng(0)
  gaps = mqar.power_law_gaps(rng, 40_000, 1, space, 0.01)[:, 0]
  freq = np.bincount(gaps, minlength=space) / len(gaps)
  np.testing.assert_allclose(freq, mqar.power_law(space, 0.01), atol=0.01)
  assert freq[0] > 3 * freq[-1]
  uniform = mqar.power_law_gaps(rng, 40_000, 1, space, 1.0)[:, 0]
  assert np.abs(np.bincount(uniform) / 40_000 - 1 / space).max() < 0.01
  # Whole sequences: queries at 2K + 2g, more mass near the block.
  out = mqar.generate_split(4000, split="train", seed=0, vocab_size=64,
                            seq_len=n, num_kv_pairs=k, power_a=0.01,
                            random_non_queries=True)
  pos = out["answer_positions"]
  assert pos.min() >= 2 * k and pos.max() <= n - 2
  assert np.mean(pos < 2 * k + n // 4) > 0.5


def test_gaps_without_replacement_follow_successive_draws():
  """Second of two draws without replacement, space 3, p = (.5, .3, .2):
  P(second = j) = sum_i p_i p_j / (1 - p_i) over i != j."""
  p = mqar.power_law(3, 0.3)
  gaps = mqar.power_law_gaps(np.random.default_rng(1), 100_000, 2, 3, 0.3)
  assert (gaps[:, 0] != gaps[:, 1]).all()
  second = np.bincount(gaps[:, 1], minlength=3) / len(gaps)
  expected = [sum(p[i] * p[j] / (1 - p[i]) for i in range(3) if i != j)
              for j in range(3)]
  np.testing.assert_allclose(second, expected, atol=0.01)


def test_distinct_ints_uniform():
  x = mqar.distinct_ints(np.random.default_rng(0), 30_000, 3, 5, 10)
  assert ((x >= 5) & (x < 10)).all()
  assert all(len(set(r)) == 3 for r in x.tolist())
  for col in range(3):  # each position uniform over the range
    freq = np.bincount(x[:, col] - 5, minlength=5) / len(x)
    assert np.abs(freq - 0.2).max() < 0.015
  with pytest.raises(ValueError, match="distinct"):
    mqar.distinct_ints(np.random.default_rng(0), 1, 6, 5, 10)


def test_deterministic_and_seeded(tmp_path):
  a, _ = check_seeded_task(SMALL, tmp_path, mqar.SPLITS)
  # Splits are different streams; eval splits ignore num_train, and a
  # smaller train split is a prefix of a larger one.
  d = data.load_task({**SMALL, "num_train": 100}, str(tmp_path / "a"))
  for split in ("validation", "test"):
    np.testing.assert_array_equal(a.splits[split]["inputs"],
                                  d.splits[split]["inputs"])
  np.testing.assert_array_equal(a.splits["train"]["inputs"][:100],
                                d.splits["train"]["inputs"])


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
  first = data.load_task(SMALL, str(tmp_path))
  path = mqar.cache_path(data.resolve_task_config(SMALL), str(tmp_path))
  assert os.listdir(tmp_path / "mqar") == [os.path.basename(path)]

  def fail(*args, **kwargs):
    raise AssertionError("regenerated despite the cache")

  monkeypatch.setattr(mqar, "generate_splits", fail)
  second = data.load_task(ml_collections.ConfigDict(SMALL), str(tmp_path))
  for split in mqar.SPLITS:
    for key in ("inputs", "targets"):
      np.testing.assert_array_equal(first.splits[split][key],
                                    second.splits[split][key])


def test_cache_key_covers_every_parameter(tmp_path):
  config = data.resolve_task_config(SMALL)
  changed = {"vocab_size": 66, "seq_len": 50, "num_kv_pairs": 5,
             "power_a": 0.5, "random_non_queries": False, "num_train": 1,
             "num_validation": 1, "num_test": 1, "seed": 7}
  assert set(changed) == set(mqar.default_config()) - {"name"}
  paths = {mqar.cache_path({**config, k: v}, str(tmp_path))
           for k, v in changed.items()}
  paths.add(mqar.cache_path(config, str(tmp_path)))
  assert len(paths) == len(changed) + 1


def test_registry_defaults_and_invalid_configs():
  assert data.get("mqar") is mqar.build
  assert data.default_task_config("mqar") == dict(
      name="mqar", vocab_size=8192, seq_len=64, num_kv_pairs=4, power_a=0.01,
      random_non_queries=True, num_train=100_000, num_validation=3_000,
      num_test=3_000, seed=0)
  for bad, match in [({"seq_len": 47}, "even"),
                     ({"num_kv_pairs": 13}, "4 \\* num_kv_pairs"),
                     ({"vocab_size": 12}, "key ids"),
                     ({"power_a": 0.0}, "power_a"),
                     ({"num_trian": 5}, "valid options")]:
    with pytest.raises(ValueError, match=match):
      data.load_task({**SMALL, **bad}, "/nonexistent")


def test_accuracy_counts_answer_positions_only():
  """`objectives.language_model` scores exactly the non-pad targets."""
  targets = np.array([[0, 0, 40, 0, 41, 0]], np.int32)
  logits = np.zeros((1, 6, 64), np.float32)
  logits[0, :, 40] = 1.0  # predicts 40 everywhere: 1 of the 2 answers right
  sums = objectives.language_model(logits, targets, np.ones(1, np.float32))
  assert float(sums["count"]) == 2.0
  assert float(sums["correct_sum"]) == 1.0


def _config(arg):
  path = os.path.join(os.path.dirname(__file__), "..", "configs", "mqar.py")
  spec = importlib.util.spec_from_file_location("mqar_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_config_presets():
  for arg, (seq_len, kv) in {None: (64, 4), "zoology128": (128, 8),
                             "zoology256": (256, 16)}.items():
    c = _config(arg)
    assert c.model.name == "decoder_lm" and c.model.num_layers == 2
    assert (c.task.vocab_size, c.task.seq_len, c.task.num_kv_pairs) == (
        8192, seq_len, kv)
  assert _config("cpu,linear").model.attention.name == "linear"
  with pytest.raises(ValueError, match="unknown config argument"):
    _config("softmaxx")


def test_tiny_preset_trains_through_the_trainer(tmp_path):
  from lightjax import trainer  # pylint: disable=import-outside-toplevel
  config = _config("tiny")
  config.data_dir = str(tmp_path / "data")
  config.num_train_steps = 4
  config.log_every = config.eval_every = config.checkpoint_every = 2
  summary = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["task"] == "mqar" and summary["attention"] == "softmax"
  assert 0.0 <= summary["test_accuracy"] <= 1.0
  assert np.isfinite(summary["test_loss"])
  assert os.path.exists(tmp_path / "run" / "summary.json")
