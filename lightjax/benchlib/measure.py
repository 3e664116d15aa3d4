"""The four measurements, one function each, behind a name registry.

Each `measure(config, job) -> dict` builds its program, AOT-compiles it with
`metrics.cost.compile_with_stats` (the executable it times is the one whose
FLOPs and memory plan it reports, and compile time is kept apart from run
time), checks the plan against host memory on CPU, then times it with
`timing.time_calls`. Failures propagate; the runner records them.

  train_step  one AdamW step, `lightjax.trainer.train_step` (the trainer's
              own step, not a copy), state and accumulator donated.
  forward     the eval forward pass, `lightjax.trainer.eval_step`.
  latency_b1  the same forward pass on one example: what an edge device
              answering one request at a time waits. When `batch_size` is 1
              this is the very program `forward` timed, so its record is
              reused (`same_as: "forward"`) instead of compiled and timed
              twice.
  decode      DecoderLM incremental decoding at context t: a jitted
              `lax.scan` of `decode.steps` calls of `decode_step` at positions
              t .. t + steps - 1, with a cache sized t + steps. Softmax's KV
              cache makes each step read every earlier key (O(t) per token);
              linear attention's recurrent state (Katharopoulos et al. 2020,
              eq. 8-9) makes it O(1). The cache content is zeros: the cost of
              a step does not depend on the values, so no prefill is needed.
              XLA counts a scan body once, so decode `flops` are per step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from lightjax import objectives, trainer
from lightjax.benchlib import builders, failures, timing
from lightjax.metrics import cost

# The trainer's own step functions (trainer.train_step / eval_step), not
# copies: a benchmarked step is the trained one.

Record = dict[str, Any]
# Results shared between the measurements of one (variant, length): forward at
# batch 1 is latency_b1. The runner clears it when either changes.
Memo = dict[tuple, Any]


@dataclasses.dataclass(frozen=True)
class Job:
  """One measurement: a benchmark of a variant at a length and batch size."""
  benchmark: str
  variant: str
  seq_len: int
  batch_size: int


def _memory_fields(stats: dict[str, Any]) -> Record:
  keys = ("flops", "peak_bytes", "temp_bytes", "argument_bytes",
          "output_bytes", "compile_s")
  return {k: stats.get(k) for k in keys}


def _compile(config, jitted, *args):
  exe, stats = cost.compile_with_stats(jitted, *args)
  failures.check_host_memory(stats.get("peak_bytes"),
                             config.host_memory_fraction)
  return exe, stats


def _result(stats, times, tokens_per_call: int, num_params: int,
            peak_before: int | None) -> Record:
  return {**_memory_fields(stats), **times,
          "steps_per_s": 1.0 / times["median_s"],
          "tokens_per_s": tokens_per_call / times["median_s"],
          "num_params": num_params,
          "device_peak_bytes": _device_peak_since(peak_before)}


def _device_peak_since(before: int | None) -> int | None:
  """The runtime's peak counter if this measurement raised it, else None.

  Backends keep one process-wide high-water mark that JAX cannot reset, so
  a later, smaller program leaves it unchanged: then its own peak is unknown
  (only bounded by the earlier one) and None is recorded rather than a
  number that belongs to another measurement. CPU has no counter (None).
  """
  after = cost.device_peak_bytes()
  return after if after and (before is None or after > before) else None


def _model_len(config, seq_len: int) -> int:
  return int(config.max_len) or seq_len


def train_step(config: ml_collections.ConfigDict, job: Job, memo: Memo
               ) -> Record:
  del memo
  peak_before = cost.device_peak_bytes()
  built = builders.build(config, job.variant, _model_len(config, job.seq_len))
  batch = builders.random_batch(config, job.batch_size, job.seq_len)
  step = jax.jit(functools.partial(trainer.train_step, built.graphdefs,
                                   objectives.get("classification")),
                 donate_argnums=(0, 2))
  exe, stats = _compile(config, step, built.state, batch, trainer.zero_metrics())
  carry = {"state": built.state, "acc": trainer.zero_metrics()}

  def call():
    carry["state"], carry["acc"] = exe(carry["state"], batch, carry["acc"])
    return carry

  times = timing.time_calls(call, config.warmup, config.repeats,
                            config.max_timed_s)
  return _result(stats, times, job.batch_size * job.seq_len, built.num_params,
                 peak_before)


def _forward(config, job: Job, memo: Memo, warmup: int, repeats: int
             ) -> Record:
  key = ("forward", job.variant, job.seq_len, job.batch_size)
  if key in memo:  # the same program was timed already (batch_size 1)
    return {**memo[key], "same_as": "forward"}
  peak_before = cost.device_peak_bytes()
  built = builders.build(config, job.variant, _model_len(config, job.seq_len),
                         with_optimizer=False)
  batch = builders.random_batch(config, job.batch_size, job.seq_len)
  step = jax.jit(functools.partial(trainer.eval_step, built.graphdefs,
                                   objectives.get("classification")))
  exe, stats = _compile(config, step, built.state["model"], batch)
  times = timing.time_calls(lambda: exe(built.state["model"], batch),
                            warmup, repeats, config.max_timed_s)
  memo[key] = _result(stats, times, job.batch_size * job.seq_len,
                      built.num_params, peak_before)
  return memo[key]


def forward(config: ml_collections.ConfigDict, job: Job, memo: Memo) -> Record:
  return _forward(config, job, memo, config.warmup, config.repeats)


def latency_b1(config: ml_collections.ConfigDict, job: Job, memo: Memo
               ) -> Record:
  """Batch-1 forward; is forward's own record when that ran at batch 1."""
  return _forward(config, job, memo, config.latency.warmup,
                  config.latency.repeats)


