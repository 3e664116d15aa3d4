"""The file formats results are written in: markdown tables, CSV, JSONL.

WHY one module: the report (`lightjax.report`: table.md / table.csv) and the
bench (`lightjax.bench`: bench.md / bench.csv / bench.jsonl) print the same
kinds of tables, and two copies of a renderer drift apart (one escapes a `|`
in a cell, the other breaks the table). Each caller decides what goes in a
cell; this module only decides how a cell is written:

  markdown(["variant", "1K"], [["linear", "27.3 (7.7x)"]])  # GitHub table
  write_csv(path, ["variant", "median_s"], [{"variant": "linear", ...}])
  read_jsonl(path)                                         # [dict, ...]

Missing values are `MISSING` ("—") in markdown and empty cells in CSV.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Iterable, Mapping, Sequence

MISSING = "—"


def markdown(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
  """A GitHub markdown table, newline-terminated.

  Cells are str()-ed; None and "" become MISSING, a `|` is escaped and line
  breaks become spaces, so no cell can break the table.
  """

  def cell(x: Any) -> str:
    if x is None or x == "":
      return MISSING
    return str(x).replace("|", "\\|").replace("\n", " ")

  lines = ["| " + " | ".join(cell(h) for h in header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def csv_cell(x: Any) -> str:
  """Plain text for a CSV cell: "" for None, 6 significant digits for floats
  (whole numbers from 1e6 up), lists joined by ';'."""
  if x is None:
    return ""
  if isinstance(x, (list, tuple)):
    return ";".join(csv_cell(v) for v in x)
  if isinstance(x, float):
    return f"{x:.6g}" if abs(x) < 1e6 else f"{x:.0f}"
  return str(x)


def write_csv(path: str, columns: Sequence[str],
              rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> None:
  """A header line of `columns`, then one line per row (a dict keyed by
  column, missing keys empty, or a sequence in column order)."""
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(columns)
    for r in rows:
      values = ([r.get(c) for c in columns] if isinstance(r, Mapping)
                else list(r))
      w.writerow([csv_cell(v) for v in values])


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Every JSON object of a JSONL file (metrics.jsonl, bench.jsonl), in order."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
