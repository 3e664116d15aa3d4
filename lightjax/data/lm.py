"""Byte-level language modelling on any text file or directory of text files.

  python -m lightjax.train --config configs/lm.py --workdir /tmp/lm \
      --config.task.path=/path/to/text_or_dir

WHY bytes: no tokenizer to train, ship or version, any text (any language,
code, markup) is in the vocabulary, and the metric, bits per byte (bpb), is
comparable across models and tokenizations (the enwik8 / text8 convention,
e.g. Al-Rfou et al. 2019, Dai et al. 2019 "Transformer-XL" Table 2).

Ids. Byte b (0..255) is id b + 1; id 0 is padding (`pad_id`, masked out of
attention and of the loss), so `vocab_size` = 257. `encode` / `decode` map
text to ids and back (decode drops pads and replaces invalid UTF-8).

Source. `path` is a file, or a directory whose files (recursively; hidden
files and folders skipped, and binary files, those holding a NUL byte, such
as Python's __pycache__) are read in sorted relative-path order and
concatenated as they are (a file's bytes directly follow the previous
file's). A relative path is taken from the working directory.

Splits, by contiguous regions (no leakage). The byte stream is cut into
`num_regions` equal contiguous regions; a permutation seeded by `seed` picks
round(validation_fraction * R) of them (at least 1) for "validation",
round(test_fraction * R) (at least 1) for "test", the rest are "train".
Each region is windowed on its own, so no window, and no (input, target)
pair, spans two regions: no validation or test byte is ever a train input
or target.

Windows. A region of n ids is cut into windows of max_length + 1 ids
starting every max_length ids (consecutive windows share one id), giving
inputs = window[:-1] and targets = window[1:], both int32[max_length], the
last window padded with 0. So every id of a region except its first is a
target exactly once. The loss (`objectives.language_model`) is the mean
next-byte cross-entropy in nats over non-pad targets; the task reports
bits_per_byte = that / ln 2 (`objectives.METRIC_SUMS["lm"]`).

Nothing is cached: reading and windowing a few MB of text takes well under a
second, and the arrays are a pure function of the files and the config.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lightjax.data.base import DataError, TaskData, register, resolve_task_config

NAME = "lm"
PAD_ID = 0
VOCAB_SIZE = 257  # 256 byte values + padding


class TextFileError(DataError, FileNotFoundError):
  """The task's `path` names no readable text (one-line message)."""


def default_config() -> dict[str, Any]:
  return {
      "name": NAME,
      "path": "",                    # a text file or a directory of them
      "max_length": 256,             # bytes per training window (model length)
      "num_regions": 20,             # contiguous regions the splits draw from
      "validation_fraction": 0.05,   # of the regions (at least one)
      "test_fraction": 0.05,         # of the regions (at least one)
      "seed": 0,                     # which regions are held out
  }


def encode(text: str | bytes) -> np.ndarray:
  """int32 ids of the UTF-8 bytes of `text`: byte b -> b + 1."""
  raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
  return np.frombuffer(raw, np.uint8).astype(np.int32) + 1


def decode(ids) -> str:
  """Text of ids (pads dropped, ids outside 1..256 too; bad UTF-8 replaced)."""
  ids = np.asarray(ids).ravel()
  ids = ids[(ids > PAD_ID) & (ids < VOCAB_SIZE)]
  return (ids - 1).astype(np.uint8).tobytes().decode("utf-8", errors="replace")


def vocab() -> tuple[str, ...]:
  """id -> printable string: "<pad>", then each byte (escaped if not ASCII
  printable)."""
  def show(b: int) -> str:
    return chr(b) if 32 <= b < 127 else f"\\x{b:02x}"
  return ("<pad>",) + tuple(show(b) for b in range(256))


def text_files(path: str) -> list[str]:
  """The files `path` names, in reading order; TextFileError if none."""
  if not path:
    raise TextFileError("task lm: set task.path to a text file or a"
                        " directory of text files")
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise TextFileError(f"task lm: no such file or directory: {path}")
  found = []
  for root, dirs, names in os.walk(path):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    found += [os.path.join(root, n) for n in names if not n.startswith(".")]
  found.sort(key=lambda p: os.path.relpath(p, path))
  if not found:
    raise TextFileError(f"task lm: directory {path} holds no files")
  return found