def _decode_scan(graphdefs, start: int, steps: int, model_state, cache,
                 tokens_B):
  model = nnx.merge(graphdefs["model"], model_state)

  def body(carry, i):
    cache, tokens_B = carry
    logits_BxV, cache = model.decode_step(tokens_B, cache, start + i)
    return (cache, jnp.argmax(logits_BxV, -1).astype(tokens_B.dtype)), None

  (cache, tokens_B), _ = jax.lax.scan(body, (cache, tokens_B),
                                      jnp.arange(steps))
  return cache, tokens_B


def decode(config: ml_collections.ConfigDict, job: Job, memo: Memo) -> Record:
  del memo
  d = config.decode
  t, steps = job.seq_len, int(d.steps)
  peak_before = cost.device_peak_bytes()
  built = builders.build(config, job.variant, t + steps,
                         model_name="decoder_lm", with_optimizer=False)
  model = nnx.merge(built.graphdefs["model"], built.state["model"])
  cache = jax.device_put(model.init_cache(job.batch_size, t + steps))
  del model
  tokens_B = jnp.ones((job.batch_size,), jnp.int32)
  run = jax.jit(functools.partial(_decode_scan, built.graphdefs, t, steps),
                donate_argnums=(1,))
  exe, stats = _compile(config, run, built.state["model"], cache, tokens_B)
  carry = {"cache": cache, "tokens": tokens_B}

  def call():
    carry["cache"], carry["tokens"] = exe(built.state["model"], carry["cache"],
                                          carry["tokens"])
    return carry

  times = timing.time_calls(call, d.warmup, d.repeats, config.max_timed_s)
  per_step = {**times, **{k: times[k] / steps for k in
                          ("median_s", "min_s", "max_s", "iqr_s")},
              "times_s": [x / steps for x in times["times_s"]]}
  out = _result(stats, per_step, job.batch_size, built.num_params,
                peak_before)
  out["decode_steps"] = steps
  return out


# benchmark name -> measurement. The runner and renderers go through this.
Measure = Callable[[ml_collections.ConfigDict, Job, Memo], Record]
BENCHMARKS: dict[str, Measure] = {
    "train_step": train_step,
    "forward": forward,
    "latency_b1": latency_b1,
    "decode": decode,
}


def names() -> list[str]:
  return list(BENCHMARKS)


def run(config: ml_collections.ConfigDict, job: Job,
        memo: Memo | None = None) -> Record:
  if job.benchmark not in BENCHMARKS:
    raise ValueError(f"unknown benchmark {job.benchmark!r}; valid:"
                     f" {', '.join(BENCHMARKS)}")
  return BENCHMARKS[job.benchmark](config, job, {} if memo is None else memo)
