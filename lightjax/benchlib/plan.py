"""Which measurements a bench config asks for, in the order they run.

Order matters for fairness on a noisy machine: at each length softmax runs
first and every variant right after it, so a ratio compares measurements
minutes apart rather than a whole sweep apart (and the progress line can
show the speed-up as soon as a variant is measured).
"""

from __future__ import annotations

import ml_collections

from lightjax import attention
from lightjax.benchlib import measure
from lightjax.benchlib.records import BASELINE

_ENCODER = ("train_step", "forward", "latency_b1")


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


def lengths(values) -> list[int]:
  return [int(v) for v in listed(values)]


def variants(config: ml_collections.ConfigDict) -> list[str]:
  """config.variants with softmax first (always measured: the baseline)."""
  out = [BASELINE] + [v for v in listed(config.variants) if v != BASELINE]
  for v in out:
    attention.get(v)  # unknown names fail before anything runs
  return out


def decode_variants(config: ml_collections.ConfigDict) -> list[str]:
  """config.decode.variants, or () = every registered variant that decodes."""
  chosen = listed(config.decode.variants) or [
      n for n in attention.names() if attention.get(n).supports_decode]
  for v in chosen:
    if not attention.get(v).supports_decode:
      raise ValueError(f"attention {v!r} has no incremental decoding; variants"
                       " that do: " + ", ".join(
                           n for n in attention.names()
                           if attention.get(n).supports_decode))
  return [BASELINE] + [v for v in chosen if v != BASELINE]


def jobs(config: ml_collections.ConfigDict) -> list[measure.Job]:
  benchmarks = listed(config.benchmarks)
  unknown = sorted(set(benchmarks) - set(measure.names()))
  if unknown:
    raise ValueError(f"unknown benchmark(s) {unknown}; valid:"
                     f" {', '.join(measure.names())}")
  out = []
  encoder = [b for b in _ENCODER if b in benchmarks]
  for length in lengths(config.lengths):
    for v in variants(config):
      for b in encoder:
        batch = 1 if b == "latency_b1" else int(config.batch_size)
        out.append(measure.Job(b, v, int(length), batch))
  if "decode" in benchmarks:
    for t in lengths(config.decode.contexts):
      for v in decode_variants(config):
        out.append(measure.Job("decode", v, int(t),
                               int(config.decode.batch_size)))
  return out


def check(config: ml_collections.ConfigDict) -> None:
  """Fails fast (ValueError, valid choices listed) before anything compiles."""
  jobs(config)  # benchmark and variant names
  for v in set(variants(config)) | set(decode_variants(config)):
    attention.check_options(v, config.model.attention.get(v, {}))
  if not lengths(config.lengths):
    raise ValueError("config.lengths is empty")
  for k in ("batch_size", "repeats", "latency.repeats", "decode.repeats",
            "decode.steps", "decode.batch_size"):
    node = config
    for part in k.split("."):
      node = node[part]
    if int(node) < 1:
      raise ValueError(f"config.{k} must be >= 1, got {node}")


def weight(job: measure.Job) -> float:
  """Rough relative cost of a job, for the ETA only.

  A fixed part (compilation: a train step compiles ~6x longer than a forward
  pass on CPU) plus a run part proportional to the tokens processed, times
  L / 1K more for softmax's quadratic attention. Calibrated on the cpu_quick
  preset; elsewhere the ETA is a guess that corrects itself as jobs finish.
  """
  if job.benchmark == "decode":
    return 1.0
  tokens_k = job.batch_size * job.seq_len / 1024
  if job.variant == BASELINE:
    tokens_k *= job.seq_len / 1024
  compile_s, per_k = {"train_step": (6.0, 0.15)}.get(job.benchmark, (1.0, 0.05))
  return compile_s + per_k * tokens_k
