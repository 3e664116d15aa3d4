"""The files of a Hugging Face checkpoint directory, read without trusting
them: config.json and the index must be JSON objects, shard paths stay
inside the directory, and every safetensors header is parsed and checked
here (8-byte little-endian length, a JSON object of {name: {dtype, shape,
data_offsets}}, offsets that tile the file exactly) before a byte of tensor
data is read. Each problem is one line of `CheckpointError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import numpy as np

from lightjax.models.weights import CheckpointError

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")

# safetensors dtype -> bytes per element.
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
               "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4,
               "F32": 4, "I64": 8, "U64": 8, "F64": 8}
# The dtypes a weight may have (what safetensors.numpy reads as floats).
FLOAT_DTYPES = ("F16", "F32", "F64")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """One tensor as its safetensors header describes it."""
  dtype: str
  shape: tuple[int, ...]
  file: str


def one_line(e: BaseException) -> str:
  """`type: message` of an exception, on one line and cut short."""
  text = " ".join(f"{type(e).__name__}: {e}".split())
  return text if len(text) <= 200 else text[:197] + "..."


def read_json(path: str) -> Any:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
    raise CheckpointError(f"cannot read {path}: {one_line(e)}") from e


def read_json_object(path: str) -> dict[str, Any]:
  value = read_json(path)
  if not isinstance(value, dict):
    raise CheckpointError(f"{path} must hold a JSON object, got"
                          f" {type(value).__name__}")
  return value


def _is_size(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_header(path: str) -> dict[str, TensorInfo]:
  """{tensor name: TensorInfo} of one safetensors file; reads only the
  header, after checking its length against the file's size."""
  where = os.path.basename(path)
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      length = int.from_bytes(f.read(8), "little")
      if size < 8:
        raise CheckpointError(f"{where} is not a safetensors file ({size}"
                              " bytes, less than its 8-byte header length)")
      if length > size - 8:
        raise CheckpointError(
            f"{where}: its header claims {length} bytes but only {size - 8}"
            " follow (truncated, or not a safetensors file)")
      raw = f.read(length)
  except OSError as e:
    raise CheckpointError(f"cannot read {path}: {one_line(e)}") from e
  try:
    header = json.loads(raw.decode("utf-8"))
  except (UnicodeDecodeError, ValueError, RecursionError) as e:
    raise CheckpointError(f"{where}: the safetensors header is not valid"
                          f" JSON ({one_line(e)})") from e
  if not isinstance(header, dict):
    raise CheckpointError(f"{where}: the safetensors header must be a JSON"
                          f" object, got {type(header).__name__}")
  data = size - 8 - length
  out, spans = {}, []
  for name, entry in header.items():
    if name == "__metadata__":
      if not isinstance(entry, dict):
        raise CheckpointError(f"{where}: __metadata__ must be an object")
      continue
    what = f"{where}: tensor {name[:80]!r}"
    if not isinstance(entry, dict):
      raise CheckpointError(f"{what} must be described by an object")
    dtype, shape, offsets = (entry.get("dtype"), entry.get("shape"),
                             entry.get("data_offsets"))
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
      raise CheckpointError(f"{what} has unknown dtype {str(dtype)[:20]!r};"
                            f" safetensors dtypes: {', '.join(DTYPE_BYTES)}")
    if not isinstance(shape, list) or not all(map(_is_size, shape)):
      raise CheckpointError(f"{what} has shape {str(shape)[:60]!r}; a shape is"
                            " a list of integers >= 0")
    if (not isinstance(offsets, list) or len(offsets) != 2
        or not all(map(_is_size, offsets)) or offsets[0] > offsets[1]
        or offsets[1] > data):
      raise CheckpointError(f"{what} has data_offsets {str(offsets)[:60]!r};"
                            f" they must be [begin, end] within the file's"
                            f" {data} data bytes")
    nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
    if nbytes != offsets[1] - offsets[0]:
      raise CheckpointError(f"{what} {dtype} {tuple(shape)} needs {nbytes}"
                            f" bytes but its data_offsets span"
                            f" {offsets[1] - offsets[0]}")
    spans.append((offsets[0], offsets[1], name))
    out[name] = TensorInfo(dtype, tuple(shape), where)
  end = 0
  for begin, stop, name in sorted(spans):
    if begin != end:
      raise CheckpointError(f"{where}: tensor {name[:80]!r} starts at byte"
                            f" {begin}, not {end} (tensors must tile the data"
                            " without gaps or overlaps)")
    end = stop
  if end != data:
    raise CheckpointError(f"{where}: the tensors cover {end} of the file's"
                          f" {data} data bytes")
  return out


