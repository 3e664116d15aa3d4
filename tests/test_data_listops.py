"""Tests for the ListOps generator, tokenizer, cache and the task registry."""

import os

import ml_collections
import numpy as np
import pytest

from lightjax import data
from lightjax.data import listops

SMALL = dict(
    name="listops",
    num_train=300,
    num_validation=60,
    num_test=60,
    min_length=10,
    max_length=80,
    max_depth=10,
    max_args=10,
    seed=0,
)


def evaluate_listops(tokens):
  """Independent evaluator: a recursive-descent parser with numpy's median.

  Deliberately shares nothing with `listops.evaluate` (a stack machine) or the
  vectorised generator, so agreement checks the labels, not one code twice.
  """
  pos = 0

  def parse():
    nonlocal pos
    token = tokens[pos]
    pos += 1
    if token.isdigit():
      return int(token)
    args = []
    while tokens[pos] != "]":
      args.append(parse())
    pos += 1
    assert len(args) >= 2, tokens
    return {
        "[MIN": min,
        "[MAX": max,
        "[MED": lambda a: int(np.median(a)),
        "[SM": lambda a: sum(a) % 10,
    }[token](args)

  value = parse()
  assert pos == len(tokens), "trailing tokens"
  return value


def real_tokens(task, row):
  """Token strings of one padded row, decoded with the task's own vocab."""
  return [task.vocab[i] for i in row if i != task.pad_id]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  return data.load_task(SMALL, str(tmp_path_factory.mktemp("listops")))


def test_task_metadata(task):
  assert task.name == "listops"
  assert task.kind == "classification"
  assert task.num_classes == 10
  assert task.vocab_size == len(task.vocab) == 16
  assert task.pad_id == 0 and task.vocab[0] == "<pad>"
  assert task.max_len == SMALL["max_length"]
  for split, n in [("train", 300), ("validation", 60), ("test", 60)]:
    inputs = task.splits[split]["inputs"]
    targets = task.splits[split]["targets"]
    assert inputs.shape == (n, SMALL["max_length"]) and inputs.dtype == np.int32
    assert targets.shape == (n,) and targets.dtype == np.int32
    assert set(task.splits[split]) == {"inputs", "targets"}


def test_labels_agree_with_independent_evaluator(task):
  for split in task.splits.values():
    for row, target in zip(split["inputs"], split["targets"]):
      tokens = real_tokens(task, row)
      assert evaluate_listops(tokens) == target, tokens
      assert listops.evaluate(row) == target


def test_lengths_strictly_within_bounds(task):
  for split in task.splits.values():
    lengths = (split["inputs"] != 0).sum(axis=1)
    assert lengths.min() > SMALL["min_length"]
    assert lengths.max() < SMALL["max_length"]


def test_padding_is_zeros_after_the_sequence(task):
  for split in task.splits.values():
    inputs = split["inputs"]
    lengths = (inputs != 0).sum(axis=1)
    prefix = np.arange(inputs.shape[1])[None, :] < lengths[:, None]
    # Non-pad ids form exactly a prefix: no pad inside, only pad after.
    np.testing.assert_array_equal(inputs != 0, prefix)
    assert inputs.min() >= 0 and inputs.max() < len(listops.VOCAB)


def test_splits_disjoint_and_deduplicated(task):
  seen = set()
  total = 0
  for split in task.splits.values():
    for row in split["inputs"]:
      seen.add(row.tobytes())
      total += 1
  assert len(seen) == total


def test_all_operators_and_several_labels_appear(task):
  tokens = set(task.splits["train"]["inputs"].ravel().tolist())
  for op in listops.OPERATORS:
    assert task.vocab.index(op) in tokens
  assert len(set(task.splits["train"]["targets"].tolist())) >= 5


def test_same_seed_identical_different_seed_differs(tmp_path):
  a = data.load_task(SMALL, str(tmp_path / "a"))
  b = data.load_task(SMALL, str(tmp_path / "b"))  # Regenerated, not cached.
  c = data.load_task({**SMALL, "seed": 1}, str(tmp_path / "a"))
  for split in listops.SPLITS:
    for key in ("inputs", "targets"):
      np.testing.assert_array_equal(a.splits[split][key], b.splits[split][key])
    assert not np.array_equal(a.splits[split]["inputs"],
                              c.splits[split]["inputs"])


def test_eval_splits_do_not_depend_on_num_train():
  small = {k: v for k, v in SMALL.items() if k != "name"}
  a = listops.generate_splits(**small)
  b = listops.generate_splits(**{**small, "num_train": 50})
  for split in ("validation", "test"):
    for key in a[split]:
      np.testing.assert_array_equal(a[split][key], b[split][key])
  # The shorter train split is a prefix of the longer one.
  n = b["train"]["lengths"].sum()
  np.testing.assert_array_equal(a["train"]["tokens"][:n], b["train"]["tokens"])


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
  first = data.load_task(SMALL, str(tmp_path))
  path = listops.cache_path(data.resolve_task_config(SMALL), str(tmp_path))
  assert os.path.exists(path)
  assert os.path.dirname(path) == str(tmp_path / "listops")
  # Atomic write left no temporary files behind.
  assert os.listdir(tmp_path / "listops") == [os.path.basename(path)]

  def fail(**kwargs):
    raise AssertionError("regenerated despite the cache")

  monkeypatch.setattr(listops, "generate_splits", fail)
  second = data.load_task(ml_collections.ConfigDict(SMALL), str(tmp_path))
  for split in listops.SPLITS:
    for key in ("inputs", "targets"):
      np.testing.assert_array_equal(
          first.splits[split][key], second.splits[split][key]
      )


