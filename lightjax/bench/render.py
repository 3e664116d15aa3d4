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

import functools
from typing import Any, Callable

from lightjax import paper, tables
from lightjax.bench.plan import BASELINE, FLOOR

Record = dict[str, Any]

PAPER_FILE = "lra_table2_speed_memory.csv"
PAPER_LENGTHS = ("1k", "2k", "3k", "4k")
# Paper rows with no lightjax variant are shown as "not in lightjax"; our
# variants without a paper row (paper.LRA_MODEL) have no paper figures.
MIB = 2.0**20


def length_label(n: int) -> str:
  return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def _failed(rec: Record | None) -> str | None:
  if rec is None:
    return tables.MISSING
  if rec.get("status") == "oom":
    return "OOM"
  if rec.get("status") != "ok":
    return "error"
  return None


def short(x: float) -> str:
  """3 significant digits, without exponents for the big values tables have."""
  return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _ratio(x: float | None, digits: int = 1) -> str:
  return f" ({x:.{digits}f}x)" if x is not None else ""


def speed_cell(rec: Record | None) -> str:
  return _failed(rec) or (short(rec["steps_per_s"])
                          + _ratio(rec.get("speedup_vs_softmax")))


def memory_cell(rec: Record | None) -> str:
  if _failed(rec) or rec.get("peak_bytes") is None:
    return _failed(rec) or "n/a"
  return (short(rec["peak_bytes"] / MIB)
          + _ratio(rec.get("memory_ratio_vs_softmax"), 2))


def latency_cell(rec: Record | None) -> str:
  return _failed(rec) or (short(rec["median_s"] * 1e3)
                          + _ratio(rec.get("speedup_vs_softmax")))


def tokens_cell(rec: Record | None) -> str:
  return _failed(rec) or (short(rec["tokens_per_s"])
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


def _paper_cell(rows: dict[str, Record], model: str | None, col: str,
                fmt: str, digits: int) -> str:
  """Paper value with its ratio to the paper's transformer, as they print it.

  Both of the paper's quantities give "ours / transformer" ratios in the
  same sense as our cells: steps/s (higher = faster, so it is the speed-up)
  and GB (lower = less memory).
  """
  row, base = rows.get(model or ""), rows.get(paper.LRA_MODEL[BASELINE])
  if not row or row.get(col) is None:
    return tables.MISSING
  ratio = row[col] / base[col] if base and base.get(col) else None
  return format(row[col], fmt) + _ratio(ratio, digits)


def side_by_side(recs: list[Record], benchmark: str,
                 cell: Callable[[Record | None], str], paper_prefix: str,
                 paper_fmt: str, digits: int) -> str:
  """Our cells per length, then the paper's cells for the same models."""
  variants, lengths, grid = _grid(recs, benchmark)
  rows = _paper_rows()
  paper_cells = lambda model: [
      _paper_cell(rows, model, f"{paper_prefix}_{c}", paper_fmt, digits)
      for c in PAPER_LENGTHS]
  header = (["variant"] + [length_label(n) for n in lengths]
            + [f"LRA {c.upper()}" for c in PAPER_LENGTHS])
  out = []
  for v in variants:
    model = paper.LRA_MODEL.get(v)
    out.append([v + (f" ({model})" if model else "")]
               + [cell(grid.get((v, n))) for n in lengths]
               + paper_cells(model))
  ours = {paper.LRA_MODEL.get(v) for v in variants}
  named = {m: v for v, m in paper.LRA_MODEL.items()}
  for model in rows:
    if model not in ours:
      why = (f"lightjax {named[model]!r} not in this run" if model in named
             else "not in lightjax")
      out.append([f"({model}: {why})"] + [tables.MISSING] * len(lengths)
                 + paper_cells(model))
  return tables.markdown(header, out)


def grid_table(recs: list[Record], benchmark: str,
               cell: Callable[[Record | None], str], column: str) -> str:
  variants, lengths, grid = _grid(recs, benchmark)
  if not variants:
    return "(not measured)\n"
  header = ["variant"] + [f"{column}{length_label(n)}" for n in lengths]
  return tables.markdown(header, [[v] + [cell(grid.get((v, n)))
                                         for n in lengths] for v in variants])


def _per_device(c: dict[str, Any]) -> str:
  """How the train step and forward pass were laid out, if on a mesh."""
  mesh = {a: n for a, n in (c.get("mesh") or {}).items() if n != 1}
  if not mesh:
    return ""
  return (f" per device: train step and forward pass on the mesh {mesh}"
          f" (FLOPs for the whole program; batch-1 latency on one device)")


def _header(meta: Record, recs: list[Record]) -> str:
  c = meta["config"]
  m = c["model"]
  peak = meta.get("matmul_peak")
  mfu = (f"peak of a {peak['dim']}^2 {peak['dtype']} matmul in this run:"
         f" {peak['peak_flops'] / 1e12:.1f} TFLOP/s" if peak else
         "not measured on CPU (null)")
  # The parameter count of the baseline's model: train step's, else the
  # first encoder record's (a run of one benchmark, e.g. edge).
  train = next((r for r in recs if r["benchmark"] == "train_step"), None) or (
      next((r for r in recs if r["benchmark"] != "decode"
            and r.get("num_params")), {}))
  implementation = m["attention"]["softmax"].get("implementation")
  kernel = meta.get("softmax_kernel")
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
      f" softmax baseline: implementation {implementation!r}"
      + (f" (here: {kernel})" if kernel and kernel != implementation else "")
      + "; variant options: `config` in the meta record of bench.jsonl; a row"
      " named `variant:key=value` is that variant with those options changed",
      f"- timing: median of {c['repeats']} runs after {c['warmup']} warm-up"
      + (" (latency_b1 is the batch-1 forward record" if c["batch_size"] == 1
         else f" (latency_b1: {c['latency']['repeats']} after"
              f" {c['latency']['warmup']}")
      + f"; decode: {c['decode']['repeats']} after {c['decode']['warmup']})"
      + (f", fewer once timed runs add up to {c['max_timed_s']:g} s, and a"
         " call that alone takes that long is timed once, on its first run"
         " (each record has its counts)" if c.get("max_timed_s") else "")
      + f"; batch {c['batch_size']}; compile time excluded and reported apart",
      f"- memory: XLA's compiled plan (arguments + outputs - donated +"
      f" temporaries), MiB{_per_device(c)}; MFU: {mfu}",
      "- (x): same-run ratio to softmax at the same length: speed-up for"
      " speed, variant / softmax for memory. LRA columns: the paper's Table 2"
      " (Tay et al. 2021; TPU v3, batch 32, steps/s and GB) with its ratios.",
      f"- floor: `{FLOOR}` replaces attention by the identity (out_i = v_i,"
      " no token mixing), so it costs what the rest of the model"
      " (embeddings, projections, MLPs, norms, head) costs. The floor tables"
      " give each variant's time and memory as a multiple of it at the same"
      " length: 1.0x would be attention for free, x - 1 is what attention"
      " adds; a variant near 1x has little left to gain from cheaper"
      " attention.",
      "",
  ]) + "\n"


