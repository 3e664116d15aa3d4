"""Runs' `summary.json` files -> an LRA-Table-1-style comparison (md, csv, png).

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
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import statistics
from typing import Any, Callable, Iterable, NamedTuple

from lightjax import paper

SUMMARY = "summary.json"
MISSING = "—"
PAPER_CSV = "lra_table1_accuracy.csv"
CITATION = ("Long Range Arena (Tay et al., ICLR 2021, arXiv:2011.04006),"
            " Table 1, test accuracy (%)")

# Our attention variant -> the model's row in LRA Table 1. The one place this
# mapping lives; variants without a paper row simply get no paper number.
PAPER_MODEL = {
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


class ReportError(ValueError):
  """No summaries, or an unreadable one; the message names the path."""


class Run(NamedTuple):
  name: str       # short, unique label: the workdir's name (longer if clashing)
  workdir: str
  summary: dict[str, Any]


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
  """Each workdir's basename, with parent dirs added only where names clash."""
  parts = [os.path.normpath(os.path.abspath(w)).split(os.sep) for w in workdirs]
  depth = [1] * len(parts)
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
      with open(f) as fh:
        s = json.load(fh)
    except (OSError, ValueError) as e:
      raise ReportError(f"cannot read {f}: {e}") from e
    if not isinstance(s, dict):
      raise ReportError(f"{f}: expected a JSON object, got {type(s).__name__}")
    summaries.append(s)
  workdirs = [os.path.dirname(f) for f in files]
  runs = [Run(n, w, s) for n, w, s in
          zip(_short_names(workdirs), workdirs, summaries)]
  return sorted(runs, key=lambda r: (str(r.summary.get("task") or ""),
                                     str(r.summary.get("attention") or ""),
                                     r.name))


# --- Values -------------------------------------------------------------------


def get(summary: dict[str, Any], dotted: str) -> Any:
  """summary["a"]["b"] for "a.b"; None when any level is missing or null."""
  node: Any = summary
  for key in dotted.split("."):
    if not isinstance(node, dict) or node.get(key) is None:
      return None
    node = node[key]
  return node


def _number(x: Any) -> float | None:
  if isinstance(x, bool):
    return None
  try:
    x = float(x)
  except (TypeError, ValueError):
    return None
  return x if math.isfinite(x) else None


def num(summary: dict[str, Any], dotted: str, factor: float = 1.0
        ) -> float | None:
  """The finite number at `dotted` times `factor`, else None."""
  x = _number(get(summary, dotted))
  return None if x is None else x * factor


def paper_accuracy(attention: str | None, task: str | None) -> float | None:
  """LRA Table 1 test accuracy (%) of our variant's counterpart, or None."""
  model = PAPER_MODEL.get(attention or "")
  if model is None or not task:
    return None
  return _number(_paper_rows().get(model, {}).get(task))


@functools.lru_cache(maxsize=None)
def _paper_rows() -> dict[str, dict[str, Any]]:
  return {row["model"]: row for row in paper.load_csv(PAPER_CSV)}


class Column(NamedTuple):
  header: str     # markdown
  key: str        # csv
  value: Callable[[Run], Any]
  fmt: str = ""   # format spec for numbers in markdown


def _field(header: str, key: str, dotted: str, factor: float = 1.0,
           fmt: str = "") -> Column:
  return Column(header, key, lambda r: num(r.summary, dotted, factor), fmt)


def _text(header: str, key: str, dotted: str) -> Column:
  return Column(header, key, lambda r: get(r.summary, dotted))


