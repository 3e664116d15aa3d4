"""What a model costs where it is deployed: CPU batch-1 latency, forward
FLOPs and bytes on disk.

Edge numbers are per request, so latency is measured at batch 1 on the
host CPU (`jax.devices("cpu")[0]`, whatever accelerator the run used),
jit-compiled, after warm-up, as the median and 90th percentile of repeated
calls; each call waits for its result (`block_until_ready`). Timings vary
with the machine and its load, so reports compare models measured in the
same process, never against a stored number.

FLOPs are XLA's cost analysis of the same compiled batch-1 forward
(`lightjax.metrics.cost`), which counts what the compiled program executes:
a physically pruned model shows fewer, a masked one would not.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lightjax.metrics import cost


def _forward(model, seq_len: int, pad_id: int, device):
  """A jitted batch-1 forward of `model` on `device` and its input."""
  graphdef, state = nnx.split(model)
  state = jax.device_put(state, device)
  tokens_1xL = jax.device_put(
      jnp.full((1, seq_len), pad_id + 1, jnp.int32), device)

  @jax.jit
  def forward(state, tokens_1xL):
    return nnx.merge(graphdef, state)(tokens_1xL, deterministic=True,
                                      pad_id=pad_id)
  return forward, state, tokens_1xL


def cpu_latency(model, seq_len: int, *, pad_id: int = 0, repeats: int = 30,
                warmup: int = 3) -> dict[str, Any]:
  """{"seq_len", "p50_ms", "p90_ms", "repeats", "forward_flops"} at batch 1."""
  device = jax.devices("cpu")[0]
  forward, state, tokens = _forward(model, seq_len, pad_id, device)
  compiled, stats = cost.compile_with_stats(forward, state, tokens)
  for _ in range(warmup):
    jax.block_until_ready(compiled(state, tokens))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(state, tokens))
    times.append(time.perf_counter() - t0)
  ms = np.asarray(times) * 1e3
  return {"seq_len": seq_len, "p50_ms": float(np.percentile(ms, 50)),
          "p90_ms": float(np.percentile(ms, 90)), "repeats": repeats,
          "forward_flops": float(stats["flops"])}


def dir_bytes(path: str) -> int:
  """Bytes of every file under `path` (a checkpoint directory)."""
  total = 0
  for root, _, names in os.walk(path):
    for name in names:
      total += os.path.getsize(os.path.join(root, name))
  return total
