"""FLOPs and memory of a compiled step, read from XLA rather than estimated.

`jax.jit(f).lower(*args).compile()` exposes XLA's own cost model
(`cost_analysis()["flops"]`) and buffer assignment (`memory_analysis()`):
deterministic for a given program and shape, so variants can be compared on a
noisy shared machine, in tests as well as benchmarks. The memory figure is the
compiler's plan (arguments + outputs + temporaries), the CPU stand-in for a
device's peak; `device_peak_bytes` adds the runtime's own counter where the
backend has one (GPU/TPU).

Caveats: XLA counts a `while`/`scan` body once, not once per iteration, so
FLOPs of a kernel written as a loop are a lower bound; and for an SPMD
program it reports one device's share (the trainer multiplies by the device
count).
"""

from __future__ import annotations

import time
from typing import Any

import jax


def _flops(compiled) -> float:
  ca = compiled.cost_analysis()
  if isinstance(ca, (list, tuple)):  # older jax returned one dict per module
    ca = ca[0] if ca else {}
  return float((ca or {}).get("flops", 0.0))


def compiled_stats(compiled) -> dict[str, Any]:
  """FLOPs and memory plan of an already compiled (`jax.stages.Compiled`) step."""
  mem = compiled.memory_analysis()
  out = {"flops": _flops(compiled)}
  if mem is not None:
    out.update(
        argument_bytes=int(mem.argument_size_in_bytes),
        output_bytes=int(mem.output_size_in_bytes),
        temp_bytes=int(mem.temp_size_in_bytes),
        alias_bytes=int(mem.alias_size_in_bytes),
    )
    # Donated (aliased) outputs reuse argument buffers: count them once.
    out["peak_bytes"] = (out["argument_bytes"] + out["output_bytes"]
                         - out["alias_bytes"] + out["temp_bytes"])
  return out


def compile_with_stats(jitted, *args) -> tuple[Any, dict[str, Any]]:
  """AOT-compiles `jitted(*args)`; returns (compiled, stats incl. compile_s).

  The returned executable is the one to call, so measuring costs nothing
  extra: no second compilation.
  """
  t0 = time.perf_counter()
  lowered = jitted.lower(*args)
  compiled = lowered.compile()
  stats = compiled_stats(compiled)
  stats["compile_s"] = time.perf_counter() - t0
  devices = max((len(s.device_set) for s in jax.tree.leaves(
      compiled.input_shardings)), default=1)
  if devices > 1:
    # The partitioned program counts one device's share, including work
    # every device repeats; the program's own FLOPs are the unpartitioned
    # one's (what one device would compute). Memory stays per device.
    stats["flops"] = (lowered.cost_analysis() or {}).get("flops",
                                                         stats.get("flops"))
  stats["devices"] = devices
  return compiled, stats


def device_peak_bytes() -> int | None:
  """The runtime's peak allocation on device 0, where the backend reports it."""
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  if not stats:
    return None
  return int(stats.get("peak_bytes_in_use", 0)) or None
