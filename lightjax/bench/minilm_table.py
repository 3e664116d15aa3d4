"""bench.md of the MiniLM peer benchmark (`lightjax.bench.minilm`): what was
run (command, device, date, threads, inputs), one table row per runtime and
model, and why any row was not measured."""

from __future__ import annotations

from typing import Any, Callable

from lightjax import tables

Record = dict[str, Any]
MB = 1e6


def _ms(rec: Record, kind: str) -> str:
  p50, p90 = rec.get(f"{kind}_p50_s"), rec.get(f"{kind}_p90_s")
  if p50 is None:
    return tables.MISSING
  return f"{p50 * 1e3:.1f} / {p90 * 1e3:.1f}"


def _x(rec: Record, peer: str) -> str:
  cells = [rec.get(f"x_vs_{peer}_{k}") for k in ("real", "fixed", "batch")]
  if all(c is None for c in cells):
    return tables.MISSING
  return " / ".join(tables.MISSING if c is None else f"{c:.2f}x"
                    for c in cells)


def _num(value, fmt: str) -> str:
  return tables.MISSING if value is None else format(value, fmt)


def _mb(n: int | None) -> str:
  if not n:
    return tables.MISSING
  return f"{n / MB:.1f}" if n >= MB else f"{n / MB:.3f}"


def _detail(value) -> str:
  return f"{value:.4g}" if isinstance(value, float) else str(value)


def columns(meta: Record) -> tuple[tuple[str, Callable[[Record], str]], ...]:
  """(header, cell) of the table, lengths and batch from the run."""
  inputs = meta["inputs"]
  length = inputs["fixed_length"]
  batch = inputs["batch_shape"][0]
  return (
      ("row", lambda r: r["row"]),
      ("runtime", lambda r: r["runtime"]),
      ("params", lambda r: _num(r.get("params"), ",")),
      ("size MB", lambda r: _mb(r.get("file_bytes"))),
      ("B=1 real lengths p50 / p90 ms", lambda r: _ms(r, "real")),
      (f"B=1 {length} tokens p50 / p90 ms", lambda r: _ms(r, "fixed")),
      (f"B={batch} x {length} sentences/s",
       lambda r: _num(r.get("sentences_per_s"), ".1f")),
      (f"x vs transformers fp32 (real / {length} / B={batch})",
       lambda r: _x(r, "transformers")),
      (f"x vs peer int8 (real / {length} / B={batch})",
       lambda r: _x(r, "peer")),
      ("mean cosine", lambda r: _num(r.get("mean_cosine"), ".5f")),
      ("top-10", lambda r: _num(r.get("top10"), ".3f")),
      ("top-1", lambda r: _num(r.get("top1"), ".3f")),
  )


def _header(meta: Record) -> str:
  c = meta["config"]["minilm"]
  i, t = meta["inputs"], meta["teacher"]
  threads = "; ".join(f"{k}: {v}" for k, v in meta["threads"].items())
  real = i["real_lengths"]
  return "\n".join([
      f"# Peer benchmark on a real model: {meta['preset']}",
      "",
      f"- command: `{meta['command']}`",
      f"- device: {meta['cpu']} ({meta['cpu_count']} CPUs, host"
      f" {meta['host']}); Python {meta['python']}, jax {meta['jax']}, flax"
      f" {meta['flax']}, onnxruntime {meta['onnxruntime']}, torch"
      f" {meta['torch'] or 'not loaded'}, transformers"
      f" {meta['transformers'] or 'not loaded'}",
      f"- date: {meta['date']}; wall time {meta.get('wall_s', 0):.0f} s",
      f"- threads: {threads}",
      f"- model: `{meta['model_dir']}`: {t.get('num_layers')} layers,"
      f" width {t.get('embed_dim')}, {t.get('num_heads')} heads x"
      f" {t.get('head_dim')}, MLP {t.get('mlp_dim')},"
      f" {t.get('params') or '?'} parameters; {t.get('pool')} pooling,"
      f" {'L2-normalised' if t.get('normalize') else 'not normalised'}",
      f"- sentences: {i['sentences']} held-out sentences ({c['split']} split"
      f" of `{c['source']}`, Python {meta['python']}), tokenized by the"
      f" teacher's tokenizer, at most {i['fixed_length']} tokens. Real"
      f" lengths: {len(real)} of them at the length quantiles (i + 0.5) /"
      f" {len(real)}, each at its own length, batch 1: {real} tokens."
      f" {i['fixed_length']} tokens: held-out sentences joined and"
      f" truncated; B={i['batch_shape'][0]}: {i['batch_shape'][0]} such"
      " texts in one call.",
      f"- timing: {c['warmup']} warm-up call(s) per input (compiles"
      f" included there, not timed), then {c['repeats_real']} rounds over"
      f" the real-length sentences, {c['repeats_fixed']} at"
      f" {i['fixed_length']} tokens, {c['repeats_batch']} at"
      f" B={i['batch_shape'][0]}; in each round every row runs the input in"
      " turn, the first row rotating (interleaved, so load from elsewhere"
      " hits all rows alike). A call is token ids in, normalised embeddings"
      " out (tokenization excluded). p50 / p90 over every timed call;"
      " sentences/s = batch / p50.",
      "- fidelity: against the float32 teacher's JAX embeddings of all the"
      f" held-out sentences (padded to {i['fidelity_shape'][1]} tokens):"
      " mean cosine, and top-10 / top-1 retrieval agreement (each sentence a"
      " query against the others; the share of the teacher's nearest"
      " neighbours the row recovers).",
      "- x vs transformers fp32 / peer int8: that row's p50 / this row's"
      f" p50, same run (> 1: faster): real lengths / {i['fixed_length']}"
      f" tokens / B={i['batch_shape'][0]}.",
      "",
  ]) + "\n"


