"""The three PNG plots of a benchmark run (matplotlib, Agg: no display).

  steps_per_s_vs_length.png  train steps/s vs length, log-log
  memory_vs_length.png       compiled peak memory of the train step vs
                             length, log-log (softmax's slope 2, linear
                             variants' slope 1 is the LRA Table 2 story)
  decode_tokens_per_s.png    decode tokens/s vs context: KV-cached softmax
                             falls with t, recurrent linear stays flat
Failed points are left out (a gap in the line). Softmax (the baseline) is
drawn thick, `none` (the floor: attention replaced by the identity) dashed
grey, and entries with option overrides (`softmax:implementation=einsum`)
dotted.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
# pylint: disable=g-import-not-at-top,wrong-import-position
import matplotlib.pyplot as plt
import matplotlib.ticker

from lightjax.bench import render
from lightjax.bench.plan import BASELINE, FLOOR
# pylint: enable=g-import-not-at-top,wrong-import-position

Record = dict[str, Any]


def _series(recs: list[Record], benchmark: str, value) -> dict[str, tuple]:
  """{variant: (lengths, values)} of the ok records of `benchmark`."""
  out: dict[str, tuple[list, list]] = {}
  for r in recs:
    if r["benchmark"] == benchmark and r.get("status") == "ok":
      y = value(r)
      if y:
        xs, ys = out.setdefault(r["variant"], ([], []))
        xs.append(r["seq_len"])
        ys.append(y)
  return out


def _plot(path: str, series: dict[str, tuple], title: str, xlabel: str,
          ylabel: str, logy: bool = True) -> None:
  fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
  for variant, (xs, ys) in series.items():
    order = sorted(range(len(xs)), key=xs.__getitem__)
    style = {"linewidth": 2.4} if variant == BASELINE else {}
    if variant == FLOOR:
      style = {"linestyle": "--", "color": "0.45"}
    elif ":" in variant:
      style = {"linestyle": ":"}
    ax.plot([xs[i] for i in order], [ys[i] for i in order], marker="o",
            label=variant, **{"linewidth": 1.4, **style})
  ax.set_xscale("log", base=2)
  ticks = sorted({x for xs, _ in series.values() for x in xs})
  if ticks:
    ax.set_xticks(ticks, [render.length_label(t) for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
  if logy:
    ax.set_yscale("log")
  ax.set_title(title)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(True, which="both", alpha=0.3)
  if series:
    ax.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write_all(out_dir: str, recs: list[Record]) -> list[str]:
  paths = [os.path.join(out_dir, n) for n in (
      "steps_per_s_vs_length.png", "memory_vs_length.png",
      "decode_tokens_per_s.png")]
  _plot(paths[0], _series(recs, "train_step", lambda r: r["steps_per_s"]),
        "Train step throughput", "sequence length", "steps / s")
  _plot(paths[1], _series(recs, "train_step",
                          lambda r: (r.get("peak_bytes") or 0) / 2**20),
        "Train step peak memory (XLA plan)", "sequence length", "MiB")
  _plot(paths[2], _series(recs, "decode", lambda r: r["tokens_per_s"]),
        "Autoregressive decoding", "context length t", "tokens / s")
  return paths
