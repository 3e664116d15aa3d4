"""table.md and table.csv: one row per run, accuracy beside cost and paper.

Long Range Arena (Tay et al. 2021, arXiv:2011.04006) reports accuracy (Table
1) and cost (Table 2) apart; a row here puts a run's test accuracy next to
the paper's for the same attention and task and next to what the run cost
(parameters by group, XLA FLOPs, planned memory, steps/s), so "cheaper" and
"as accurate" are read off one row. Each column is declared once (`COLUMNS`:
markdown header, csv key, value, number format), so the two files cannot
disagree; both are written by the shared `lightjax.tables`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from lightjax import attention, paper, tables
from lightjax.report.runs import (CITATION, Run, get, groups, is_lra_task,
                                  num, paper_accuracy)


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


def _best_val_accuracy(summary, factor: float) -> float | None:
  """The best validation score where it is an accuracy (the selection
  metric of classification), times `factor`."""
  if summary.selection != "accuracy":
    return None
  return num(summary, "best_val_score", factor)


COLUMNS = (
    Column("run", "run", lambda r: r.name),
    _text("config", "config_name", "config_name"),
    _text("task", "task", "task"),
    _text("attention", "attention", "attention"),
    _field("test acc (%)", "test_accuracy_pct", "test_accuracy", 100, ".2f"),
    Column("LRA paper test acc (%)", "lra_paper_test_accuracy_pct",
           lambda r: paper_accuracy(get(r.summary, "attention"),
                                    get(r.summary, "task")), ".2f"),
    Column("best val acc (%)", "best_val_accuracy_pct",
           lambda r: _best_val_accuracy(r.summary, 100), ".2f"),
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

# Added where a run has a softmax counterpart among the runs (`_with_speedup`).
SPEEDUP = Column("steps/s vs softmax (x)", "speedup_vs_softmax",
                 lambda r: None, ".2f")

# Shrinking runs' columns (lightjax.shrink): shown when a run has them.
SHRINK_COLUMNS = (
    _text("shrink method", "shrink_method", "method"),
    _field("teacher params", "teacher_params", "teacher_num_params",
           fmt=",.0f"),
    _field("% of teacher acc", "accuracy_kept_pct", "accuracy_kept", 100,
           ".1f"),
    _field("MB on disk", "weights_mb", "deploy.bytes", 1e-6, ".3f"),
    _field("CPU ms p50 (b=1)", "cpu_latency_p50_ms",
           "deploy.latency.task.p50_ms", fmt=".2f"),
)


def _formatted(x: Any, fmt: str) -> Any:
  """A number in its column's format; anything else as it is."""
  if fmt and isinstance(x, (int, float)):
    return format(x, fmt)
  return x


def _setup_key(summary) -> tuple[Any, ...]:
  """What two runs must share to be compared as variants: the task and the
  config with the attention variant taken out of its argument
  ("listops:long,linear" and "listops:long" are the same setup)."""
  name = str(get(summary, "config_name") or "")
  base, _, arg = name.partition(":")
  rest = sorted(t for t in arg.split(",") if t and t not in attention.names())
  return get(summary, "task"), base, tuple(rest)


def speedup_vs_softmax(runs: list[Run]) -> dict[str, float]:
  """Run name -> its train steps/s over the softmax run's of the same setup
  (`_setup_key`), measured by the same command on the same machine: the
  one speed comparison that holds across hardware (a ratio)."""
  softmax = {_setup_key(r.summary): num(r.summary, "cost.train_steps_per_s")
             for r in runs if get(r.summary, "attention") == "softmax"
             and not get(r.summary, "method")}
  out = {}
  for r in runs:
    base = softmax.get(_setup_key(r.summary))
    mine = num(r.summary, "cost.train_steps_per_s")
    if base and mine is not None and not get(r.summary, "method"):
      out[r.name] = mine / base
  return out


