"""Post-training int8 quantization of an exported ONNX model.

Every recipe stores the MatMul weights as int8, one scale per output
column, and runs them as onnxruntime's dynamic-quantized MatMulInteger:
the activation entering each MatMul is quantized to uint8 per call with
one scale for the whole tensor (`quantize_dynamic`, per_channel). That is
the fast path on CPUs (u8 x s8 dot products), and its weakness is a
Transformer's activation outliers: a few channels (and, after the MLP's
GELU, a few tokens) hold values tens of times larger than the rest, so one
scale for the tensor leaves the rest few levels. On all-MiniLM-L6-v2 the
embeddings then keep cosine 0.992 to float32 (0.964 with one scale per
weight tensor). The recipes (`RECIPES`):

  dynamic           onnxruntime's dynamic quantization as is, per-channel
                    weights; no calibration.
  smoothquant       SmoothQuant (Xiao et al. 2023, "SmoothQuant: Accurate and
                    Efficient Post-Training Quantization for Large Language
                    Models", eq. 4): each MatMul input channel j is divided
                    by s_j = max|X_j|^a / max|W_j|^(1-a) and the weight's row
                    j multiplied by it, so X W is unchanged in exact
                    arithmetic while the activation's outlier channels move
                    into the weights, which have a scale per column to
                    absorb them. max|X_j| comes from a calibration batch;
                    a = `SMOOTH_ALPHA` (0.8: on MiniLM 0.5 leaves 0.987,
                    0.8 gives 0.998, 0.9-0.95 fall back). The division is
                    one Mul per distinct MatMul input (q, k and v share it).
  smoothquant_fp32_down  the same, with the narrowing MatMuls (input width
                    > output width: the MLP's down projection, low-rank
                    `down` factors, classifier heads) left in float32.
                    After GELU the down projection's input has outlier
                    tokens that no per-channel smoothing removes; on
                    MiniLM keeping it float reaches cosine 0.9994 at
                    about a third of the int8 speed-up given back.

Embedding tables (a Gather on a float initializer) are stored as int8 with
one scale per row in every recipe: the lookup reads the int8 rows and
multiplies by their scales (onnxruntime's own Gather quantization uses one
scale per table, which costs MiniLM 3e-4 of cosine).

`quantize_int8` reports what it reached: the share of weight values stored
in 8 bits, by count of values (so a float32 weight left behind counts as
much as one quantized), and the bytes before and after.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Sequence

import numpy as np

from lightjax.export.onnx import require, tidy

RECIPES = ("dynamic", "smoothquant", "smoothquant_fp32_down")
DEFAULT_RECIPE = "smoothquant"
SMOOTH_ALPHA = 0.8


def weight_values(path: str) -> dict[str, int]:
  """Initializer values of an ONNX file by storage: "8bit" (int8/uint8),
  "float" (float16/32/64) and "other" (int64 shape constants and the
  like, not weights)."""
  onnx = require("onnx")
  from onnx import numpy_helper  # pylint: disable=import-outside-toplevel
  counts = {"8bit": 0, "float": 0, "other": 0}
  for init in onnx.load(path).graph.initializer:
    arr = numpy_helper.to_array(init)
    kind = ("8bit" if arr.dtype in (np.int8, np.uint8) else
            "float" if np.issubdtype(arr.dtype, np.floating) else "other")
    counts[kind] += int(arr.size)
  return counts


def check_recipe(recipe: str) -> None:
  if recipe not in RECIPES:
    raise ValueError(f"unknown int8 recipe {recipe!r}; valid:"
                     f" {', '.join(RECIPES)}")


# --- graph rewrites ---------------------------------------------------------------


def _attr(node, name: str, default):
  from onnx import helper  # pylint: disable=import-outside-toplevel
  for a in node.attribute:
    if a.name == name:
      return helper.get_attribute_value(a)
  return default


def gemms_as_matmuls(proto) -> int:
  """Rewrites each Gemm with a constant weight as MatMul (+ Add of its
  bias), the weight stored [in, out]; returns how many. The smoothing and
  the exclusions then address one node kind with stable names
  (onnxruntime's quantizer would make the same rewrite internally, under
  names of its own)."""
  from onnx import helper, numpy_helper  # pylint: disable=import-outside-toplevel
  inits = {t.name: t for t in proto.graph.initializer}
  nodes, changed = [], 0
  for node in proto.graph.node:
    if (node.op_type != "Gemm" or node.input[1] not in inits
        or _attr(node, "transA", 0) or _attr(node, "alpha", 1.0) != 1.0
        or _attr(node, "beta", 1.0) != 1.0):
      nodes.append(node)
      continue
    w_name = node.input[1]
    if _attr(node, "transB", 0):
      w = numpy_helper.to_array(inits[w_name])
      inits[w_name].CopyFrom(numpy_helper.from_array(
          np.ascontiguousarray(w.T), w_name))
    changed += 1
    has_bias = len(node.input) > 2 and node.input[2]
    mm_out = node.output[0] + "_mm" if has_bias else node.output[0]
    nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [mm_out],
                                  name=f"matmul{changed}"))
    if has_bias:
      nodes.append(helper.make_node("Add", [mm_out, node.input[2]],
                                    [node.output[0]], name=f"bias{changed}"))
  del proto.graph.node[:]
  proto.graph.node.extend(nodes)
  return changed


def _weight_matmuls(proto) -> list:
  """The MatMuls whose second input is a 2-D float initializer."""
  from onnx import TensorProto  # pylint: disable=import-outside-toplevel
  inits = {t.name: t for t in proto.graph.initializer}
  return [n for n in proto.graph.node
          if n.op_type == "MatMul" and n.input[1] in inits
          and len(inits[n.input[1]].dims) == 2
          and inits[n.input[1]].data_type == TensorProto.FLOAT]


def _name_nodes(proto) -> None:
  for i, node in enumerate(proto.graph.node):
    if not node.name:
      node.name = f"n{i}"


def input_absmax(proto, names: Sequence[str],
                 calibration: Mapping[str, np.ndarray], batch: int = 32
                 ) -> dict[str, np.ndarray]:
  """max |x| per last-axis channel of each named value, over the
  calibration inputs (the model run in onnxruntime with those values as
  extra outputs)."""
  onnx = require("onnx")
  ort = require("onnxruntime")
  from onnx import TensorProto, helper  # pylint: disable=import-outside-toplevel
  probe = onnx.ModelProto()
  probe.CopyFrom(proto)
  probe.graph.output.extend(
      [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
       for n in names])
  sess = ort.InferenceSession(probe.SerializeToString(),
                              providers=["CPUExecutionProvider"])
  feed_names = [i.name for i in sess.get_inputs()]
  missing = [n for n in feed_names if n not in calibration]
  if missing:
    raise ValueError(f"calibration inputs lack {missing}; the model takes"
                     f" {feed_names}")
  n = len(calibration[feed_names[0]])
  amax: dict[str, np.ndarray] = {}
  for lo in range(0, n, batch):
    feed = {k: np.asarray(calibration[k][lo:lo + batch]) for k in feed_names}
    for name, value in zip(names, sess.run(list(names), feed)):
      a = np.abs(value).reshape(-1, value.shape[-1]).max(0)
      amax[name] = np.maximum(amax.get(name, 0.0), a)
  return amax


def smooth(proto, calibration: Mapping[str, np.ndarray],
           alpha: float = SMOOTH_ALPHA, batch: int = 32) -> int:
  """SmoothQuant's scaling (module docstring) on every weight MatMul, in
  place; returns how many MatMul inputs were smoothed."""
  from onnx import helper, numpy_helper  # pylint: disable=import-outside-toplevel
  _name_nodes(proto)
  inits = {t.name: t for t in proto.graph.initializer}
  matmuls = _weight_matmuls(proto)
  inputs = sorted({n.input[0] for n in matmuls})
  if not inputs:
    return 0
  act_max = input_absmax(proto, inputs, calibration, batch)
  scale_of: dict[str, np.ndarray] = {}
  for x in inputs:
    # One s per input channel, shared by every MatMul reading x.
    w_max_K = np.max([np.abs(numpy_helper.to_array(inits[n.input[1]])).max(1)
                      for n in matmuls if n.input[0] == x], axis=0)
    s_K = (np.maximum(act_max[x], 1e-5) ** alpha
           / np.maximum(w_max_K, 1e-5) ** (1.0 - alpha))
    scale_of[x] = s_K.astype(np.float32)
  nodes, inv = [], []
  smoothed = {n.name for n in matmuls}
  for node in proto.graph.node:
    if node.name in smoothed:
      x, w_name = node.input[0], node.input[1]
      w = numpy_helper.to_array(inits[w_name])
      inits[w_name].CopyFrom(numpy_helper.from_array(
          (w * scale_of[x][:, None]).astype(np.float32), w_name))
      if not any(t.name == x + "_inv_s" for t in inv):
        inv.append(numpy_helper.from_array(1.0 / scale_of[x], x + "_inv_s"))
        nodes.append(helper.make_node("Mul", [x, x + "_inv_s"],
                                      [x + "_smoothed"],
                                      name=f"smooth{len(inv)}"))
      node.input[0] = x + "_smoothed"
    nodes.append(node)
  del proto.graph.node[:]
  proto.graph.node.extend(nodes)
  proto.graph.initializer.extend(inv)
  return len(inputs)


def quantize_tables(proto) -> int:
  """Each Gather reading a 2-D float table reads int8 rows times a per-row
  scale instead; returns how many."""
  from onnx import TensorProto, helper, numpy_helper  # pylint: disable=import-outside-toplevel
  inits = {t.name: t for t in proto.graph.initializer}
  nodes, new, done = [], [], {}
  for node in proto.graph.node:
    table = inits.get(node.input[0]) if node.op_type == "Gather" else None
    if (table is None or len(table.dims) != 2 or _attr(node, "axis", 0) != 0
        or table.data_type != TensorProto.FLOAT):
      nodes.append(node)
      continue
    t = node.input[0]
    if t not in done:
      w = numpy_helper.to_array(table).astype(np.float32)
      scale_V = np.maximum(np.abs(w).max(1), 1e-12) / 127.0
      new += [numpy_helper.from_array(
          np.clip(np.round(w / scale_V[:, None]), -127, 127).astype(np.int8),
          t + "_q"), numpy_helper.from_array(
              scale_V[:, None].astype(np.float32), t + "_scale")]
      done[t] = len(done)
    k, out = done[t], node.output[0]
    nodes += [
        helper.make_node("Gather", [t + "_q", node.input[1]], [out + "_q"],
                         name=f"{node.name}_q"),
        helper.make_node("Cast", [out + "_q"], [out + "_f"],
                         to=TensorProto.FLOAT, name=f"{node.name}_cast"),
        helper.make_node("Gather", [t + "_scale", node.input[1]],
                         [out + "_s"], name=f"{node.name}_scale{k}"),
        helper.make_node("Mul", [out + "_f", out + "_s"], [out],
                         name=f"{node.name}_dequant"),
    ]
  del proto.graph.node[:]
  proto.graph.node.extend(nodes)
  proto.graph.initializer.extend(new)
  return len(done)


# --- the job ----------------------------------------------------------------------


def quantize_int8(fp32_path: str, int8_path: str, *,
                  recipe: str = "dynamic",
                  calibration: Mapping[str, np.ndarray] | None = None,
                  calibration_batch: int = 32) -> dict[str, Any]:
  """Writes the int8 model of `recipe` (`RECIPES`); returns its size, the
  fp32 size and the share of weight values stored in 8 bits.

  `calibration`: inputs by graph input name (a few dozen real examples),
  which the smoothquant recipes need for max|X_j|, fed `calibration_batch`
  at a time (a model exported with a fixed batch takes exactly that; the
  examples are then cut to a multiple of it).
  """
  check_recipe(recipe)
  onnx = require("onnx")
  quantization = require("onnxruntime.quantization")
  proto = onnx.load(fp32_path)
  gemms_as_matmuls(proto)
  details: dict[str, Any] = {}
  if recipe != "dynamic":
    if calibration is None:
      raise ValueError(f"int8 recipe {recipe!r} needs calibration inputs"
                       " (recipe 'dynamic' needs none)")
    n = len(next(iter(calibration.values())))
    keep = max(calibration_batch, n - n % calibration_batch)
    if n < calibration_batch:
      raise ValueError(f"{n} calibration examples, fewer than the batch of"
                       f" {calibration_batch} the model takes")
    calibration = {k: v[:keep] for k, v in calibration.items()}
    details["smoothed_inputs"] = smooth(proto, calibration,
                                        batch=calibration_batch)
    details["smooth_alpha"] = SMOOTH_ALPHA
    details["calibration_examples"] = int(len(next(iter(
        calibration.values()))))
  details["tables_int8_per_row"] = quantize_tables(proto)
  _name_nodes(proto)
  keep_float = []
  if recipe == "smoothquant_fp32_down":
    inits = {t.name: t for t in proto.graph.initializer}
    keep_float = [n.name for n in _weight_matmuls(proto)
                  if inits[n.input[1]].dims[0] > inits[n.input[1]].dims[1]]
    details["matmuls_kept_float32"] = len(keep_float)
  staged = int8_path + ".fp32-staged.onnx"
  onnx.save(proto, staged)
  root = logging.getLogger()
  level = root.level
  root.setLevel(logging.ERROR)  # its advice to pre-process (shape inference)
  try:
    quantization.quantize_dynamic(
        staged, int8_path, weight_type=quantization.QuantType.QInt8,
        per_channel=True, op_types_to_quantize=["MatMul"],
        nodes_to_exclude=keep_float)
  finally:
    root.setLevel(level)
    os.remove(staged)
  proto = onnx.load(int8_path)
  tidy(proto)  # the quantizer's long value names and shape annotations
  onnx.save(proto, int8_path)
  before, after = weight_values(fp32_path), weight_values(int8_path)
  # Scales and zero points are new float/8-bit values of their own: count
  # the weights as the fp32 model holds them, minus those left in float.
  total = before["float"]
  left_float = min(after["float"], total)
  return {
      "recipe": recipe,
      "method": ("onnxruntime.quantization.quantize_dynamic, per-channel"
                 " QInt8 weights, per-tensor dynamic uint8 activations"
                 + {"dynamic": "",
                    "smoothquant": f"; SmoothQuant a={SMOOTH_ALPHA}",
                    "smoothquant_fp32_down": f"; SmoothQuant a={SMOOTH_ALPHA},"
                                             " narrowing MatMuls in float32"
                    }[recipe] + "; embedding tables int8 per row"),
      **details,
      "file": os.path.basename(int8_path),
      "bytes": os.path.getsize(int8_path),
      "fp32_bytes": os.path.getsize(fp32_path),
      "size_ratio": os.path.getsize(int8_path) / os.path.getsize(fp32_path),
      "weight_values": total,
      "weight_values_8bit_share": (total - left_float) / total if total else 0.0,
  }
