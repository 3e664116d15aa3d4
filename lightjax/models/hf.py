"""Hugging Face import: a BERT-family checkpoint as a lightjax config + NNX model.

    model, config = lightjax.models.from_pretrained("path/to/dir")
    logits_BxC = model(tokens_BxL, segment_ids_BxL=seg_BxL)

A checkpoint is a directory with `config.json` and `model.safetensors` (or
shards listed in `model.safetensors.index.json`), as `save_pretrained`
writes it, or a hub id fetched through `huggingface_hub` (its cache; needs
the machine online). Only safetensors are read (`safetensors.numpy`), never
pickles: a directory with only `pytorch_model.bin` gets a message saying how
to convert it.

The returned model is lightjax's `encoder_classifier` with the BERT options
(`norm_position="post"`, exact GELU, segment embeddings, `pool="first"`, the
pooler, `classifier_hidden_dim=0`; Devlin et al. 2019), built with
`max_len = max_position_embeddings` so the position table is the
checkpoint's. Every checkpoint tensor maps to one lightjax parameter
(`_bert_mapping`); HF `Linear` weights are [out, in] and become flax kernels
[in, out]. BERT's per-head layout (`view(B, L, H, D)` of the projection) is
the one `MultiHeadAttention._heads` reshapes to, so no head permutation is
needed. The attention stays pluggable: `from_pretrained(path,
attention="linear")` (or a swapped `config.model.attention` given to `build`)
keeps the projections and runs the chosen token-mixing rule; parameters a
variant adds of its own start from their initialiser.

Supported `model_type`s: "bert", "distilbert" (Sanh et al. 2019; the same
post-LN blocks without segment embeddings or pooler; its classifier,
pre_classifier + ReLU + classifier, is lightjax's hidden head with
`classifier_activation="relu"`) and "roberta" (Liu et al. 2019; BERT's
blocks with one token type and no pooler; its classifier, dense + tanh +
out_proj on <s>, is the hidden head with `classifier_activation="tanh"`).
RoBERTa numbers positions from padding_idx + 1 (fairseq), so the import
keeps `position_embeddings[pad_token_id + 1:]` and lightjax's position i is
the checkpoint's row i + pad_token_id + 1: right-padded real tokens see the
same positions as in transformers (`config.hf.max_len` is the table's rows
minus pad_token_id + 1). RoBERTa's pad id is 1 and its <s> is 0, so call the
model with `pad_id=config.hf.pad_token_id`.

Weights a checkpoint may lack start from lightjax's initialiser and are
listed in `config.hf.initialized`: the classifier `head` (a pretrained-only
checkpoint such as `bert-base-uncased`; or `num_labels` other than the
checkpoint's) and the `pooler`. Pretraining heads (`cls.*`, DistilBERT's
`vocab_*`) are ignored. Anything else unmapped or missing, and any shape
mismatch, is an error naming the key and both shapes.

`from_pretrained(path, head="mlm")` reads BERT's masked-LM head instead
(Devlin et al. 2019 sec. 3.1) into lightjax's `encoder_mlm`
(`lightjax.models.mlm`): `cls.predictions.transform.dense`,
`.transform.LayerNorm` and `.bias` map; the decoder is the word embedding
(tied, Press & Wolf 2017), so a stored `cls.predictions.decoder.weight`
(older checkpoints write it) must equal the word embeddings and a stored
`decoder.bias` must equal `cls.predictions.bias`: each is checked and
skipped. The pooler and next-sentence head of a `BertForPreTraining`
checkpoint are ignored, and the MLM head is required. `save_pretrained`
writes such a model back as `BertForMaskedLM` the way transformers 5 does:
no decoder tensors, `tie_word_embeddings: true`.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")

# HF `hidden_act` -> lightjax `config.model.activation`.
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh",
                "gelu_pytorch_tanh": "gelu_tanh"}

# lightjax parameters a checkpoint may lack: they keep their initialiser.
_OPTIONAL = ("head", "head_hidden", "pooler")

Path = tuple  # a lightjax parameter path, e.g. ("backbone", "blocks", 0, ...)


class CheckpointError(ValueError):
  """A checkpoint lightjax cannot read or map; the message names the key."""


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
  path = os.path.join(directory, CONFIG_FILE)
  if not os.path.exists(path):
    raise CheckpointError(f"no {CONFIG_FILE} in {directory}")
  with open(path) as f:
    return json.load(f)


def read_tensors(directory: str) -> dict[str, np.ndarray]:
  """Every tensor of the checkpoint's safetensors file(s), as numpy arrays."""
  try:
    from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise CheckpointError("reading Hugging Face checkpoints needs the"
                          " `safetensors` package (pip install safetensors)") from e
  single = os.path.join(directory, SAFETENSORS_FILE)
  index = os.path.join(directory, SAFETENSORS_INDEX)
  if os.path.exists(single):
    return load_file(single)
  if os.path.exists(index):
    with open(index) as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    tensors: dict[str, np.ndarray] = {}
    for shard in shards:
      tensors.update(load_file(os.path.join(directory, shard)))
    return tensors
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


