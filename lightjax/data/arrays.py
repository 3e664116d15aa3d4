"""Array helpers shared by task builders: padding ragged token lists,
holding a seeded part of train out as validation, and reading a whole
TensorFlow Datasets split when a task offers tfds as its source.

Kept apart from the task modules so that one task never imports another.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightjax.data.base import MissingPackage, check_count


def pad_ragged(
    tokens: np.ndarray, lengths: np.ndarray, max_len: int
) -> np.ndarray:
  """Concatenated sequences -> int32[N, max_len], zero (pad) after each."""
  inputs = np.zeros((len(lengths), max_len), np.int32)
  mask = np.arange(max_len)[None, :] < lengths[:, None]
  inputs[mask] = tokens  # Boolean assignment fills row-major: in order.
  return inputs


def holdout_rows(num_rows: int, fraction: float, seed: int) -> np.ndarray:
  """Boolean[num_rows]: the train rows held out as validation."""
  held = np.zeros(num_rows, bool)
  # At least one row when asked for any: an empty validation split would
  # leave nothing to select on.
  count = max(1, int(round(fraction * num_rows))) if fraction > 0 else 0
  held[np.random.default_rng(seed).permutation(num_rows)[:count]] = True
  return held


def subset_rows(num_rows: int, keep: int, seed: int, split_index: int
                ) -> np.ndarray:
  """Sorted row indices: all rows (keep=0) or a seeded random `keep`
  (`np.random.default_rng([seed, split_index])`), so a split's subset does
  not change when another split's size does."""
  if keep <= 0:
    return np.arange(num_rows)
  rng = np.random.default_rng([seed, split_index])
  return np.sort(rng.permutation(num_rows)[:keep])


def check_hold_out(task: str, config: dict[str, Any]) -> None:
  """Raises unless the config's `validation_fraction` is in [0, 1) and the
  hold-out's `seed` an integer >= 0 (numpy's generators refuse negatives)."""
  if not 0 <= config["validation_fraction"] < 1:
    raise ValueError(
        f"{task} validation_fraction must be in [0, 1), got"
        f" {config['validation_fraction']!r}")
  check_count(task, config, "seed", 0)


def hold_out(train: dict[str, np.ndarray], test: dict[str, np.ndarray],
             config: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
  """{"train", "validation", "test"}: validation is a seeded
  `validation_fraction` of train (removed from it), or test itself when the
  fraction is 0 (LRA's own practice, optimistic by the selection)."""
  fraction = float(config["validation_fraction"])
  if fraction == 0:
    return {"train": train, "validation": dict(test), "test": test}
  held = holdout_rows(len(train["targets"]), fraction, int(config["seed"]))
  return {
      "train": {k: v[~held] for k, v in train.items()},
      "validation": {k: v[held] for k, v in train.items()},
      "test": test,
  }


def check_source(task: str, config: dict[str, Any],
                 sources: tuple[str, ...]) -> None:
  """Raises unless the config's `source` is one of `sources`."""
  if config["source"] not in sources:
    raise ValueError(
        f"{task} source must be one of {', '.join(sources)}, got"
        f" {config['source']!r}")


def import_tfds(dataset: str):
  """tensorflow_datasets, checked to be usable with `tfds.load` (which needs
  TensorFlow); otherwise one line naming what to install."""
  # pylint: disable=import-outside-toplevel,unused-import
  try:
    import tensorflow_datasets as tfds
    import tensorflow  # noqa: F401  (tfds.load runs on TensorFlow)
  except ImportError as e:
    raise MissingPackage(
        f"task.source='tfds' reads tfds {dataset!r} with tfds.load, which"
        f" needs tensorflow-datasets and TensorFlow (missing: {e.name}):"
        " pip install tensorflow-datasets tensorflow-cpu, or use"
        " task.source='files'") from None
  return tfds


def tfds_arrays(dataset: str, split: str) -> dict[str, np.ndarray]:
  """All of tfds `dataset`'s `split` as numpy arrays (tfds.load, whole split
  in one batch; downloads into tfds' data dir if not prepared yet)."""
  tfds = import_tfds(dataset)
  return tfds.as_numpy(tfds.load(dataset, split=split, batch_size=-1))
