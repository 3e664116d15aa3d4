"""Measuring one point: build, compile, time, and say what failed.

A point (`Job`) is one benchmark of one variant at one length and batch size.
Each benchmark is a function registered in `BENCHMARKS` (a
`lightjax.registry.Registry`, so an unknown name fails like any other):

  train_step  one AdamW step, `lightjax.steps.train_step` (the trainer's
              own step, not a copy), state and accumulator donated.
  forward     the eval forward pass, `lightjax.steps.eval_step`.
  latency_b1  the same forward pass on one example: what an edge device
              answering one request at a time waits. When `batch_size` is 1
              this is the very program `forward` timed, so its record is
              reused (`same_as: "forward"`) instead of compiled and timed
              twice.
  decode      DecoderLM incremental decoding at context t:
              `lightjax.models.generate.decode_scan` (the loop `generate`
              runs) of `decode.steps` steps at positions t .. t + steps - 1,
              jitted, with a cache sized t + steps. Softmax's KV cache makes
              each step read every earlier key (O(t) per token); linear
              attention's recurrent state (Katharopoulos et al. 2020,
              eq. 8-9) makes it O(1). The cache content is zeros: the cost of
              a step does not depend on the values, so no prefill is needed.
              XLA counts a scan body once, so decode `flops` are per step.
  edge        the batch-1 forward three ways, on the CPU an edge device has:
              the jitted JAX forward (latency_b1's program), the same model
              exported to ONNX (`lightjax.export.forward_signature` +
              `export.onnx.write`: eval mode, tokens -> logits) in
              onnxruntime's CPUExecutionProvider, and that file after
              onnxruntime's dynamic int8 quantization
              (`export.quantize.quantize_int8`: int8 MatMul/Gemm weights,
              8-bit embedding tables). Each is timed with the same warm-up
              and repeats (`config.edge`), one runtime after the other; the
              record's own median / p95 are JAX's, `onnx_fp32_*` /
              `onnx_int8_*` onnxruntime's, with the file sizes, the share of
              weight values stored in 8 bits, each runtime's speed-up over
              JAX and its largest logit difference from JAX on the timed
              input (fp32: float rounding; int8: quantization error).
              onnxruntime keeps its default threading (`edge.threads` = 0,
              recorded) unless told otherwise. Besides
              the attention variants, `edge.models` names trained or shrunk
              run directories: each `config.json`'s `model` section (per-layer
              heads, MLP widths, low-rank factors, layer count) is built with
              random weights (latency and size do not depend on the values)
              and measured as a row labelled by the directory's name.

How each is measured, top to bottom in this file:

  Building   models, optimizer state and batches through the same registries
             and helpers as training (`models.build_model`,
             `optim.make_optimizer`, `nnx.split`), so the program timed is the
             one `lightjax.train` runs. Inputs are random non-pad tokens:
             speed and memory depend on shapes, not on data.
  Compiling  AOT, `metrics.cost.compile_with_stats`: the executable timed is
             the one whose FLOPs and memory plan are reported, and compile
             time is kept apart from run time.
  Timing     median (p50) with min / IQR / p95 / max after warm-up. On a
             shared, noisy machine other jobs skew single runs (always
             upwards), so the median is the robust centre and the spread says
             how far to trust it. Every timed call ends in `jax.block_until_ready`: JAX
             dispatches asynchronously, and an unblocked timer measures only
             the dispatch.
  Failures   a sweep exists to find where variants stop fitting, so running
             out of memory is a result (LRA Table 2 prints such cells as
             missing): `attempt` records it as status "oom" and any other
             exception as "error" with its message, and the sweep goes on. On
             CPU, XLA does not fail cleanly when a program needs more than the
             host has (the process swaps or is killed), so the compiled plan
             is checked against the host's available memory first.
  MFU        model FLOPs utilisation (Chowdhery et al. 2022, "PaLM", sec. 4.1
             / appendix B): FLOPs per second over the device's peak. Datasheet
             peaks are not reachable and differ between SKUs, so the peak is
             measured in the same run: the best of `mfu.repeats` large square
             matmuls in `mfu.dtype` (bf16: the tensor-core rate). Not on CPU:
             a 2-core shared host has no stable peak, and the same-run ratios
             the bench exists for need none.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import tempfile
import time
import traceback
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from lightjax import models, objectives, optim, sharding, steps
from lightjax.export import forward_signature, quantize
from lightjax.export import onnx as onnx_export
from lightjax.metrics import cost
from lightjax.metrics.params import count_params
from lightjax.models import generate
from lightjax.registry import Registry

Record = dict[str, Any]
# Results shared between the measurements of one (variant, length): forward at
# batch 1 is latency_b1. The runner clears it when either changes.
Memo = dict[tuple, Any]


@dataclasses.dataclass(frozen=True)
class Job:
  """One measurement: a benchmark of a variant at a length and batch size.

  `variant` is the label the records and tables show: a registered attention
  name ("linear") or one with option overrides
  ("softmax:implementation=einsum"), parsed by `plan` into `attention` (the
  registered name) and `options` (overrides of
  `config.model.attention.<attention>`). A job with `model_dir` measures
  the model that directory's `config.json` describes instead of
  `config.model` (its `variant` is the directory's name).
  """
  benchmark: str
  variant: str
  seq_len: int
  batch_size: int
  attention: str
  options: tuple[tuple[str, Any], ...] = ()
  model_dir: str = ""


# --- Building -----------------------------------------------------------------

# The optimizer's schedule length: irrelevant to the cost of one step.
_SCHEDULE_STEPS = 1000


RUN_CONFIG = "config.json"  # what `lightjax.train` / `lightjax.shrink` write


def run_model(directory: str) -> dict[str, Any]:
  """The `model` section of a run directory's config.json.

  Raises:
    ValueError: no config.json, or one without a `model` section.
  """
  path = os.path.join(directory, RUN_CONFIG)
  if not os.path.isfile(path):
    raise ValueError(f"model directory {directory!r} has no {RUN_CONFIG}")
  with open(path) as f:
    model = json.load(f).get("model")
  if not isinstance(model, dict):
    raise ValueError(f"{path} has no `model` section")
  return model


def model_config(config: ml_collections.ConfigDict, job: Job,
                 model_name: str = "encoder_classifier"
                 ) -> ml_collections.ConfigDict:
  """A copy of `config.model` for the job's attention and option overrides;
  for a `model_dir` job, that run's model section over `config.model`
  (fields the run does not name keep the bench's values)."""
  if job.model_dir:
    return ml_collections.ConfigDict({**config.model.to_dict(),
                                      **run_model(job.model_dir)})
  m = ml_collections.ConfigDict(config.model.to_dict())
  m.name = model_name
  m.attention.name = job.attention
  m.attention[job.attention].update(dict(job.options))
  return m


@dataclasses.dataclass
class Built:
  """A split model (and optimizer): graphdefs + device state + param count."""
  graphdefs: dict[str, Any]
  state: dict[str, Any]
  num_params: int


def bench_mesh(config: ml_collections.ConfigDict) -> Mesh:
  """`config.mesh` over the first devices it needs (all of them with a -1):
  one device by default, whatever the host has. The train step and the
  forward pass are placed on it as the trainer places them (parameters by
  their logical axes, the batch by examples and positions), so the bench
  measures what a sharded run plans per device."""
  sizes = {k: int(v) for k, v in dict(config.get("mesh") or {}).items()}
  devices = jax.devices()
  n = len(devices) if -1 in sizes.values() else math.prod(sizes.values())
  return sharding.make_mesh(sizes, devices[:n] if n <= len(devices)
                            else devices)


def build(config: ml_collections.ConfigDict, job: Job, max_len: int, *,
          model_name: str = "encoder_classifier",
          with_optimizer: bool = True,
          mesh: Mesh | None = None) -> Built:
  """Builds model (+ AdamW state) exactly as the trainer does, then splits
  it; placed on `mesh` by `config.sharding_rules` if given."""
  rngs = nnx.Rngs(params=config.seed, dropout=config.seed + 1)
  model = models.build_model(
      model_config(config, job, model_name), vocab_size=config.vocab_size,
      num_classes=config.num_classes, max_len=max_len, rngs=rngs)
  num_params = count_params(model)["total"]
  gd_model, model_state = nnx.split(model)
  graphdefs, state = {"model": gd_model}, {"model": model_state}
  if with_optimizer:
    tx, _ = optim.make_optimizer(config.optim, _SCHEDULE_STEPS)
    gd_opt, opt_state = nnx.split(nnx.Optimizer(model, tx, wrt=nnx.Param))
    graphdefs["opt"], state["opt"] = gd_opt, opt_state
  if mesh is None:
    return Built(graphdefs, jax.device_put(state), num_params)
  shardings = sharding.state_shardings(state, mesh,
                                       config.get("sharding_rules"))
  return Built(graphdefs, sharding.put_global(state, shardings), num_params)


def random_batch(config: ml_collections.ConfigDict, batch_size: int,
                 seq_len: int, mesh: Mesh | None = None
                 ) -> dict[str, jax.Array]:
  """Classification batch of random non-pad tokens (the trainer's layout),
  split over `mesh`'s batch and seq axes if given."""
  rules = tuple(config.get("sharding_rules") or ())
  if mesh is not None:
    sharding.check_batch(mesh, batch_size, rules)
  k_tok, k_lab = jax.random.split(jax.random.key(config.seed + 2))
  put = (jax.device_put if mesh is None else
         lambda b: sharding.put_batch(jax.device_get(b), mesh, rules))
  return put({
      "inputs": jax.random.randint(k_tok, (batch_size, seq_len), 1,
                                   config.vocab_size, jnp.int32),
      "targets": jax.random.randint(k_lab, (batch_size,), 0,
                                    config.num_classes, jnp.int32),
      "weights": jnp.ones((batch_size,), jnp.float32),
  })


def _model_len(config, seq_len: int) -> int:
  return int(config.max_len) or seq_len


# --- Timing -------------------------------------------------------------------


def summarize(times_s: list[float], warmup: int = 0) -> Record:
  """Median, min, max, interquartile range and 95th percentile of per-call
  seconds (p95: the tail a user waiting on one request sees; numpy's
  linear interpolation, so with fewer than 20 calls it lies between the two
  slowest)."""
  t = np.asarray(times_s, np.float64)
  q25, med, q75, p95 = np.percentile(t, [25, 50, 75, 95])
  return {"median_s": float(med), "min_s": float(t.min()),
          "max_s": float(t.max()), "iqr_s": float(q75 - q25),
          "p95_s": float(p95),
          "times_s": [float(x) for x in t], "warmup": int(warmup),
          "repeats": len(t)}


def time_calls(call: Callable[[], Any], warmup: int, repeats: int,
               max_timed_s: float = 0.0) -> Record:
  """Runs `call()` warmup times untimed, then up to `repeats` times timed.

  Args:
    call: does one unit of work (it may carry state across calls, e.g. a
      train step feeding its donated state back) and returns what it
      computed, which is blocked on before the clock stops.
    warmup: untimed calls first (first-run allocation, caches).
    repeats: timed calls.
    max_timed_s: if > 0, stop repeating once the timed calls add up to this
      (at least one timed call): a 40 s softmax step at 8K tokens needs no
      third sample to be told apart from a 0.4 s one, and the sweep has a
      time budget. For the same reason a warm-up call that alone takes this
      long is kept as the one timed sample instead of being thrown away:
      first-run effects are milliseconds against its seconds. The record's
      `warmup` and `repeats` are the numbers actually run.
  """
  if repeats < 1:
    raise ValueError(f"repeats must be >= 1, got {repeats}")
  for _ in range(max(warmup, 0)):
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    took = time.perf_counter() - t0
    if 0 < max_timed_s <= took:
      return summarize([took], warmup=0)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - t0)
    if max_timed_s > 0 and sum(times) >= max_timed_s:
      break
  return summarize(times, warmup)


# --- Failures -----------------------------------------------------------------

# Substrings of XLA / runtime messages that mean the allocator gave up.
_OOM_MARKERS = ("resource_exhausted", "resource exhausted", "out of memory",
                "failed to allocate", "oom when allocating",
                "allocation failure", "cannot allocate memory")


def classify(exc: BaseException) -> str:
  """ "oom" for out-of-memory failures, "error" for everything else."""
  if isinstance(exc, MemoryError):
    return "oom"
  msg = str(exc).lower()
  if any(m in msg for m in _OOM_MARKERS):
    return "oom"
  if isinstance(exc, jax.errors.JaxRuntimeError) and "memory" in msg:
    return "oom"
  return "error"


def message(exc: BaseException, limit: int = 500) -> str:
  """`Type: first lines of the message`, short enough for a table cell."""
  text = f"{type(exc).__name__}: {exc}".strip()
  return text if len(text) <= limit else text[:limit - 3] + "..."


def host_available_bytes() -> int | None:
  """Memory the host can still give (Linux MemAvailable), None if unknown."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    return None


def check_host_memory(planned_bytes: int | None, fraction: float) -> None:
  """Raises MemoryError if a CPU program's plan exceeds fraction x available."""
  if not planned_bytes or fraction <= 0 or jax.default_backend() != "cpu":
    return
  avail = host_available_bytes()
  if avail is not None and planned_bytes > fraction * avail:
    raise MemoryError(
        f"compiled plan needs {planned_bytes / 2**30:.2f} GiB, more than"
        f" {fraction:.0%} of the {avail / 2**30:.2f} GiB the host has"
        " available; not run")


# --- MFU ----------------------------------------------------------------------


def measure_matmul(dim: int, dtype: str, repeats: int) -> Record:
  """Best-of-`repeats` FLOP/s of one [dim, dim] @ [dim, dim] matmul."""
  n, dt = int(dim), jnp.dtype(dtype)
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (n, n), dt)
  b = jax.random.normal(kb, (n, n), dt)
  mm = jax.jit(lambda x, y: x @ y)
  t = time_calls(lambda: mm(a, b), warmup=2, repeats=int(repeats))
  # The fastest run is the closest to what the hardware can do.
  return {"peak_flops": 2.0 * n**3 / t["min_s"], "dim": n, "dtype": str(dt),
          "median_s": t["median_s"]}