# --- config --------------------------------------------------------------------


def _num_labels(hf: dict) -> int:
  if "id2label" in hf and hf["id2label"]:
    return len(hf["id2label"])
  return int(hf.get("num_labels", 2))


def _bert_config(hf: dict) -> ml_collections.ConfigDict:
  from lightjax import config_lib  # pylint: disable=import-outside-toplevel

  act = hf.get("hidden_act", "gelu")
  if act not in _ACTIVATIONS:
    raise CheckpointError(f"hidden_act {act!r} has no lightjax activation;"
                          f" supported: {', '.join(sorted(_ACTIVATIONS))}")
  pos = hf.get("position_embedding_type", "absolute")
  if pos != "absolute":
    raise CheckpointError(f"position_embedding_type {pos!r} is not supported;"
                          " only 'absolute' (learned positions)")
  e, h = hf["hidden_size"], hf["num_attention_heads"]
  if e % h:
    raise CheckpointError(f"hidden_size {e} is not a multiple of"
                          f" num_attention_heads {h}")
  config = config_lib.base_config()
  m = config.model
  m.name = "encoder_classifier"
  m.embed_dim, m.num_heads, m.head_dim = e, h, e // h
  m.mlp_dim, m.num_layers = hf["intermediate_size"], hf["num_hidden_layers"]
  m.dropout_rate = float(hf.get("hidden_dropout_prob", 0.1))
  config_lib.bert_layout(
      m, activation=_ACTIVATIONS[act],
      layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
      type_vocab_size=int(hf.get("type_vocab_size", 2)))
  m.dtype = "float32"
  return config


class _Mapping(dict):
  """HF key -> (lightjax parameter path, transpose?), built per layer kind.

  `tied[key] = other` marks a key whose tensor is a copy of `other`'s (the
  same lightjax parameter): read only to check it equals, never written.
  `skip_rows[key] = n`: the checkpoint's first n rows have no lightjax
  counterpart (RoBERTa's positions below padding_idx + 1); dropped on
  import, written back as zeros.
  """

  def __init__(self):
    super().__init__()
    self.tied: dict[str, str] = {}
    self.skip_rows: dict[str, int] = {}

  def tie(self, hf_name: str, same_as: str) -> None:
    self[hf_name] = self[same_as]
    self.tied[hf_name] = same_as

  def linear(self, hf_name: str, path: Path) -> None:
    """torch Linear weight [out, in] -> flax kernel [in, out], and bias."""
    self[f"{hf_name}.weight"] = (path + ("kernel",), True)
    self[f"{hf_name}.bias"] = (path + ("bias",), False)

  def norm(self, hf_name: str, path: Path) -> None:
    self[f"{hf_name}.weight"] = (path + ("scale",), False)
    self[f"{hf_name}.bias"] = (path + ("bias",), False)


