"""Grids of generated Pathfinder images, to look at what the task is.

  python scripts/pathfinder_samples.py --out results/pathfinder_samples --image_size 32 64

Writes `pathfinder<size>_len<contour length>.png` per size (16 images of the
seeded training split, each titled connected / not connected). The grid in
results/pathfinder_samples/ was made by the command above. The generator is
`lightjax/data/pathfinder_gen.py`; tests/test_data_pathfinder.py runs this
script.
"""

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))

from lightjax.data import pathfinder, pathfinder_gen  # noqa: E402


def save_sample_grid(path: str, *, num: int = 16, seed: int = 0,
                     image_size: int = 32, contour_length: int = 14,
                     **geometry_kw) -> None:
  """Writes a PNG grid of generated images (training split 0 of `seed`),
  each titled with its label; for READMEs and eyeballing the generator."""
  # matplotlib is for this plot only (not a requirement of lightjax).
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  kw = {k: v for k, v in pathfinder.default_config().items()
        if k in pathfinder_gen.GEOMETRY_KEYS}
  kw.update(image_size=image_size, contour_length=contour_length,
            **geometry_kw)
  images, labels, _ = pathfinder_gen.generate_split(
      num=num, split_index=0, seed=seed, return_dots=True, **kw)
  cols = int(math.ceil(math.sqrt(num)))
  rows = int(math.ceil(num / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.2 * rows))
  for ax in np.asarray(axes).ravel():
    ax.axis("off")
  for i, ax in enumerate(np.asarray(axes).ravel()[:num]):
    ax.imshow(images[i], cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_title("connected" if labels[i] else "not connected", fontsize=9)
  fig.suptitle(f"generated Pathfinder {image_size}x{image_size}, contour"
               f" length {contour_length}", fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv: list[str] | None = None) -> None:
  """`python scripts/pathfinder_samples.py --out DIR`: sample grids as PNGs."""
  parser = argparse.ArgumentParser(prog="python scripts/pathfinder_samples.py",
                                   description=main.__doc__)
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--num", type=int, default=16)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--image_size", type=int, nargs="+", default=[32])
  parser.add_argument("--contour_length", type=int, default=14)
  args = parser.parse_args(argv)
  for size in args.image_size:
    path = os.path.join(args.out, f"pathfinder{size}_len{args.contour_length}"
                        ".png")
    save_sample_grid(path, num=args.num, seed=args.seed, image_size=size,
                     contour_length=args.contour_length)
    print(path)


if __name__ == "__main__":
  main()