def matmul_peak(cfg: ml_collections.ConfigDict) -> Record | None:
  """{"peak_flops", "dim", "dtype", "median_s"} on accelerators, None on CPU."""
  if jax.default_backend() == "cpu":
    return None
  return measure_matmul(cfg.matmul_dim, cfg.dtype, cfg.repeats)


def mfu(flops: float | None, median_s: float | None,
        peak: Record | None, devices: int = 1) -> float | None:
  """Achieved over peak FLOP/s, `devices` devices sharing `flops`."""
  if not peak or not flops or not median_s:
    return None
  return flops / median_s / (peak["peak_flops"] * devices)


# --- The benchmarks -----------------------------------------------------------

Measure = Callable[[ml_collections.ConfigDict, Job, Memo], Record]
BENCHMARKS: Registry[Measure] = Registry("benchmark")


def _compile(config, jitted, *args, mesh: Mesh | None = None):
  """Compiled (in `mesh`'s activation layout); `flops` for the whole
  program, memory per device (`cost.compile_with_stats`)."""
  if mesh is None:
    exe, stats = cost.compile_with_stats(jitted, *args)
  else:
    with sharding.activation_layout(mesh, config.get("sharding_rules")):
      exe, stats = cost.compile_with_stats(jitted, *args)
  check_host_memory(stats.get("peak_bytes"), config.host_memory_fraction)
  return exe, stats