def _bert_encoder_mapping(hf: dict) -> _Mapping:
  """BERT's embeddings and blocks (keys without the "bert." / "roberta."
  prefix): BERT and RoBERTa share them; their heads differ."""
  out = _Mapping()

  bb = ("backbone",)
  out["embeddings.word_embeddings.weight"] = (bb + ("token_embed", "embedding"), False)
  out["embeddings.position_embeddings.weight"] = (bb + ("pos_embed", "table"), False)
  if hf.get("type_vocab_size", 2) > 0:
    out["embeddings.token_type_embeddings.weight"] = (
        bb + ("type_embed", "embedding"), False)
  out.norm("embeddings.LayerNorm", bb + ("embed_ln",))
  for i in range(hf["num_hidden_layers"]):
    hl, blk = f"encoder.layer.{i}", bb + ("blocks", i)
    for proj in ("query", "key", "value"):
      out.linear(f"{hl}.attention.self.{proj}", blk + ("attn", proj))
    out.linear(f"{hl}.attention.output.dense", blk + ("attn", "out"))
    out.norm(f"{hl}.attention.output.LayerNorm", blk + ("ln1",))
    out.linear(f"{hl}.intermediate.dense", blk + ("mlp", "fc1"))
    out.linear(f"{hl}.output.dense", blk + ("mlp", "fc2"))
    out.norm(f"{hl}.output.LayerNorm", blk + ("ln2",))
  return out


def _bert_mapping(hf: dict, head: str = "classifier") -> _Mapping:
  """HF key (without the "bert." prefix) -> (lightjax path, transpose?).

  `head`: "classifier" (pooler + classifier, `encoder_classifier`) or "mlm"
  (BERT's `cls.predictions`, `encoder_mlm`, decoder tied to the embedding).
  """
  out = _bert_encoder_mapping(hf)
  if head == "mlm":
    out.linear("cls.predictions.transform.dense", ("transform",))
    out.norm("cls.predictions.transform.LayerNorm", ("transform_ln",))
    out["cls.predictions.bias"] = (("output_bias",), False)
    out.tie("cls.predictions.decoder.weight", "embeddings.word_embeddings.weight")
    out.tie("cls.predictions.decoder.bias", "cls.predictions.bias")
  else:
    out.linear("pooler.dense", ("pooler",))
    out.linear("classifier", ("head",))
  return out


def _strip(key: str, prefix: str) -> str:
  """`key` without the encoder `prefix`, old gamma/beta names renamed."""
  key = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", key))
  return key[len(prefix):] if key.startswith(prefix) else key


_BUFFERS = (".position_ids", ".token_type_ids")


def _bert_key(key: str, head: str = "classifier") -> str | None:
  """Canonical HF key, or None for tensors lightjax has no use for."""
  key = _strip(key, "bert.")
  if key.endswith(_BUFFERS):
    return None  # buffers
  if head == "mlm":
    if key.startswith(("cls.seq_relationship.", "pooler.", "classifier.")):
      return None  # next-sentence head, pooler, classifier: not the MLM's
    return key
  if key.startswith("cls."):
    return None  # pretraining heads (MLM / NSP)
  return key


def _roberta_offset(hf: dict) -> int:
  """Rows of RoBERTa's position table before the first real token's."""
  pad = hf.get("pad_token_id")
  return (1 if pad is None else int(pad)) + 1  # fairseq's padding_idx: 1


def _roberta_config(hf: dict) -> ml_collections.ConfigDict:
  """RoBERTa (Liu et al. 2019): BERT's blocks, one token type, no pooler;
  its classifier is dense + tanh + out_proj on the <s> token."""
  config = _bert_config(dict(hf, type_vocab_size=hf.get("type_vocab_size", 1)))
  config.model.pooler = False
  config.model.classifier_hidden_dim = hf["hidden_size"]  # classifier.dense
  config.model.classifier_activation = "tanh"
  return config


def _roberta_mapping(hf: dict, head: str = "classifier") -> _Mapping:
  """BERT's encoder map under the "roberta." prefix, RoBERTa's head.

  Positions: fairseq numbers a real token t (1-based) padding_idx + t, so
  the table's first padding_idx + 1 rows are never used by right-padded
  real tokens (a pad itself reads row padding_idx). lightjax's position i
  (0-based) is the table's row i + padding_idx + 1, so the import keeps
  `table[pad_token_id + 1:]`; real tokens then see the positions they see
  in transformers, and only pad positions (masked out) differ.
  """
  del head  # the classifier only (`FAMILIES`)
  out = _bert_encoder_mapping(hf)
  out.skip_rows["embeddings.position_embeddings.weight"] = _roberta_offset(hf)
  out.linear("classifier.dense", ("head_hidden",))
  out.linear("classifier.out_proj", ("head",))
  return out


def _roberta_key(key: str, head: str = "classifier") -> str | None:
  del head  # the classifier only (`FAMILIES`)
  key = _strip(key, "roberta.")
  if key.endswith(_BUFFERS) or key.startswith(("pooler.", "lm_head.")):
    return None  # buffers, the pooler RoBERTa's classifier never reads, MLM
  return key


