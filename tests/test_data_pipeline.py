"""Tests for the deterministic, step-indexed batching pipeline."""

import itertools
import threading
import time

import numpy as np
import pytest

from lightjax.data import pipeline


def make_split(n=10, length=3, lm_targets=False):
  inputs = np.arange(n * length, dtype=np.int32).reshape(n, length) + 1
  targets = inputs + 100 if lm_targets else np.arange(n, dtype=np.int32)
  return {"inputs": inputs, "targets": targets}


def assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_train_batch_deterministic_in_seed_and_step():
  split = make_split()
  a = pipeline.train_batch(split, 5, 3, seed=0)
  b = pipeline.TrainBatcher(split, 3, seed=0).batch(5)
  assert_batches_equal(a, b)
  assert a["inputs"].shape == (3, 3) and a["targets"].shape == (3,)
  assert a["weights"].dtype == np.float32
  np.testing.assert_array_equal(a["weights"], np.ones(3))
  # Rows stay aligned across keys.
  np.testing.assert_array_equal(a["inputs"], split["inputs"][a["targets"]])
  c = pipeline.train_batch(split, 5, 3, seed=1)
  d = pipeline.train_batch(split, 6, 3, seed=0)
  assert not np.array_equal(a["targets"], c["targets"])
  assert not np.array_equal(a["targets"], d["targets"])


def test_epoch_visits_each_example_once_and_orders_differ():
  split = make_split(n=10)
  batcher = pipeline.TrainBatcher(split, 3, seed=0)
  assert batcher.steps_per_epoch == 3  # The remainder (1 example) is dropped.
  epochs = []
  for epoch in range(3):
    steps = range(epoch * 3, epoch * 3 + 3)
    seen = np.concatenate([batcher.batch(s)["targets"] for s in steps])
    assert len(set(seen.tolist())) == 9
    epochs.append(seen)
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[1], epochs[2])
  # The order is exactly the documented permutation.
  expected = np.random.default_rng([0, 1]).permutation(10)[:9]
  np.testing.assert_array_equal(epochs[1], expected)


def test_iterate_from_start_step_equals_indexed_batches():
  split = make_split(n=10, lm_targets=True)
  batcher = pipeline.TrainBatcher(split, 4, seed=3)
  got = list(itertools.islice(batcher.iterate(start_step=5), 6))
  for i, batch in enumerate(got):
    assert_batches_equal(batch, batcher.batch(5 + i))
  # A fresh batcher (a resumed run) produces the same batches.
  resumed = pipeline.TrainBatcher(split, 4, seed=3)
  for i, batch in enumerate(resumed.iterate(start_step=5, num_steps=6)):
    assert_batches_equal(batch, got[i])
  assert len(list(resumed.iterate(2, num_steps=3))) == 3


def test_train_batcher_errors():
  with pytest.raises(ValueError, match="fewer than one batch"):
    pipeline.TrainBatcher(make_split(n=3), 4, seed=0)
  with pytest.raises(ValueError, match="leading dimension"):
    pipeline.TrainBatcher(
        {"inputs": np.zeros((4, 2)), "targets": np.zeros(5)}, 2, seed=0
    )
  with pytest.raises(ValueError, match="reserved"):
    pipeline.TrainBatcher({**make_split(), "weights": np.ones(10)}, 2, seed=0)
  with pytest.raises(ValueError, match="step"):
    pipeline.TrainBatcher(make_split(), 2, seed=0).batch(-1)


@pytest.mark.parametrize("n,batch_size", [(10, 4), (8, 4), (3, 5), (0, 2)])
def test_eval_batches_cover_every_example_once(n, batch_size):
  split = make_split(n=n, lm_targets=True)
  batches = list(pipeline.eval_batches(split, batch_size))
  assert len(batches) == pipeline.num_eval_batches(split, batch_size)
  assert len(batches) == -(-n // batch_size)
  for batch in batches:
    assert batch["inputs"].shape == (batch_size, 3)
    assert batch["targets"].shape == (batch_size, 3)
    assert batch["weights"].dtype == np.float32
  if not n:
    return
  weights = np.concatenate([b["weights"] for b in batches])
  np.testing.assert_array_equal(weights, np.arange(len(weights)) < n)
  for key in ("inputs", "targets"):
    stacked = np.concatenate([b[key] for b in batches])
    np.testing.assert_array_equal(stacked[:n], split[key])
    assert not stacked[n:].any()  # Padding rows are zeros.


def test_prefetcher_preserves_order_and_applies_transform():
  out = list(pipeline.Prefetcher(iter(range(100)), size=2,
                                 transform=lambda x: x * 2))
  assert out == [2 * i for i in range(100)]
  split = make_split()
  batcher = pipeline.TrainBatcher(split, 3, seed=0)
  with pipeline.Prefetcher(batcher.iterate(4), size=3) as prefetched:
    for step, batch in zip(range(4, 10), prefetched):
      assert_batches_equal(batch, batcher.batch(step))


def test_prefetcher_reraises_in_order():
  def source():
    yield from range(3)
    raise KeyError("boom")

  prefetched = pipeline.Prefetcher(source(), size=2)
  assert [next(prefetched) for _ in range(3)] == [0, 1, 2]
  with pytest.raises(KeyError, match="boom"):
    next(prefetched)
  with pytest.raises(StopIteration):
    next(prefetched)

  def bad_transform(x):
    if x == 2:
      raise ValueError("bad item")
    return x

  prefetched = pipeline.Prefetcher(iter(range(5)), transform=bad_transform)
  assert next(prefetched) == 0 and next(prefetched) == 1
  with pytest.raises(ValueError, match="bad item"):
    next(prefetched)


def test_prefetcher_runs_ahead_and_close_stops_thread():
  produced = []

  def source():
    for i in itertools.count():
      produced.append(i)
      yield i

  prefetched = pipeline.Prefetcher(source(), size=2)
  assert next(prefetched) == 0
  deadline = time.monotonic() + 5
  while len(produced) < 3 and time.monotonic() < deadline:
    time.sleep(0.01)
  assert len(produced) >= 3  # Produced ahead, in the background.
  assert len(produced) <= 5  # But bounded by the queue size.
  prefetched.close()
  assert not prefetched._thread.is_alive()  # pylint: disable=protected-access
  assert all(t.daemon for t in threading.enumerate()
             if t.name == "lightjax-prefetch")