def _device_peak_since(before: int | None) -> int | None:
  """The runtime's peak counter if this measurement raised it, else None.

  Backends keep one process-wide high-water mark that JAX cannot reset, so
  a later, smaller program leaves it unchanged: then its own peak is unknown
  (only bounded by the earlier one) and None is recorded rather than a
  number that belongs to another measurement. CPU has no counter (None).
  """
  after = cost.device_peak_bytes()
  return after if after and (before is None or after > before) else None


def _result(stats, times, tokens_per_call: int, num_params: int,
            peak_before: int | None) -> Record:
  keys = ("flops", "peak_bytes", "temp_bytes", "argument_bytes",
          "output_bytes", "compile_s", "devices")
  return {**{k: stats.get(k) for k in keys}, **times,
          "steps_per_s": 1.0 / times["median_s"],
          "tokens_per_s": tokens_per_call / times["median_s"],
          "num_params": num_params,
          "device_peak_bytes": _device_peak_since(peak_before)}


@BENCHMARKS.register("train_step")
def train_step(config: ml_collections.ConfigDict, job: Job, memo: Memo
               ) -> Record:
  del memo
  peak_before = cost.device_peak_bytes()
  mesh = bench_mesh(config)
  built = build(config, job, _model_len(config, job.seq_len), mesh=mesh)
  batch = random_batch(config, job.batch_size, job.seq_len, mesh)
  step = jax.jit(functools.partial(steps.train_step, built.graphdefs,
                                   objectives.get("classification")),
                 donate_argnums=(0, 2))
  exe, stats = _compile(config, step, built.state, batch,
                        steps.zero_metrics(), mesh=mesh)
  carry = {"state": built.state, "acc": steps.zero_metrics()}

  def call():
    carry["state"], carry["acc"] = exe(carry["state"], batch, carry["acc"])
    return carry

  times = time_calls(call, config.warmup, config.repeats, config.max_timed_s)
  return _result(stats, times, job.batch_size * job.seq_len, built.num_params,
                 peak_before)