def _distilbert_config(hf: dict) -> ml_collections.ConfigDict:
  """DistilBERT (Sanh et al. 2019): BERT's blocks without segment embeddings
  or pooler; its classifier is pre_classifier + ReLU + classifier."""
  bert_like = dict(hf, hidden_act=hf.get("activation", "gelu"),
                   hidden_size=hf["dim"], num_attention_heads=hf["n_heads"],
                   intermediate_size=hf["hidden_dim"],
                   num_hidden_layers=hf["n_layers"],
                   hidden_dropout_prob=hf.get("dropout", 0.1),
                   layer_norm_eps=1e-12, type_vocab_size=0)
  config = _bert_config(bert_like)
  config.model.pooler = False
  config.model.classifier_hidden_dim = hf["dim"]  # pre_classifier
  config.model.classifier_activation = "relu"
  return config


def _distilbert_mapping(hf: dict, head: str = "classifier") -> _Mapping:
  del head  # the classifier only (`FAMILIES`)
  out = _Mapping()

  bb = ("backbone",)
  out["embeddings.word_embeddings.weight"] = (bb + ("token_embed", "embedding"), False)
  out["embeddings.position_embeddings.weight"] = (bb + ("pos_embed", "table"), False)
  out.norm("embeddings.LayerNorm", bb + ("embed_ln",))
  for i in range(hf["n_layers"]):
    hl, blk = f"transformer.layer.{i}", bb + ("blocks", i)
    for hf_proj, proj in (("q_lin", "query"), ("k_lin", "key"),
                          ("v_lin", "value"), ("out_lin", "out")):
      out.linear(f"{hl}.attention.{hf_proj}", blk + ("attn", proj))
    out.norm(f"{hl}.sa_layer_norm", blk + ("ln1",))
    out.linear(f"{hl}.ffn.lin1", blk + ("mlp", "fc1"))
    out.linear(f"{hl}.ffn.lin2", blk + ("mlp", "fc2"))
    out.norm(f"{hl}.output_layer_norm", blk + ("ln2",))
  out.linear("pre_classifier", ("head_hidden",))
  out.linear("classifier", ("head",))
  return out


def _distilbert_key(key: str, head: str = "classifier") -> str | None:
  del head  # the classifier only (`FAMILIES`)
  if key.startswith("distilbert."):
    key = key[len("distilbert."):]
  if key.startswith(("vocab_transform.", "vocab_layer_norm.", "vocab_projector.")):
    return None  # the masked-LM head of a pretrained-only checkpoint
  if key.endswith(".position_ids"):
    return None
  return key


class _Family:
  """How one HF `model_type` becomes a lightjax config and parameter map.

  `mapping(hf, head)` and `key(raw_key, head)` serve each of `heads`;
  `position_offset(hf)` is how many leading rows of the checkpoint's
  position table lightjax drops (the map's `skip_rows`).
  """

  def __init__(self, config: Callable, mapping: Callable, key: Callable,
               heads: tuple[str, ...] = ("classifier",),
               position_offset: Callable[[dict], int] = lambda hf: 0):
    self.config, self.mapping, self.key = config, mapping, key
    self.heads, self.position_offset = heads, position_offset


FAMILIES: dict[str, _Family] = {
    "bert": _Family(_bert_config, _bert_mapping, _bert_key,
                    heads=("classifier", "mlm")),
    "distilbert": _Family(_distilbert_config, _distilbert_mapping,
                          _distilbert_key),
    "roberta": _Family(_roberta_config, _roberta_mapping, _roberta_key,
                       position_offset=_roberta_offset),
}

# `from_pretrained(head=...)` -> the lightjax model it builds.
HEADS = {"classifier": "encoder_classifier", "mlm": "encoder_mlm"}

# Each family's classifier tensors (dropped by `drop_head=True`).
_HEAD_PREFIXES = ("classifier.", "pre_classifier.")


