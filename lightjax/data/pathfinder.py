r"""Pathfinder (Long Range Arena): are the two dots joined by one dashed path?

Linsley et al. 2018, "Learning long-range spatial dependencies with
horizontal gated recurrent units" (NeurIPS), made Pathfinder; Tay et al. 2021,
"Long Range Arena" (sec. 3.4), flattens its 32x32 greyscale images to 1024
pixel tokens and asks a sequence model the binary question. LRA never shipped
the generator (its images came from github.com/drewlinsley/pathfinder), so
the task has two sources, chosen by `task.source`:

  "generated"  a seeded numpy generator (`pathfinder_gen`: no download, any
               size; how it draws and what it guarantees is documented
               there).
  "original"   LRA's released images (`pathfinder_lra.read_original`), e.g.
               lra_release/lra_release/pathfinder32/curv_contour_length_14.

Both give the same task: tokens are grey values 0..255 as ids value + 1 (id 0
is padding, never used since every image fills its H*W tokens), vocab 257,
sequence length image_size**2, label 1 = connected.

Splits. Each split is drawn from its own stream, so `num_train` never changes
the test images. Cache (`lightjax.data.cache`):
`<data_dir>/lra_pathfinder/<readable params>_<hash>.npz` (uint8 images),
like listops; decoded originals are cached too
(`original_px<size>_len<length>_<hash>.npz`).

This module registers the task; the generator's and the reader's public
names are re-exported here (`pathfinder.generate_split`,
`pathfinder.read_metadata`, ...).
"""

from __future__ import annotations

import glob
import os
from typing import Any

import numpy as np

from lightjax.data import cache
from lightjax.data.base import (SPLITS, TaskData, check_count, register,
                                 resolve_task_config)
from lightjax.data.pathfinder_gen import (GEOMETRY_KEYS, dot_positions,
                                          draw_geometry, generate_split,
                                          geometry, render)
from lightjax.data.pathfinder_lra import (DIFFICULTY_DIRS, ORIGINAL_SPLIT,
                                          RELEASE_URL, PathfinderDataError,
                                          original_root, read_metadata,
                                          read_original)

__all__ = [
    "DIFFICULTY_DIRS", "GENERATOR_VERSION", "GEOMETRY_KEYS", "NAME",
    "ORIGINAL_SPLIT", "RELEASE_URL", "SPLITS", "PathfinderDataError", "build",
    "cache_path", "default_config", "dot_positions", "draw_geometry",
    "generate_split", "generate_splits", "geometry", "load_generated",
    "load_original", "original_root", "read_metadata", "read_original",
    "render", "tokens",
]

NAME = "lra_pathfinder"

# Bump when the images produced for a given config change (part of the
# cache key's hash).
GENERATOR_VERSION = 1

NUM_CLASSES = 2
PAD_ID = 0
VOCAB_SIZE = 257  # pad + grey values 0..255 (value v has id v + 1)
VOCAB = ("<pad>",) + tuple(str(v) for v in range(256))
SOURCES = ("generated", "original")


def default_config() -> dict[str, Any]:
  """Task config fields; sizes are LRA pathfinder32's (160k/20k/20k)."""
  return dict(
      name=NAME,
      # "generated" (pathfinder_gen's generator, no download) or "original"
      # (LRA's released PNGs under `original_dir`).
      source="generated",
      # Folder holding curv_baseline/ etc.; "" means
      # <data_dir>/lra_release/lra_release/pathfinder<image_size>.
      original_dir="",
      image_size=32,           # 32, 64, 128, ...: a multiple of 32
      contour_length=14,       # dashes per main path; 6/9/14 = easy/med/hard
      num_distractors=2,       # LRA's 32x32 had 5; see module doc
      distractor_length=4,     # dashes per distractor: contour_length // 3
      max_turn_degrees=60.0,   # bound on each step's turn
      num_train=160_000,
      num_validation=20_000,
      num_test=20_000,
      seed=0,
  )


# ----------------------------------------------------------------- cache


def _generation_params(config: dict[str, Any]) -> dict[str, Any]:
  keys = GEOMETRY_KEYS + ("num_train", "num_validation", "num_test", "seed")
  return {k: config[k] for k in sorted(keys)}


def _stamp(config: dict[str, Any]) -> dict[str, Any]:
  return {"version": GENERATOR_VERSION, **_generation_params(config)}


def cache_path(config: dict[str, Any], data_dir: str) -> str:
  """`<data_dir>/lra_pathfinder/<readable params>_<hash>.npz`."""
  p = _generation_params(config)
  name = (f"n{p['num_train']}-{p['num_validation']}-{p['num_test']}"
          f"_px{p['image_size']}_len{p['contour_length']}"
          f"_d{p['num_distractors']}x{p['distractor_length']}"
          f"_s{p['seed']}")
  return cache.npz_path(data_dir, NAME, name, _stamp(config))


