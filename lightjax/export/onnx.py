"""ONNX export through jax2onnx, and onnxruntime to run it.

jax2onnx (0.13.0: the newest release whose requirements admit the pinned
orbax-checkpoint) traces the exported function and writes each JAX
primitive as ONNX operators, opset `OPSET`. The batch dimension is
symbolic ("B"); the sequence length is fixed at the export length (the
model's max_len unless --length): with a symbolic length too, jax2onnx
0.13.0 writes a graph that onnxruntime rejects (a Where broadcasting [B]
against [B * L]), and padding to max_len is how the task feeds it anyway.
Dense projections become Gemm/MatMul, which onnxruntime's int8 dynamic
quantization rewrites (`quantize.py`); the position table is read by a
Gather (`models.embeddings.PositionEmbedding`) for the same reason.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

import jax
import numpy as np

from lightjax import data
from lightjax.export.base import (FORMATS, ExportError, Format, Signature,
                                  first_that_converts)

OPSET = 23
INSTALL = "pip install jax2onnx==0.13.0 onnx onnxruntime"


def require(module: str):
  """Imports an optional package, or says what to install."""
  # jax2onnx logs each plugin it skips (two image ops need a newer jax).
  logging.getLogger("jax2onnx").setLevel(logging.ERROR)
  logging.getLogger("onnx_ir").setLevel(logging.ERROR)
  try:
    return __import__(module, fromlist=["_"])
  except ImportError:
    raise data.MissingPackage(
        f"ONNX export needs the {module.split('.')[0]} package: {INSTALL}"
    ) from None


def _specs(sig: Signature, symbolic_batch: bool) -> list[jax.ShapeDtypeStruct]:
  return [jax.ShapeDtypeStruct(
      tuple("B" if d == "batch" and symbolic_batch else n
            for n, d in zip(spec.shape, dyn)), spec.dtype)
          for spec, dyn in zip(sig.specs, sig.dynamic)]


def to_proto(sig: Signature):
  """(the ONNX ModelProto of `sig`, whether its batch is symbolic): batch
  symbolic where jax2onnx can keep it so, else fixed at the signature's
  (a causal linear or Performer forward computes its chunk scan with
  shapes jax2onnx needs concrete)."""
  j2o = require("jax2onnx")
  return first_that_converts(
      lambda symbolic_batch: j2o.to_onnx(
          sig.fn, inputs=_specs(sig, symbolic_batch),
          model_name=f"lightjax_{sig.kind}", opset=OPSET,
          input_names=sig.input_names, output_names=sig.output_names),
      sig, "batch", "jax2onnx cannot convert")


def _graphs(graph):
  """`graph` and every graph nested in its nodes' attributes (If, Loop,
  Scan bodies), depth first."""
  yield graph
  for node in graph.node:
    for attr in node.attribute:
      if attr.g.node:
        yield from _graphs(attr.g)
      for sub in attr.graphs:
        yield from _graphs(sub)


def tidy(proto) -> None:
  """Smaller files, same graph: identical constant tensors stored once,
  unused ones dropped, value and constant names shortened (jax2onnx and
  the quantizer name each value after its primitive and a counter), doc
  strings and shape annotations dropped. Graph inputs and outputs keep their names;
  subgraph-local names are left as they are. On the default ListOps
  model this is a quarter of the int8 file."""
  graph = proto.graph
  io = {v.name for v in graph.input} | {v.name for v in graph.output}
  rename: dict[str, str] = {}
  kept, seen = [], {}
  for init in graph.initializer:
    unnamed = type(init)()
    unnamed.CopyFrom(init)
    unnamed.name = ""
    key = unnamed.SerializeToString(deterministic=True)
    if key in seen:  # the same constant again
      rename[init.name] = seen[key]
      continue
    seen[key] = rename[init.name] = f"c{len(seen) - 1}"
    kept.append(init)
  for init in kept:
    init.name = rename[init.name]
  del graph.initializer[:]
  graph.initializer.extend(kept)
  for node in graph.node:
    for name in node.output:
      if name and name not in io and name not in rename:
        rename[name] = f"v{len(rename)}"

  for g in _graphs(graph):
    for node in g.node:
      node.doc_string = ""
      node.name = ""
      node.input[:] = [rename.get(n, n) for n in node.input]
      node.output[:] = [rename.get(n, n) for n in node.output]
  used = {name for g in _graphs(graph) for node in g.node for name in node.input}
  kept = [t for t in graph.initializer if t.name in used]  # jax2onnx leaves some
  del graph.initializer[:]
  graph.initializer.extend(kept)
  del graph.value_info[:]
  graph.doc_string = ""


def bias_every_gemm(proto) -> int:
  """Gives each bias-free Gemm with a constant weight a zero bias (beta 1);
  returns how many. The same function, and onnxruntime's dynamic
  quantization then reaches it: it rewrites only Gemms with beta = 1 into
  quantizable MatMuls, and jax2onnx writes a dense layer without a bias
  (the low-rank factors' `down` [in, r], `models.transformer.
  LowRankLinear`) as a Gemm with beta = 0."""
  from onnx import helper, numpy_helper  # pylint: disable=import-outside-toplevel
  weights = {t.name: t for t in proto.graph.initializer}
  changed = 0
  for node in proto.graph.node:
    if node.op_type != "Gemm" or node.input[1] not in weights:
      continue
    attrs = {a.name: a for a in node.attribute}
    beta = attrs["beta"].f if "beta" in attrs else 1.0
    if len(node.input) == 3 and node.input[2] and beta == 1.0:
      continue
    w = weights[node.input[1]]
    trans_b = attrs["transB"].i if "transB" in attrs else 0
    n = w.dims[0] if trans_b else w.dims[1]
    bias = numpy_helper.from_array(
        np.zeros((n,), helper.tensor_dtype_to_np_dtype(w.data_type)),
        f"{node.input[1]}_zero_bias")
    proto.graph.initializer.append(bias)
    del node.input[2:]
    node.input.append(bias.name)
    if "beta" in attrs:
      attrs["beta"].f = 1.0
    changed += 1
  return changed


def write(sig: Signature, out_dir: str) -> tuple[str, dict[str, Any]]:
  onnx = require("onnx")
  proto, symbolic_batch = to_proto(sig)
  bias_every_gemm(proto)
  tidy(proto)
  onnx.checker.check_model(proto)
  path = os.path.join(out_dir, "model.onnx")
  onnx.save(proto, path)
  ops: dict[str, int] = {}
  for node in proto.graph.node:
    ops[node.op_type] = ops.get(node.op_type, 0) + 1
  return path, {"opset": OPSET, "converter": "jax2onnx " + _version("jax2onnx"),
                "symbolic_dims": ["B"] if symbolic_batch else [],
                "onnx_ops": dict(sorted(ops.items()))}


def _version(module: str) -> str:
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  try:
    return metadata.version(module)
  except metadata.PackageNotFoundError:
    return "?"


def session(path: str, threads: int = 0):
  """An onnxruntime CPU session (`threads` intra-op threads; 0 = its
  default)."""
  ort = require("onnxruntime")
  options = ort.SessionOptions()
  if threads:
    options.intra_op_num_threads = threads
  return ort.InferenceSession(path, options,
                              providers=["CPUExecutionProvider"])


def runner(path: str, sig: Signature) -> Callable[..., tuple[np.ndarray, ...]]:
  """fn(*numpy inputs in the signature's order) -> outputs, in onnxruntime."""
  sess = session(path)
  names = [i.name for i in sess.get_inputs()]
  if names != list(sig.input_names):
    raise ExportError(f"{path} takes inputs {names}, expected"
                      f" {sig.input_names}")

  def run(*args):
    return tuple(sess.run(None, dict(zip(names, (np.asarray(a) for a in args)))))
  return run


FORMATS.register("onnx", Format(write, runner))