def _family(hf: dict, head: str = "classifier") -> _Family:
  kind = hf.get("model_type")
  if kind not in FAMILIES:
    raise CheckpointError(
        f"model_type {kind!r} is not supported; supported:"
        f" {', '.join(sorted(FAMILIES))}")
  if head not in HEADS:
    raise CheckpointError(f"head {head!r} is not one of: {', '.join(HEADS)}")
  if head not in FAMILIES[kind].heads:
    raise CheckpointError(f"head {head!r} is not supported for model_type"
                          f" {kind!r}; its heads: {', '.join(FAMILIES[kind].heads)}")
  return FAMILIES[kind]


def config_from_hf(hf: dict, source: str = "", head: str = "classifier"
                   ) -> ml_collections.ConfigDict:
  """lightjax config for an HF config.json; `config.hf` records the rest.

  `head="mlm"` builds `encoder_mlm` (BERT's masked-LM head, no pooler).
  """
  family = _family(hf, head)
  config = family.config(hf)
  config.model.name = HEADS[head]
  if head == "mlm":
    config.model.pooler = False  # BertForMaskedLM has none
  config.hf = ml_collections.ConfigDict({
      "source": source,
      "head": head,
      "model_type": hf["model_type"],
      "vocab_size": int(hf["vocab_size"]),
      "num_labels": _num_labels(hf),
      "max_len": int(hf["max_position_embeddings"]) - family.position_offset(hf),
      "pad_token_id": int(hf.get("pad_token_id") or 0),
      "initialized": [],
  })
  return config


# --- weights ---------------------------------------------------------------------


def _name(path: Path) -> str:
  return "/".join(map(str, path))


def _is_kernel_param(path: Path) -> bool:
  """A parameter of the attention variant itself (attn.kernel.*), not a projection."""
  return any(a == "attn" and b == "kernel" for a, b in zip(path, path[1:]))


class Weights(dict):
  """{lightjax parameter path: float32 array}; `source[path]` is the HF key."""

  def __init__(self):
    super().__init__()
    self.source: dict[Path, str] = {}


def convert_weights(hf: dict, tensors: dict[str, np.ndarray], *,
                    drop_head: bool = False, head: str = "classifier"
                    ) -> Weights:
  """Checkpoint tensors -> {lightjax parameter path: float32 array}.

  `drop_head=True` skips the checkpoint's classifier (it starts fresh).
  `head="mlm"` maps BERT's `cls.predictions` (see the module docstring); a
  tied copy (`cls.predictions.decoder.*`) must equal what it is tied to.
  """
  family = _family(hf, head)
  mapping = family.mapping(hf, head)
  weights = Weights()
  copies = []  # (raw key, path, value) of tied copies, checked at the end
  for raw_key in sorted(tensors):
    value = tensors[raw_key]
    if drop_head and raw_key.startswith(_HEAD_PREFIXES):
      continue
    key = family.key(raw_key, head)
    if key is None:
      continue
    if key not in mapping:
      raise CheckpointError(
          f"checkpoint tensor {raw_key!r} {tuple(value.shape)} has no lightjax"
          " parameter to go to")
    path, transpose = mapping[key]
    value = np.asarray(value, np.float32)
    value = value.T if transpose else value
    skip = mapping.skip_rows.get(key, 0)
    if skip and value.shape[0] <= skip:
      raise CheckpointError(
          f"checkpoint tensor {raw_key!r} {tuple(value.shape)} needs more than"
          f" the {skip} leading rows lightjax drops from it")
    value = value[skip:]
    if key in mapping.tied:
      copies.append((raw_key, path, value))
      continue
    weights[path] = value
    weights.source[path] = raw_key
  for raw_key, path, value in copies:
    if path not in weights:  # only the copy is stored: it is the weight
      weights[path], weights.source[path] = value, raw_key
      continue
    want = weights[path]
    if want.shape != value.shape or not np.array_equal(want, value):
      diff = (f"max abs difference {float(np.abs(want - value).max()):.3g}"
              if want.shape == value.shape else "shapes differ")
      raise CheckpointError(
          f"checkpoint tensor {raw_key!r} {tuple(value.shape)} is tied to"
          f" {weights.source[path]!r} {tuple(want.shape)} (both are"
          f" {_name(path)}) but differs from it ({diff})")
  return weights


