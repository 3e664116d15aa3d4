"""Post-training int8 quantization of an exported ONNX model.

onnxruntime's dynamic quantization (`quantize_dynamic`, QInt8 weights)
stores the weights of MatMul/Gemm as int8 (run as MatMulInteger on int8
activations quantized per call) and the tables read by Gather (token and
position embeddings) as 8-bit with a dequantization after the lookup. It
skips the operators it has no int8 kernel for (Einsum among them), so
`quantize_int8` reports what it reached: the share of weight values stored
in 8 bits, by count of values (so a float32 weight left behind counts as
much as one quantized), and the bytes before and after.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from lightjax.export.onnx import require, tidy


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


def quantize_int8(fp32_path: str, int8_path: str) -> dict[str, Any]:
  """Writes the int8 model; returns its size, the fp32 size and the share
  of weight values stored in 8 bits."""
  quantization = require("onnxruntime.quantization")
  root = logging.getLogger()
  level = root.level
  root.setLevel(logging.ERROR)  # its advice to pre-process (shape inference)
  try:
    quantization.quantize_dynamic(fp32_path, int8_path,
                                  weight_type=quantization.QuantType.QInt8)
  finally:
    root.setLevel(level)
  onnx = require("onnx")
  proto = onnx.load(int8_path)
  tidy(proto)  # the quantizer's long value names and shape annotations
  onnx.save(proto, int8_path)
  before, after = weight_values(fp32_path), weight_values(int8_path)
  # Scales and zero points are new float/8-bit values of their own: count
  # the weights as the fp32 model holds them, minus those left in float.
  total = before["float"]
  left_float = min(after["float"], total)
  return {
      "method": "onnxruntime.quantization.quantize_dynamic, QInt8 weights",
      "file": os.path.basename(int8_path),
      "bytes": os.path.getsize(int8_path),
      "fp32_bytes": os.path.getsize(fp32_path),
      "size_ratio": os.path.getsize(int8_path) / os.path.getsize(fp32_path),
      "weight_values": total,
      "weight_values_8bit_share": (total - left_float) / total if total else 0.0,
  }
