"""bench.md: markdown tables shaped like Long Range Arena's Table 2.

Tay et al. 2021 ("Long Range Arena", Table 2) list one row per model and, per
sequence length, steps per second and peak memory, each with its ratio to the
vanilla Transformer. The tables here keep that shape (rows = variants,
columns = lengths, "value (ratio x)") with our measurements, and put the
paper's figures for the same models in extra columns on the same rows
(`lightjax/paper/lra_table2_speed_memory.csv`; TPU v3, batch 32, their
dense-masked sparse models). Absolute numbers are not comparable across
hardware; the ratios are the point.
"""

from __future__ import annotations

from typing import Any, Callable

from lightjax import paper
from lightjax.benchlib.records import BASELINE

Record = dict[str, Any]

PAPER_FILE = "lra_table2_speed_memory.csv"
PAPER_LENGTHS = ("1k", "2k", "3k", "4k")
# lightjax variant -> LRA Table 2 row. Unlisted paper rows are shown as
# "not in lightjax"; unlisted variants have no paper figures.
PAPER_NAMES = {
    "softmax": "transformer",
    "linear": "linear_transformer",
    "performer": "performer",
    "linformer": "linformer",
    "local": "local_attention",
    "bigbird": "bigbird",
}
MIB = 2.0**20


def length_label(n: int) -> str:
  return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def _table(header: list[str], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def _failed(rec: Record | None) -> str | None:
  if rec is None:
    return "—"
  if rec.get("status") == "oom":
    return "OOM"
  if rec.get("status") != "ok":
    return "error"
  return None


def num(x: float) -> str:
  """3 significant digits, without exponents for the big values tables have."""
  return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _ratio(x: float | None, digits: int = 1) -> str:
  return f" ({x:.{digits}f}x)" if x is not None else ""


def speed_cell(rec: Record | None) -> str:
  return _failed(rec) or (num(rec["steps_per_s"])
                          + _ratio(rec.get("speedup_vs_softmax")))


def memory_cell(rec: Record | None) -> str:
  if _failed(rec) or rec.get("peak_bytes") is None:
    return _failed(rec) or "n/a"
  return (num(rec["peak_bytes"] / MIB)
          + _ratio(rec.get("memory_ratio_vs_softmax"), 2))


def latency_cell(rec: Record | None) -> str:
  return _failed(rec) or (num(rec["median_s"] * 1e3)
                          + _ratio(rec.get("speedup_vs_softmax")))


def tokens_cell(rec: Record | None) -> str:
  return _failed(rec) or (num(rec["tokens_per_s"])
                          + _ratio(rec.get("speedup_vs_softmax")))


def cost_cell(rec: Record | None) -> str:
  if _failed(rec):
    return _failed(rec)
  mfu = f", MFU {rec['mfu']:.1%}" if rec.get("mfu") is not None else ""
  return f"{(rec.get('flops') or 0) / 1e9:.3g} / {rec['compile_s']:.1f} s{mfu}"


def _grid(recs: list[Record], benchmark: str):
  """(variants in run order, lengths, {(variant, length): record})."""
  sel = [r for r in recs if r["benchmark"] == benchmark]
  variants = list(dict.fromkeys(r["variant"] for r in sel))
  lengths = sorted({r["seq_len"] for r in sel})
  return variants, lengths, {(r["variant"], r["seq_len"]): r for r in sel}


def _paper_rows() -> dict[str, Record]:
  return {r["model"]: r for r in paper.load_csv(PAPER_FILE)}


def _paper_cell(paper: dict[str, Record], model: str | None, col: str,
                fmt: str, digits: int) -> str:
  """Paper value with its ratio to the paper's transformer, as they print it.

  Both of the paper's quantities give "ours / transformer" ratios in the
  same sense as our cells: steps/s (higher = faster, so it is the speed-up)
  and GB (lower = less memory).
  """
  row, base = paper.get(model or ""), paper.get(PAPER_NAMES[BASELINE])
  if not row or row.get(col) is None:
    return "—"
  ratio = row[col] / base[col] if base and base.get(col) else None
  return format(row[col], fmt) + _ratio(ratio, digits)


def side_by_side(recs: list[Record], benchmark: str,
                 cell: Callable[[Record | None], str], paper_prefix: str,
                 paper_fmt: str, digits: int) -> str:
  """Our cells per length, then the paper's cells for the same models."""
  variants, lengths, grid = _grid(recs, benchmark)
  paper = _paper_rows()
  header = (["variant"] + [length_label(n) for n in lengths]
            + [f"LRA {c.upper()}" for c in PAPER_LENGTHS])
  rows = []
  for v in variants:
    model = PAPER_NAMES.get(v)
    rows.append([v + (f" ({model})" if model else "")]
                + [cell(grid.get((v, n))) for n in lengths]
                + [_paper_cell(paper, model, f"{paper_prefix}_{c}", paper_fmt,
                               digits) for c in PAPER_LENGTHS])
  ours = {PAPER_NAMES.get(v) for v in variants}
  named = {m: v for v, m in PAPER_NAMES.items()}
  for model in paper:
    if model not in ours:
      why = (f"lightjax {named[model]!r} not in this run" if model in named
             else "not in lightjax")
      rows.append([f"({model}: {why})"] + ["—"] * len(lengths)
                  + [_paper_cell(paper, model, f"{paper_prefix}_{c}",
                                 paper_fmt, digits) for c in PAPER_LENGTHS])
  return _table(header, rows)


def grid_table(recs: list[Record], benchmark: str,
               cell: Callable[[Record | None], str], column: str) -> str:
  variants, lengths, grid = _grid(recs, benchmark)
  if not variants:
    return "(not measured)\n"
  header = ["variant"] + [f"{column}{length_label(n)}" for n in lengths]
  return _table(header, [[v] + [cell(grid.get((v, n))) for n in lengths]
                         for v in variants])


def _header(meta: Record, recs: list[Record]) -> str:
  c = meta["config"]
  m = c["model"]
  peak = meta.get("matmul_peak")
  mfu = (f"peak of a {peak['dim']}^2 {peak['dtype']} matmul in this run:"
         f" {peak['peak_flops'] / 1e12:.1f} TFLOP/s" if peak else
         "not measured on CPU (null)")
  train = next((r for r in recs if r["benchmark"] == "train_step"), {})
  return "\n".join([
      f"# Attention benchmark: {meta['preset']}",
      "",
      f"- command: `{meta['command']}`",
      f"- device: {meta['device_count']}x {meta['device']} ({meta['platform']}),"
      f" {meta['cpu_count']} host CPUs; jax {meta['jax']}, flax {meta['flax']},"
      f" Python {meta['python']}",
      f"- date: {meta['date']}; wall time {meta.get('wall_s', 0):.0f} s",
      f"- model: EncoderClassifier, layers {m['num_layers']}, embed"
      f" {m['embed_dim']}, {m['num_heads']} heads x {m['head_dim']}, MLP"
      f" {m['mlp_dim']}, {m['dtype']}, vocab {c['vocab_size']}, {m['pool']}"
      f" pooling; {train.get('num_params') or '?'} parameters (softmax);"
      f" softmax baseline: implementation"
      f" {m['attention']['softmax'].get('implementation') or 'einsum'!r};"
      " variant options: `config` in the meta record of bench.jsonl",
      f"- timing: median of {c['repeats']} runs after {c['warmup']} warm-up"
      + (" (latency_b1 is the batch-1 forward record" if c["batch_size"] == 1
         else f" (latency_b1: {c['latency']['repeats']} after"
              f" {c['latency']['warmup']}")
      + f"; decode: {c['decode']['repeats']} after {c['decode']['warmup']})"
      + (f", fewer once timed runs add up to {c['max_timed_s']:g} s"
                    " (each record has its count)" if c.get("max_timed_s")
                    else "") +
      f"; batch {c['batch_size']}; compile time excluded and reported apart",
      f"- memory: XLA's compiled plan (arguments + outputs - donated +"
      f" temporaries), MiB; MFU: {mfu}",
      "- (x): same-run ratio to softmax at the same length: speed-up for"
      " speed, variant / softmax for memory. LRA columns: the paper's Table 2"
      " (Tay et al. 2021; TPU v3, batch 32, steps/s and GB) with its ratios.",
      "",
  ]) + "\n"


def _failures(recs: list[Record]) -> str:
  bad = [r for r in recs if r.get("status") != "ok"]
  if not bad:
    return "None.\n"
  return _table(["benchmark", "variant", "L", "status", "message"],
                [[r["benchmark"], r["variant"], str(r["seq_len"]),
                  r["status"], str(r.get("error", "")).replace("|", "/")
                  .replace("\n", " ")] for r in bad])


def markdown(meta: Record, recs: list[Record]) -> str:
  speed = lambda b: side_by_side(recs, b, speed_cell, "steps", ".2g", 1)
  memory = lambda b: side_by_side(recs, b, memory_cell, "mem", ".3g", 2)
  parts = [
      _header(meta, recs),
      "## Train step: steps/s (speed-up vs softmax)\n", speed("train_step"),
      "\n## Train step: peak memory, MiB (ratio vs softmax)\n",
      memory("train_step"),
      "\n## Forward (eval) pass: passes/s (speed-up vs softmax)\n",
      grid_table(recs, "forward", speed_cell, "L="),
      "\n## Forward (eval) pass: peak memory, MiB (ratio vs softmax)\n",
      grid_table(recs, "forward", memory_cell, "L="),
      "\n## Batch-1 forward latency, ms (speed-up vs softmax)\n",
      grid_table(recs, "latency_b1", latency_cell, "L="),
      "\n## Decode: tokens/s at context t (speed-up vs softmax KV cache)\n",
      f"DecoderLM, batch {meta['config']['decode']['batch_size']}: a jitted"
      f" scan of {meta['config']['decode']['steps']} decode steps at"
      " positions t, t+1, ... with a cache sized t + steps; time per token ="
      " scan time / steps.\n\n",
      grid_table(recs, "decode", tokens_cell, "t="),
      "\n## Train step cost: XLA GFLOP / compile time\n",
      grid_table(recs, "train_step", cost_cell, "L="),
      "\n## Failed measurements\n", _failures(recs),
  ]
  return "".join(parts)