def load_weights(model: nnx.Module, weights: dict[Path, np.ndarray], *,
                 optional: tuple[str, ...] = _OPTIONAL) -> list[str]:
  """Puts `weights` into `model`'s parameters; returns those left initialised.

  A parameter without a weight is an error unless it is under one of
  `optional` or belongs to the attention variant (`attn.kernel.*`); a weight
  without a parameter, or of another shape, is an error naming both shapes.
  """
  flat = list(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  params = {tuple(p): v for p, v in flat}
  for path, value in weights.items():
    if path not in params:
      raise CheckpointError(f"weight {_name(path)} {tuple(value.shape)} has no"
                            " parameter in the lightjax model")
    have = tuple(params[path].shape)
    if have != tuple(value.shape):
      source = getattr(weights, "source", {}).get(path)
      source = f"checkpoint tensor {source!r} as " if source else "checkpoint "
      raise CheckpointError(
          f"shape mismatch at {_name(path)}: {source}{tuple(value.shape)},"
          f" lightjax model {have}")
  initialized, updates = [], []
  for path, var in params.items():
    if path in weights:
      updates.append((path, var.replace(jnp.asarray(weights[path], var.dtype))))
    elif path[0] in optional or _is_kernel_param(path):
      initialized.append(_name(path))
    else:
      raise CheckpointError(f"the checkpoint has no weight for {_name(path)}"
                            f" {tuple(var.shape)}")
  nnx.update(model, nnx.from_flat_state(updates))
  return initialized


def build(config: ml_collections.ConfigDict, weights: dict[Path, np.ndarray],
          *, seed: int = 0) -> nnx.Module:
  """The model `config` describes, with `weights` (from `convert_weights`).

  `config.model` may differ from the imported one where no weight depends on
  it (e.g. another `attention` variant or `dropout_rate`); sizes that
  contradict the weights fail with the key and both shapes.
  """
  from lightjax import models  # pylint: disable=import-outside-toplevel

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
    from lightjax import config_lib  # pylint: disable=import-outside-toplevel
    config.model.attention = config_lib.attention_config(attention)
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

# Tokenizer files a checkpoint directory may hold; `save_pretrained` copies
# those present next to the tokenizer it is given.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt")

# lightjax `activation` -> HF `hidden_act` (the inverse of _ACTIVATIONS).
_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}

# Each family's head tensors sit outside its encoder prefix.
_PREFIXES = {"bert": ("bert.", ("classifier.", "cls.")),
             "roberta": ("roberta.", ("classifier.",)),
             "distilbert": ("distilbert.", ("pre_classifier.", "classifier."))}


def _head_of(m) -> str:
  """The `from_pretrained` head whose model `m` (a `config.model`) names."""
  heads = {model: head for head, model in HEADS.items()}
  if m.name not in heads:
    raise CheckpointError(f"this model has no Hugging Face equivalent: model"
                          f" {m.name!r} (saved: {', '.join(heads)})")
  return heads[m.name]


def _family_of(m) -> str:
  """The HF family `m` (a `config.model`) is laid out as, or CheckpointError."""
  from lightjax.models import transformer  # pylint: disable=import-outside-toplevel
  opt = lambda k: transformer.option(m, k)
  head = _head_of(m)
  problems = []
  if m.attention.name != "softmax":
    problems.append(f"attention {m.attention.name!r} (transformers runs"
                    " softmax only)")
  # The MLM model reads every position, so `pool` is not part of its layout.
  pool = m.pool if head == "classifier" else "first"
  if (opt("norm_position"), m.pos_embedding, pool) != ("post", "learned", "first"):
    problems.append("not BERT's layout (norm_position='post', pos_embedding="
                    "'learned', pool='first')")
  if m.num_heads * m.head_dim != m.embed_dim:
    problems.append(f"num_heads * head_dim = {m.num_heads * m.head_dim} is"
                    f" not embed_dim {m.embed_dim}")
  if opt("activation") not in _HF_ACTIVATIONS:
    problems.append(f"activation {opt('activation')!r}")
  # Pruned head counts / MLP widths are saved zero-padded (`_pad_pruned`).
  for field in ("embed_factor_dim", "share_layers"):
    if m.get(field):
      problems.append(f"{field}={m[field]!r}")
  head_act = opt("classifier_activation") or opt("activation")
  if head == "mlm":
    family = "bert"  # BertForMaskedLM
    if opt("type_vocab_size") == 0:
      problems.append("BertForMaskedLM always adds segment embeddings"
                      " (type_vocab_size=0)")
  elif opt("pooler") and m.classifier_hidden_dim == 0:
    family = "bert"
  elif (not opt("pooler") and opt("type_vocab_size") == 0
        and m.classifier_hidden_dim == m.embed_dim and head_act == "relu"):
    family = "distilbert"
  elif (not opt("pooler") and opt("type_vocab_size") == 1
        and m.classifier_hidden_dim == m.embed_dim and head_act == "tanh"):
    family = "roberta"
  else:
    family = None
    problems.append("its head is neither BERT's (pooler, one linear layer)"
                    " nor DistilBERT's (no segment embeddings or pooler,"
                    " a hidden head of embed_dim with ReLU) nor RoBERTa's"
                    " (one token type, no pooler, a hidden head of"
                    " embed_dim with tanh)")
  if problems:
    raise CheckpointError("this model has no Hugging Face equivalent: "
                          + "; ".join(problems))
  return family