COLUMNS = (
    Column("run", "run", lambda r: r.name),
    _text("config", "config_name", "config_name"),
    _text("task", "task", "task"),
    _text("attention", "attention", "attention"),
    _field("test acc (%)", "test_accuracy_pct", "test_accuracy", 100, ".2f"),
    Column("LRA paper test acc (%)", "lra_paper_test_accuracy_pct",
           lambda r: paper_accuracy(get(r.summary, "attention"),
                                    get(r.summary, "task")), ".2f"),
    _field("best val acc (%)", "best_val_accuracy_pct", "best_val_accuracy",
           100, ".2f"),
    _field("best step", "best_step", "best_step", fmt=".0f"),
    _field("params", "params_total", "num_params.total", fmt=",.0f"),
    _field("attn params", "params_attention", "num_params.attention",
           fmt=",.0f"),
    _field("embed params", "params_embedding", "num_params.embedding",
           fmt=",.0f"),
    _field("train GFLOPs/ex", "train_gflops_per_example",
           "cost.train_flops_per_example", 1e-9, ".3g"),
    _field("fwd GFLOPs/ex", "forward_gflops_per_example",
           "cost.forward_flops_per_example", 1e-9, ".3g"),
    _field("train peak (MiB)", "train_step_peak_mib",
           "cost.train_step_peak_bytes", 2**-20, ".1f"),
    _field("train steps/s", "train_steps_per_s", "cost.train_steps_per_s",
           fmt=".1f"),
    _field("wall time (s)", "wall_time_s", "wall_time_s", fmt=".0f"),
)


def _md_cell(x: Any, fmt: str) -> str:
  if x is None or x == "":
    return MISSING
  if fmt and isinstance(x, (int, float)):
    return format(x, fmt)
  return str(x).replace("|", "\\|")


def _csv_cell(x: Any) -> str:
  if x is None:
    return ""
  if isinstance(x, float):
    return f"{x:.6g}" if abs(x) < 1e6 else f"{x:.0f}"
  return str(x)


# --- Tables -------------------------------------------------------------------


