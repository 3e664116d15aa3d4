"""LRA Retrieval: does one AAN paper cite the other? Byte-level pairs, read
from Long Range Arena's released TSV files.

Tay et al. 2021, "Long Range Arena", task "Retrieval" (byte-level document
matching): pairs of papers from the ACL Anthology Network (AAN; Radev et al.
2013), label 1 iff one cites the other. Both documents are read as raw bytes
(no tokenizer, so the model must compress ~4K bytes per document into one
vector) and each is truncated to `max_length` = 4000 bytes in LRA. The task is
built for a two-tower model: the documents are encoded separately, by one
shared encoder, with no attention across the pair (LRA's dual-encoder setup;
`lightjax.models.retrieval`).

Files. LRA's release (https://storage.googleapis.com/long-range-arena/
lra_release.gz; `tar xf lra_release.gz` gives `lra_release/tsv_data/`) holds
`new_aan_pairs.{train,eval,test}.tsv`, read by LRA's
`lra_benchmarks/matching/input_pipeline.py` (`get_tsv_dataset`) as: no
header, tab-separated, no quoting (`use_quote_delim=False`), five columns
`label, id1, id2, text1, text2`, the label a float (0/1) cast to int32. The
splits are train, eval (our "validation", where the best checkpoint is
picked) and test. Rows with another column count are skipped with a warning
(GLUE's loader does the same); a label other than 0/1 is an error naming
the file and line.

Tokens. LRA's char/byte tokenizer is tfds' `ByteTextEncoder` applied to each
text field's bytes as they are in the file: byte b -> id b + 1, id 0 the
padding, vocab_size 257. We do the same on the raw bytes (no decoding, so
any byte sequence survives, and no re-encoding that could change lengths).
Other readers of these files decode the fields first (e.g. with
`ast.literal_eval`, as the fields are reported to be Python bytes
literals); LRA does not, and neither do we. Each document keeps its first
`max_length` bytes (LRA: `encode(text[:10000])[:max_length]`, the same for
max_length <= 10000), padded with 0.

Pair layout. The trainer hands a model one int32 array per example, so a
pair is presented as one row: `inputs` int32[N, 2 * max_length] is document
1 (padded to max_length) followed by document 2 (padded to max_length);
`TaskData.max_len` is 2 * max_length. A model for this task splits each row
in half (`lightjax.models.retrieval.DualEncoderClassifier`); a
single-sequence encoder would instead attend across the pair, which LRA's
setup rules out.

Subsets. `num_train` / `num_validation` / `num_test` > 0 keep that many
rows of a split, a seeded random subset (`np.random.default_rng([seed,
split index])`), kept in file order; 0 keeps every row. This is for CPU
runs; LRA uses every row.

No cache: encoding bytes is a vectorised copy, cheaper than reading the
files, and an int32 cache at max_length 4000 (2 x 4000 x 4 = 32 KB per
pair) would be larger than the TSVs. Only each field's first `max_length`
bytes are kept while reading; the padded splits are held in memory
(gigabytes for LRA's full train split at 4000; CPU presets use a shorter
max_length).
"""

from __future__ import annotations

import os
import time
from typing import Any

from absl import logging
import numpy as np

from lightjax.data.arrays import subset_rows
from lightjax.data.base import (DataError, TaskData, check_count, register,
                                 resolve_task_config)

NAME = "lra_retrieval"
PAD_ID = 0
VOCAB_SIZE = 257  # 256 byte values + padding
NUM_CLASSES = 2
# LRA's columns (input_pipeline.get_tsv_dataset's `col_names`).
COLUMNS = ("label", "id1", "id2", "text1", "text2")
# Our split name -> the suffix of LRA's file `new_aan_pairs.<suffix>.tsv`.
SPLIT_FILES = (("train", "train"), ("validation", "eval"), ("test", "test"))
FILE_PREFIX = "new_aan_pairs"
RELEASE_SUBDIR = os.path.join("lra_release", "tsv_data")
WHERE_TO_GET = (
    "get LRA's release from"
    " https://storage.googleapis.com/long-range-arena/lra_release.gz and"
    " extract it in <data_dir> (`tar xf lra_release.gz` gives"
    f" {RELEASE_SUBDIR}/)")
# id -> token string: padding, then byte b (id b + 1) as its latin-1
# character, so decoding ASCII text is "".join(VOCAB[i] for i in ids).
VOCAB = ("<pad>",) + tuple(bytes([b]).decode("latin-1") for b in range(256))


def default_config() -> dict[str, Any]:
  """The task's config fields; the defaults are LRA's setup."""
  return dict(
      name=NAME,
      # Folder holding new_aan_pairs.{train,eval,test}.tsv; "" means
      # `<data_dir>/lra_release/tsv_data`.
      aan_dir="",
      # Bytes kept per document (LRA: 4000); inputs are twice as long.
      max_length=4000,
      # Rows kept per split, a seeded random subset; 0 = all (LRA).
      num_train=0,
      num_validation=0,
      num_test=0,
      # Seed of those subsets.
      seed=0,
  )


class AanFileError(DataError, FileNotFoundError):
  """An AAN TSV file is missing (the message says where to get it)."""


def aan_dir(config: dict[str, Any], data_dir: str) -> str:
  return config["aan_dir"] or os.path.join(data_dir, RELEASE_SUBDIR)