def hf_config_for(m, *, vocab_size: int, num_labels: int, max_len: int,
                  pad_id: int, base: dict | None = None) -> dict[str, Any]:
  """config.json for `m` (a `config.model`), over `base` (the config.json it
  was imported from: keeps what lightjax has no field for).

  An `encoder_mlm` model is a `BertForMaskedLM` (`num_labels` unused): no
  labels are written, and `tie_word_embeddings: true` tells transformers
  that the decoder is the word embedding (it then expects no decoder tensor).
  RoBERTa's position table has `pad_id + 1` rows before lightjax's
  `max_len` ones (`_roberta_mapping`), counted in max_position_embeddings.
  """
  from lightjax.models import transformer  # pylint: disable=import-outside-toplevel
  opt = lambda k: transformer.option(m, k)
  family = _family_of(m)
  head = _head_of(m)
  out = dict(base or {})
  if out.get("model_type", family) != family:
    out = {}
  out.update(model_type=family, vocab_size=vocab_size, pad_token_id=pad_id)
  out.update(max_position_embeddings=(
      max_len + FAMILIES[family].position_offset(out)))
  if head == "classifier":
    labels = {str(i): out.get("id2label", {}).get(str(i), f"LABEL_{i}")
              for i in range(num_labels)}
    out.update(id2label=labels,
               label2id={v: int(k) for k, v in labels.items()},
               problem_type=("regression" if num_labels == 1
                             else "single_label_classification"))
  act = _HF_ACTIVATIONS[opt("activation")]
  if family in ("bert", "roberta"):
    architecture = {("bert", "classifier"): "BertForSequenceClassification",
                    ("bert", "mlm"): "BertForMaskedLM",
                    ("roberta", "classifier"):
                        "RobertaForSequenceClassification"}[family, head]
    out.update(architectures=[architecture],
               hidden_size=m.embed_dim, num_hidden_layers=m.num_layers,
               num_attention_heads=m.num_heads, intermediate_size=m.mlp_dim,
               hidden_act=act, layer_norm_eps=opt("layer_norm_eps"),
               type_vocab_size=opt("type_vocab_size"),
               position_embedding_type="absolute",
               hidden_dropout_prob=m.dropout_rate,
               attention_probs_dropout_prob=out.get(
                   "attention_probs_dropout_prob", m.dropout_rate))
    if head == "mlm":
      out.update(tie_word_embeddings=True)
  else:
    out.update(architectures=["DistilBertForSequenceClassification"],
               dim=m.embed_dim, n_layers=m.num_layers, n_heads=m.num_heads,
               hidden_dim=m.mlp_dim, activation=act, dropout=m.dropout_rate,
               attention_dropout=out.get("attention_dropout", m.dropout_rate),
               sinusoidal_pos_embds=False)
  return out


