"""Runs' `summary.json` files -> an LRA-Table-1-style comparison (`lightjax.report`).

Long Range Arena (Tay et al. 2021, arXiv:2011.04006) reports one number per
model and task (Table 1, test accuracy) and cost in a separate table. We put
each run's accuracy next to what it cost (parameters, XLA FLOPs, planned
memory, speed) and next to the paper's accuracy for the same attention on the
same task, so "cheaper" and "as accurate" are read off one row.

`make_report(paths, out_dir)` writes:
  table.md     one row per run (sorted by task, then attention), a grouped
               mean ± std of test accuracy where several runs share a setup
               (seeds), and notes on comparability;
  table.csv    the same rows, plain numbers, missing values as empty cells;
  pareto.png   test accuracy vs parameters and vs train FLOPs/example, each
               with its Pareto front.
Summaries written by older trainers lack some keys: those cells show "—".

`python -m lightjax.report` (`__main__.py`) parses arguments and calls
`make_report`. Modules: `runs` (finding, reading and pooling summaries),
`render` (table.md, table.csv), `plots` (pareto.png).
"""

from __future__ import annotations

import os
from typing import Iterable

from lightjax import files
from lightjax.report import plots, render
from lightjax.report.runs import ReportError, load_runs

__all__ = ["ReportError", "make_report"]


def make_report(paths: Iterable[str], out_dir: str) -> dict[str, str]:
  """Loads every run under `paths`, writes table.md, table.csv, pareto.png.

  Returns:
    {"markdown": ..., "csv": ..., "pareto": ...} paths of the written files.
  Raises:
    ReportError: a path has no summary.json or a summary cannot be read.
  """
  files.check_output_dir(out_dir)  # before the runs are read
  runs = load_runs(paths)
  os.makedirs(out_dir, exist_ok=True)
  out = {"markdown": os.path.join(out_dir, "table.md"),
         "csv": os.path.join(out_dir, "table.csv"),
         "pareto": os.path.join(out_dir, "pareto.png")}
  with open(out["markdown"], "w") as f:
    f.write(render.markdown_report(runs))
  render.write_csv(out["csv"], runs)
  plots.plot_pareto(runs, out["pareto"])
  return out
