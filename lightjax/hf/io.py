"""Reading and writing Hugging Face checkpoint directories.

    model, config = lightjax.hf.from_pretrained("path/to/dir")
    logits_BxC = model(tokens_BxL, segment_ids_BxL=seg_BxL)

A checkpoint is a directory with `config.json` and `model.safetensors` (or
shards listed in `model.safetensors.index.json`), as `save_pretrained`
writes it, or a hub id fetched through `huggingface_hub` (its cache; needs
the machine online). Only safetensors are read (`safetensors.numpy`), never
pickles: a directory with only `pytorch_model.bin` gets a message saying how
to convert it.

The returned model is lightjax's `encoder_classifier` with the family's
layout (`lightjax.hf.families`), built with `max_len =
max_position_embeddings` (minus RoBERTa's offset) so the position table is
the checkpoint's. Every checkpoint tensor maps to one lightjax parameter.
The attention stays pluggable: `from_pretrained(path, attention="linear")`
keeps the projections and runs the chosen token-mixing rule; parameters a
variant adds of its own start from their initialiser.

Weights a checkpoint may lack start from lightjax's initialiser and are
listed in `config.hf.initialized`: the classifier `head` (a pretrained-only
checkpoint such as `bert-base-uncased`; or `num_labels` other than the
checkpoint's) and the `pooler`. Pretraining heads (`cls.*`, DistilBERT's
`vocab_*`) are ignored. Anything else unmapped or missing, and any shape
mismatch, is an error naming the key and both shapes.

`from_pretrained(path, head="mlm")` reads BERT's masked-LM head instead
(Devlin et al. 2019 sec. 3.1) into lightjax's `encoder_mlm`
(`lightjax.models.mlm`). `save_pretrained` writes such a model back as
`BertForMaskedLM` the way transformers 5 does: no decoder tensors,
`tie_word_embeddings: true`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from typing import Any

import ml_collections
import numpy as np
from flax import nnx

from lightjax import attention as attention_lib
from lightjax import files, models
from lightjax.hf import checkpoint_files, families
from lightjax.hf.checkpoint_files import (CONFIG_FILE, FLOAT_DTYPES,
                                          PICKLE_FILES, SAFETENSORS_FILE,
                                          SAFETENSORS_INDEX)
from lightjax.models import weights as weights_lib
from lightjax.models.config import ModelConfig, as_model_config
from lightjax.models.weights import CheckpointError, Path, Weights

# Tokenizer files a checkpoint directory may hold; `save_pretrained` copies
# those present next to the tokenizer it is given.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt")

# lightjax parameters a checkpoint may lack: they keep their initialiser.
OPTIONAL = weights_lib.HEAD_MODULES
# Each family's classifier tensors (dropped by `drop_head=True`).
HEAD_PREFIXES = ("classifier.", "pre_classifier.")


# --- reading -------------------------------------------------------------------


def resolve(path_or_id: str) -> str:
  """A local checkpoint directory, or a hub id downloaded to the HF cache."""
  if os.path.isdir(path_or_id):
    return path_or_id
  if os.path.exists(path_or_id) or path_or_id.startswith((".", "/", "~")):
    raise CheckpointError(f"{path_or_id!r} is not a checkpoint directory")
  try:
    import huggingface_hub  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise CheckpointError(
        f"{path_or_id!r} is not a local directory; loading it as a hub id"
        " needs the `huggingface_hub` package (pip install huggingface_hub),"
        " or download the checkpoint and pass its directory") from e
  try:
    return huggingface_hub.snapshot_download(
        path_or_id, allow_patterns=["*.json", "*.safetensors", "vocab.txt",
                                    "merges.txt", "vocab.json"])
  except Exception as e:  # offline, unknown id, gated repository ...
    raise CheckpointError(
        f"could not fetch {path_or_id!r} from the Hugging Face hub"
        f" ({type(e).__name__}: {e}); on a machine without network, download"
        " it elsewhere (huggingface-cli download ID) and pass the directory")


def read_config(directory: str) -> dict[str, Any]:
  """config.json, which must be a JSON object (one-line CheckpointError)."""
  path = os.path.join(directory, CONFIG_FILE)
  if not os.path.exists(path):
    raise CheckpointError(f"no {CONFIG_FILE} in {directory}")
  return checkpoint_files.read_json_object(path)


def read_tensors(directory: str) -> dict[str, np.ndarray]:
  """Every tensor of the checkpoint's safetensors file(s), as numpy arrays;
  headers and shard paths are checked first (`checkpoint_files`)."""
  return checkpoint_files.load_tensors(directory)


# --- config --------------------------------------------------------------------


def _num_labels(hf: dict) -> int:
  if "id2label" in hf and hf["id2label"]:
    return len(hf["id2label"])
  return int(hf.get("num_labels", 2))


def config_from_hf(hf: dict, source: str = "", head: str = "classifier"
                   ) -> ml_collections.ConfigDict:
  """{"model": the run config's model fields, "hf": the rest} for an HF
  config.json (`config.hf` records source, head, vocabulary, labels,
  length, pad id and what the import initialised).

  `head="mlm"` builds `encoder_mlm` (BERT's masked-LM head, no pooler).
  """
  family = families.family(hf, head)
  model = family.model_config(hf)
  model = model.replace(name=families.HEADS[head],
                        pooler=model.pooler and head != "mlm")
  return ml_collections.ConfigDict({
      "model": model.to_dict(),
      "hf": {
          "source": source,
          "head": head,
          "model_type": hf["model_type"],
          "vocab_size": int(hf["vocab_size"]),
          "num_labels": _num_labels(hf),
          "max_len": (int(hf["max_position_embeddings"])
                      - family.position_offset(hf)),
          "pad_token_id": int(hf.get("pad_token_id") or 0),
          "initialized": [],
      }})


# --- weights ---------------------------------------------------------------------


def _plan(hf: dict, shapes: dict[str, tuple[int, ...]], *, drop_head: bool,
          head: str) -> list[tuple[str, Path, bool, int, bool]]:
  """(raw key, lightjax path, transpose?, leading rows dropped, tied copy?)
  for each checkpoint tensor lightjax reads, from the tensors' shapes."""
  family = families.family(hf, head)
  mapping = family.mapping(hf, head)
  out = []
  for raw_key in sorted(shapes):
    shape = tuple(shapes[raw_key])
    if drop_head and raw_key.startswith(HEAD_PREFIXES):
      continue
    key = family.key(raw_key, head)
    if key is None:
      continue
    if key not in mapping:
      raise CheckpointError(
          f"checkpoint tensor {raw_key!r} {shape} has no lightjax"
          " parameter to go to")
    path, transpose = mapping[key]
    shape = shape[::-1] if transpose else shape
    skip = mapping.skip_rows.get(key, 0)
    if skip and (not shape or shape[0] <= skip):
      raise CheckpointError(
          f"checkpoint tensor {raw_key!r} {shape} needs more than"
          f" the {skip} leading rows lightjax drops from it")
    out.append((raw_key, path, transpose, skip, key in mapping.tied))
  return out


def _check_values(raw_key: str, value: np.ndarray) -> None:
  """A weight is floating point (int / bool tensors are never cast) and
  finite."""
  if value.dtype not in (np.float16, np.float32, np.float64):
    raise CheckpointError(
        f"checkpoint tensor {raw_key!r} has dtype {value.dtype}; lightjax"
        f" reads floating-point weights only ({', '.join(FLOAT_DTYPES)})")
  if not np.isfinite(value).all():
    bad = int(value.size - np.count_nonzero(np.isfinite(value)))
    raise CheckpointError(f"checkpoint tensor {raw_key!r} {tuple(value.shape)}"
                          f" holds {bad} non-finite value(s) (NaN or inf)")


def convert_weights(hf: dict, tensors: dict[str, np.ndarray], *,
                    drop_head: bool = False, head: str = "classifier"
                    ) -> Weights:
  """Checkpoint tensors -> {lightjax parameter path: float32 array}.

  `drop_head=True` skips the checkpoint's classifier (it starts fresh).
  `head="mlm"` maps BERT's `cls.predictions`; a tied copy
  (`cls.predictions.decoder.*`) must equal what it is tied to. Each tensor
  read must be floating point and finite (`_check_values`).
  """
  out = Weights()
  copies = []  # (raw key, path, value) of tied copies, checked at the end
  plan = _plan(hf, {k: v.shape for k, v in tensors.items()},
               drop_head=drop_head, head=head)
  for raw_key, path, transpose, skip, tied in plan:
    value = tensors[raw_key]
    _check_values(raw_key, value)
    value = np.asarray(value, np.float32)
    value = value.T if transpose else value
    value = value[skip:]
    if tied:
      copies.append((raw_key, path, value))
      continue
    out[path] = value
    out.source[path] = raw_key
  _check_tied(out, copies)
  return out


class _Shape(tuple):
  """A tensor's shape where `weights_lib.check` wants `.shape`."""

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(self)


# Parameters a checkpoint lacks may add this many elements (or as many as it
# holds) before `verify` calls the config's sizes a mistake.
FRESH_ELEMENTS = 1 << 22


def verify(directory: str, hf: dict, config: ml_collections.ConfigDict, *,
           head: str = "classifier", drop_head: bool = False) -> None:
  """Checks `config` (from `config_from_hf(hf)`) against the tensors'
  headers before anything is loaded or built: the layer count, width,
  vocabulary, positions and token types that config.json states must be
  the tensors' (one line naming the field), every tensor read must be
  floating point, and the model's shapes (`nnx.eval_shape`, nothing
  allocated) must match with what `load_weights` would say. Parameters the
  checkpoint lacks (a fresh head) may not outgrow it (FRESH_ELEMENTS)."""
  header = checkpoint_files.read_headers(directory)
  family = families.family(hf, head)
  fields, m, h = family.fields, config.model, config.hf
  layer_key = re.compile(re.escape(family.layer_key) + r"(\d{1,9})\.")
  keys = {family.key(k, head) for k in header} - {None}
  layers = sorted({int(found.group(1)) for k in keys
                   if (found := layer_key.match(k))})
  if layers != list(range(m.num_layers)):
    held = ", ".join(map(str, layers[:5])) + (", ..." if len(layers) > 5 else "")
    raise CheckpointError(
        f"config.json: {fields['layers']} = {hf[fields['layers']]} but the"
        f" checkpoint holds tensors of {len(layers)} layer(s)"
        f" ({held or 'none'})")
  plan = _plan(hf, {k: t.shape for k, t in header.items()},
               drop_head=drop_head, head=head)
  shapes = Weights()
  for raw_key, path, transpose, skip, tied in sorted(plan, key=lambda p: p[4]):
    info = header[raw_key]
    if info.dtype not in FLOAT_DTYPES:
      raise CheckpointError(
          f"checkpoint tensor {raw_key!r} has dtype {info.dtype}; lightjax"
          f" reads floating-point weights only ({', '.join(FLOAT_DTYPES)})")
    shape = info.shape[::-1] if transpose else info.shape
    if tied and path in shapes:
      continue  # compared with what it is tied to once loaded (_check_tied)
    shapes[path] = _Shape((shape[0] - skip,) + shape[1:] if skip else shape)
    shapes.source[path] = raw_key

  def same(path, axis, field, value, stated):
    if path in shapes and (len(shapes[path]) <= axis
                           or shapes[path][axis] != value):
      raw = shapes.source[path]
      raise CheckpointError(f"config.json: {field} = {stated} but checkpoint"
                            f" tensor {raw!r} is {header[raw].shape}")

  bb = weights_lib.backbone_path
  same(bb("token_embed", "embedding"), 0, "vocab_size", h.vocab_size,
       hf["vocab_size"])
  same(bb("token_embed", "embedding"), 1, fields["hidden"], m.embed_dim,
       hf[fields["hidden"]])
  same(bb("pos_embed", "table"), 0, "max_position_embeddings", h.max_len,
       hf["max_position_embeddings"])
  same(bb("type_embed", "embedding"), 0, "type_vocab_size", m.type_vocab_size,
       m.type_vocab_size)
  abstract = nnx.eval_shape(lambda: models.build_model(
      m, vocab_size=h.vocab_size, num_classes=h.num_labels, max_len=h.max_len,
      rngs=nnx.Rngs(0)))
  have = weights_lib.params(abstract)
  initialized = weights_lib.check(have, shapes, optional=OPTIONAL)
  held = sum(math.prod(s) for s in shapes.values())
  fresh = {name: math.prod(have[path].shape) for path in have
           if (name := weights_lib.name(path)) in initialized}
  if sum(fresh.values()) > max(held, FRESH_ELEMENTS):
    biggest = max(fresh, key=fresh.get)
    raise CheckpointError(
        f"the model would initialise {sum(fresh.values())} parameters the"
        f" checkpoint lacks (largest: {biggest}, {fresh[biggest]}), more than"
        f" the {held} it holds; is num_labels = {h.num_labels} meant?")


def _check_tied(out: Weights, copies) -> None:
  """A tied copy is the weight where only it is stored, else must equal it."""
  for raw_key, path, value in copies:
    if path not in out:
      out[path], out.source[path] = value, raw_key
      continue
    want = out[path]
    if want.shape != value.shape or not np.array_equal(want, value):
      diff = (f"max abs difference {float(np.abs(want - value).max()):.3g}"
              if want.shape == value.shape else "shapes differ")
      raise CheckpointError(
          f"checkpoint tensor {raw_key!r} {tuple(value.shape)} is tied to"
          f" {out.source[path]!r} {tuple(want.shape)} (both are"
          f" {weights_lib.name(path)}) but differs from it ({diff})")


def load_weights(model: nnx.Module, weights: dict[Path, np.ndarray], *,
                 optional: tuple[str, ...] = OPTIONAL) -> list[str]:
  """`weights_lib.load` with the heads a checkpoint may lack optional."""
  return weights_lib.load(model, weights, optional=optional)


def build(config: ml_collections.ConfigDict, weights: dict[Path, np.ndarray],
          *, seed: int = 0) -> nnx.Module:
  """The model `config` describes, with `weights` (from `convert_weights`).

  `config.model` may differ from the imported one where no weight depends on
  it (e.g. another `attention` variant or `dropout_rate`); sizes that
  contradict the weights fail with the key and both shapes.
  """
  hf = config.hf
  model = models.build_model(config.model, vocab_size=hf.vocab_size,
                             num_classes=hf.num_labels, max_len=hf.max_len,
                             rngs=nnx.Rngs(seed))
  hf.initialized = load_weights(model, weights)
  return model


def from_pretrained(path_or_id: str, *, attention: str | None = None,
                    drop_head: bool = False, num_labels: int | None = None,
                    seed: int = 0, head: str = "classifier"
                    ) -> tuple[nnx.Module, ml_collections.ConfigDict]:
  """(model, config) for a Hugging Face checkpoint directory or hub id.

  Args:
    path_or_id: a `save_pretrained` directory, or a hub id (needs network).
    attention: optional attention variant to run instead of softmax (its
      default options; the projections come from the checkpoint).
    drop_head: ignore the checkpoint's classifier; the head starts fresh.
    num_labels: classes of the head; a number other than the checkpoint's
      drops its classifier (as `drop_head`).
    seed: initialises what the checkpoint lacks (`config.hf.initialized`).
    head: "classifier" (`encoder_classifier`: pooler + classifier) or "mlm"
      (`encoder_mlm`: BERT's masked-LM head from a `BertForMaskedLM` or
      `BertForPreTraining` checkpoint, logits [B, L, V]).
  """
  if head == "mlm" and (drop_head or num_labels is not None):
    raise CheckpointError("drop_head and num_labels choose the classifier;"
                          " head='mlm' has the vocabulary as its output")
  directory = resolve(path_or_id)
  hf = read_config(directory)
  config = config_from_hf(hf, source=path_or_id, head=head)
  if num_labels is not None and num_labels != config.hf.num_labels:
    config.hf.num_labels, drop_head = int(num_labels), True
  if attention is not None:
    attention_lib.get(attention)  # one line listing the variants if unknown
    config.model.attention = ml_collections.ConfigDict(
        {"name": attention, **attention_lib.default_options()})
  verify(directory, hf, config, head=head, drop_head=drop_head)
  weights = convert_weights(hf, read_tensors(directory), drop_head=drop_head,
                            head=head)
  return build(config, weights, seed=seed), config


def hidden_states(model, tokens_BxL, *, segment_ids_BxL=None, pad_id=0
                  ) -> list:
  """Every layer's output of an imported classifier or MLM model, eval mode.

  [embeddings after their LayerNorm, block 1, ..., block N]: the order of
  transformers' `output_hidden_states`. Uses the backbone's own pieces, so it
  is the computation `model(...)` runs before pooling.
  """
  bb = model.backbone
  mask_BxL = tokens_BxL != pad_id
  x = bb.embed_tokens(tokens_BxL, segment_ids_BxL)
  x = x + bb.pos_embed(tokens_BxL.shape[1])[None].astype(x.dtype)
  x = bb.embed_norm(x)
  out = [x]
  for block in bb.blocks:
    x = block(x, mask_BxL=mask_BxL, causal=False, deterministic=True)
    out.append(x)
  out[-1] = bb.final_norm(x)
  return out


# --- saving back -------------------------------------------------------------------


def hf_config_for(m, *, vocab_size: int, num_labels: int, max_len: int,
                  pad_id: int, base: dict | None = None) -> dict[str, Any]:
  """config.json for `m` (a ModelConfig or a run config's `model`), over
  `base` (the config.json it was imported from: keeps what lightjax has no
  field for).

  An `encoder_mlm` model is a `BertForMaskedLM` (`num_labels` unused): no
  labels are written, and `tie_word_embeddings: true` tells transformers
  that the decoder is the word embedding (it then expects no decoder tensor).
  RoBERTa's position table has `pad_id + 1` rows before lightjax's
  `max_len` ones, counted in max_position_embeddings.
  """
  m = as_model_config(m)
  family = families.family_of(m)
  head = families.head_of(m)
  out = dict(base or {})
  if out.get("model_type", family.model_type) != family.model_type:
    out = {}
  out.update(model_type=family.model_type, vocab_size=vocab_size,
             pad_token_id=pad_id)
  out.update(max_position_embeddings=max_len + family.position_offset(out))
  if head == "classifier":
    labels = {str(i): out.get("id2label", {}).get(str(i), f"LABEL_{i}")
              for i in range(num_labels)}
    out.update(id2label=labels,
               label2id={v: int(k) for k, v in labels.items()},
               problem_type=("regression" if num_labels == 1
                             else "single_label_classification"))
  # What the imported config.json said of dropout in attention stays.
  attention_dropout = ("attention_dropout" if family.model_type == "distilbert"
                       else "attention_probs_dropout_prob")
  out.update(architectures=[family.architectures[head]],
             **family.hf_config(m),
             **{attention_dropout: out.get(attention_dropout, m.dropout_rate)})
  if head == "mlm":
    out.update(tie_word_embeddings=True)
  return out


def pad_pruned(params: dict[Path, np.ndarray], m: ModelConfig
               ) -> dict[Path, np.ndarray]:
  """Per-layer head counts and MLP widths padded back to `num_heads` /
  `mlp_dim` with zero weights, which leaves every output as it was.

  transformers 5 has no per-layer head counts (`prune_heads` and the
  config's `pruned_heads` are gone), so a pruned model travels to it at its
  original size. A zero head has zero query, key and value (uniform
  attention over a zero value: output 0) and zero `out` rows; a zero MLP
  unit has zero fc1 column and bias (GELU(0) = ReLU(0) = 0) and zero fc2
  row. The physically smaller model travels as a lightjax checkpoint
  (`init_from.save_model`) or through ONNX.
  """
  full = {"attn": m.num_heads * m.head_dim, "mlp": m.mlp_dim}
  out = dict(params)

  def pad(path, axis, size):
    value = out[path]
    widths_ = [(0, 0)] * value.ndim
    widths_[axis] = (0, size - value.shape[axis])
    out[path] = np.pad(value, widths_)

  for i, spec in enumerate(m.layers):
    proj = lambda matrix, p: weights_lib.projection_path(i, matrix) + (p,)
    if spec.num_heads != m.num_heads:
      for matrix in ("query", "key", "value"):
        pad(proj(matrix, "kernel"), 1, full["attn"])
        pad(proj(matrix, "bias"), 0, full["attn"])
      pad(proj("out", "kernel"), 0, full["attn"])
    if spec.mlp_dim != m.mlp_dim:
      pad(proj("fc1", "kernel"), 1, full["mlp"])
      pad(proj("fc1", "bias"), 0, full["mlp"])
      pad(proj("fc2", "kernel"), 0, full["mlp"])
  return out


def _tensors_for(params: dict[Path, np.ndarray], family: families.Family,
                 mapping: families.Mapping) -> dict[str, np.ndarray]:
  """The inverse of the import's map: flax kernels [in, out] become torch
  [out, in]; every parameter must have a place."""
  tensors, used = {}, set()
  for key, (path, transpose) in mapping.items():
    if key in mapping.tied:
      continue  # a copy transformers 5 neither writes nor expects
    if path not in params:
      raise CheckpointError(f"the model has no parameter"
                            f" {weights_lib.name(path)} for the checkpoint's"
                            f" {key!r}")
    value = params[path].T if transpose else params[path]
    skip = mapping.skip_rows.get(key, 0)
    if skip:  # rows lightjax never reads (RoBERTa's first positions)
      value = np.concatenate([np.zeros((skip, *value.shape[1:]), value.dtype),
                              value])
    name = key if key.startswith(family.outside) else family.prefix + key
    tensors[name] = np.ascontiguousarray(value)
    used.add(path)
  left = sorted(weights_lib.name(p) for p in params if p not in used)
  if left:
    raise CheckpointError(f"parameters with no place in a {family.model_type}"
                          f" checkpoint: {', '.join(left)}")
  return tensors


def _copy_tokenizer(tokenizer: str, directory: str,
                    tokenizer_config: dict | None) -> None:
  found = ([os.path.join(tokenizer, n) for n in TOKENIZER_FILES]
           if os.path.isdir(tokenizer) else [tokenizer])
  found = [p for p in found if os.path.isfile(p)]
  if not found:
    raise CheckpointError(f"no tokenizer files ({', '.join(TOKENIZER_FILES)})"
                          f" in {tokenizer}")
  for path in found:
    dest = os.path.join(directory, os.path.basename(path))
    if os.path.abspath(path) != os.path.abspath(dest):
      shutil.copyfile(path, dest)
  if tokenizer_config and not os.path.exists(
      os.path.join(directory, "tokenizer_config.json")):
    files.atomic_write(os.path.join(directory, "tokenizer_config.json"),
                       lambda f: json.dump(tokenizer_config, f, indent=2))


def save_pretrained(model: nnx.Module, model_cfg, directory: str, *,
                    pad_id: int | None = None, tokenizer: str | None = None,
                    base: dict | None = None,
                    tokenizer_config: dict | None = None) -> dict[str, Any]:
  """Writes `model` as a Hugging Face checkpoint directory; returns its config.

  config.json + model.safetensors (+ the tokenizer's files, copied from
  `tokenizer`, a checkpoint directory or a vocab.txt / tokenizer.json) that
  `transformers`' `AutoModelForSequenceClassification.from_pretrained` loads
  (`AutoModelForMaskedLM` for an `encoder_mlm` model) and `from_pretrained`
  here reads back to the same model. `tokenizer_config` is written as
  tokenizer_config.json where the tokenizer brings none (a bare vocab.txt).
  `pad_id` defaults to `base`'s pad_token_id, else 0 (RoBERTa's positions
  depend on it).
  """
  from safetensors.numpy import save as to_bytes  # pylint: disable=import-outside-toplevel
  m = as_model_config(model_cfg)
  params = pad_pruned(weights_lib.arrays(model), m)
  if pad_id is None:
    pad_id = int((base or {}).get("pad_token_id") or 0)
  head_kernel = ("head", "kernel")
  hf_config = hf_config_for(
      m, vocab_size=params[weights_lib.backbone_path(
          "token_embed", "embedding")].shape[0],
      num_labels=params[head_kernel].shape[1] if head_kernel in params else 0,
      max_len=params[weights_lib.backbone_path("pos_embed", "table")].shape[0],
      pad_id=pad_id, base=base)
  family = families.FAMILIES[hf_config["model_type"]]
  tensors = _tensors_for(params, family,
                         family.mapping(hf_config, families.head_of(m)))
  os.makedirs(directory, exist_ok=True)
  files.atomic_write(os.path.join(directory, CONFIG_FILE),
                     lambda f: json.dump(hf_config, f, indent=2, sort_keys=True))
  files.atomic_write(  # "format": transformers refuses a file without it
      os.path.join(directory, SAFETENSORS_FILE),
      lambda f: f.write(to_bytes(tensors, metadata={"format": "pt"})),
      binary=True)
  if tokenizer:
    _copy_tokenizer(tokenizer, directory, tokenizer_config)
  return hf_config
