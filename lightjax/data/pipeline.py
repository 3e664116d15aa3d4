"""Deterministic, step-indexed batching shared by all tasks.

Train batches are a pure function of (split, batch_size, seed, step): epoch
`e = step // steps_per_epoch` visits the examples in the order
`np.random.default_rng([seed, e]).permutation(N)`, cut into
`steps_per_epoch = N // batch_size` full batches (the remainder is dropped for
that epoch; another permutation covers it next time). So resuming from a
checkpoint needs the step only: no iterator state, no data replay.

Evaluation batches visit every example exactly once in storage order; the
last batch is padded with zero rows, marked by `weights` 0, so every batch has
the same shape (one compiled eval step) and metrics can be weighted sums.
Train batches carry `weights` of ones, so the trainer has one code path.

A split is any dict of numpy arrays sharing their leading dimension (inputs
[N, L], targets [N] or [N, L], ...); "weights" is reserved for the pipeline.
"""

from __future__ import annotations

import functools
import queue
import threading
from typing import Any, Callable, Iterator, Mapping

import numpy as np

Batch = dict[str, np.ndarray]
Split = Mapping[str, np.ndarray]

WEIGHTS = "weights"


def split_size(split: Split) -> int:
  """Number of examples; checks every array shares the leading dimension."""
  if not split:
    raise ValueError("empty split: no arrays")
  if WEIGHTS in split:
    raise ValueError(f"{WEIGHTS!r} is reserved for the pipeline's weights")
  sizes = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in split.items()}
  if None in sizes.values() or len(set(sizes.values())) != 1:
    raise ValueError(f"split arrays must share the leading dimension: {sizes}")
  return next(iter(sizes.values()))


@functools.lru_cache(maxsize=4)
def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The example order of `epoch` (read-only; cached: consecutive steps of an
  epoch, and several batchers over the same N, reuse it)."""
  order = np.random.default_rng([seed, epoch]).permutation(num_examples)
  order.flags.writeable = False
  return order


class TrainBatcher:
  """Train batches of one split, indexed by the global train step."""

  def __init__(self, split: Split, batch_size: int, seed: int):
    if batch_size <= 0:
      raise ValueError(f"batch_size must be positive, got {batch_size}")
    self.split = dict(split)
    self.num_examples = split_size(self.split)
    if self.num_examples < batch_size:
      raise ValueError(
          f"split has {self.num_examples} examples, fewer than one batch of"
          f" {batch_size}"
      )
    self.batch_size = batch_size
    self.seed = seed
    self.steps_per_epoch = self.num_examples // batch_size

  def indices(self, step: int) -> np.ndarray:
    """Example indices of the batch for `step`."""
    if step < 0:
      raise ValueError(f"step must be >= 0, got {step}")
    epoch, i = divmod(int(step), self.steps_per_epoch)
    order = epoch_permutation(self.num_examples, self.seed, epoch)
    return order[i * self.batch_size:(i + 1) * self.batch_size]

  def batch(self, step: int) -> Batch:
    idx = self.indices(step)
    out = {k: np.asarray(v)[idx] for k, v in self.split.items()}
    out[WEIGHTS] = np.ones(self.batch_size, np.float32)
    return out

  def iterate(
      self, start_step: int = 0, num_steps: int | None = None
  ) -> Iterator[Batch]:
    """Batches for steps start_step, start_step + 1, ... (forever if
    `num_steps` is None)."""
    step = start_step
    while num_steps is None or step < start_step + num_steps:
      yield self.batch(step)
      step += 1


def train_batch(split: Split, step: int, batch_size: int, seed: int) -> Batch:
  """The train batch for global step `step` (see `TrainBatcher`)."""
  return TrainBatcher(split, batch_size, seed).batch(step)


def num_eval_batches(split: Split, batch_size: int) -> int:
  return -(-split_size(split) // batch_size)


def eval_batches(split: Split, batch_size: int) -> Iterator[Batch]:
  """Every example exactly once, in order, in batches of `batch_size`.

  The last batch is filled with zero rows whose `weights` are 0 (real rows
  have 1), so all batches share one shape.
  """
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  n = split_size(split)
  arrays = {k: np.asarray(v) for k, v in split.items()}
  for start in range(0, n, batch_size):
    real = min(batch_size, n - start)
    batch = {}
    for k, v in arrays.items():
      chunk = v[start:start + real]
      if real < batch_size:
        pad = np.zeros((batch_size - real,) + v.shape[1:], v.dtype)
        chunk = np.concatenate([chunk, pad])
      batch[k] = chunk
    weights = np.zeros(batch_size, np.float32)
    weights[:real] = 1.0
    batch[WEIGHTS] = weights
    yield batch


class _End:
  """Queue marker: the source iterator is exhausted."""


class _Raised:
  """Queue marker: the source iterator (or transform) raised `error`."""

  def __init__(self, error: BaseException):
    self.error = error


class Prefetcher:
  """Runs `iterator` (and `transform` on each item) in a background thread.

  Host-side batch assembly (fancy indexing, device_put) then overlaps with the
  device step. Items come out in order; an exception raised by the iterator
  or the transform is re-raised by `next()` at the position where it occurred.
  The thread is a daemon and `close()` (or leaving a `with` block) stops it
  early, so an abandoned prefetcher never blocks interpreter exit.
  """

  def __init__(
      self,
      iterator: Iterator[Any],
      size: int = 2,
      transform: Callable[[Any], Any] | None = None,
  ):
    if size < 1:
      raise ValueError(f"prefetch size must be >= 1, got {size}")
    self._queue: queue.Queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._done = False
    self._thread = threading.Thread(
        target=self._produce,
        args=(iter(iterator), transform),
        name="lightjax-prefetch",
        daemon=True,
    )
    self._thread.start()

  def _put(self, item: Any) -> bool:
    """Blocks until queued or stopped; returns False if stopped."""
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _produce(self, iterator: Iterator[Any], transform) -> None:
    try:
      for item in iterator:
        if transform is not None:
          item = transform(item)
        if not self._put(item):
          return
    except BaseException as e:  # pylint: disable=broad-except
      self._put(_Raised(e))
      return
    self._put(_End())

  def __iter__(self) -> "Prefetcher":
    return self

  def __next__(self) -> Any:
    if self._done:
      raise StopIteration
    item = self._queue.get()
    if isinstance(item, _End):
      self._done = True
      raise StopIteration
    if isinstance(item, _Raised):
      self._done = True
      raise item.error
    return item

  def close(self) -> None:
    """Stops the background thread (pending items are dropped)."""
    self._done = True
    self._stop.set()
    self._thread.join(timeout=5.0)

  def __enter__(self) -> "Prefetcher":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
