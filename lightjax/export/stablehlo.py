"""StableHLO export through `jax.export`, and the loader that runs it.

`jax.export` lowers the function to StableHLO with symbolic dimensions
("B" for the batch and, where the model's shapes allow it, "L" for the
sequence; otherwise the export length is fixed) and serializes it with its
calling convention: `model.stablehlo` is what any StableHLO consumer (IREE,
XLA's PJRT plugins, TensorFlow's XlaCallModule) loads, and `load(path)`
gives back a callable here, in a process that has no lightjax model code.
`model.mlir` is the same module as text, for reading.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import numpy as np
from jax import export as jax_export

from lightjax.export.base import FORMATS, Format, Signature, first_that_converts

FILE = "model.stablehlo"


def _specs(sig: Signature, symbolic_length: bool):
  """Symbolic B (and L, at most the export length: the model's positions)."""
  dims = "B, L" if symbolic_length else "B"
  max_len = max((n for spec, dyn in zip(sig.specs, sig.dynamic)
                 for n, d in zip(spec.shape, dyn) if d == "length"), default=0)
  scope = jax_export.SymbolicScope(
      [f"L <= {max_len}"] if symbolic_length else [])
  syms = dict(zip(("B", "L"), jax_export.symbolic_shape(dims, scope=scope)))
  out = []
  for spec, dyn in zip(sig.specs, sig.dynamic):
    shape = tuple(syms["B"] if d == "batch" else
                  (syms["L"] if d == "length" and symbolic_length else n)
                  for n, d in zip(spec.shape, dyn))
    out.append(jax.ShapeDtypeStruct(shape, spec.dtype))
  return out


def export(sig: Signature):
  """(jax.export.Exported, whether the length is symbolic)."""
  return first_that_converts(
      lambda symbolic_length: jax_export.export(jax.jit(sig.fn))(
          *_specs(sig, symbolic_length)),
      sig, "length", "jax.export cannot lower")


def write(sig: Signature, out_dir: str) -> tuple[str, dict[str, Any]]:
  exported, symbolic_length = export(sig)
  path = os.path.join(out_dir, FILE)
  with open(path, "wb") as f:
    f.write(exported.serialize())
  with open(os.path.join(out_dir, "model.mlir"), "w") as f:
    f.write(exported.mlir_module())
  return path, {"converter": f"jax.export (jax {jax.__version__})",
                "calling_convention_version":
                    exported.calling_convention_version,
                "symbolic_dims": ["B"] + (["L"] if symbolic_length else []),
                "platforms": list(exported.platforms)}


def load(path: str) -> Callable[..., Any]:
  """The exported function from a `model.stablehlo` file."""
  with open(path, "rb") as f:
    exported = jax_export.deserialize(bytearray(f.read()))
  return exported.call


def runner(path: str, sig: Signature) -> Callable[..., tuple[np.ndarray, ...]]:
  del sig
  call = jax.jit(load(path))

  def run(*args):
    return tuple(np.asarray(x) for x in call(*args))
  return run


FORMATS.register("stablehlo", Format(write, runner))
