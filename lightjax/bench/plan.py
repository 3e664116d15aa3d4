"""Which measurements a bench config asks for, in what order, and how far along.

Order matters for fairness on a noisy machine: at each length softmax runs
first, `none` (attention replaced by the identity: the floor, what the rest of
the model costs) right after it, then every other variant, so a ratio
compares measurements minutes apart rather than a whole sweep apart (and the
progress line can show the speed-up as soon as a variant is measured).

A variant entry is a registered attention name, or one with option overrides
measured as a row of its own, labelled by the entry as written:

  --config.variants=softmax,softmax:implementation=einsum,linear
  --config.variants=performer:num_features=64+redraw=False

Options are `key=value`, several joined by ';' or '+' (',' already separates
entries); each value is read as the type of the option's default, and the
names are checked by `attention.check_options`. Without overrides a variant
uses `config.model.attention.<name>`, as training does.

The edge benchmark also measures `config.edge.models`, run directories
(trained or shrunk models), each after the variants at the same length and
labelled by the directory's name (`model_label`).
"""

from __future__ import annotations

import ast
import os
import re
import time
from typing import Any, Sequence

import ml_collections

from lightjax import attention, config_lib, writers
from lightjax.attention.base import decoding_variants
from lightjax.bench.measure import BENCHMARKS, Job, Record, run_model

BASELINE = "softmax"   # every ratio's denominator, measured first
FLOOR = "none"         # no token mixing: the cost of everything but attention
_ENCODER = ("train_step", "forward", "latency_b1", "edge")


def listed(values) -> list:
  """A config tuple as a list; "a,b" items (from `--config.x=a,b`) are split."""
  if isinstance(values, (str, int)):
    values = [values]
  out = []
  for v in values:
    if isinstance(v, str):
      out += [p.strip() for p in v.split(",") if p.strip()]
    else:
      out.append(v)
  return out


def lengths(values, field: str = "lengths") -> list[int]:
  """Positive ints from a config tuple or "1024,4096"; names `field` if not."""
  out = []
  for v in listed(values):
    try:
      out.append(int(v))
    except (TypeError, ValueError):
      raise ValueError(f"config.{field} takes integers, got {v!r}") from None
    if out[-1] < 1:
      raise ValueError(f"config.{field} takes lengths >= 1, got {v!r}")
  return out


def _value(text: str, default: Any) -> Any:
  """`text` as the type of the option's default (a literal if no default)."""
  if isinstance(default, bool):
    if text.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"expected true or false, got {text!r}")
    return text.lower() in ("true", "1")
  if isinstance(default, (int, float)):
    return type(default)(text)
  if isinstance(default, str):
    return text
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def parse_variant(entry: str) -> tuple[str, tuple[tuple[str, Any], ...]]:
  """"softmax:implementation=einsum" -> ("softmax", (("implementation", "einsum"),)).

  Raises:
    ValueError: unknown variant or option (valid ones listed), or an option
      that is not `key=value` or whose value does not fit the option's type.
  """
  name, _, spec = entry.partition(":")
  name = name.strip()
  defaults = attention.check_options(name, {})  # unknown name: valid listed
  options = {}
  for item in filter(None, (p.strip() for p in re.split(r"[;+]", spec))):
    key, eq, text = item.partition("=")
    if not eq or not key.strip():
      raise ValueError(f"variant {entry!r}: option {item!r} is not key=value")
    key = key.strip()
    if key not in defaults:  # unknown option: valid ones listed
      attention.check_options(name, {key: None})
    try:
      options[key] = _value(text.strip(), defaults[key])
    except ValueError as e:
      raise ValueError(f"variant {entry!r}: option {key}: {e}") from None
  attention.check_options(name, options)  # values, e.g. implementation=bogus
  return name, tuple(sorted(options.items()))


def variants(config: ml_collections.ConfigDict) -> list[str]:
  """config.variants with softmax then none first (always measured)."""
  out = list(dict.fromkeys([BASELINE, FLOOR] + listed(config.variants)))
  for v in out:
    parse_variant(v)  # unknown names and options fail before anything runs
  return out


def decode_variants(config: ml_collections.ConfigDict) -> list[str]:
  """config.decode.variants, or () = every registered variant that decodes;
  softmax then none first, as for the encoder benchmarks."""
  decoding = decoding_variants()
  chosen = listed(config.decode.variants) or decoding
  out = list(dict.fromkeys([BASELINE, FLOOR] + chosen))
  for v in out:
    name, _ = parse_variant(v)
    if name not in decoding:
      raise ValueError(f"attention {name!r} has no incremental decoding;"
                       f" variants that do: {', '.join(decoding)}")
  return out


def _job(benchmark: str, variant: str, seq_len: int, batch_size: int) -> Job:
  name, options = parse_variant(variant)
  return Job(benchmark, variant, int(seq_len), int(batch_size), name, options)


def model_label(directory: str) -> str:
  """A run directory's row label: its name (`runs/prune_heads_5of8/` ->
  "prune_heads_5of8")."""
  return os.path.basename(os.path.normpath(directory))