def _forward(config, job: Job, memo: Memo, warmup: int, repeats: int,
             mesh: Mesh) -> Record:
  key = ("forward", job.variant, job.seq_len, job.batch_size,
         tuple(mesh.shape.items()))
  if key in memo:  # the same program was timed already (batch_size 1)
    return {**memo[key], "same_as": "forward"}
  peak_before = cost.device_peak_bytes()
  built = build(config, job, _model_len(config, job.seq_len),
                with_optimizer=False, mesh=mesh)
  batch = random_batch(config, job.batch_size, job.seq_len, mesh)
  step = jax.jit(functools.partial(steps.eval_step, built.graphdefs,
                                   objectives.get("classification")))
  exe, stats = _compile(config, step, built.state["model"], batch, mesh=mesh)
  times = time_calls(lambda: exe(built.state["model"], batch), warmup,
                     repeats, config.max_timed_s)
  memo[key] = _result(stats, times, job.batch_size * job.seq_len,
                      built.num_params, peak_before)
  return memo[key]


@BENCHMARKS.register("forward")
def forward(config: ml_collections.ConfigDict, job: Job, memo: Memo) -> Record:
  return _forward(config, job, memo, config.warmup, config.repeats,
                  bench_mesh(config))


@BENCHMARKS.register("latency_b1")
def latency_b1(config: ml_collections.ConfigDict, job: Job, memo: Memo
               ) -> Record:
  """Batch-1 forward on one device (one example is not split); is
  forward's own record when that ran at batch 1 on one device."""
  return _forward(config, job, memo, config.latency.warmup,
                  config.latency.repeats,
                  sharding.make_mesh({}, jax.devices()[:1]))