def read_ids(path: str) -> np.ndarray:
  """The byte ids of every file `path` names, concatenated."""
  chunks = []
  for name in text_files(path):
    try:
      with open(name, "rb") as f:
        raw = f.read()
    except OSError as e:
      raise TextFileError(f"task lm: cannot read {name}: {e.strerror}") from None
    if b"\0" not in raw:  # NUL: a binary file, not text
      chunks.append(raw)
  if not chunks:
    raise TextFileError(f"task lm: {path} holds no text (only binary files)")
  return encode(b"".join(chunks))


def windows(ids: np.ndarray, max_length: int) -> dict[str, np.ndarray]:
  """{"inputs", "targets"} int32[W, max_length] of one region (docstring)."""
  n, length = len(ids), int(max_length)
  starts = np.arange(0, max(n - 1, 0), length)
  padded = np.concatenate([ids, np.zeros(length + 1, np.int32)])
  win_WxL1 = padded[starts[:, None] + np.arange(length + 1)[None, :]]
  return {"inputs": win_WxL1[:, :-1].astype(np.int32),
          "targets": win_WxL1[:, 1:].astype(np.int32)}


def region_splits(num_regions: int, validation_fraction: float,
                  test_fraction: float, seed: int) -> dict[str, np.ndarray]:
  """split -> sorted region indices (seeded; validation and test non-empty)."""
  r = int(num_regions)
  n_val = max(1, round(validation_fraction * r))
  n_test = max(1, round(test_fraction * r))
  if r < n_val + n_test + 1:
    raise ValueError(f"task lm: num_regions={r} leaves no train region after"
                     f" {n_val} validation and {n_test} test regions")
  order = np.random.default_rng(int(seed)).permutation(r)
  return {"train": np.sort(order[n_val + n_test:]),
          "validation": np.sort(order[:n_val]),
          "test": np.sort(order[n_val:n_val + n_test])}


def make_splits(ids: np.ndarray, config: dict[str, Any]
                ) -> dict[str, dict[str, np.ndarray]]:
  """Regions -> splits -> windows (module docstring)."""
  r = int(config["num_regions"])
  bounds = np.linspace(0, len(ids), r + 1).round().astype(int)
  chosen = region_splits(r, float(config["validation_fraction"]),
                         float(config["test_fraction"]), int(config["seed"]))
  splits = {}
  for split, regions in chosen.items():
    parts = [windows(ids[bounds[i]:bounds[i + 1]], config["max_length"])
             for i in regions]
    splits[split] = {k: np.concatenate([p[k] for p in parts])
                     for k in ("inputs", "targets")}
    if not len(splits[split]["inputs"]):
      raise DataError(
          f"task lm: {len(ids)} bytes of text are too few for {r} regions"
          f" (the {split} split has no window of two bytes); use more text"
          " or a smaller task.num_regions")
  return splits


def _check_config(config: dict[str, Any]) -> None:
  """Values in range (no file read: `config_lib.validate` runs it)."""
  for key, low in (("max_length", 1), ("num_regions", 1), ("seed", 0)):
    value = config[key]
    if isinstance(value, bool) or int(value) != value or value < low:
      raise ValueError(f"task lm: {key} must be an integer >= {low}, got"
                       f" {value!r}")
  for key in ("validation_fraction", "test_fraction"):
    if not 0.0 <= float(config[key]) < 1.0:
      raise ValueError(f"task lm: {key} must be in [0, 1), got {config[key]}")


@register(NAME, default_config=default_config, check_config=_check_config)
def build(task_config: Any, data_dir: str) -> TaskData:
  """Reads `path` and returns the windows of each split (module docstring)."""
  del data_dir  # The text is read where `path` says; nothing is cached.
  config = resolve_task_config(task_config, name=NAME)
  _check_config(config)
  ids = read_ids(str(config["path"]))
  return TaskData(
      name=NAME, kind="lm", vocab_size=VOCAB_SIZE, num_classes=0,
      max_len=int(config["max_length"]), splits=make_splits(ids, config),
      vocab=vocab(), pad_id=PAD_ID)
