"""LRA Image: CIFAR-10 as 1024 grey pixel tokens (LRA, Tay et al. 2021).

LRA's "Image Classification on sequences of pixels" task:
each 32x32 CIFAR-10 image (Krizhevsky 2009) becomes its 1024 8-bit grey
values in row-major order, one token per pixel, and the model names one of 10
classes. Nothing tells the model that pixel i and pixel i + 32 are
neighbours: it has to learn the 2-D structure from a flat sequence, which is
the long-range part.

Grey values. LRA converts with `tf.image.rgb_to_grayscale`
(`lra_benchmarks/image/input_pipeline.py`), which computes, in float32,

  grey = uint8( (0.2989 R + 0.5870 G + 0.1140 B) / 255 * 255.5 )

where the cast truncates: the pixel is scaled to [0, 1], weighted (ITU-R
BT.601 luma), and scaled back by `dtype.max + 0.5` as
`tf.image.convert_image_dtype` does. This is not plain rounding of
0.2989 R + 0.5870 G + 0.1140 B: pure green (0, 255, 0) gives 149, rounding
would give 150. `grayscale` below computes TF's formula in float32 with
numpy, so the tokens are LRA's without TensorFlow.

Tokens. Grey value v has id v + 1 and the pad id is 0 (vocab_size 257). LRA
fed the raw values 0..255 to a model whose padding mask is `inputs > 0`
(`models/transformer/transformer.py`), so every black pixel was masked out
as if it were padding; the offset keeps black pixels visible. Images are
never padded: every row has exactly 1024 tokens.

Data. The CIFAR-10 python version,
https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, unpacks to
`cifar-10-batches-py/{data_batch_1..5,test_batch}`: pickled dicts whose
b"data" is uint8[10000, 3072] (per image the 1024 red, then green, then blue
values, each plane row-major) and b"labels" 10000 ints in 0..9. It is read
from `task.cifar_dir`, by default `<data_dir>/cifar-10-batches-py`. These
pickles are the dataset's official format; `pickle.load` can run code, so
read only files from that archive. `task.source="tfds"` reads tfds `cifar10`
instead (needs tensorflow-datasets and TensorFlow, imported only then).

Splits. "test" is CIFAR-10's test_batch (10,000 images). "validation" is a
seeded `validation_fraction` of the 50,000 train images held out (LRA:
`train[90%:]`, the last 5,000; the batches are in random order, so a seeded
hold-out of the same size is the same kind of sample); 0 makes validation
the test split. The same rule as LRA Text (`arrays.hold_out`).

No cache: reading the six pickles and converting 60k images is vectorised
numpy and takes about a second.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from lightjax.data import arrays
from lightjax.data.base import DataError, TaskData, register, resolve_task_config

NAME = "lra_image"

CIFAR_SUBDIR = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TFDS_NAME = "cifar10"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
LAYOUT = f"{CIFAR_SUBDIR}/{{{','.join(TRAIN_FILES)},{TEST_FILE}}}"

SIDE = 32
SEQ_LEN = SIDE * SIDE
PAD_ID = 0
GREY_OFFSET = 1  # grey value v -> id v + 1
VOCAB_SIZE = 256 + GREY_OFFSET
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
           "horse", "ship", "truck")
NUM_CLASSES = len(CLASSES)
SOURCES = ("files", "tfds")

# tf.image.rgb_to_grayscale's weights (ITU-R BT.601 luma), R, G, B.
RGB_WEIGHTS = np.asarray([0.2989, 0.5870, 0.1140], np.float32)


def default_config() -> dict[str, Any]:
  """Task config fields; the defaults are LRA's Image setup."""
  return dict(
      name=NAME,
      # "files": the CIFAR-10 python batches; "tfds": tfds cifar10 (needs
      # tensorflow-datasets and TensorFlow).
      source="files",
      # The cifar-10-batches-py folder; "" = <data_dir>/cifar-10-batches-py.
      cifar_dir="",
      # Part of the train images held out as "validation" (LRA: 10%); 0:
      # validation = test.
      validation_fraction=0.1,
      # Seed of the hold-out.
      seed=0,
  )


# ----------------------------------------------------------------- pixels


def grayscale(rgb: np.ndarray) -> np.ndarray:
  """uint8[..., 3] RGB -> uint8[...] grey, as tf.image.rgb_to_grayscale.

  float32 throughout, as TF: x / 255, the weighted sum, times 255.5, then
  truncated (see the module docstring).
  """
  rgb = np.asarray(rgb)
  if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
    raise ValueError(
        f"grayscale wants uint8[..., 3] RGB, got {rgb.dtype}{list(rgb.shape)}")
  x = rgb.astype(np.float32) * np.float32(1.0 / 255)
  grey = (x[..., 0] * RGB_WEIGHTS[0] + x[..., 1] * RGB_WEIGHTS[1]
          + x[..., 2] * RGB_WEIGHTS[2])
  return (grey * np.float32(255.5)).astype(np.uint8)


