"""shrink_report.md and shrink_pareto.png of one shrinking run.

One row each for the teacher, the student before fine-tuning and the
student as finished (fine-tuned or not), with what a deployment pays:
parameters, XLA forward FLOPs at batch 1, megabytes of weights on disk, CPU
batch-1 latency (p50/p90) at the task's length and at 128 tokens, test
accuracy and the share of the teacher's accuracy kept. Several runs (shrink
and plain training) are combined by `python -m lightjax.report`.
"""

from __future__ import annotations

import os
from typing import Any

from lightjax import files, tables

REPORT_MD = "shrink_report.md"
PARETO_PNG = "shrink_pareto.png"

HEADER = ("model", "method", "params", "fwd MFLOPs", "MB on disk",
          "CPU ms p50/p90 @task", "CPU ms p50/p90 @128", "test acc (%)",
          "% of teacher")


def _latency(deploy: dict[str, Any], key: str) -> str:
  lat = (deploy.get("latency") or {}).get(key)
  if not lat:
    return "—"
  return f"{lat['p50_ms']:.2f} / {lat['p90_ms']:.2f} (L={lat['seq_len']})"


# An embedding student (a sentence encoder distilled on unlabeled text) has
# no accuracy: its last two columns are its fidelity to the teacher on the
# held-out sentences (`shrink.run.fidelity`), the teacher's being 1 and 100.
FIDELITY_HEADER = HEADER[:-2] + ("test cosine to teacher",
                                 "top-10 agreement (%)")


def header(summary: dict[str, Any]) -> tuple[str, ...]:
  return FIDELITY_HEADER if summary.get("fidelity") else HEADER


def _fidelity_rows(summary: dict[str, Any], row) -> list[tuple[Any, ...]]:
  fid = summary["fidelity"]
  t, s = summary["teacher_deploy"], summary["deploy"]
  steps = summary.get("num_train_steps")
  name = (f"student, {steps} steps of distillation" if steps
          else "student (no distillation)")
  return [row("teacher", "—", t, 1.0, 100.0),
          row(name, summary["method"], s, fid.get("mean_cosine"),
              100 * fid["top10"] if "top10" in fid else None)]


def rows(summary: dict[str, Any]) -> list[tuple[Any, ...]]:
  teacher_acc = summary.get("teacher_test_accuracy")
  pct = lambda a: None if a is None else 100 * a
  kept = lambda a: (None if a is None or not teacher_acc
                    else 100 * a / teacher_acc)
  if summary.get("fidelity"):
    pct = kept = lambda a: a

  def row(name, method, deploy, acc, last=None, num_params=None):
    return (name, method,
            num_params if num_params is not None else deploy.get("num_params"),
            None if deploy.get("forward_flops") is None
            else deploy["forward_flops"] / 1e6,
            None if deploy.get("bytes") is None else deploy["bytes"] / 1e6,
            _latency(deploy, "task"), _latency(deploy, "128"),
            pct(acc), kept(acc) if last is None else last)
  if summary.get("fidelity"):
    return _fidelity_rows(summary, row)
  t, s = summary["teacher_deploy"], summary["deploy"]
  method = summary["method"]
  out = [row("teacher", "—", t, teacher_acc)]
  if summary.get("num_train_steps"):
    out.append(row("student, before fine-tuning", method,
                   {"num_params": s["num_params"]},
                   summary.get("test_accuracy_before_finetune")))
    out.append(row(f"student, {summary['num_train_steps']} steps of"
                   " recovery", method, s, summary.get("test_accuracy")))
  else:
    out.append(row("student (no fine-tuning)", method, s,
                   summary.get("test_accuracy")))
  return out


def table(summary: dict[str, Any]) -> str:
  fmt = (None, None, ",.0f", ".3g", ".3f", None, None,
         ".4f" if summary.get("fidelity") else ".2f", ".1f")
  body = [tuple(v if f is None or v is None else format(v, f)
                for v, f in zip(r, fmt)) for r in rows(summary)]
  return tables.markdown(header(summary), body)


def plot(summary: dict[str, Any], path: str) -> None:
  """Test accuracy against parameters and against CPU latency (log x)."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  points = [(r[0], r[2], r[5], r[7]) for r in rows(summary)]
  fig = Figure(figsize=(10, 4), layout="constrained")
  axes = fig.subplots(1, 2, sharey=True)
  t, s = summary["teacher_deploy"], summary["deploy"]
  lat = {"teacher": t["latency"]["task"]["p50_ms"],
         "student": s["latency"]["task"]["p50_ms"]}
  for ax, (label, x_of) in zip(axes, (
      ("parameters", lambda p: p[1]),
      ("CPU batch-1 latency p50 (ms, task length)",
       lambda p: lat["teacher"] if p[0] == "teacher"
       else (lat["student"] if "before" not in p[0] else None)))):
    for p in points:
      x = x_of(p)
      if x is None or p[3] is None:
        continue
      ax.scatter([x], [p[3]], zorder=3)
      ax.annotate(p[0], (x, p[3]), xytext=(4, 4), textcoords="offset points",
                  fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.3, y=0.15)
  axes[0].set_ylabel(header(summary)[7])
  fig.suptitle(f"{summary['method']}: {header(summary)[7]} vs cost (up and"
               " left is better)")
  fig.savefig(path, dpi=110)


def write(workdir: str, summary: dict[str, Any]) -> list[str]:
  md = os.path.join(workdir, REPORT_MD)
  text = (f"# {summary['method']} of {summary.get('teacher')}\n\n"
          + table(summary) + "\n\nLatency: batch 1 on this machine's CPU,"
          " jit-compiled, after warm-up; compare rows of one report only.\n")
  fid = summary.get("fidelity") or {}
  if "stsb_spearman" in fid:
    text += (f"\nSTS-B dev Spearman (GLUE STS-B files in the data dir):"
             f" student {fid['stsb_spearman']:.4f}, teacher"
             f" {fid.get('teacher_stsb_spearman', float('nan')):.4f}.\n")
  files.atomic_write(md, lambda f: f.write(text))
  png = os.path.join(workdir, PARETO_PNG)
  plot(summary, png)
  return [md, png]
