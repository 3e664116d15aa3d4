"""LRA Text: byte-level IMDb sentiment (Long Range Arena, Tay et al. 2021).

LRA's "Byte-level Text Classification" task: IMDb movie
reviews (Maas et al. 2011, "Learning Word Vectors for Sentiment Analysis"),
each read as the bytes of its UTF-8 text, labelled negative (0) or positive
(1). Working on bytes instead of words makes the sequences long (a review
is about 1.3k bytes on average, some over 10k) and takes away the tokenizer,
so the model has to compose characters into words and words into a
judgement over a long range. That is why LRA chose it.

Tokens. Byte b has id b + 1 and the pad id is 0, so vocab_size is 257. This is
LRA's encoding exactly: `lra_benchmarks/text_classification/input_pipeline.py`
encodes with `tfds.deprecated.text.ByteTextEncoder()`, whose ids are the
bytes incremented by one for the pad id 0. Each review is truncated to its
first `max_length` bytes (LRA: `encode(text)[:max_length]`) and padded with 0.
The text is taken as stored, `<br />` tags and all, with surrounding
whitespace stripped (tfds `imdb_reviews` strips each file the same way).

Lengths. LRA's released config (`text_classification/configs/base_tc_config.py`)
uses max_length 1000; the paper's speed and memory table (Table 2) runs the
same task at 1K-4K. Both are presets of `configs/lra_text.py`.

Data. The original archive
https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz unpacks to
`aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt` (12,500 reviews per folder;
`train/unsup` and the `.feat` files are not used). It is read from
`task.imdb_dir`, by default `<data_dir>/aclImdb`; no TensorFlow is needed.
`task.source="tfds"` reads tfds `imdb_reviews` instead (same reviews; needs
tensorflow-datasets and TensorFlow, imported only then). Files are read in a
fixed order (neg before pos, by numeric id), so the arrays do not depend on
the file system's listing order.

Splits. IMDb has train and test (25k each) and no validation set; LRA
evaluates on test and selects on test too (`valid_raw = data["test"]`).
Here "test" is IMDb test, and "validation", the split checkpoints are
selected on, is a seeded `validation_fraction` of IMDb train held out (and
removed from "train"), so the reported test number is not selected on. The
hold-out is `lightjax.data.arrays.holdout_rows` (the same rule as GLUE's).
`validation_fraction=0` makes "validation" the test split, as in LRA: all of
train is used, and the selection then looks at the reported split.

Cache: `<data_dir>/lra_text_cache/<source>_L<max_length>_<hash>.npz` holds
the truncated bytes of train and test (ragged, uint8) and their labels; the
hash covers `max_length`, the source, and for files the folders' paths,
file counts and modification times, so adding or removing reviews re-encodes
(editing a review in place does not change its folder's time: delete the
cache then). The hold-out is cut after loading, so changing
`validation_fraction` or `seed` reuses the cache.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable

import numpy as np

from lightjax.data import cache
from lightjax.data.base import DataError, TaskData, register, resolve_task_config
from lightjax.data.arrays import (check_hold_out, check_source, hold_out,
                                  import_tfds, pad_ragged, tfds_arrays)

NAME = "lra_text"

# Bump when the arrays produced for a given config change.
ENCODING_VERSION = 1

IMDB_SUBDIR = "aclImdb"
CACHE_SUBDIR = "lra_text_cache"
URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
TFDS_NAME = "imdb_reviews"
LAYOUT = "aclImdb/{train,test}/{pos,neg}/*.txt"

PAD_ID = 0
BYTE_OFFSET = 1  # byte b -> id b + 1 (LRA's ByteTextEncoder)
VOCAB_SIZE = 256 + BYTE_OFFSET
LABELS = ("neg", "pos")  # label id = index (tfds imdb_reviews' order)
NUM_CLASSES = len(LABELS)
SOURCES = ("files", "tfds")
_FILE_SPLITS = ("train", "test")


def default_config() -> dict[str, Any]:
  """Task config fields; the defaults are LRA's released Text setup."""
  return dict(
      name=NAME,
      # "files": the aclImdb folders; "tfds": tfds imdb_reviews (needs
      # tensorflow-datasets and TensorFlow).
      source="files",
      # The aclImdb folder (with train/ and test/); "" = <data_dir>/aclImdb.
      imdb_dir="",
      # Bytes kept per review (LRA's released config: 1000; paper: up to 4K).
      max_length=1000,
      # Part of IMDb train held out as "validation"; 0: validation = test
      # (LRA's practice).
      validation_fraction=0.1,
      # Seed of the hold-out.
      seed=0,
  )