def test_cache_key_covers_every_parameter(tmp_path):
  config = data.resolve_task_config(SMALL)
  paths = {listops.cache_path(config, str(tmp_path))}
  for key in listops.default_config():
    if key != "name":
      paths.add(
          listops.cache_path({**config, key: config[key] + 1}, str(tmp_path))
      )
  assert len(paths) == len(listops.default_config())


def test_registry():
  assert "listops" in data.names()
  assert data.get("listops") is listops.build
  defaults = data.default_task_config("listops")
  assert defaults == dict(
      name="listops", num_train=96000, num_validation=2000, num_test=2000,
      min_length=500, max_length=2000, max_depth=10, max_args=10, seed=0,
  )
  with pytest.raises(ValueError, match="unknown task .*valid: .*listops"):
    data.get("listopz")
  with pytest.raises(ValueError, match="unknown task .*valid: .*listops"):
    data.load_task({**SMALL, "name": "listopz"}, "/nonexistent")


def test_unknown_config_key_lists_valid_keys():
  with pytest.raises(ValueError, match="num_trian.*valid options: .*num_train"):
    data.load_task({**SMALL, "num_trian": 5}, "/nonexistent")


def test_invalid_config_values():
  with pytest.raises(ValueError, match="min_length"):
    data.load_task({**SMALL, "min_length": 80}, "/nonexistent")
  with pytest.raises(ValueError, match="at most"):
    data.load_task({**SMALL, "max_depth": 2, "max_args": 3}, "/nonexistent")


def test_default_data_dir(monkeypatch):
  monkeypatch.setenv("LIGHTJAX_DATA_DIR", "/some/where")
  assert data.default_data_dir() == "/some/where"
  monkeypatch.delenv("LIGHTJAX_DATA_DIR")
  assert data.default_data_dir() == os.path.expanduser("~/.cache/lightjax")


def test_vocab_encode_decode_round_trip():
  tokens = "[MAX 2 9 [MIN 4 7 ] 0 [MED 1 2 ] [SM 5 6 ] ]".split()
  ids = listops.encode(tokens)
  assert ids.dtype == np.int32 and 0 not in ids
  assert listops.decode(ids) == tokens
  assert listops.decode(np.pad(ids, (0, 5))) == tokens  # Padding dropped.
  assert listops.encode([str(d) for d in range(10)]).tolist() == list(
      range(1, 11)
  )
  with pytest.raises(ValueError, match="unknown ListOps token"):
    listops.encode(["("])


def test_evaluate_known_expressions():
  cases = {
      "[MAX 2 9 [MIN 4 7 ] 0 ]": 9,
      "[MED 1 2 ]": 1,  # int(np.median([1, 2])) = int(1.5).
      "[MED 3 1 9 ]": 3,
      "[SM 5 6 7 ]": 8,
      "[MIN [SM 9 9 ] 9 ]": 8,
      "7": 7,
  }
  for expression, value in cases.items():
    tokens = expression.split()
    assert evaluate_listops(tokens) == value
    assert listops.evaluate(tokens) == value
    assert listops.evaluate(listops.encode(tokens)) == value
  with pytest.raises(ValueError):
    listops.evaluate("[MAX 2 9".split())


def test_generator_matches_lra_distribution_exactly_small():
  """max_depth=2, max_args=3: a leaf w.p. 0.75, else an operator over 2 or 3
  leaves (w.p. 0.125 each): lengths 1, 4, 5."""
  rng = np.random.default_rng(0)
  _, lengths, values = listops.generate_batch(
      rng, 40000, min_length=0, max_length=10, max_depth=2, max_args=3
  )
  assert len(lengths) == 40000  # Nothing filtered.
  freq = {n: np.mean(lengths == n) for n in (1, 4, 5)}
  assert sum(freq.values()) == 1.0
  assert abs(freq[1] - 0.75) < 0.01
  assert abs(freq[4] - 0.125) < 0.01 and abs(freq[5] - 0.125) < 0.01
  leaf_values = values[lengths == 1]
  assert np.abs(np.bincount(leaf_values, minlength=10) / leaf_values.size
                - 0.1).max() < 0.01


def test_generator_mean_length_matches_lra_recursion():
  """E[length] from LRA's recursion: E_D = 1 at max_depth D, else
  E_d = 0.75 + 0.25 * (2 + E[args] * E_{d+1}), E[args] = (2 + max_args) / 2."""
  max_depth, max_args = 5, 4  # Longest tree: 426 tokens < max_length below.
  expected = 1.0
  for _ in range(max_depth - 1):
    expected = 0.75 + 0.25 * (2 + (2 + max_args) / 2 * expected)
  rng = np.random.default_rng(1)
  tokens, lengths, values = listops.generate_batch(
      rng, 40000, min_length=0, max_length=500, max_depth=max_depth,
      max_args=max_args,
  )
  assert len(lengths) == 40000
  assert abs(lengths.mean() - expected) / expected < 0.03
  # Spot-check structure and labels of the unfiltered trees too.
  for row, n, value in zip(tokens[:2000], lengths[:2000], values[:2000]):
    toks = listops.decode(row)
    assert len(toks) == n
    assert evaluate_listops(toks) == value