def _decode(graphdefs, start: int, steps: int, model_state, cache, tokens_B):
  """`generate.decode_scan` as a pure function of (state, cache, tokens)."""
  model = nnx.merge(graphdefs["model"], model_state)
  tokens_BxT, cache = generate.decode_scan(model, cache, tokens_B, start, steps)
  return cache, tokens_BxT[:, -1]


@BENCHMARKS.register("decode")
def decode(config: ml_collections.ConfigDict, job: Job, memo: Memo) -> Record:
  del memo
  d = config.decode
  t, steps = job.seq_len, int(d.steps)
  peak_before = cost.device_peak_bytes()
  built = build(config, job, t + steps, model_name="decoder_lm",
                with_optimizer=False)
  model = nnx.merge(built.graphdefs["model"], built.state["model"])
  # The cache in the compute dtype, as a bf16 model would keep it (half the
  # memory); a float32 cache would also mix dtypes in softmax's kernel.
  cache = jax.device_put(model.init_cache(
      job.batch_size, t + steps, models.DTYPES[config.model.dtype]))
  del model
  tokens_B = jnp.ones((job.batch_size,), jnp.int32)
  run = jax.jit(functools.partial(_decode, built.graphdefs, t, steps),
                donate_argnums=(1,))
  exe, stats = _compile(config, run, built.state["model"], cache, tokens_B)
  carry = {"cache": cache, "tokens": tokens_B}

  def call():
    carry["cache"], carry["tokens"] = exe(built.state["model"], carry["cache"],
                                          carry["tokens"])
    return carry

  times = time_calls(call, d.warmup, d.repeats, config.max_timed_s)
  per_step = {**times, **{k: times[k] / steps for k in
                          ("median_s", "min_s", "max_s", "iqr_s")},
              "times_s": [x / steps for x in times["times_s"]]}
  out = _result(stats, per_step, job.batch_size, built.num_params,
                peak_before)
  out["decode_steps"] = steps
  return out