def planes_to_rgb(data: np.ndarray) -> np.ndarray:
  """CIFAR python rows uint8[N, 3072] (R, G, B planes) -> uint8[N, 1024, 3]
  (row-major pixels, channel last)."""
  return data.reshape(-1, 3, SEQ_LEN).transpose(0, 2, 1)


def tokens(grey: np.ndarray) -> np.ndarray:
  """Grey uint8[N, 1024] -> int32 ids (value + 1)."""
  return grey.astype(np.int32) + GREY_OFFSET


# ----------------------------------------------------------------- reading


class CifarMissingError(DataError, FileNotFoundError):
  """CIFAR-10 files are not where the config says (the message says where to
  get them)."""


def _cifar_dir(config: dict[str, Any], data_dir: str) -> str:
  return config["cifar_dir"] or os.path.join(data_dir, CIFAR_SUBDIR)


def check_files(cifar_dir: str) -> dict[str, list[str]]:
  """{"train": [5 paths], "test": [1 path]}; one error naming every missing
  file if any is."""
  paths = {"train": [os.path.join(cifar_dir, n) for n in TRAIN_FILES],
           "test": [os.path.join(cifar_dir, TEST_FILE)]}
  missing = [os.path.basename(p) for ps in paths.values() for p in ps
             if not os.path.isfile(p)]
  if missing:
    raise CifarMissingError(
        f"LRA Image needs CIFAR-10 (python version): missing"
        f" {', '.join(missing)} in {cifar_dir!r} (set task.cifar_dir, default"
        f" <data_dir>/{CIFAR_SUBDIR}); download {URL} and unpack it into the"
        f" data dir, which gives {LAYOUT}")
  return paths


def read_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
  """One CIFAR-10 python batch -> (uint8[N, 3072], int32[N] labels), its
  keys, shapes and label range checked."""
  with open(path, "rb") as f:
    try:
      # encoding="bytes": the batches were pickled by Python 2; their keys
      # are bytes (b"data", b"labels").
      batch = pickle.load(f, encoding="bytes")
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(
          f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e})"
      ) from None
  if not isinstance(batch, dict) or not {b"data", b"labels"} <= set(batch):
    keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
    raise ValueError(
        f"{path} is not a CIFAR-10 python batch: want a dict with b'data' and"
        f" b'labels', got {keys}")
  data = batch[b"data"]
  labels = np.asarray(batch[b"labels"])
  if (not isinstance(data, np.ndarray) or data.dtype != np.uint8
      or data.ndim != 2 or data.shape[1] != 3 * SEQ_LEN):
    shape = getattr(data, "shape", None)
    raise ValueError(
        f"{path}: b'data' must be uint8[N, {3 * SEQ_LEN}], got"
        f" {getattr(data, 'dtype', type(data).__name__)}{list(shape or [])}")
  if labels.shape != (data.shape[0],) or not np.issubdtype(
      labels.dtype, np.integer):
    raise ValueError(
        f"{path}: b'labels' must be {data.shape[0]} integers, got"
        f" {labels.dtype}{list(labels.shape)}")
  if labels.size and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
    raise ValueError(
        f"{path}: labels must be in 0..{NUM_CLASSES - 1}, got"
        f" {labels.min()}..{labels.max()}")
  return data, labels.astype(np.int32)


def read_split(paths: list[str]) -> dict[str, np.ndarray]:
  """The batches at `paths`, concatenated in order, as task arrays."""
  parts = [read_batch(p) for p in paths]
  data = np.concatenate([d for d, _ in parts])
  return {"inputs": tokens(grayscale(planes_to_rgb(data))),
          "targets": np.concatenate([y for _, y in parts])}


def _read_tfds_split(split: str) -> dict[str, np.ndarray]:
  loaded = arrays.tfds_arrays(TFDS_NAME, split)
  images = np.asarray(loaded["image"], np.uint8)  # [N, 32, 32, 3]
  grey = grayscale(images).reshape(len(images), SEQ_LEN)
  return {"inputs": tokens(grey),
          "targets": np.asarray(loaded["label"], np.int32)}


# ----------------------------------------------------------------- building


def _check_config(config: dict[str, Any]) -> None:
  arrays.check_source(NAME, config, SOURCES)
  arrays.check_hold_out(NAME, config)


@register(NAME, default_config=default_config, check_config=_check_config)
def build(task_config: Any, data_dir: str) -> TaskData:
  """Builds LRA Image from the CIFAR-10 python batches (or tfds)."""
  config = resolve_task_config(task_config, name=NAME)
  _check_config(config)
  if config["source"] == "files":
    paths = check_files(_cifar_dir(config, data_dir))
    train, test = read_split(paths["train"]), read_split(paths["test"])
  else:
    train, test = _read_tfds_split("train"), _read_tfds_split("test")
  return TaskData(
      name=NAME,
      kind="classification",
      vocab_size=VOCAB_SIZE,
      num_classes=NUM_CLASSES,
      max_len=SEQ_LEN,
      splits=arrays.hold_out(train, test, config),
      vocab=("<pad>",) + tuple(str(v) for v in range(256)),
      pad_id=PAD_ID,
  )