def _pad_pruned(params: dict[Path, np.ndarray], m) -> dict[Path, np.ndarray]:
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
  from lightjax.models import transformer  # pylint: disable=import-outside-toplevel
  heads = transformer.per_layer(m, "heads_per_layer", m.num_heads)
  widths = transformer.per_layer(m, "mlp_dims_per_layer", m.mlp_dim)
  full = {"attn": m.num_heads * m.head_dim, "mlp": m.mlp_dim}
  out = dict(params)

  def pad(path, axis, size):
    value = out[path]
    widths_ = [(0, 0)] * value.ndim
    widths_[axis] = (0, size - value.shape[axis])
    out[path] = np.pad(value, widths_)

  for i, (h, w) in enumerate(zip(heads, widths)):
    blk = ("backbone", "blocks", i)
    if h != m.num_heads:
      for proj in ("query", "key", "value"):
        pad(blk + ("attn", proj, "kernel"), 1, full["attn"])
        pad(blk + ("attn", proj, "bias"), 0, full["attn"])
      pad(blk + ("attn", "out", "kernel"), 0, full["attn"])
    if w != m.mlp_dim:
      pad(blk + ("mlp", "fc1", "kernel"), 1, full["mlp"])
      pad(blk + ("mlp", "fc1", "bias"), 0, full["mlp"])
      pad(blk + ("mlp", "fc2", "kernel"), 0, full["mlp"])
  return out


def save_pretrained(model: nnx.Module, model_cfg, directory: str, *,
                    pad_id: int | None = None, tokenizer: str | None = None,
                    base: dict | None = None,
                    tokenizer_config: dict | None = None) -> dict[str, Any]:
  """Writes `model` as a Hugging Face checkpoint directory; returns its config.

  config.json + model.safetensors (+ the tokenizer's files, copied from
  `tokenizer`, a checkpoint directory or a vocab.txt / tokenizer.json) that
  `transformers`' `AutoModelForSequenceClassification.from_pretrained` loads
  (`AutoModelForMaskedLM` for an `encoder_mlm` model) and `from_pretrained`
  here reads back to the same model. The inverse of the
  import's weight map: flax kernels [in, out] become torch [out, in].
  `tokenizer_config` is written as tokenizer_config.json where the tokenizer
  brings none (a bare vocab.txt). `pad_id` defaults to `base`'s
  pad_token_id, else 0 (RoBERTa's positions depend on it).
  """
  import shutil  # pylint: disable=import-outside-toplevel
  try:
    from safetensors.numpy import save as to_bytes  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise CheckpointError("saving Hugging Face checkpoints needs the"
                          " `safetensors` package (pip install safetensors)") from e
  from lightjax import files  # pylint: disable=import-outside-toplevel

  params = {tuple(p): np.asarray(v[...], np.float32)
            for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  params = _pad_pruned(params, model_cfg)
  if pad_id is None:
    pad_id = int((base or {}).get("pad_token_id") or 0)
  bb = ("backbone",)
  head = _head_of(model_cfg)
  hf_config = hf_config_for(
      model_cfg, vocab_size=params[bb + ("token_embed", "embedding")].shape[0],
      num_labels=(params[("head", "kernel")].shape[1] if ("head", "kernel")
                  in params else 0),
      max_len=params[bb + ("pos_embed", "table")].shape[0], pad_id=pad_id,
      base=base)
  family = FAMILIES[hf_config["model_type"]]
  prefix, outside = _PREFIXES[hf_config["model_type"]]
  tensors, used = {}, set()
  mapping = family.mapping(hf_config, head)
  for key, (path, transpose) in mapping.items():
    if key in mapping.tied:
      continue  # a copy transformers 5 neither writes nor expects
    if path not in params:
      raise CheckpointError(f"the model has no parameter {_name(path)} for"
                            f" the checkpoint's {key!r}")
    value = params[path].T if transpose else params[path]
    skip = mapping.skip_rows.get(key, 0)
    if skip:  # rows lightjax never reads (RoBERTa's first positions)
      value = np.concatenate([np.zeros((skip, *value.shape[1:]), value.dtype),
                              value])
    name = key if key.startswith(outside) else prefix + key
    tensors[name] = np.ascontiguousarray(value)
    used.add(path)
  left = sorted(_name(p) for p in params if p not in used)
  if left:
    raise CheckpointError(f"parameters with no place in a {hf_config['model_type']}"
                          f" checkpoint: {', '.join(left)}")
  os.makedirs(directory, exist_ok=True)
  files.atomic_write(os.path.join(directory, CONFIG_FILE),
                     lambda f: json.dump(hf_config, f, indent=2, sort_keys=True))
  files.atomic_write(  # "format": transformers refuses a file without it
      os.path.join(directory, SAFETENSORS_FILE),
      lambda f: f.write(to_bytes(tensors, metadata={"format": "pt"})),
      binary=True)
  if tokenizer:
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
  return hf_config