def floor_cell(rec: Record | None) -> str:
  if _failed(rec):
    return _failed(rec)
  t, m = rec.get("x_floor_time"), rec.get("x_floor_memory")
  return (f"{t:.2f}x" if t is not None else "n/a") + (
      f" / {m:.2f}x" if m is not None else "")


# --- Edge: JAX vs onnxruntime fp32 / int8 -------------------------------------


def _measured(cell: Callable[[Record], str]) -> Callable[[Record], str]:
  """A cell of a measured quantity: the failure ("OOM", "error") instead."""
  return lambda rec: _failed(rec) or cell(rec)


def _p50_p95(prefix: str) -> Callable[[Record], str]:
  """"p50 / p95" in ms of the record's `<prefix>median_s` / `<prefix>p95_s`."""
  return _measured(lambda r: f"{short(r[prefix + 'median_s'] * 1e3)} /"
                             f" {short(r[prefix + 'p95_s'] * 1e3)}")


# One declaration per column: (header, cell of one edge record).
EDGE_COLUMNS: tuple[tuple[str, Callable[[Record], str]], ...] = (
    ("variant / model", lambda r: r["variant"]),
    ("L", lambda r: str(r["seq_len"])),
    ("params", lambda r: f"{r['num_params']:,}" if r.get("num_params")
     else tables.MISSING),
    ("JAX jit p50 / p95 ms", _p50_p95("")),
    ("ONNX fp32 p50 / p95 ms", _p50_p95("onnx_fp32_")),
    ("ONNX int8 p50 / p95 ms", _p50_p95("onnx_int8_")),
    ("int8 speed-up vs JAX", _measured(
        lambda r: f"{r['int8_speedup_vs_jax']:.2f}x")),
    ("fp32 speed-up vs JAX", _measured(
        lambda r: f"{r['fp32_speedup_vs_jax']:.2f}x")),
    ("fp32 bytes", _measured(lambda r: f"{r['onnx_fp32_bytes']:,}")),
    ("int8 bytes", _measured(lambda r: f"{r['onnx_int8_bytes']:,}")),
    ("int8 / fp32 size", _measured(lambda r: f"{r['int8_size_ratio']:.2f}")),
    ("8-bit weight share", _measured(
        lambda r: f"{r['int8_weight_share']:.1%}")),
)