def _any_lra(runs: list[Run]) -> bool:
  return any(is_lra_task(get(r.summary, "task")) for r in runs)


def columns(runs: list[Run]) -> tuple[Column, ...]:
  """COLUMNS (the LRA paper's only when a run's task is an LRA task; with
  the speed-up over softmax where a run has a softmax counterpart), and
  SHRINK_COLUMNS when any run is a shrinking run."""
  cols = COLUMNS
  if not _any_lra(runs):
    cols = tuple(c for c in cols if c.key != "lra_paper_test_accuracy_pct")
  ratios = speedup_vs_softmax(runs)
  if len(ratios) > 1:
    cols += (SPEEDUP._replace(value=lambda r: ratios.get(r.name)),)
  if any(get(r.summary, "method") for r in runs):
    cols += SHRINK_COLUMNS
  return cols


def run_table(runs: list[Run]) -> str:
  """The per-run markdown table."""
  cols = columns(runs)
  return tables.markdown([c.header for c in cols],
                         [[_formatted(c.value(r), c.fmt) for c in cols]
                          for r in runs])


def group_table(rows: list[dict[str, Any]], lra: bool = True) -> str:
  """Mean ± sample std of test accuracy per setup (`runs.groups`), with
  the LRA paper's figure when `lra`."""
  def mean_std(g):
    if g["mean"] is None:
      return None
    std = "" if g["std"] is None else f" ± {g['std']:.2f}"
    return f"{g['mean']:.2f}{std}"
  paper_col = ["LRA paper test acc (%)"] if lra else []
  return tables.markdown(
      ["task", "attention", "config", "n", "test acc (%) mean ± std",
       *paper_col],
      [[g["task"], g["attention"], g["config_name"], g["n"], mean_std(g),
        *([_formatted(g["paper"], ".2f")] if lra else [])] for g in rows])


def _notes(runs: list[Run], lra_tasks: bool = True) -> str:
  lra = [r.name for r in runs
         if "lra" in str(get(r.summary, "config_name") or "")]
  lines = [] if not lra_tasks else [
      f"- Paper column: {CITATION}. Our variant -> paper row: " + ", ".join(
          f"{k} -> {v}" for k, v in paper.LRA_MODEL.items()) + ".",
      "- Our default ListOps config (`configs/listops.py`) is a CPU-sized"
      " variant (sequences of at most 128 tokens, a much smaller model), so"
      " its numbers are not directly comparable with the paper's; only runs of"
      " the `lra` preset (config name contains \"lra\") use the paper's setup"
      " (sequences up to 2000 tokens, 4 layers, width 512)."
      + (f" Runs here with the `lra` preset: {', '.join(lra)}." if lra else
         " None of the runs here used it: compare trends, not numbers."),
  ]
  lines += [
      "- Test accuracy is that of the best-validation checkpoint. FLOPs and"
      " peak memory are XLA's compile-time figures for one train step (per"
      f" example for FLOPs); {tables.MISSING} marks a value the run's"
      " summary.json does not have (older trainer, or the backend does not"
      " report it).",
  ]
  return "\n".join(lines)


def markdown_report(runs: list[Run]) -> str:
  """table.md: the run table, the grouped table if any setup repeats, notes."""
  lra = _any_lra(runs)
  out = ("# Results" + (" vs Long Range Arena Table 1" if lra else "")
         + "\n\n" + run_table(runs))
  grouped = groups(runs)
  if any(g["runs"] > 1 for g in grouped):
    out += ("\n## Grouped (runs sharing task, attention and config, e.g."
            " seeds)\n\n" + group_table(grouped, lra))
  return out + "\n## Notes\n\n" + _notes(runs, lra) + "\n"


def write_csv(path: str, runs: list[Run]) -> None:
  """table.csv: the same rows and columns, plain numbers, missing = empty."""
  cols = columns(runs)
  tables.write_csv(path, [c.key for c in cols],
                   [[c.value(r) for c in cols] for r in runs])