def generate_splits(config: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
  """split -> {"images": uint8[N, H, W], "targets": int32[N]} (generated)."""
  geo = {k: config[k] for k in GEOMETRY_KEYS}
  out = {}
  for i, split in enumerate(SPLITS):
    images, labels = generate_split(num=config[f"num_{split}"], split_index=i,
                                    seed=config["seed"], **geo)
    out[split] = {"images": images, "targets": labels}
  return out


def _cached(path: str, stamp: dict[str, Any], make, verb: str):
  """The Pathfinder splits' cache (`cache.cached`), made by `make`."""
  return cache.cached(path, make, splits=SPLITS, fields=("images", "targets"),
                      what="Pathfinder", stamp=stamp, redo="rebuilding",
                      made=lambda _: f"{verb} Pathfinder")


def load_generated(config: dict[str, Any], data_dir: str):
  """The generated splits for `config`, from the cache or freshly drawn."""
  return _cached(cache_path(config, data_dir), _stamp(config),
                 lambda: generate_splits(config), "Generated")


def load_original(config: dict[str, Any], data_dir: str):
  """LRA's images for `config`, decoded once and cached (200k PNGs take
  minutes to decode). The cache key covers the folder and the size and
  modification time of every metadata file, so a changed release is re-read.
  """
  folder = os.path.join(original_root(config, data_dir),
                        DIFFICULTY_DIRS[config["contour_length"]])
  metadata = sorted(glob.glob(os.path.join(folder, "metadata", "*.npy")))
  if not metadata:  # read_original says where to get them
    return read_original(config, data_dir)
  stats = [(os.path.basename(m), os.stat(m).st_size, os.stat(m).st_mtime_ns)
           for m in metadata]
  stamp = {"folder": os.path.abspath(folder), "metadata": stats,
           **{k: config[k] for k in ("image_size", "num_train",
                                     "num_validation", "num_test", "seed")}}
  path = cache.npz_path(data_dir, NAME, f"original_px{config['image_size']}"
                        f"_len{config['contour_length']}", stamp)
  return _cached(path, stamp, lambda: read_original(config, data_dir), "Read")


# ----------------------------------------------------------------- task


def tokens(images_NxHxW: np.ndarray) -> np.ndarray:
  """Grey values -> int32[N, H*W] ids (value + 1; id 0 is padding)."""
  return images_NxHxW.reshape(len(images_NxHxW), -1).astype(np.int32) + 1


def _check_config(config: dict[str, Any]) -> None:
  if config["source"] not in SOURCES:
    raise ValueError(f"unknown lra_pathfinder source {config['source']!r};"
                     f" valid: {', '.join(SOURCES)}")
  for k in ("image_size", "contour_length", "num_distractors",
            "distractor_length", "num_train", "num_validation", "num_test",
            "seed"):
    v = config[k]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
      raise ValueError(f"lra_pathfinder {k} must be an integer >= 0, got {v!r}")
  for k in ("num_train", "num_validation", "num_test"):  # each split used
    check_count(NAME, config, k, 1)
  if config["image_size"] < 32 or config["image_size"] % 32:
    raise ValueError("lra_pathfinder image_size must be a multiple of 32,"
                     f" got {config['image_size']}")
  if config["contour_length"] < 1 or config["distractor_length"] < 1:
    raise ValueError("lra_pathfinder contour_length and distractor_length must"
                     " be >= 1")
  if not 0 <= config["max_turn_degrees"] <= 90:
    raise ValueError("lra_pathfinder max_turn_degrees must be in [0, 90], got"
                     f" {config['max_turn_degrees']}")
  if config["source"] == "original" and (
      config["contour_length"] not in DIFFICULTY_DIRS):
    raise ValueError(
        "lra_pathfinder originals exist for contour_length"
        f" {sorted(DIFFICULTY_DIRS)} ({', '.join(DIFFICULTY_DIRS.values())}),"
        f" got {config['contour_length']}")


@register(NAME, default_config=default_config, check_config=_check_config)
def build(task_config: Any, data_dir: str) -> TaskData:
  """Builds Pathfinder from the generator (cached) or LRA's originals."""
  config = resolve_task_config(task_config, name=NAME)
  _check_config(config)
  if config["source"] == "original":
    raw = load_original(config, data_dir)
  else:
    raw = load_generated(config, data_dir)
  splits = {s: {"inputs": tokens(d["images"]),
                "targets": d["targets"].astype(np.int32)}
            for s, d in raw.items()}
  return TaskData(name=NAME, kind="classification", vocab_size=VOCAB_SIZE,
                  num_classes=NUM_CLASSES, max_len=config["image_size"] ** 2,
                  splits=splits, vocab=VOCAB, pad_id=PAD_ID)