def model_dirs(config: ml_collections.ConfigDict) -> list[str]:
  """config.edge.models, each checked to hold a run's model section.

  Raises:
    ValueError: a directory without config.json or its `model` section, a
      label used twice, or one that is also a variant's (a row each).
  """
  dirs = listed(config.edge.models)
  labels = [model_label(d) for d in dirs]
  for d, label in zip(dirs, labels):
    run_model(d)
    if labels.count(label) > 1 or label in variants(config):
      raise ValueError(f"config.edge.models: row label {label!r} (from {d!r})"
                       " is not unique; rename the directory")
  return dirs


def _model_job(benchmark: str, directory: str, seq_len: int) -> Job:
  attention_name = run_model(directory).get("attention", {}).get("name", "")
  return Job(benchmark, model_label(directory), int(seq_len), 1,
             attention_name, model_dir=directory)


def jobs(config: ml_collections.ConfigDict) -> list[Job]:
  """Every measurement, in run order (module docstring)."""
  benchmarks = listed(config.benchmarks)
  for b in benchmarks:
    BENCHMARKS.get(b)  # unknown benchmark: valid ones listed
  out = []
  encoder = [b for b in _ENCODER if b in benchmarks]
  runs = model_dirs(config) if "edge" in benchmarks else []
  for length in lengths(config.lengths):
    for v in variants(config):
      for b in encoder:
        batch = 1 if b in ("latency_b1", "edge") else config.batch_size
        out.append(_job(b, v, length, batch))
    out += [_model_job("edge", d, length) for d in runs]
  if "decode" in benchmarks:
    for t in lengths(config.decode.contexts, "decode.contexts"):
      for v in decode_variants(config):
        out.append(_job("decode", v, t, config.decode.batch_size))
  return out


def check(config: ml_collections.ConfigDict) -> None:
  """Fails fast (ValueError, valid choices listed) before anything compiles."""
  for job in jobs(config):  # benchmark, variant and option names
    if not job.model_dir:  # a run's own options were checked when it trained
      attention.check_options(job.attention, {
          **config.model.attention.get(job.attention, {}),
          **dict(job.options)})
  if not lengths(config.lengths):
    raise ValueError("config.lengths is empty")
  for k in ("batch_size", "repeats", "latency.repeats", "decode.repeats",
            "decode.steps", "decode.batch_size", "edge.repeats"):
    value = config_lib.lookup(config, k)
    if int(value) < 1:
      raise ValueError(f"config.{k} must be >= 1, got {value}")


# --- Progress -----------------------------------------------------------------


def weight(job: Job) -> float:
  """Rough relative cost of a job, for the ETA only.

  A fixed part (compilation: a train step compiles ~6x longer than a forward
  pass on CPU) plus a run part proportional to the tokens processed, times
  L / 1K more for softmax's quadratic attention. Calibrated on the cpu_quick
  preset; elsewhere the ETA is a guess that corrects itself as jobs finish.
  """
  if job.benchmark == "decode":
    return 1.0
  tokens_k = job.batch_size * job.seq_len / 1024
  if job.attention == BASELINE:
    tokens_k *= job.seq_len / 1024
  # edge: a forward compile plus the ONNX export, quantization and two
  # sessions, and three runtimes timed.
  compile_s, per_k = {"train_step": (6.0, 0.15), "edge": (3.0, 0.15)}.get(
      job.benchmark, (1.0, 0.05))
  return compile_s + per_k * tokens_k


class Progress:
  """One terminal line per measurement, with a running ETA:

    [12/72] train_step linear L=4096 B=1 ... 0.123 s (8.1x) | compile 2.1 s | ETA 03:12

  The ETA spreads the elapsed time over the planned jobs' relative costs
  (`weight`), so long lengths late in the sweep are not under-estimated the
  way a plain per-job average would.
  """

  def __init__(self, jobs_: Sequence[Job]):
    self.weights = [weight(j) for j in jobs_]
    self.total = len(jobs_)
    self.t0 = time.perf_counter()
    self.done_weight = 0.0

  def eta_s(self, index: int) -> float:
    elapsed = time.perf_counter() - self.t0
    remaining = sum(self.weights[index + 1:])
    return elapsed / max(self.done_weight, 1e-9) * remaining

  def line(self, index: int, job: Job, rec: Record) -> str:
    self.done_weight += self.weights[index]
    head = (f"[{index + 1}/{self.total}] {job.benchmark} {job.variant}"
            f" L={job.seq_len} B={job.batch_size} ...")
    status = rec.get("status")
    if status == "ok":
      speed = rec.get("speedup_vs_softmax")
      body = f"{rec['median_s']:.4g} s" + (f" ({speed:.1f}x)" if speed else "")
      if rec.get("onnx_int8_median_s"):  # edge: onnxruntime beside JAX
        body += (f" | onnx fp32 {rec['onnx_fp32_median_s']:.4g} s, int8"
                 f" {rec['onnx_int8_median_s']:.4g} s")
      body += f" | compile {rec.get('compile_s') or 0:.1f} s"
    else:
      body = f"{status.upper()}: {rec.get('error', '')}"
      if rec.get("error_at"):
        body += f" [at {rec['error_at']}]"
    return f"{head} {body} | ETA {writers.fmt_eta(self.eta_s(index))}"

  def say(self, index: int, job: Job, rec: Record) -> None:
    writers.say(self.line(index, job, rec))