def _not_measured(recs: list[Record]) -> str:
  bad = [r for r in recs if r.get("status") != "ok"]
  if not bad:
    return "None.\n"
  return tables.markdown(["row", "status", "why"],
                         [[r["row"], r["status"], r.get("reason") or ""]
                          for r in bad])


def _notes(recs: list[Record]) -> str:
  lines = []
  for r in recs:
    d = r.get("details") or {}
    bits = [f"{k}: {_detail(v)}" for k, v in d.items() if k != "lengths"]
    if r.get("size_note"):
      bits.append(f"size: {r['size_note']}")
    if r.get("fidelity_note"):
      bits.append(r["fidelity_note"])
    if r.get("max_abs_diff") is not None:
      bits.append(f"max |embedding - teacher's|: {r['max_abs_diff']:.3g}")
    if bits:
      lines.append(f"- {r['row']}: " + "; ".join(map(str, bits)))
  return "\n".join(lines) + "\n"


def markdown(meta: Record, recs: list[Record]) -> str:
  cols = columns(meta)
  ok = [r for r in recs if r.get("status") == "ok"]
  table = tables.markdown([h for h, _ in cols],
                          [[cell(r) for _, cell in cols] for r in ok])
  return (_header(meta) + "## Rows\n" + table + "\n## Not measured\n"
          + _not_measured(recs) + "\n## Row details\n" + _notes(recs))


def pareto(recs: list[Record], path: str) -> None:
  """Mean cosine to the float32 teacher against batch-1 latency at the
  fixed length (log x) and against parameters, one point per measured row
  with a cosine (a narrower student without a projection has none); a
  row's marker says its precision, int8 or float."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  points = [r for r in recs if r.get("status") == "ok"
            and r.get("mean_cosine") is not None]
  fig = Figure(figsize=(12, 5), layout="constrained")
  axes = fig.subplots(1, 2, sharey=True)
  for ax, (key, label, scale, log) in zip(axes, (
      ("fixed_p50_s", "CPU batch-1 latency p50 (ms, fixed length)", 1e3,
       True),
      ("params", "parameters (millions)", 1e-6, False))):
    for r in points:
      if r.get(key) is None:
        continue
      x = r[key] * scale
      ax.scatter([x], [r["mean_cosine"]], zorder=3,
                 marker="s" if r.get("precision") == "int8" else "o")
      ax.annotate(r["row"], (x, r["mean_cosine"]), xytext=(4, 3),
                  textcoords="offset points", fontsize=7)
    if log:
      ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.25, y=0.1)
  axes[0].set_ylabel("mean cosine to the float32 teacher")
  fig.suptitle("Fidelity vs cost of every row (square: int8; up and left is"
               " better)")
  fig.savefig(path, dpi=110)
