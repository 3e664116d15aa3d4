"""The device's achievable matmul throughput, for model FLOPs utilisation.

MFU (Chowdhery et al. 2022, "PaLM", sec. 4.1 / appendix B) is the model's
FLOPs per second over the hardware peak. Datasheet peaks are not reachable
and differ between SKUs (H100 SXM vs PCIe, clocks), so the denominator here
is measured in the same run on the same device: the best of `repeats` large
square matmuls in `mfu.dtype` (bf16: the tensor-core rate). MFU is then
train FLOPs (XLA's count for the compiled step) / median seconds / peak.

On CPU no peak is measured and MFU is null: a 2-core shared host has no
stable "peak" (other jobs, frequency scaling, fp32 only), and the speed-ups
the benchmark exists for are ratios that need none.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from lightjax.benchlib import timing


def measure_matmul(dim: int, dtype: str, repeats: int) -> dict[str, Any]:
  """Best-of-`repeats` FLOP/s of one [dim, dim] @ [dim, dim] matmul."""
  n, dt = int(dim), jnp.dtype(dtype)
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (n, n), dt)
  b = jax.random.normal(kb, (n, n), dt)
  mm = jax.jit(lambda x, y: x @ y)
  t = timing.time_calls(lambda: mm(a, b), warmup=2, repeats=int(repeats))
  # The fastest run is the closest to what the hardware can do.
  return {"peak_flops": 2.0 * n**3 / t["min_s"], "dim": n, "dtype": str(dt),
          "median_s": t["median_s"]}


def matmul_peak(cfg: ml_collections.ConfigDict) -> dict[str, Any] | None:
  """{"peak_flops", "dim", "dtype", "median_s"} on accelerators, None on CPU."""
  if jax.default_backend() == "cpu":
    return None
  return measure_matmul(cfg.matmul_dim, cfg.dtype, cfg.repeats)


def mfu(flops: float | None, median_s: float | None,
        peak: dict[str, Any] | None) -> float | None:
  if not peak or not flops or not median_s:
    return None
  return flops / median_s / peak["peak_flops"]
