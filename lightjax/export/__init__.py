"""Edge export: a trained or shrunk model out of JAX, checked against it.

  python -m lightjax.export --workdir RUN --format onnx --out DIR [--int8]
  python -m lightjax.export --workdir RUN --format stablehlo --out DIR
  python -m lightjax.export --workdir LM_RUN --format onnx --out DIR --decode

What is exported (`signature`), in eval mode with the run's pad id built in:
  * a classifier: tokens int32 [B, L] (+ segment ids [B, L] where the model
    has token types) -> logits float32 [B, C];
  * a decoder LM: tokens [B, L] -> logits [B, L, V], or with `decode` its
    single-token decode step, every layer's decode state an explicit input
    and output: (token [1], index [], state_0 ...) -> (logits [1, V],
    state_0' ...). An edge runtime generates with it by feeding the states
    back (constant memory for linear, Performer, local and Longformer;
    `models.generate` explains each state). The initial states go in
    DIR/decode_state.npz.

Any model `init_from.load_model` reads exports: shrunk ones (uneven heads
per layer, dropped layers, low-rank factors) are plain models with other
sizes. Each export is checked where it is written (`check`): the exported
model runs in its runtime (onnxruntime; `jax.export`'s deserialized
artifact) on the run's validation split, or, for a decode step, greedily
generates from a prompt, and DIR/export.json records the largest logit
difference from the JAX model and whether every argmax (every token)
agrees. Formats: `FORMATS` (onnx.py, stablehlo.py register themselves).
The shared types (`Signature`, `Format`, `ExportError`) live in base.py;
this file is the job (`export_run`) and its checks.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lightjax import data, files, init_from
from lightjax.export.base import (
    DECODE_STATE,
    EXPORT_JSON,
    FORMATS,
    ExportError,
    Format,
    Signature,
    decode_signature,
    first_that_converts,
    forward_signature,
)
from lightjax.metrics import embedding as embedding_metrics
from lightjax.models import generate

# Importing the formats registers them (FORMATS); quantize is ONNX's int8.
from lightjax.export import onnx, quantize, stablehlo  # noqa: F401

# Calibration examples for the smoothquant int8 recipes (max |x| per channel).
CALIBRATION_EXAMPLES = 128

__all__ = [
    "DECODE_STATE", "EXPORT_JSON", "FORMATS", "ExportError", "Format",
    "Signature", "check_decode", "check_forward", "decode_signature",
    "export_run", "first_that_converts", "forward_signature", "greedy_tokens",
    "task_inputs",
]


# --- checks -----------------------------------------------------------------------


def check_forward(run: Callable, jax_fn: Callable, inputs: dict[str, np.ndarray],
                  labels: np.ndarray | None, batch_size: int = 50,
                  embedding: bool = False) -> dict[str, Any]:
  """Runs both on every example (in batches): the largest |logit
  difference|, how many argmaxes agree, and each one's accuracy; for an
  `embedding` model also the mean cosine of the two embeddings."""
  names = list(inputs)
  n = len(inputs[names[0]])
  jit_fn = jax.jit(jax_fn)
  max_diff, ref_argmax, got_argmax, cosines = 0.0, [], [], []
  for lo in range(0, n, batch_size):
    args = [np.asarray(inputs[k][lo:lo + batch_size], np.int32) for k in names]
    ref = np.asarray(jit_fn(*args)[0])
    got = np.asarray(run(*args)[0])
    max_diff = max(max_diff, float(np.abs(ref - got).max()))
    if embedding:
      cosines.append(embedding_metrics.cosines(got, ref))
    ref_argmax.append(ref.argmax(-1))
    got_argmax.append(got.argmax(-1))
  ref_a, got_a = np.concatenate(ref_argmax), np.concatenate(got_argmax)
  agree = int((ref_a == got_a).all(axis=tuple(range(1, ref_a.ndim))).sum())
  out = {"examples": n, "max_abs_logit_diff": max_diff,
         "argmax_agree": agree, "argmax_all_equal": agree == n}
  if embedding:
    out["mean_cosine"] = float(np.mean(np.concatenate(cosines)))
  if labels is not None and ref_a.ndim == 1:
    out["jax_accuracy"] = float((ref_a == labels).mean())
    out["accuracy"] = float((got_a == labels).mean())
  return out


def greedy_tokens(step: Callable, state: list[np.ndarray], prompt: np.ndarray,
                  num_new: int) -> list[int]:
  """Greedy generation with an exported decode step (how an edge runtime
  uses it): the prompt fed token by token, then each argmax fed back."""
  tokens, state = [int(prompt[0])], list(state)
  for t in range(len(prompt) + num_new - 1):
    logits, *state = step(np.asarray([tokens[t]], np.int32),
                          np.asarray(t, np.int32), *state)
    nxt = int(prompt[t + 1]) if t + 1 < len(prompt) else int(
        np.asarray(logits)[0].argmax())
    tokens.append(nxt)
  return tokens[len(prompt):]


def check_decode(run: Callable, model, sig: Signature, prompt: np.ndarray,
                 num_new: int) -> dict[str, Any]:
  """The exported step's greedy tokens against `models.generate`'s."""
  want = np.asarray(generate.generate(model, jnp.asarray(prompt)[None], num_new,
                                      greedy=True))[0, len(prompt):]
  got = greedy_tokens(run, sig.decode_state, prompt, num_new)
  return {"prompt_tokens": len(prompt), "new_tokens": num_new,
          "tokens_equal": [int(x) for x in want] == got,
          "tokens": got}


# --- the whole job ---------------------------------------------------------------


def export_run(workdir: str, fmt: str, out_dir: str, *, decode: bool = False,
               int8: bool = False, check: bool = True, length: int = 0,
               data_dir: str | None = None, decode_tokens: int = 32,
               int8_recipe: str = quantize.DEFAULT_RECIPE
               ) -> dict[str, Any]:
  """Exports the model of `workdir` (a train or shrink run, or a saved
  student) to `out_dir`; returns (and writes) export.json.

  `length`: the sequence length of the forward's example input (default
  the model's max_len, which is also its upper bound; a format keeps it
  symbolic where it can). `int8`
  (ONNX): also write model.int8.onnx by `int8_recipe` (`quantize.RECIPES`;
  the smoothquant ones calibrate on the first `CALIBRATION_EXAMPLES` of
  the run's train split, or random sequences when its data is not here),
  checked the same way.
  """
  files.check_output_dir(out_dir)  # before the model is read
  form = FORMATS.get(fmt)  # unknown: the registry lists the valid ones
  if int8 and fmt != "onnx":
    raise ExportError(f"--int8 quantizes an ONNX model; got --format={fmt}")
  if int8_recipe not in quantize.RECIPES:
    raise ExportError(f"unknown --int8_recipe {int8_recipe!r}; valid:"
                      f" {', '.join(quantize.RECIPES)}")
  if length < 0:
    raise ExportError(f"--length must be >= 0 (0 = the model's max_len), got"
                      f" {length}")
  model, source = init_from.load_model(workdir)
  if length > source.max_len:
    raise ExportError(f"--length must be at most the model's max_len"
                      f" {source.max_len} (its position table; 0 = that),"
                      f" got {length}")
  if decode:
    sig = decode_signature(model, max_len=source.max_len)
  else:
    sig = forward_signature(model, length=length or source.max_len,
                            pad_id=source.pad_id)
  os.makedirs(out_dir, exist_ok=True)
  path, details = form.write(sig, out_dir)
  record: dict[str, Any] = {
      "workdir": workdir, "format": fmt, "kind": sig.kind,
      "file": os.path.basename(path), "bytes": os.path.getsize(path),
      "inputs": {n: list(map(str, s.shape)) + [str(s.dtype)]
                 for n, s in zip(sig.input_names, sig.specs)},
      "outputs": sig.output_names, **details}
  if sig.decode_state is not None:
    np.savez(os.path.join(out_dir, DECODE_STATE),
             **dict(zip(sig.input_names[2:], sig.decode_state)))
  written = {"fp32": path}
  seq_len = sig.specs[0].shape[-1]
  if int8:
    q_path = os.path.join(out_dir, "model.int8.onnx")
    calibration = None
    if int8_recipe != "dynamic" and not decode:
      calibration, _, _, _ = task_inputs(source, data_dir, sig.input_names,
                                         "train", seq_len)
      calibration = {k: v[:CALIBRATION_EXAMPLES]
                     for k, v in calibration.items()}
    record["int8"] = quantize.quantize_int8(
        path, q_path, recipe="dynamic" if decode else int8_recipe,
        calibration=calibration,
        calibration_batch=(32 if "B" in details.get("symbolic_dims", ())
                           else sig.specs[0].shape[0]))
    written["int8"] = q_path
  if check:
    record["check"] = {}
    if decode:
      prompt = np.arange(1, 5, dtype=np.int32) % max(source.vocab_size, 2)
      n = min(decode_tokens, source.max_len - len(prompt))
    else:  # the same data for every file (fp32, int8)
      inputs, labels, where, kind = task_inputs(
          source, data_dir, sig.input_names, "validation", seq_len)
      # A fixed batch (see onnx.to_proto) is checked at that batch size.
      batch = (50 if "B" in details.get("symbolic_dims", ())
               else sig.specs[0].shape[0])
    for which, p in written.items():
      run = form.runner(p, sig)
      if decode:
        record["check"][which] = check_decode(run, model, sig, prompt, n)
      else:
        record["check"][which] = {"data": where, **check_forward(
            run, sig.fn, inputs, labels, batch_size=batch,
            embedding=kind == "embedding")}
  with open(os.path.join(out_dir, EXPORT_JSON), "w") as f:
    json.dump(record, f, indent=2)
  return record


def task_inputs(source, data_dir: str | None, names: list[str], split: str,
                length: int):
  """(inputs by name, labels, where from, task kind) of the run's `split`
  when its task loads here (config.json in the run or, for a saved student,
  the directory above), else 64 random token sequences (export.json says
  which). Sequences are padded (with the run's pad id) or cut to `length`,
  the export's."""
  inputs, labels, where, kind = None, None, "64 random sequences", ""
  for directory in (source.spec, os.path.dirname(source.spec.rstrip("/"))):
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
      continue
    with open(path) as f:
      task_cfg = json.load(f).get("task")
    try:
      task = data.load_task(ml_collections.ConfigDict(task_cfg),
                            data_dir or data.default_data_dir())
    except (FileNotFoundError, data.MissingPackage, ValueError, TypeError):
      break
    rows = task.splits[split]
    inputs = {k: np.asarray(rows[k]) for k in ("inputs", "segment_ids")
              if k in rows}
    inputs["tokens"] = inputs.pop("inputs")
    if task.kind == "classification":
      labels = np.asarray(rows["targets"])
    where, kind = f"{task.name} {split} split", task.kind
    break
  if inputs is None:
    rng = np.random.default_rng(0 if split == "validation" else 1)
    tokens = rng.integers(1, max(source.vocab_size, 2), (64, length))
    tokens[::2, length // 2:] = source.pad_id
    inputs = {"tokens": tokens.astype(np.int32)}
  # A model with token types whose data has none: all segment 0.
  inputs = {n: inputs.get(n, np.zeros_like(inputs["tokens"])) for n in names}
  return ({n: _fit(x, length, source.pad_id if n == "tokens" else 0)
           for n, x in inputs.items()}, labels, where, kind)


def _fit(x: np.ndarray, length: int, fill: int) -> np.ndarray:
  """[N, length]: `x` padded with `fill` on the right, or cut."""
  if x.shape[1] >= length:
    return x[:, :length]
  return np.pad(x, ((0, 0), (0, length - x.shape[1])), constant_values=fill)
