"""Published numbers (papers' tables) shipped with the code, read by name.

WHY a repo copy: result tables print the papers' figures next to ours (e.g.
Long Range Arena, Tay et al. 2021, Table 2 speed/memory and Table 1
accuracy), and users' machines have no access to the project's shared
folder, so every CSV lives here with its citation in `#` header lines.

  rows = paper.load_csv("lra_table2_speed_memory.csv")
  rows[0]["model"], rows[0]["steps_4k"]   # "transformer", 1.4

One loader for every file: lines starting with `#` are comments (the
citation; `comments(name)` returns them), the first other line is the header,
and cells that parse as numbers come back as floats, the rest as strings
(empty cells as None).
"""

from __future__ import annotations

import csv
import os
from typing import Any

_DIR = os.path.dirname(os.path.abspath(__file__))

# lightjax attention variant -> its model's row in Long Range Arena's tables
# (Table 1 accuracy, Table 2 speed/memory; Table 2 has no Sparse Transformer
# or Longformer row). The one place this mapping lives: the report and the
# bench both print the paper's figures beside ours through it.
LRA_MODEL = {
    "softmax": "transformer",
    "linear": "linear_transformer",
    "performer": "performer",
    "linformer": "linformer",
    "local": "local_attention",
    "strided": "sparse_transformer",
    "fixed": "sparse_transformer",
    "bigbird": "bigbird",
    "longformer": "longformer",
}

# lightjax task -> its column in LRA Table 1 (the one place, as LRA_MODEL).
LRA_TASK = {
    "listops": "listops",
    "lra_text": "text",
    "lra_retrieval": "retrieval",
    "lra_image": "image",
    "lra_pathfinder": "pathfinder",
}


def path(name: str) -> str:
  """Absolute path of paper file `name` (raises with the valid names)."""
  full = os.path.join(_DIR, name)
  if not os.path.isfile(full):
    raise FileNotFoundError(f"no paper file {name!r}; available:"
                            f" {', '.join(names()) or '(none)'}")
  return full


def names() -> list[str]:
  return sorted(f for f in os.listdir(_DIR) if f.endswith(".csv"))


def _cell(text: str) -> Any:
  text = text.strip()
  if not text:
    return None
  try:
    return float(text)
  except ValueError:
    return text


def _lines(name: str) -> list[str]:
  with open(path(name), newline="") as f:
    return f.read().splitlines()


def load_csv(name: str) -> list[dict[str, Any]]:
  """Rows of paper CSV `name` as dicts keyed by the header."""
  rows = [l for l in _lines(name) if l.strip() and not l.lstrip().startswith("#")]
  return [{k.strip(): _cell(v) for k, v in row.items()}
          for row in csv.DictReader(rows)]


def comments(name: str) -> list[str]:
  """The `#` lines of `name` (citation and notes), without the leading '#'."""
  return [l.lstrip()[1:].strip() for l in _lines(name)
          if l.lstrip().startswith("#")]