def edge_table(meta: Record, recs: list[Record]) -> str:
  """What was run, then one row per (variant or run directory, length)."""
  sel = [r for r in recs if r["benchmark"] == "edge"]
  if not sel:
    return "(not measured)\n"
  c = meta["config"]
  e = c["edge"]
  ok = next((r for r in sel if r.get("status") == "ok"), {})
  threads = e["threads"] or "onnxruntime's default (one per physical core)"
  budget = (f", fewer once timed calls add up to {c['max_timed_s']:g} s"
            if c.get("max_timed_s") else "")
  intro = (
      "Batch 1, random non-pad tokens. JAX: the jitted eval forward"
      " (latency_b1's program). ONNX fp32: the same model through"
      f" `lightjax.export` ({ok.get('converter', '?')}, opset"
      f" {ok.get('opset', '?')}) in onnxruntime {ok.get('onnxruntime', '?')}"
      f" CPUExecutionProvider, intra-op threads: {threads}. ONNX int8: that"
      " file after onnxruntime's dynamic quantization (QInt8 weights). Each"
      f" timed {e['repeats']} times after {e['warmup']} warm-up{budget}, one"
      " runtime after the other. Speed-up = JAX p50 / ONNX p50 (> 1:"
      " onnxruntime is faster). Size ratio = int8 bytes / fp32 bytes; 8-bit"
      " share = weight values stored in 8 bits. Rows after the variants are"
      " `edge.models` run directories, built from their config.json with"
      " random weights.\n\n")
  return intro + tables.markdown([h for h, _ in EDGE_COLUMNS],
                                 [[cell(r) for _, cell in EDGE_COLUMNS]
                                  for r in sel])


def _failures(recs: list[Record]) -> str:
  bad = [r for r in recs if r.get("status") != "ok"]
  if not bad:
    return "None.\n"
  return tables.markdown(["benchmark", "variant", "L", "status", "message"],
                         [[r["benchmark"], r["variant"], r["seq_len"],
                           r["status"], r.get("error")] for r in bad])


def markdown(meta: Record, recs: list[Record]) -> str:
  """The whole bench.md: header, then one section per table."""
  speed = lambda b: side_by_side(recs, b, speed_cell, "steps", ".2g", 1)
  memory = lambda b: side_by_side(recs, b, memory_cell, "mem", ".3g", 2)
  grid = functools.partial(grid_table, recs)
  floor = "time / memory as multiples of `none` at the same length"
  d = meta["config"]["decode"]
  # (title, the benchmark it reads or None, its body): a benchmark this
  # run did not measure gets no section (an edge-only run has no train
  # tables).
  sections = [
      ("Train step: steps/s (speed-up vs softmax)", "train_step",
       speed("train_step")),
      ("Train step: peak memory, MiB (ratio vs softmax)", "train_step",
       memory("train_step")),
      (f"Train step over the floor: {floor}", "train_step",
       grid("train_step", floor_cell, "L=")),
      ("Forward (eval) pass: passes/s (speed-up vs softmax)", "forward",
       grid("forward", speed_cell, "L=")),
      ("Forward (eval) pass: peak memory, MiB (ratio vs softmax)", "forward",
       grid("forward", memory_cell, "L=")),
      (f"Forward (eval) pass over the floor: {floor}", "forward",
       grid("forward", floor_cell, "L=")),
      ("Batch-1 forward latency, ms (speed-up vs softmax)", "latency_b1",
       grid("latency_b1", latency_cell, "L=")),
      ("Decode: tokens/s at context t (speed-up vs softmax KV cache)",
       "decode",
       f"DecoderLM, batch {d['batch_size']}: `generate.decode_scan` of"
       f" {d['steps']} decode steps at positions t, t+1, ... with a cache"
       " sized t + steps, jitted; time per token = scan time / steps.\n\n"
       + grid("decode", tokens_cell, "t=")),
      (f"Decode over the floor: {floor} (per token)", "decode",
       grid("decode", floor_cell, "t=")),
      ("Edge: batch-1 latency, JAX jit vs ONNX fp32 / int8 (onnxruntime),"
       " and file sizes", "edge", edge_table(meta, recs)),
      ("Train step cost: XLA GFLOP / compile time", "train_step",
       grid("train_step", cost_cell, "L=")),
      ("Failed measurements", None, _failures(recs)),
  ]
  measured = {r["benchmark"] for r in recs}
  return _header(meta, recs) + "\n".join(
      f"## {title}\n{body}" for title, benchmark, body in sections
      if benchmark is None or benchmark in measured)