def _inside(directory: str, shard: str) -> str:
  """The path of `shard` (from the index), refused unless it stays inside
  `directory` (the hub cache's snapshots/REV/ may link to ../../blobs/)."""
  if (not shard or "\x00" in shard or os.path.isabs(shard)
      or os.path.normpath(shard).split(os.sep)[0] == ".."):
    raise CheckpointError(f"{SAFETENSORS_INDEX}: shard {shard[:80]!r} is not"
                          " a file name inside the checkpoint directory")
  path = os.path.join(directory, os.path.normpath(shard))
  real = os.path.realpath(path)
  roots = [os.path.realpath(directory)]
  parent = os.path.dirname(roots[0])
  if os.path.basename(parent) == "snapshots":
    roots.append(os.path.join(os.path.dirname(parent), "blobs"))
  if not any(real.startswith(root + os.sep) for root in roots):
    raise CheckpointError(f"{SAFETENSORS_INDEX}: shard {shard[:80]!r} resolves"
                          " outside the checkpoint directory")
  if not os.path.isfile(real):
    raise CheckpointError(f"{SAFETENSORS_INDEX}: shard {shard[:80]!r} is"
                          " missing")
  return path


def shards(directory: str) -> dict[str, set[str] | None]:
  """{safetensors file path: the tensor names the index puts there, or None
  for a single model.safetensors}."""
  single = os.path.join(directory, SAFETENSORS_FILE)
  index = os.path.join(directory, SAFETENSORS_INDEX)
  if os.path.exists(single):
    return {single: None}
  if os.path.exists(index):
    weight_map = read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
      raise CheckpointError(f"{SAFETENSORS_INDEX} has no weight_map (an"
                            " object {tensor name: shard file})")
    out: dict[str, set[str] | None] = {}
    for name, shard in weight_map.items():
      if not isinstance(shard, str):
        raise CheckpointError(f"{SAFETENSORS_INDEX}: weight_map[{name[:80]!r}]"
                              " must be a shard file name")
      out.setdefault(_inside(directory, shard), set()).add(name)
    return out
  pickles = [p for p in PICKLE_FILES if os.path.exists(os.path.join(directory, p))]
  if pickles:
    raise CheckpointError(
        f"{directory} has only {pickles[0]} (a pickle, which lightjax never"
        " loads). Convert it once where torch and transformers are installed:"
        " python -c \"import transformers as t; t.AutoModel.from_pretrained("
        f"'{directory}').save_pretrained('{directory}', safe_serialization=True)\""
        " (use the model's own class, e.g. AutoModelForSequenceClassification,"
        " to keep its head)")
  raise CheckpointError(f"no {SAFETENSORS_FILE} (or {SAFETENSORS_INDEX}) in {directory}")


def read_headers(directory: str) -> dict[str, TensorInfo]:
  """Every tensor of the checkpoint as its header(s) describe it; the index
  and its shards must agree, and no tensor may be in two shards."""
  out: dict[str, TensorInfo] = {}
  for path, listed in shards(directory).items():
    header = read_header(path)
    missing = sorted(set(listed or ()) - set(header))
    if missing:
      raise CheckpointError(f"{SAFETENSORS_INDEX} puts {missing[0][:80]!r} in"
                            f" {os.path.basename(path)}, which lacks it")
    for name, info in header.items():
      if name in out:
        raise CheckpointError(f"tensor {name[:80]!r} is in both {out[name].file}"
                              f" and {info.file}")
      out[name] = info
  return out


def load_tensors(directory: str) -> dict[str, np.ndarray]:
  """Every tensor of the checkpoint as numpy arrays (`safetensors.numpy`),
  each file's header checked first (`read_headers`)."""
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  read_headers(directory)
  tensors: dict[str, np.ndarray] = {}
  for path in sorted(shards(directory)):
    try:
      tensors.update(load_file(path))
    except Exception as e:  # safetensors' own errors: one line, the file named
      raise CheckpointError(f"cannot read {os.path.basename(path)}:"
                            f" {one_line(e)}") from e
  return tensors
