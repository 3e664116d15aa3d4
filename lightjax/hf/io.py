"""Reading Hugging Face checkpoint directories (writing them: `save.py`).

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
(`lightjax.models.mlm`).

A sentence-transformers directory (`modules.json`: Transformer, Pooling,
optionally Dense and Normalize; `lightjax.hf.sentence_transformers`) is read into a
`sentence_encoder` (`lightjax.models.sentence`, head "sentence"): BERT's
encoder, pooled, projected (a Dense module: `projection_dim`, its weights
from the module's folder) and normalised as the directory says; the
checkpoint's pooler is not read. `head="classifier"` reads the same
directory as a classifier (BERT's pooler from the checkpoint, a fresh head).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any

import ml_collections
import numpy as np
from flax import nnx

from lightjax import attention as attention_lib
from lightjax import models
from lightjax.hf import checkpoint_files, families, sentence_transformers
from lightjax.hf.checkpoint_files import CONFIG_FILE, FLOAT_DTYPES
from lightjax.models import weights as weights_lib
from lightjax.models.weights import CheckpointError, Path, Weights

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


def config_from_hf(hf: dict, source: str = "", head: str = "classifier",
                   sentence: sentence_transformers.SentenceModules | None = None
                   ) -> ml_collections.ConfigDict:
  """{"model": the run config's model fields, "hf": the rest} for an HF
  config.json (`config.hf` records source, head, vocabulary, labels,
  length, pad id and what the import initialised).

  `head="mlm"` builds `encoder_mlm` (BERT's masked-LM head, no pooler);
  `head="sentence"` a `sentence_encoder` pooled and normalised as
  `sentence` (a sentence-transformers directory's modules) says, else mean
  pooling without normalisation; `config.hf.max_seq_length` is then its
  tokenizer's truncation length (default: the position table's) and
  `config.hf.dense_dir` the folder of its Dense module ("" = none).
  """
  family = families.family(hf, head)
  model = family.model_config(hf)
  model = model.replace(name=families.HEADS[head],
                        pooler=model.pooler and head == "classifier")
  max_len = int(hf["max_position_embeddings"]) - family.position_offset(hf)
  extra = {}
  if head == "sentence":
    sentence = sentence or sentence_transformers.SentenceModules(
        transformer_dir="", pool="mean", normalize=False, max_seq_length=None)
    model = model.replace(pool=sentence.pool, normalize=sentence.normalize,
                          projection_dim=sentence.projection_dim)
    extra["max_seq_length"] = min(sentence.max_seq_length or max_len, max_len)
    extra["dense_dir"] = sentence.dense_dir  # the projection's weights ("": none)
  return ml_collections.ConfigDict({
      "model": model.to_dict(),
      "hf": {
          "source": source,
          "head": head,
          "model_type": hf["model_type"],
          "vocab_size": int(hf["vocab_size"]),
          # A sentence encoder has no classes (its output: the embedding).
          "num_labels": 0 if head == "sentence" else _num_labels(hf),
          "max_len": max_len,
          "pad_token_id": int(hf.get("pad_token_id") or 0),
          "initialized": [],
          **extra,
      }})


def open_checkpoint(path_or_id: str, *, head: str | None = None,
                    normalize: bool | None = None
                    ) -> tuple[str, dict[str, Any], ml_collections.ConfigDict]:
  """(the checkpoint's directory, its config.json, `config_from_hf`'s
  config) for a directory or hub id; nothing but JSON files is read.

  `head` None: "sentence" for a sentence-transformers directory
  (modules.json), else "classifier". The directory returned is the one
  holding config.json, the weights and the tokenizer (a sentence-transformers
  model's Transformer module). `normalize` overrides whether a sentence
  encoder L2-normalises (modules.json's Normalize module otherwise).
  """
  directory = resolve(path_or_id)
  sentence = (sentence_transformers.read(directory)
              if sentence_transformers.is_sentence_transformers(directory)
              else None)
  head = head or ("sentence" if sentence else "classifier")
  if normalize is not None and head != "sentence":
    raise CheckpointError(f"normalize applies to sentence encoders"
                          f" (head='sentence'), not head={head!r}")
  if sentence is not None:
    directory = sentence.transformer_dir
    if normalize is not None:
      sentence = dataclasses.replace(sentence, normalize=bool(normalize))
  elif normalize is not None:
    sentence = sentence_transformers.SentenceModules(
        transformer_dir=directory, pool="mean", normalize=bool(normalize),
        max_seq_length=None)
  hf = read_config(directory)
  return directory, hf, config_from_hf(hf, source=path_or_id, head=head,
                                       sentence=sentence)


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
  _dense_shapes(config, shapes)

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


def _dense_shapes(config: ml_collections.ConfigDict, shapes: Weights) -> None:
  """The projection's shapes from a sentence encoder's Dense module (its
  config and header, `sentence_transformers.dense_shapes`), into `shapes`."""
  dense_dir = config.hf.get("dense_dir", "")
  if not dense_dir:
    return
  for name, shape in sentence_transformers.dense_shapes(dense_dir).items():
    path = weights_lib.PROJECTION + (name,)
    shapes[path] = _Shape(shape)
    shapes.source[path] = os.path.join(
        dense_dir, sentence_transformers.DENSE_TENSORS[name])


def read_weights(directory: str, hf: dict, config: ml_collections.ConfigDict,
                 *, drop_head: bool = False) -> Weights:
  """Every weight the model of `config` (from `open_checkpoint`) reads: the
  checkpoint's tensors (`convert_weights`) and, for a sentence encoder with
  a Dense module, its projection (`sentence_transformers.read_dense`)."""
  out = convert_weights(hf, read_tensors(directory), drop_head=drop_head,
                        head=config.hf.head)
  dense_dir = config.hf.get("dense_dir", "")
  if dense_dir:
    for name, value in sentence_transformers.read_dense(dense_dir).items():
      out[weights_lib.PROJECTION + (name,)] = value
      out.source[weights_lib.PROJECTION + (name,)] = os.path.join(
          dense_dir, sentence_transformers.DENSE_TENSORS[name])
  return out


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
                    seed: int = 0, head: str | None = None,
                    normalize: bool | None = None
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
    head: "classifier" (`encoder_classifier`: pooler + classifier), "mlm"
      (`encoder_mlm`: BERT's masked-LM head from a `BertForMaskedLM` or
      `BertForPreTraining` checkpoint, logits [B, L, V]) or "sentence"
      (`sentence_encoder`: pooled sentence embeddings [B, E]); None:
      "sentence" for a sentence-transformers directory, else "classifier".
    normalize: a sentence encoder's L2 normalisation, overriding its
      directory's modules.json.
  """
  directory, hf, config = open_checkpoint(path_or_id, head=head,
                                          normalize=normalize)
  head = config.hf.head
  if head != "classifier" and (drop_head or num_labels is not None):
    raise CheckpointError(f"drop_head and num_labels choose the classifier;"
                          f" head={head!r} has no classifier")
  if num_labels is not None and num_labels != config.hf.num_labels:
    config.hf.num_labels, drop_head = int(num_labels), True
  if attention is not None:
    attention_lib.get(attention)  # one line listing the variants if unknown
    config.model.attention = ml_collections.ConfigDict(
        {"name": attention, **attention_lib.default_options()})
  verify(directory, hf, config, head=head, drop_head=drop_head)
  weights = read_weights(directory, hf, config, drop_head=drop_head)
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
