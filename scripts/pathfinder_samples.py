"""Grids of generated Pathfinder images, to look at what the task is.

  python scripts/pathfinder_samples.py --out results/pathfinder_samples --image_size 32 64

Writes `pathfinder<size>_len<contour length>.png` per size (16 images of the
seeded training split, each titled connected / not connected). The grid in
results/pathfinder_samples/ was made by the command above. The generator is
`lightjax/data/pathfinder.py`; tests/test_data_pathfinder.py runs this script.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))

from lightjax.data import pathfinder  # noqa: E402

if __name__ == "__main__":
  pathfinder.main()