# The pad id `steps.eval_step` masks by default; `random_batch` draws none,
# so every position is attended in all three runtimes.
_PAD_ID = 0
_RUNTIMES = ("onnx_fp32", "onnx_int8")


@BENCHMARKS.register("edge")
def edge(config: ml_collections.ConfigDict, job: Job, memo: Memo) -> Record:
  """JAX-jit vs onnxruntime fp32 vs onnxruntime int8 at batch 1 (docstring
  at the top of this module)."""
  del memo  # its own build: the model is exported after it is timed
  # Optional packages (ARCHITECTURE.md): missing, the point fails with
  # `export.onnx.INSTALL` in its message before anything compiles.
  ort = onnx_export.require("onnxruntime")
  onnx_export.require("jax2onnx")

  e = config.edge
  peak_before = cost.device_peak_bytes()
  built = build(config, job, _model_len(config, job.seq_len),
                with_optimizer=False)
  batch = random_batch(config, 1, job.seq_len)
  step = jax.jit(functools.partial(steps.eval_step, built.graphdefs,
                                   objectives.get("classification")))
  exe, stats = _compile(config, step, built.state["model"], batch)
  jax_times = time_calls(lambda: exe(built.state["model"], batch), e.warmup,
                         e.repeats, config.max_timed_s)
  out = _result(stats, jax_times, job.seq_len, built.num_params, peak_before)

  model = nnx.merge(built.graphdefs["model"], built.state["model"])
  sig = forward_signature(model, length=job.seq_len, pad_id=_PAD_ID)
  with tempfile.TemporaryDirectory() as tmp:  # sessions hold the graphs
    fp32_path, details = onnx_export.write(sig, tmp)
    int8_path = os.path.join(tmp, "model.int8.onnx")
    q = quantize.quantize_int8(fp32_path, int8_path)
    sessions = {"onnx_fp32": onnx_export.session(fp32_path, int(e.threads)),
                "onnx_int8": onnx_export.session(int8_path, int(e.threads))}
  feed = {sig.input_names[0]: np.asarray(batch["inputs"])}
  # The timed graphs compute the JAX model's logits (int8: up to its
  # quantization error), so no broken export is timed unnoticed.
  want = np.asarray(jax.jit(sig.fn)(batch["inputs"])[0])
  for name in _RUNTIMES:
    got = sessions[name].run(None, feed)[0]
    t = time_calls(lambda s=sessions[name]: s.run(None, feed), e.warmup,
                   e.repeats, config.max_timed_s)
    out.update({f"{name}_median_s": t["median_s"], f"{name}_p95_s": t["p95_s"],
                f"{name}_max_abs_diff": float(np.abs(got - want).max()),
                f"{name}_times_s": t["times_s"]})
  out.update({
      "fp32_speedup_vs_jax": out["median_s"] / out["onnx_fp32_median_s"],
      "int8_speedup_vs_jax": out["median_s"] / out["onnx_int8_median_s"],
      "onnx_fp32_bytes": q["fp32_bytes"], "onnx_int8_bytes": q["bytes"],
      "int8_size_ratio": q["size_ratio"],
      "int8_weight_share": q["weight_values_8bit_share"],
      "ort_threads": int(e.threads), "onnxruntime": ort.__version__,
      "converter": details["converter"], "opset": details["opset"],
      "model_dir": job.model_dir or None})
  return out


def attempt(config: ml_collections.ConfigDict, job: Job, memo: Memo
            ) -> Record:
  """The job's measurement with status "ok", or its failure as a record.

  Never raises for a failed point: {"status": "oom" | "error", "error":
  message} (and `error_at`, the raising line, for unexpected errors).
  """
  try:
    return {"status": "ok", **BENCHMARKS.get(job.benchmark)(config, job, memo)}
  except Exception as e:  # pylint: disable=broad-except
    rec = {"status": classify(e), "error": message(e)}
    if rec["status"] == "error":  # unexpected: say where, not just what
      frame = traceback.extract_tb(e.__traceback__)[-1]
      rec["error_at"] = f"{frame.filename}:{frame.lineno} ({frame.name})"
    return rec
