"""The export package's shared types: what is exported (`Signature`, built
by `forward_signature` / `decode_signature`), the format registry
(`FORMATS`; onnx.py and stablehlo.py register themselves) and the one
error type. The job that uses them is `lightjax.export.export_run`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lightjax.models import generate
from lightjax.registry import Registry

EXPORT_JSON = "export.json"
DECODE_STATE = "decode_state.npz"


class ExportError(ValueError):
  """What cannot be exported, said in one line (the CLI exits 2)."""


@dataclasses.dataclass
class Signature:
  """The exported function and its argument specs.

  `fn(*args) -> tuple of arrays`; `names` name the inputs and outputs in
  the exported file; `dynamic` the axes that may vary at run time, per
  input ("batch", "length" or None per axis)."""
  fn: Callable[..., tuple[jax.Array, ...]]
  specs: list[jax.ShapeDtypeStruct]
  input_names: list[str]
  output_names: list[str]
  dynamic: list[tuple[str | None, ...]]
  kind: str                      # "forward" or "decode_step"
  decode_state: list[np.ndarray] | None = None  # initial states (decode)


def _has_token_types(model) -> bool:
  bb = getattr(model, "backbone", None)
  return bb is not None and getattr(bb, "type_embed", None) is not None


def forward_signature(model, *, length: int, pad_id: int) -> Signature:
  """tokens [B, L] (+ segment ids) -> logits, eval mode."""
  names, specs, dynamic = ["tokens"], [jax.ShapeDtypeStruct((1, length),
                                                            jnp.int32)], [
                                                                ("batch", "length")]
  if _has_token_types(model):
    names.append("segment_ids")
    specs.append(specs[0])
    dynamic.append(("batch", "length"))

    def fn(tokens, segment_ids):
      return (model(tokens, segment_ids_BxL=segment_ids, deterministic=True,
                    pad_id=pad_id),)
  else:
    def fn(tokens):
      return (model(tokens, deterministic=True, pad_id=pad_id),)
  return Signature(fn, specs, names, ["logits"], dynamic, "forward")


def decode_signature(model, *, max_len: int) -> Signature:
  """(token [1], index [], *states) -> (logits [1, V], *states'): one step
  of `DecoderLM.decode_step` with the decode state flattened into arrays."""
  if not hasattr(model, "decode_step"):
    raise ExportError(f"--decode exports a decoder LM's decode step; this"
                      f" run holds a {type(model).__name__}")
  try:
    generate.check_decodable(model)
  except NotImplementedError as e:  # names the variants that decode
    raise ExportError(str(e)) from None
  cache = model.init_cache(1, max_len, jnp.float32)
  leaves, treedef = jax.tree.flatten(cache)

  def fn(token, index, *states):
    logits, new = model.decode_step(token, jax.tree.unflatten(treedef, states),
                                    index)
    return (logits, *jax.tree.leaves(new))

  state_names = [f"state_{i}" for i in range(len(leaves))]
  specs = ([jax.ShapeDtypeStruct((1,), jnp.int32),
            jax.ShapeDtypeStruct((), jnp.int32)]
           + [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves])
  return Signature(
      fn, specs, ["token", "index", *state_names],
      ["logits", *[n + "_out" for n in state_names]],
      [(None,), ()] + [(None,) * x.ndim for x in leaves], "decode_step",
      decode_state=[np.asarray(x) for x in leaves])


# --- formats ----------------------------------------------------------------------


def first_that_converts(convert: Callable[[bool], Any], sig: Signature,
                        axis: str, what: str) -> tuple[Any, bool]:
  """(convert(True), True) with `axis` ("batch" or "length") symbolic where
  the signature has one and the converter manages it, else (convert(False),
  False); when neither converts, one ExportError: "`what` this model's
  <kind>" and the first failure's first line."""
  first = None
  for symbolic in (True, False):
    if symbolic and axis not in sum(sig.dynamic, ()):
      continue
    try:
      return convert(symbolic), symbolic
    except Exception as e:  # pylint: disable=broad-except
      first = first or e
  line = (str(first).strip().splitlines() or [""])[0]
  raise ExportError(f"{what} this model's {sig.kind}: {type(first).__name__}:"
                    f" {line[:300]}") from None


@dataclasses.dataclass
class Format:
  """`write(signature, out_dir) -> (file path, details)`;
  `runner(path, signature) -> fn(*numpy args) -> tuple of numpy outputs`."""
  write: Callable[[Signature, str], tuple[str, dict[str, Any]]]
  runner: Callable[[str, Signature], Callable[..., tuple[np.ndarray, ...]]]


FORMATS: Registry[Format] = Registry("export format")
