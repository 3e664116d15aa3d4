"""Writing Hugging Face checkpoint directories: the way back of `io.py`.

    hf.save_pretrained(model, config.model, "out/dir", tokenizer="path/to/dir")

The family (`lightjax.hf.families.family_of`) is the one whose layout the
model has; its tensor map, read backwards, names every tensor. A classifier
becomes `...ForSequenceClassification`, an `encoder_mlm` `BertForMaskedLM`
(the way transformers 5 writes it: no decoder tensors,
`tie_word_embeddings: true`), and a `sentence_encoder` a sentence-transformers
directory (Reimers & Gurevych 2019): `BertModel`'s files (no pooler, keys
without the "bert." prefix) with modules.json, 1_Pooling/config.json,
2_Dense/ when it projects (its config.json and model.safetensors), the
Normalize folder when it normalises and sentence_bert_config.json
(`lightjax.hf.sentence_transformers.write`), which `SentenceTransformer(dir)`
loads and `transformers.AutoModel` reads the encoder of.

Shrunk models are saved as transformers can build them: every layer at one
head count and MLP width (`for_transformers`: the MLP at its original width),
the missing heads and units zero (`pad_pruned`), which changes no output; a
narrower hidden width is simply a smaller hidden_size.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any

import numpy as np
from flax import nnx

from lightjax import files
from lightjax.hf import families, sentence_transformers
from lightjax.hf.checkpoint_files import CONFIG_FILE, SAFETENSORS_FILE
from lightjax.models import weights as weights_lib
from lightjax.models.config import ModelConfig, as_model_config
from lightjax.models.weights import CheckpointError, Path

# Tokenizer files a checkpoint directory may hold; `save_pretrained` copies
# those present next to the tokenizer it is given.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt")


def hf_config_for(m, *, vocab_size: int, num_labels: int, max_len: int,
                  pad_id: int, base: dict | None = None) -> dict[str, Any]:
  """config.json for `m` (a ModelConfig or a run config's `model`), over
  `base` (the config.json it was imported from: keeps what lightjax has no
  field for).

  An `encoder_mlm` model is a `BertForMaskedLM` (`num_labels` unused): no
  labels are written, and `tie_word_embeddings: true` tells transformers
  that the decoder is the word embedding (it then expects no decoder tensor).
  A `sentence_encoder` is a `BertModel` (no labels either).
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


def for_transformers(m: ModelConfig) -> ModelConfig:
  """`m` with the uniform sizes transformers builds it at (`layers`
  unchanged: what each layer really has), for `pad_pruned` and config.json.

  transformers 5 has no per-layer head counts (`prune_heads` and the
  config's `pruned_heads` are gone) and BERT's head size is hidden_size /
  num_attention_heads, so the head count is embed_dim / head_dim (a
  width-pruned model with fewer heads per layer fits; a layer with more
  heads than that does not, and `families.family_of` says so). The MLP
  width stays `mlp_dim` (a pruned model travels at its original width, its
  removed units zero).
  """
  heads = m.num_heads
  if m.embed_dim % m.head_dim == 0 and all(
      s.num_heads <= m.embed_dim // m.head_dim for s in m.layers):
    heads = m.embed_dim // m.head_dim
  width = max([m.mlp_dim] + [s.mlp_dim for s in m.layers])
  return dataclasses.replace(m, num_heads=heads, mlp_dim=width,
                             layers=m.layers)


def pad_pruned(params: dict[Path, np.ndarray], m: ModelConfig
               ) -> dict[Path, np.ndarray]:
  """Per-layer head counts and MLP widths padded to `num_heads` / `mlp_dim`
  (`for_transformers`' sizes) with zero weights, which leaves every output
  as it was.

  A zero head has zero query, key and value (uniform attention over a zero
  value: output 0) and zero `out` rows; a zero MLP unit has zero fc1 column
  and bias (GELU(0) = ReLU(0) = 0) and zero fc2 row. The physically smaller
  model travels as a lightjax checkpoint (`init_from.save_model`) or through
  ONNX.
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
                 mapping: families.Mapping, prefix: str
                 ) -> dict[str, np.ndarray]:
  """The inverse of the import's map: flax kernels [in, out] become torch
  [out, in]; every parameter must have a place. `prefix`: the encoder's
  key prefix ("bert." in a task model, "" in a bare `BertModel`)."""
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
    name = key if key.startswith(family.outside) else prefix + key
    tensors[name] = np.ascontiguousarray(value)
    used.add(path)
  left = sorted(weights_lib.name(p) for p in params if p not in used)
  if left:
    raise CheckpointError(f"parameters with no place in a {family.model_type}"
                          f" checkpoint: {', '.join(left)}")
  return tensors


def _copy_tokenizer(tokenizer: str, directory: str,
                    tokenizer_config: dict | None) -> None:
  if sentence_transformers.is_sentence_transformers(tokenizer):
    tokenizer = sentence_transformers.read(tokenizer).transformer_dir
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


def _write_sentence_modules(directory: str, m: ModelConfig,
                            tokenizer: str | None,
                            max_seq_length: int | None, max_len: int,
                            dense: dict[str, np.ndarray] | None) -> None:
  """A `sentence_encoder`'s sentence-transformers files: pooling, the
  projection (`dense`, a Dense module) and normalisation from `m`, the
  text settings from `tokenizer` when it is a sentence-transformers
  directory, `max_seq_length` over them (default: the position table's
  `max_len`)."""
  source = (sentence_transformers.read(tokenizer)
            if tokenizer and sentence_transformers.is_sentence_transformers(
                tokenizer) else None)
  length = max_seq_length or (source and source.max_seq_length) or max_len
  if not 0 < length <= max_len:
    raise CheckpointError(f"max_seq_length {length} must be in [1, {max_len}]"
                          " (the model's positions)")
  sentence_transformers.write(
      directory, sentence_transformers.SentenceModules(
          transformer_dir=directory, pool=m.pool, normalize=m.normalize,
          max_seq_length=length,
          do_lower_case=bool(source and source.do_lower_case),
          projection_dim=m.projection_dim),
      embed_dim=m.embed_dim, base=tokenizer if source else None, dense=dense)


def save_pretrained(model: nnx.Module, model_cfg, directory: str, *,
                    pad_id: int | None = None, tokenizer: str | None = None,
                    base: dict | None = None,
                    tokenizer_config: dict | None = None,
                    max_seq_length: int | None = None) -> dict[str, Any]:
  """Writes `model` as a Hugging Face checkpoint directory; returns its config.

  config.json + model.safetensors (+ the tokenizer's files, copied from
  `tokenizer`, a checkpoint directory or a vocab.txt / tokenizer.json) that
  `transformers`' `AutoModelForSequenceClassification.from_pretrained` loads
  (`AutoModelForMaskedLM` for an `encoder_mlm` model, `AutoModel` and
  `SentenceTransformer` for a `sentence_encoder`) and `from_pretrained`
  here reads back to the same model. `tokenizer_config` is written as
  tokenizer_config.json where the tokenizer brings none (a bare vocab.txt).
  `pad_id` defaults to `base`'s pad_token_id, else 0 (RoBERTa's positions
  depend on it). A `sentence_encoder`'s text settings (truncation length,
  lower-casing) come from `tokenizer` when it is a sentence-transformers
  directory; `max_seq_length` overrides its truncation length.
  """
  from safetensors.numpy import save as to_bytes  # pylint: disable=import-outside-toplevel
  m = for_transformers(as_model_config(model_cfg))
  params = pad_pruned(weights_lib.arrays(model), m)
  # The projection is no transformers tensor: the Dense module's own files.
  dense = {name: params.pop(weights_lib.PROJECTION + (name,))
           for name in ("kernel", "bias")} if m.projection_dim else None
  if pad_id is None:
    pad_id = int((base or {}).get("pad_token_id") or 0)
  head_kernel = ("head", "kernel")
  max_len = params[weights_lib.backbone_path("pos_embed", "table")].shape[0]
  hf_config = hf_config_for(
      m, vocab_size=params[weights_lib.backbone_path(
          "token_embed", "embedding")].shape[0],
      num_labels=params[head_kernel].shape[1] if head_kernel in params else 0,
      max_len=max_len, pad_id=pad_id, base=base)
  family = families.FAMILIES[hf_config["model_type"]]
  head = families.head_of(m)
  tensors = _tensors_for(
      params, family, family.mapping(hf_config, head),
      prefix="" if head in families.BASE_HEADS else family.prefix)
  os.makedirs(directory, exist_ok=True)
  files.atomic_write(os.path.join(directory, CONFIG_FILE),
                     lambda f: json.dump(hf_config, f, indent=2, sort_keys=True))
  files.atomic_write(  # "format": transformers refuses a file without it
      os.path.join(directory, SAFETENSORS_FILE),
      lambda f: f.write(to_bytes(tensors, metadata={"format": "pt"})),
      binary=True)
  if tokenizer:
    _copy_tokenizer(tokenizer, directory, tokenizer_config)
  if head == "sentence":
    _write_sentence_modules(directory, m, tokenizer, max_seq_length, max_len,
                            dense)
  return hf_config