# ----------------------------------------------------------------- encoding


def vocab() -> tuple[str, ...]:
  """id -> token string: "<pad>", then each byte as "\\xNN" (printable ASCII
  as itself), for decoding and debugging."""
  def show(b: int) -> str:
    return chr(b) if 0x20 <= b < 0x7f else f"\\x{b:02x}"

  return ("<pad>",) + tuple(show(b) for b in range(256))


def encode(text: str | bytes, max_length: int) -> np.ndarray:
  """One review -> int32[max_length]: its UTF-8 bytes + 1, truncated, 0-padded.

  `str` is encoded as UTF-8 (a non-ASCII character is several tokens); bytes
  are taken as they are.
  """
  data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
  raw = np.frombuffer(data[:max_length], np.uint8)
  out = np.zeros(max_length, np.int32)
  out[:raw.size] = raw.astype(np.int32) + BYTE_OFFSET
  return out


def decode(ids: Iterable[int]) -> bytes:
  """Ids -> the bytes they encode, pad ids dropped."""
  ids = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids)).ravel()
  return (ids[ids != PAD_ID] - BYTE_OFFSET).astype(np.uint8).tobytes()


def ragged_bytes(texts: Iterable[bytes], max_length: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Reviews -> (uint8[total] concatenated truncated bytes, int32[N] lengths).

  Ragged because most reviews are shorter than `max_length` (the padded int32
  arrays are ~4x larger per byte and mostly padding at 4K).
  """
  chunks = [t[:max_length] for t in texts]
  lengths = np.asarray([len(c) for c in chunks], np.int32)
  tokens = np.frombuffer(b"".join(chunks), np.uint8).copy()
  return tokens, lengths


def pad_ids(tokens: np.ndarray, lengths: np.ndarray, max_length: int
            ) -> np.ndarray:
  """Ragged bytes -> int32[N, max_length] ids (byte + 1), 0 after each."""
  return pad_ragged(tokens.astype(np.int32) + BYTE_OFFSET, lengths, max_length)


# ----------------------------------------------------------------- reading


class ImdbMissingError(DataError, FileNotFoundError):
  """The IMDb data are not where the config says (the message says where to
  get them)."""


def _imdb_dir(config: dict[str, Any], data_dir: str) -> str:
  return config["imdb_dir"] or os.path.join(data_dir, IMDB_SUBDIR)


def _folders(imdb_dir: str) -> dict[tuple[str, str], str]:
  return {(split, label): os.path.join(imdb_dir, split, label)
          for split in _FILE_SPLITS for label in LABELS}


def _review_files(folder: str) -> list[str]:
  return [n for n in os.listdir(folder) if n.endswith(".txt")]


def check_files(imdb_dir: str) -> dict[tuple[str, str], list[str]]:
  """(split, label) -> that folder's review file names; one error naming
  every missing or empty folder if any is."""
  names, missing = {}, []
  for key, folder in _folders(imdb_dir).items():
    found = _review_files(folder) if os.path.isdir(folder) else []
    if not found:
      missing.append("/".join(key))
    names[key] = found
  if missing:
    raise ImdbMissingError(
        f"LRA Text needs the IMDb reviews (Maas et al. 2011): no review files"
        f" in {', '.join(missing)} under {imdb_dir!r} (set task.imdb_dir,"
        f" default <data_dir>/{IMDB_SUBDIR}); download {URL} and unpack it"
        f" into the data dir, which gives {LAYOUT}")
  return names


_NUMBERED = re.compile(r"^(\d+)_")


def _file_order(name: str) -> tuple[int, int, str]:
  """`<id>_<rating>.txt` files by numeric id; other names after, by name."""
  m = _NUMBERED.match(name)
  return (0, int(m.group(1)), name) if m else (1, 0, name)


def read_split(imdb_dir: str, split: str,
               names: dict[tuple[str, str], list[str]] | None = None
               ) -> tuple[list[bytes], np.ndarray]:
  """(review bytes, int32 labels) of IMDb `split` ("train" or "test"), neg
  first, each folder by numeric id."""
  names = names or check_files(imdb_dir)
  texts, labels = [], []
  for label, folder_name in enumerate(LABELS):
    folder = os.path.join(imdb_dir, split, folder_name)
    for name in sorted(names[(split, folder_name)], key=_file_order):
      try:
        with open(os.path.join(folder, name), "rb") as f:
          texts.append(f.read().strip())
      except OSError as e:
        raise DataError(f"IMDb review {os.path.join(folder, name)} cannot be"
                        f" read: {e.strerror}") from None
      labels.append(label)
  return texts, np.asarray(labels, np.int32)


def _read_tfds_split(split: str) -> tuple[list[bytes], np.ndarray]:
  arrays = tfds_arrays(TFDS_NAME, split)
  texts = [bytes(t).strip() for t in arrays["text"]]
  return texts, np.asarray(arrays["label"], np.int32)


# ----------------------------------------------------------------- cache


def _check_config(config: dict[str, Any]) -> None:
  check_source(NAME, config, SOURCES)
  length = config["max_length"]
  if isinstance(length, bool) or int(length) != length or length < 1:
    raise ValueError(
        f"{NAME} max_length must be an integer >= 1, got {length!r}")
  check_hold_out(NAME, config)


def cache_path(config: dict[str, Any], data_dir: str,
               names: dict[tuple[str, str], list[str]] | None) -> str:
  """`<data_dir>/lra_text_cache/<source>_L<max_length>_<hash>.npz`."""
  key: dict[str, Any] = {
      "version": ENCODING_VERSION,
      "source": config["source"],
      "max_length": int(config["max_length"]),
  }
  if names is not None:
    imdb_dir = _imdb_dir(config, data_dir)
    key["folders"] = {
        "/".join(k): [os.path.abspath(folder), len(names[k]),
                      os.stat(folder).st_mtime_ns]
        for k, folder in sorted(_folders(imdb_dir).items())}
  return cache.npz_path(data_dir, CACHE_SUBDIR,
                        f"{config['source']}_L{int(config['max_length'])}",
                        key, digits=12)


_FIELDS = ("tokens", "lengths", "targets")


def read_ragged(config: dict[str, Any], data_dir: str,
                names: dict[tuple[str, str], list[str]] | None
                ) -> dict[str, dict[str, np.ndarray]]:
  """IMDb train and test read afresh as ragged truncated bytes + labels
  (from the files listed in `names`, or tfds when it is None)."""
  max_length = int(config["max_length"])
  ragged = {}
  for split in _FILE_SPLITS:
    if names is not None:
      texts, targets = read_split(_imdb_dir(config, data_dir), split, names)
    else:
      texts, targets = _read_tfds_split(split)
    tokens, lengths = ragged_bytes(texts, max_length)
    ragged[split] = {"tokens": tokens, "lengths": lengths, "targets": targets}
  return ragged


def load_ragged(config: dict[str, Any], data_dir: str
                ) -> dict[str, dict[str, np.ndarray]]:
  """IMDb train and test as ragged truncated bytes + labels, from the cache
  or freshly read (then cached)."""
  names = None
  if config["source"] == "files":
    names = check_files(_imdb_dir(config, data_dir))
  else:
    import_tfds(TFDS_NAME)  # the one-line message before any work

  return cache.cached(
      cache_path(config, data_dir, names),
      lambda: read_ragged(config, data_dir, names), splits=_FILE_SPLITS,
      fields=_FIELDS, what="LRA Text", redo="re-encoding",
      made=lambda ragged: f"Encoded LRA Text ({cache.rows(ragged)})")


# ----------------------------------------------------------------- building


def build_splits(config: dict[str, Any], data_dir: str
                 ) -> dict[str, dict[str, np.ndarray]]:
  """train / validation (held out of train) / test, padded int32 arrays."""
  max_length = int(config["max_length"])
  ragged = load_ragged(config, data_dir)
  padded = {
      split: {"inputs": pad_ids(r["tokens"], r["lengths"], max_length),
              "targets": r["targets"].astype(np.int32)}
      for split, r in ragged.items()}
  return hold_out(padded["train"], padded["test"], config)


@register(NAME, default_config=default_config, check_config=_check_config)
def build(task_config: Any, data_dir: str) -> TaskData:
  """Builds LRA Text from the aclImdb folders (or tfds), cached per length."""
  config = resolve_task_config(task_config, name=NAME)
  _check_config(config)
  return TaskData(
      name=NAME,
      kind="classification",
      vocab_size=VOCAB_SIZE,
      num_classes=NUM_CLASSES,
      max_len=int(config["max_length"]),
      splits=build_splits(config, data_dir),
      vocab=vocab(),
      pad_id=PAD_ID,
  )
