"""Pathfinder from LRA's released images (`task.source="original"`).

The layout of LRA's release (lra_release/lra_release/pathfinder<size>/):
`<dir>/<difficulty>/metadata/<k>.npy` (text despite the name: one example
per line, space separated; field 0 the image folder relative to
`<dir>/<difficulty>`, e.g. "imgs/0", field 1 the PNG name, field 3 the label,
as lra_benchmarks/data/pathfinder.py reads them) and
`<dir>/<difficulty>/imgs/<k>/*.png`. LRA splits each difficulty 80/10/10 in
tfds' stored order; tfds' order cannot be reproduced without tfds, so here
the examples (metadata files in numeric order, lines in order) are shuffled
by `seed` and cut 80/10/10, then each split is capped at its num_* size.
Decoding PNGs needs Pillow (imported only here, when originals are read).
"""

from __future__ import annotations

import glob
import os
from typing import Any

import numpy as np

from lightjax.data.base import DataError, SPLITS, MissingPackage

# LRA release folders per contour length (Linsley et al.'s three settings).
DIFFICULTY_DIRS = {6: "curv_baseline", 9: "curv_contour_length_9",
                   14: "curv_contour_length_14"}
RELEASE_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
ORIGINAL_SPLIT = (0.8, 0.1, 0.1)  # LRA's [:80%], [80%:90%], [90%:].


class PathfinderDataError(DataError, FileNotFoundError):
  """Original Pathfinder files are missing (the message says where to get
  them); `lightjax.train` prints it as one line and exits with code 2."""


def original_root(config: dict[str, Any], data_dir: str) -> str:
  """The folder holding curv_baseline/ etc. for a resolved config."""
  return config["original_dir"] or os.path.join(
      data_dir, "lra_release", "lra_release",
      f"pathfinder{config['image_size']}")


def _import_pil():
  try:
    from PIL import Image  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise MissingPackage("reading original Pathfinder PNGs needs Pillow:"
                      " pip install pillow") from None
  return Image


def read_metadata(folder: str) -> list[tuple[str, int]]:
  """(image path, label) of every example listed in `<folder>/metadata/*.npy`.

  The .npy files are text: one example per line, space-separated fields;
  field 0 is the image folder relative to `folder`, field 1 the file name,
  field 3 the label (lra_benchmarks/data/pathfinder.py). Files are read in
  numeric order of their names (0.npy, 1.npy, ..., 10.npy).
  """
  def key(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)

  examples = []
  for path in sorted(glob.glob(os.path.join(folder, "metadata", "*.npy")),
                     key=key):
    with open(path, encoding="utf-8") as f:
      for n, line in enumerate(f.read().splitlines()):
        fields = line.split(" ")
        if not line.strip():
          continue
        if len(fields) < 4 or fields[3] not in ("0", "1"):
          raise ValueError(f"Pathfinder metadata {path} line {n + 1}: expected"
                           f" 'folder name index label ...', got {line!r}")
        examples.append((os.path.join(folder, fields[0], fields[1]),
                         int(fields[3])))
  return examples


def read_original(config: dict[str, Any], data_dir: str
                  ) -> dict[str, dict[str, np.ndarray]]:
  """LRA's released images for `config`: split -> {"images", "targets"}."""
  root = original_root(config, data_dir)
  length = config["contour_length"]
  folder = os.path.join(root, DIFFICULTY_DIRS[length])
  if not os.path.isdir(os.path.join(folder, "metadata")):
    raise PathfinderDataError(
        f"Pathfinder originals not found: no {os.path.join(folder, 'metadata')}"
        f" (set task.original_dir, default"
        " <data_dir>/lra_release/lra_release/pathfinder"
        f"{config['image_size']});"
        f" download {RELEASE_URL} and extract it so that"
        f" lra_release/lra_release/pathfinder{config['image_size']}/"
        f"{DIFFICULTY_DIRS[length]}/ is there, or use task.source=generated")
  examples = read_metadata(folder)
  if not examples:
    raise PathfinderDataError(f"Pathfinder metadata in {folder} lists no"
                              " images")
  image_cls = _import_pil()
  order = np.random.default_rng(config["seed"]).permutation(len(examples))
  n = len(examples)
  cuts = [0, int(ORIGINAL_SPLIT[0] * n),
          int((ORIGINAL_SPLIT[0] + ORIGINAL_SPLIT[1]) * n), n]
  size = config["image_size"]
  out = {}
  for i, split in enumerate(SPLITS):
    rows = order[cuts[i]:cuts[i + 1]][:config[f"num_{split}"]]
    images = np.zeros((len(rows), size, size), np.uint8)
    targets = np.zeros(len(rows), np.int32)
    for j, r in enumerate(rows.tolist()):
      path, targets[j] = examples[r]
      if not os.path.isfile(path):
        raise PathfinderDataError(
            f"Pathfinder image {path} (listed in {folder}/metadata) is"
            f" missing; re-extract {RELEASE_URL}")
      with image_cls.open(path) as im:
        img = np.asarray(im.convert("L"))
      if img.shape != (size, size):
        raise ValueError(f"Pathfinder image {path} is {img.shape}, expected"
                         f" {size}x{size} (task.image_size)")
      images[j] = img
    out[split] = {"images": images, "targets": targets}
  return out