def check_files(folder: str) -> dict[str, str]:
  """split -> path of its TSV; one error naming every missing file."""
  paths = {split: os.path.join(folder, f"{FILE_PREFIX}.{suffix}.tsv")
           for split, suffix in SPLIT_FILES}
  missing = [p for p in paths.values() if not os.path.isfile(p)]
  if missing:
    raise AanFileError(
        f"LRA retrieval: missing {', '.join(missing)} (looked in {folder!r};"
        f" set task.aan_dir, default <data_dir>/{RELEASE_SUBDIR});"
        f" {WHERE_TO_GET}")
  return paths


def read_tsv(path: str, max_bytes: int | None = None
             ) -> tuple[np.ndarray, list[bytes], list[bytes]]:
  """(labels int32[N], texts1, texts2) of one LRA AAN file, texts as the raw
  bytes of their fields, cut to `max_bytes` if given (so only what is
  encoded stays in memory, not the whole file)."""
  labels, texts1, texts2 = [], [], []
  skipped = 0
  with open(path, "rb") as f:
    for line_number, line in enumerate(f, 1):
      line = line.rstrip(b"\n")
      if line.endswith(b"\r"):
        line = line[:-1]
      if not line:
        continue
      fields = line.split(b"\t")
      if len(fields) != len(COLUMNS):
        skipped += 1
        continue
      try:
        label = float(fields[0])
      except ValueError:
        label = None
      if label not in (0.0, 1.0):
        raise ValueError(
            f"LRA retrieval: {path}:{line_number}: label {fields[0][:20]!r}"
            " is not 0 or 1")
      labels.append(int(label))
      texts1.append(fields[3][:max_bytes])
      texts2.append(fields[4][:max_bytes])
  if skipped:
    logging.warning("LRA retrieval: skipped %d row(s) of %s without %d"
                    " tab-separated columns", skipped, path, len(COLUMNS))
  if not labels:
    raise ValueError(f"LRA retrieval: {path} has no rows with the"
                     f" {len(COLUMNS)} columns {', '.join(COLUMNS)}")
  return np.asarray(labels, np.int32), texts1, texts2


def encode_bytes(texts: list[bytes], max_length: int) -> np.ndarray:
  """int32[N, max_length]: byte b -> b + 1, truncated, padded with 0.

  One contiguous copy: each text is cut and zero-filled to max_length, the
  bytes shifted by one, then positions past each text's length reset to
  the pad id (a real byte 0 becomes id 1, so it is not padding).
  """
  lengths_N = np.asarray([min(len(t), max_length) for t in texts], np.int64)
  buffer = b"".join(t[:max_length].ljust(max_length, b"\0") for t in texts)
  ids_NxL = np.frombuffer(buffer, np.uint8).reshape(len(texts), max_length)
  ids_NxL = ids_NxL.astype(np.int32) + 1
  ids_NxL[np.arange(max_length)[None, :] >= lengths_N[:, None]] = PAD_ID
  return ids_NxL


def pair_inputs(ids1_NxL: np.ndarray, ids2_NxL: np.ndarray) -> np.ndarray:
  """int32[N, 2L]: document 1 then document 2, each padded to L (the layout
  `DualEncoderClassifier` splits in half)."""
  return np.concatenate([ids1_NxL, ids2_NxL], axis=1).astype(np.int32)


def _check_config(config: dict[str, Any]) -> None:
  length = config["max_length"]
  if isinstance(length, bool) or int(length) != length or length < 1:
    raise ValueError(f"{NAME} max_length must be an integer >= 1, got"
                     f" {length!r}")
  for split, _ in SPLIT_FILES:
    key = f"num_{split}"
    if int(config[key]) != config[key] or config[key] < 0:
      raise ValueError(f"{NAME} {key} must be an integer >= 0 (0 = every"
                       f" row), got {config[key]!r}")
  check_count(NAME, config, "seed", 0)


def load_split(path: str, split: str, config: dict[str, Any],
               split_index: int) -> dict[str, np.ndarray]:
  """{"inputs": int32[N, 2 * max_length], "targets": int32[N]} of one file."""
  max_length = int(config["max_length"])
  labels_N, texts1, texts2 = read_tsv(path, max_length)
  keep = int(config[f"num_{split}"])
  if keep > len(labels_N):
    raise ValueError(
        f"{NAME} num_{split}={keep} but {path} has {len(labels_N)} rows")
  rows = subset_rows(len(labels_N), keep, int(config["seed"]), split_index)
  ids1 = encode_bytes([texts1[i] for i in rows], max_length)
  ids2 = encode_bytes([texts2[i] for i in rows], max_length)
  return {"inputs": pair_inputs(ids1, ids2), "targets": labels_N[rows]}


@register(NAME, default_config=default_config, check_config=_check_config)
def build(task_config: Any, data_dir: str) -> TaskData:
  """Reads LRA's AAN pairs (see the module docstring)."""
  config = resolve_task_config(task_config, name=NAME)
  _check_config(config)
  paths = check_files(aan_dir(config, data_dir))
  start = time.perf_counter()
  splits = {split: load_split(paths[split], split, config, i)
            for i, (split, _) in enumerate(SPLIT_FILES)}
  logging.info("Read %s (%s) in %.1f s", NAME,
               {s: len(v["targets"]) for s, v in splits.items()},
               time.perf_counter() - start)
  return TaskData(
      name=NAME,
      kind="classification",
      vocab_size=VOCAB_SIZE,
      num_classes=NUM_CLASSES,
      max_len=2 * int(config["max_length"]),
      splits=splits,
      vocab=VOCAB,
      pad_id=PAD_ID,
  )
