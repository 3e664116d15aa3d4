"""Turning a failed measurement into a record: "oom" or "error", never a crash.

WHY: a benchmark sweep exists to find where variants stop fitting. Softmax at
long lengths running out of memory is a result (LRA Table 2 prints such cells
as missing), so it is recorded with `status: "oom"` and the sweep goes on;
any other exception is recorded as `status: "error"` with its message.

On CPU, XLA does not fail cleanly when a program needs more than the host has:
the process swaps or the OS kills it. `check_host_memory` compares the
compiler's memory plan with the host's available memory before running and
raises `MemoryError` instead, which classifies as "oom".
"""

from __future__ import annotations

import os

import jax

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
