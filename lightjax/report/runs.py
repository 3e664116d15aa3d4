"""Finding, reading and pooling runs' `summary.json` files for the report.

A run is a `--workdir` of `lightjax.train`; its summary.json (written at the
end of training, read through `lightjax.summary`) holds what the report
prints: accuracy, parameters by group, XLA cost, wall time. Values are read
by dotted path (`num_params.total`): a `Summary` field, then
`config_lib.lookup`, the package's one dotted lookup, inside it; summaries
written by older trainers lack some fields, and those values are None (the
tables print "—").

The paper numbers beside ours are Long Range Arena's Table 1 (Tay et al.
2021, arXiv:2011.04006), matched through `paper.LRA_MODEL`.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
from typing import Any, Iterable, NamedTuple

from lightjax import config_lib, paper, tables
from lightjax import summary as summary_lib

SUMMARY = "summary.json"
PAPER_CSV = "lra_table1_accuracy.csv"
CITATION = ("Long Range Arena (Tay et al., ICLR 2021, arXiv:2011.04006),"
            " Table 1, test accuracy (%)")


class ReportError(ValueError):
  """No summaries, or an unreadable one; the message names the path."""


class Run(NamedTuple):
  name: str       # short, unique label: the workdir's name (longer if clashing)
  workdir: str
  summary: summary_lib.Summary


# --- Finding and loading summaries --------------------------------------------


def find_summaries(paths: Iterable[str]) -> list[str]:
  """The summary.json files under each path (a workdir or a parent, searched).

  A path may also be a summary.json itself.

  Raises:
    ReportError: naming the first path that does not exist or holds none.
  """
  found: list[str] = []
  for p in paths:
    if os.path.isfile(p) and os.path.basename(p) == SUMMARY:
      found.append(p)
      continue
    if not os.path.isdir(p):
      raise ReportError(f"{p}: no such directory" if not os.path.exists(p)
                        else f"{p}: not a run directory or a {SUMMARY}")
    here = []
    for root, dirs, files in os.walk(p):
      dirs.sort()
      if SUMMARY in files:
        here.append(os.path.join(root, SUMMARY))
    if not here:
      raise ReportError(
          f"no {SUMMARY} in {p} (searched recursively); pass the --workdir of"
          " a finished run (summary.json is written at the end of training),"
          " or a directory above several")
    found.extend(here)
  unique = {os.path.realpath(f): f for f in found}  # overlapping arguments
  return sorted(unique.values())


def _short_names(workdirs: list[str]) -> list[str]:
  """Each workdir's basename, with parent dirs added where names clash or a
  run lies inside another (a shrink run's phase: `theseus/replacing`)."""
  parts = [os.path.normpath(os.path.abspath(w)).split(os.sep) for w in workdirs]
  depth = [1] * len(parts)
  for i, p in enumerate(parts):
    outer = [len(q) for q in parts if len(q) < len(p) and p[:len(q)] == q]
    if outer:
      depth[i] = len(p) - max(outer) + 1
  while True:
    names = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
    clashes = {n for n in names if names.count(n) > 1}
    grow = [i for i, n in enumerate(names)
            if n in clashes and depth[i] < len(parts[i])]
    if not grow:
      return names
    for i in grow:
      depth[i] += 1


def load_runs(paths: Iterable[str]) -> list[Run]:
  """Reads every summary under `paths`; sorted by task, attention, name."""
  files = find_summaries(paths)
  summaries = []
  for f in files:
    try:
      summaries.append(summary_lib.read(f))
    except (OSError, ValueError) as e:
      raise ReportError(f"cannot read {f}: {e}") from e
  workdirs = [os.path.dirname(f) for f in files]
  runs = [Run(n, w, s) for n, w, s in
          zip(_short_names(workdirs), workdirs, summaries)]
  return sorted(runs, key=lambda r: (str(r.summary.task or ""),
                                     str(r.summary.attention or ""), r.name))


# --- Values -------------------------------------------------------------------


def get(summary: summary_lib.Summary, dotted: str) -> Any:
  """summary.a["b"] for "a.b"; None when any level is missing or null."""
  field, _, rest = dotted.partition(".")
  value = getattr(summary, field)  # a typo is an error, not a blank column
  if not rest or value is None:
    return value
  try:
    return config_lib.lookup(value, rest)
  except config_lib.PathError:
    return None


def _number(x: Any) -> float | None:
  if isinstance(x, bool):
    return None
  try:
    x = float(x)
  except (TypeError, ValueError):
    return None
  return x if math.isfinite(x) else None


def num(summary: summary_lib.Summary, dotted: str, factor: float = 1.0
        ) -> float | None:
  """The finite number at `dotted` times `factor`, else None."""
  x = _number(get(summary, dotted))
  return None if x is None else x * factor


def paper_accuracy(attention: str | None, task: str | None) -> float | None:
  """LRA Table 1 test accuracy (%) of our variant's counterpart, or None."""
  model = paper.LRA_MODEL.get(attention or "")
  column = paper.LRA_TASK.get(task or "")
  if model is None or column is None:
    return None
  return _number(_paper_rows().get(model, {}).get(column))


def is_lra_task(task: str | None) -> bool:
  """Whether LRA Table 1 has a column for `task` (`paper.LRA_TASK`)."""
  return (task or "") in paper.LRA_TASK


@functools.lru_cache(maxsize=None)
def _paper_rows() -> dict[str, dict[str, Any]]:
  return {row["model"]: row for row in paper.load_csv(PAPER_CSV)}


# --- Pooling ------------------------------------------------------------------


def groups(runs: list[Run]) -> list[dict[str, Any]]:
  """Test accuracy (%) pooled over runs of one setup, e.g. several seeds.

  A setup is (task, attention, config_name): runs of the CPU-sized default and
  of the `lra` preset are never averaged together.
  """
  pooled: dict[tuple, list[Run]] = {}
  for r in runs:
    key = tuple(str(get(r.summary, k) or tables.MISSING)
                for k in ("task", "attention", "config_name"))
    pooled.setdefault(key, []).append(r)
  out = []
  for (task, attention, config), members in pooled.items():
    accs = [a for a in (num(r.summary, "test_accuracy", 100) for r in members)
            if a is not None]
    out.append({
        "task": task, "attention": attention, "config_name": config,
        "runs": len(members), "n": len(accs),
        "mean": statistics.fmean(accs) if accs else None,
        # Sample std (n - 1), as for seeds; undefined for a single run.
        "std": statistics.stdev(accs) if len(accs) > 1 else None,
        "paper": paper_accuracy(attention, task),
    })
  return out