def _markdown(header: list[str], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def run_table(runs: list[Run]) -> str:
  """The per-run markdown table."""
  return _markdown([c.header for c in COLUMNS],
                   [[_md_cell(c.value(r), c.fmt) for c in COLUMNS]
                    for r in runs])


def groups(runs: list[Run]) -> list[dict[str, Any]]:
  """Test accuracy (%) pooled over runs of one setup, e.g. several seeds.

  A setup is (task, attention, config_name): runs of the CPU-sized default and
  of the `lra` preset are never averaged together.
  """
  pooled: dict[tuple, list[Run]] = {}
  for r in runs:
    key = tuple(str(get(r.summary, k) or MISSING)
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


def group_table(rows: list[dict[str, Any]]) -> str:
  def mean_std(g):
    if g["mean"] is None:
      return MISSING
    std = "" if g["std"] is None else f" ± {g['std']:.2f}"
    return f"{g['mean']:.2f}{std}"
  return _markdown(
      ["task", "attention", "config", "n", "test acc (%) mean ± std",
       "LRA paper test acc (%)"],
      [[g["task"], g["attention"], g["config_name"], str(g["n"]), mean_std(g),
        _md_cell(g["paper"], ".2f")] for g in rows])


def _notes(runs: list[Run]) -> str:
  lra = [r.name for r in runs
         if "lra" in str(get(r.summary, "config_name") or "")]
  lines = [
      f"- Paper column: {CITATION}. Our variant -> paper row: " + ", ".join(
          f"{k} -> {v}" for k, v in PAPER_MODEL.items()) + ".",
      "- Our default ListOps config (`configs/listops.py`) is a CPU-sized"
      " variant (sequences of at most 128 tokens, a much smaller model), so"
      " its numbers are not directly comparable with the paper's; only runs of"
      " the `lra` preset (config name contains \"lra\") use the paper's setup"
      " (sequences up to 2000 tokens, 4 layers, width 512)."
      + (f" Runs here with the `lra` preset: {', '.join(lra)}." if lra else
         " None of the runs here used it: compare trends, not numbers."),
      "- Test accuracy is that of the best-validation checkpoint. FLOPs and"
      " peak memory are XLA's compile-time figures for one train step (per"
      f" example for FLOPs); {MISSING} marks a value the run's summary.json"
      " does not have (older trainer, or the backend does not report it).",
  ]
  return "\n".join(lines)


def markdown_report(runs: list[Run]) -> str:
  parts = ["# Results vs Long Range Arena Table 1", "", run_table(runs), ""]
  grouped = groups(runs)
  if any(g["runs"] > 1 for g in grouped):
    parts += ["## Grouped (runs sharing task, attention and config, e.g."
              " seeds)", "", group_table(grouped), ""]
  parts += ["## Notes", "", _notes(runs), ""]
  return "\n".join(parts)


def write_csv(runs: list[Run], path: str) -> None:
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow([c.key for c in COLUMNS])
    for r in runs:
      w.writerow([_csv_cell(c.value(r)) for c in COLUMNS])


# --- Pareto plot --------------------------------------------------------------


def pareto_front(points: list[tuple[float, float]]
                 ) -> list[tuple[float, float]]:
  """Points no other point beats on both axes (lower x, higher y), by x.

  Returns:
    The front sorted by increasing x (and hence increasing y).
  """
  front: list[tuple[float, float]] = []
  for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
    if not front or y > front[-1][1]:
      front.append((x, y))
  return front


def plot_pareto(runs: list[Run], path: str) -> None:
  """Test accuracy vs parameters and vs train FLOPs/example, log x, fronts."""
  # Figure without pyplot: no global state, no display backend needed.
  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure
  from matplotlib.ticker import EngFormatter, LogLocator
  # pylint: enable=g-import-not-at-top

  panels = (("num_params.total", "parameters (total)"),
            ("cost.train_flops_per_example", "train FLOPs / example"))
  fig = Figure(figsize=(11, 4.5), layout="constrained")
  axes = fig.subplots(1, 2, sharey=True)
  for ax, (key, label) in zip(axes, panels):
    pts = []
    for r in runs:
      x, y = num(r.summary, key), num(r.summary, "test_accuracy", 100)
      if x is not None and y is not None and x > 0:
        pts.append((x, y, r))
    ax.set_xlabel(label)
    ax.grid(True, which="both", alpha=0.3)
    if not pts:
      ax.text(0.5, 0.5, f"no run has {key}", ha="center", va="center",
              transform=ax.transAxes)
      continue
    xs = [p[0] for p in pts]
    ax.set_xscale("log")
    ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)  # room for labels, even for one x
    # Label 1, 2, 3, 5 x 10^k as "20k", "5M" while the data spans few decades.
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_minor_locator(LogLocator(subs=(2, 3, 5)))
    if max(xs) / min(xs) <= 100:
      ax.xaxis.set_minor_formatter(EngFormatter(sep=""))
    ax.tick_params(axis="x", which="both", labelsize=8)
    ax.margins(y=0.1)
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], zorder=3)
    for x, y, r in pts:
      attention = get(r.summary, "attention") or "?"
      text = r.name if r.name == attention else f"{r.name} ({attention})"
      ax.annotate(text, (x, y), xytext=(4, 4), textcoords="offset points",
                  fontsize=8)
    front = pareto_front([(x, y) for x, y, _ in pts])
    ax.step([p[0] for p in front], [p[1] for p in front], where="post",
            color="C3", marker="o", markerfacecolor="none", markersize=10,
            label="Pareto front", zorder=2)
    ax.legend(loc="lower right", fontsize=8)
  axes[0].set_ylabel("test accuracy (%)")
  fig.suptitle("Accuracy vs cost (higher and further left is better)")
  fig.savefig(path, dpi=120)


# --- Everything ---------------------------------------------------------------


def make_report(paths: Iterable[str], out_dir: str) -> dict[str, str]:
  """Loads every run under `paths`, writes table.md, table.csv, pareto.png.

  Returns:
    {"markdown": ..., "csv": ..., "pareto": ...} paths of the written files.
  Raises:
    ReportError: a path has no summary.json or a summary cannot be read.
  """
  runs = load_runs(paths)
  os.makedirs(out_dir, exist_ok=True)
  out = {"markdown": os.path.join(out_dir, "table.md"),
         "csv": os.path.join(out_dir, "table.csv"),
         "pareto": os.path.join(out_dir, "pareto.png")}
  with open(out["markdown"], "w") as f:
    f.write(markdown_report(runs))
  write_csv(runs, out["csv"])
  plot_pareto(runs, out["pareto"])
  return out
