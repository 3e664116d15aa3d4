"""pareto.png: test accuracy against parameters and against train FLOPs.

An efficient variant is only interesting if nothing else is both cheaper and
more accurate; the Pareto front (Pareto-optimal runs joined by a step line)
shows which runs are, on each cost axis. Log x axes: costs of the variants
span orders of magnitude.
"""

from __future__ import annotations

from lightjax.report.runs import Run, get, num


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
