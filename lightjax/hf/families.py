"""One description per Hugging Face family, used in both directions.

A `Family` says how a `model_type` ("bert", "distilbert", "roberta")
becomes a lightjax `ModelConfig` (`model_config`, import) and back
(`hf_config`, save-back), which lightjax models have its layout
(`has_layout`, save-back picks the family with it), and its tensor map
(`mapping`: HF key -> lightjax parameter path, read in both directions)
with the key normaliser (`key`). Import (`lightjax.hf.io.from_pretrained`)
and save-back (`lightjax.hf.save.save_pretrained`) read only these.

BERT (Devlin et al. 2019): post-LN blocks, segment embeddings, the tanh
pooler into one linear layer. DistilBERT (Sanh et al. 2019): the same
blocks without segment embeddings or pooler; its classifier,
pre_classifier + ReLU + classifier, is lightjax's hidden head with
`classifier_activation="relu"`. RoBERTa (Liu et al. 2019): BERT's blocks
with one token type and no pooler; its classifier, dense + tanh + out_proj
on <s>, is the hidden head with `classifier_activation="tanh"`. RoBERTa
numbers positions from padding_idx + 1 (fairseq), so the import keeps
`position_embeddings[pad_token_id + 1:]` (`position_offset`).

A sentence-transformers model (Reimers & Gurevych 2019) is BERT's bare
encoder (`BertModel`: no pooler read, no classifier) under a pooling module:
the "sentence" head, lightjax's `sentence_encoder`; its pooling and
normalisation live in the directory's own files
(`lightjax.hf.sentence_transformers`), not in config.json.

HF `Linear` weights are [out, in] and become flax kernels [in, out]. BERT's
per-head layout (`view(B, L, H, D)` of the projection) is the one
`MultiHeadAttention._heads` reshapes to, so no head permutation is needed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable

from lightjax.hf.sentence_transformers import POOLING_MODES
from lightjax.models import weights
from lightjax.models.config import ModelConfig
from lightjax.models.weights import CheckpointError, Path

# HF `hidden_act` -> lightjax `activation`, and back.
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh"}
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}

# `from_pretrained(head=...)` -> the lightjax model it builds.
HEADS = {"classifier": "encoder_classifier", "mlm": "encoder_mlm",
         "sentence": "sentence_encoder"}
# Heads whose transformers class is the bare encoder (`BertModel`): its
# tensors are saved without the family's prefix ("bert.").
BASE_HEADS = ("sentence",)


class Mapping(dict):
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

  def embeddings(self, segments: bool) -> None:
    """BERT's embedding tensors (all three families name them alike)."""
    bb = weights.backbone_path
    self["embeddings.word_embeddings.weight"] = (bb("token_embed", "embedding"), False)
    self["embeddings.position_embeddings.weight"] = (bb("pos_embed", "table"), False)
    if segments:
      self["embeddings.token_type_embeddings.weight"] = (
          bb("type_embed", "embedding"), False)
    self.norm("embeddings.LayerNorm", bb("embed_ln"))


@dataclasses.dataclass(frozen=True)
class Family:
  """How one HF `model_type` and a lightjax model correspond (module
  docstring). `prefix` is the encoder's key prefix in a task checkpoint;
  keys starting with one of `outside` (its heads) have none."""
  model_type: str
  prefix: str
  outside: tuple[str, ...]
  heads: tuple[str, ...]
  architectures: dict[str, str]  # head -> transformers class
  model_config: Callable[[dict], ModelConfig]
  hf_config: Callable[[ModelConfig], dict[str, Any]]
  has_layout: Callable[[ModelConfig, str], bool]
  mapping: Callable[[dict, str], Mapping]
  key: Callable[[str, str], str | None]
  position_offset: Callable[[dict], int] = lambda hf: 0
  # config.json's names for the sizes lightjax reads (messages, checks).
  fields: dict[str, str] = dataclasses.field(default_factory=lambda: dict(
      layers="num_hidden_layers", hidden="hidden_size",
      heads="num_attention_heads", mlp="intermediate_size",
      activation="hidden_act", dropout="hidden_dropout_prob"))
  layer_key: str = "encoder.layer."  # a block's tensors: layer_key + "i."


# --- BERT -------------------------------------------------------------------------


def _bert_config(hf: dict) -> ModelConfig:
  act = hf.get("hidden_act", "gelu")
  if act not in ACTIVATIONS:
    raise CheckpointError(f"hidden_act {act!r} has no lightjax activation;"
                          f" supported: {', '.join(sorted(ACTIVATIONS))}")
  pos = hf.get("position_embedding_type", "absolute")
  if pos != "absolute":
    raise CheckpointError(f"position_embedding_type {pos!r} is not supported;"
                          " only 'absolute' (learned positions)")
  e, h = hf["hidden_size"], hf["num_attention_heads"]
  if e % h:
    raise CheckpointError(f"hidden_size {e} is not a multiple of"
                          f" num_attention_heads {h}")
  return ModelConfig.bert(
      embed_dim=e, num_heads=h, mlp_dim=hf["intermediate_size"],
      num_layers=hf["num_hidden_layers"],
      dropout_rate=float(hf.get("hidden_dropout_prob", 0.1)),
      activation=ACTIVATIONS[act],
      layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
      type_vocab_size=int(hf.get("type_vocab_size", 2)))


def _bert_hf_config(m: ModelConfig) -> dict[str, Any]:
  """BERT's and RoBERTa's config.json sizes."""
  return dict(hidden_size=m.embed_dim, num_hidden_layers=m.num_layers,
              num_attention_heads=m.num_heads, intermediate_size=m.mlp_dim,
              hidden_act=HF_ACTIVATIONS[m.activation],
              layer_norm_eps=m.layer_norm_eps,
              type_vocab_size=m.type_vocab_size,
              position_embedding_type="absolute",
              hidden_dropout_prob=m.dropout_rate)


def _bert_layout(m: ModelConfig, head: str) -> bool:
  # BertForMaskedLM always has segment embeddings (`check_layout` says so);
  # a sentence encoder has no head at all.
  return head in ("mlm", "sentence") or (m.pooler
                                         and m.classifier_hidden_dim == 0)


def _bert_encoder_mapping(hf: dict) -> Mapping:
  """BERT's embeddings and blocks (keys without the "bert." / "roberta."
  prefix): BERT and RoBERTa share them; their heads differ."""
  out = Mapping()
  out.embeddings(segments=hf.get("type_vocab_size", 2) > 0)
  for i in range(hf["num_hidden_layers"]):
    hl = f"encoder.layer.{i}"
    for proj in ("query", "key", "value"):
      out.linear(f"{hl}.attention.self.{proj}", weights.projection_path(i, proj))
    out.linear(f"{hl}.attention.output.dense", weights.projection_path(i, "out"))
    out.norm(f"{hl}.attention.output.LayerNorm", weights.block_path(i, "ln1"))
    out.linear(f"{hl}.intermediate.dense", weights.projection_path(i, "fc1"))
    out.linear(f"{hl}.output.dense", weights.projection_path(i, "fc2"))
    out.norm(f"{hl}.output.LayerNorm", weights.block_path(i, "ln2"))
  return out


def _bert_mapping(hf: dict, head: str) -> Mapping:
  """`head`: "classifier" (pooler + classifier, `encoder_classifier`),
  "mlm" (BERT's `cls.predictions`, `encoder_mlm`, decoder tied to the
  word embedding, Press & Wolf 2017: a stored decoder weight or bias must
  equal what it is tied to) or "sentence" (the encoder alone,
  `sentence_encoder`)."""
  out = _bert_encoder_mapping(hf)
  if head == "sentence":
    return out
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


def _bert_key(key: str, head: str) -> str | None:
  """Canonical HF key, or None for tensors lightjax has no use for."""
  key = _strip(key, "bert.")
  if key.endswith(_BUFFERS):
    return None  # buffers
  if head == "mlm":
    if key.startswith(("cls.seq_relationship.", "pooler.", "classifier.")):
      return None  # next-sentence head, pooler, classifier: not the MLM's
    return key
  if head == "sentence" and key.startswith(("pooler.", "classifier.")):
    return None  # a BertModel's pooler: sentence pooling never reads it
  if key.startswith("cls."):
    return None  # pretraining heads (MLM / NSP)
  return key


# --- RoBERTa ----------------------------------------------------------------------


def _roberta_offset(hf: dict) -> int:
  """Rows of RoBERTa's position table before the first real token's."""
  pad = hf.get("pad_token_id")
  return (1 if pad is None else int(pad)) + 1  # fairseq's padding_idx: 1


def _roberta_config(hf: dict) -> ModelConfig:
  """BERT's blocks, one token type, no pooler; the classifier is dense +
  tanh + out_proj on the <s> token."""
  bert = _bert_config(dict(hf, type_vocab_size=hf.get("type_vocab_size", 1)))
  return dataclasses.replace(bert, pooler=False,
                             classifier_hidden_dim=hf["hidden_size"],
                             classifier_activation="tanh")


def _hidden_head(m: ModelConfig, activation: str) -> bool:
  """No pooler; a hidden head of embed_dim with `activation`."""
  return (not m.pooler and m.classifier_hidden_dim == m.embed_dim
          and m.head_activation == activation)


def _roberta_mapping(hf: dict, head: str) -> Mapping:
  """BERT's encoder map under the "roberta." prefix, RoBERTa's head.

  Positions: fairseq numbers a real token t (1-based) padding_idx + t, so
  the table's first padding_idx + 1 rows are never used by right-padded
  real tokens (a pad itself reads row padding_idx). lightjax's position i
  (0-based) is the table's row i + padding_idx + 1, so the import keeps
  `table[pad_token_id + 1:]`; real tokens then see the positions they see
  in transformers, and only pad positions (masked out) differ.
  """
  del head  # the classifier only
  out = _bert_encoder_mapping(hf)
  out.skip_rows["embeddings.position_embeddings.weight"] = _roberta_offset(hf)
  out.linear("classifier.dense", ("head_hidden",))
  out.linear("classifier.out_proj", ("head",))
  return out


def _roberta_key(key: str, head: str) -> str | None:
  del head  # the classifier only
  key = _strip(key, "roberta.")
  if key.endswith(_BUFFERS) or key.startswith(("pooler.", "lm_head.")):
    return None  # buffers, the pooler RoBERTa's classifier never reads, MLM
  return key


# --- DistilBERT -------------------------------------------------------------------


def _distilbert_config(hf: dict) -> ModelConfig:
  """BERT's blocks without segment embeddings or pooler; the classifier is
  pre_classifier + ReLU + classifier."""
  bert_like = dict(hf, hidden_act=hf.get("activation", "gelu"),
                   hidden_size=hf["dim"], num_attention_heads=hf["n_heads"],
                   intermediate_size=hf["hidden_dim"],
                   num_hidden_layers=hf["n_layers"],
                   hidden_dropout_prob=hf.get("dropout", 0.1),
                   layer_norm_eps=1e-12, type_vocab_size=0)
  return dataclasses.replace(_bert_config(bert_like), pooler=False,
                             classifier_hidden_dim=hf["dim"],
                             classifier_activation="relu")


def _distilbert_hf_config(m: ModelConfig) -> dict[str, Any]:
  return dict(dim=m.embed_dim, n_layers=m.num_layers, n_heads=m.num_heads,
              hidden_dim=m.mlp_dim, activation=HF_ACTIVATIONS[m.activation],
              dropout=m.dropout_rate, sinusoidal_pos_embds=False)


def _distilbert_mapping(hf: dict, head: str) -> Mapping:
  del head  # the classifier only
  out = Mapping()
  out.embeddings(segments=False)
  for i in range(hf["n_layers"]):
    hl = f"transformer.layer.{i}"
    for hf_proj, proj in (("q_lin", "query"), ("k_lin", "key"),
                          ("v_lin", "value"), ("out_lin", "out")):
      out.linear(f"{hl}.attention.{hf_proj}", weights.projection_path(i, proj))
    out.norm(f"{hl}.sa_layer_norm", weights.block_path(i, "ln1"))
    out.linear(f"{hl}.ffn.lin1", weights.projection_path(i, "fc1"))
    out.linear(f"{hl}.ffn.lin2", weights.projection_path(i, "fc2"))
    out.norm(f"{hl}.output_layer_norm", weights.block_path(i, "ln2"))
  out.linear("pre_classifier", ("head_hidden",))
  out.linear("classifier", ("head",))
  return out


def _distilbert_key(key: str, head: str) -> str | None:
  del head  # the classifier only
  if key.startswith("distilbert."):
    key = key[len("distilbert."):]
  if key.startswith(("vocab_transform.", "vocab_layer_norm.", "vocab_projector.")):
    return None  # the masked-LM head of a pretrained-only checkpoint
  if key.endswith(".position_ids"):
    return None
  return key


FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("bert", "bert.", ("classifier.", "cls."),
           ("classifier", "mlm", "sentence"),
           {"classifier": "BertForSequenceClassification",
            "mlm": "BertForMaskedLM", "sentence": "BertModel"},
           _bert_config, _bert_hf_config, _bert_layout, _bert_mapping,
           _bert_key),
    Family("distilbert", "distilbert.", ("pre_classifier.", "classifier."),
           ("classifier",),
           {"classifier": "DistilBertForSequenceClassification"},
           _distilbert_config, _distilbert_hf_config,
           lambda m, head: m.type_vocab_size == 0 and _hidden_head(m, "relu"),
           _distilbert_mapping, _distilbert_key,
           fields=dict(layers="n_layers", hidden="dim", heads="n_heads",
                       mlp="hidden_dim", activation="activation",
                       dropout="dropout"),
           layer_key="transformer.layer."),
    Family("roberta", "roberta.", ("classifier.",), ("classifier",),
           {"classifier": "RobertaForSequenceClassification"},
           _roberta_config, _bert_hf_config,
           lambda m, head: m.type_vocab_size == 1 and _hidden_head(m, "tanh"),
           _roberta_mapping, _roberta_key, position_offset=_roberta_offset),
)}


def family(hf: dict, head: str = "classifier") -> Family:
  """The family of an HF config.json that serves `head`, or CheckpointError.

  The config's fields lightjax reads are checked first (`check_fields`)."""
  if not isinstance(hf, dict):
    raise CheckpointError(f"config.json must hold a JSON object, got"
                          f" {type(hf).__name__}")
  kind = hf.get("model_type")
  if not isinstance(kind, str) or kind not in FAMILIES:
    raise CheckpointError(
        f"model_type {kind!r} is not supported; supported:"
        f" {', '.join(sorted(FAMILIES))}")
  if head not in HEADS:
    raise CheckpointError(f"head {head!r} is not one of: {', '.join(HEADS)}")
  if head not in FAMILIES[kind].heads:
    raise CheckpointError(f"head {head!r} is not supported for model_type"
                          f" {kind!r}; its heads: {', '.join(FAMILIES[kind].heads)}")
  check_fields(hf, FAMILIES[kind])
  return FAMILIES[kind]


def _show(value: Any) -> str:
  """A config value for a one-line message (repr, cut short)."""
  text = repr(value)
  return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def check_fields(hf: dict, fam: Family) -> None:
  """One-line CheckpointError naming the first config.json field lightjax
  reads that has the wrong type or range (sizes: integers > 0; the head
  count divides the width; dropout in [0, 1); eps > 0; ids >= 0). Whether
  the sizes agree with the tensors is `lightjax.hf.io.verify`'s job."""
  f = fam.fields
  sizes = [f["layers"], f["hidden"], f["heads"], f["mlp"], "vocab_size",
           "max_position_embeddings"]
  for name in sizes:
    if name not in hf:
      raise CheckpointError(f"config.json has no {name}")
    if not _is_int(hf[name]) or hf[name] <= 0:
      raise CheckpointError(f"config.json: {name} must be an integer > 0,"
                            f" got {_show(hf[name])}")
  if hf[f["hidden"]] % hf[f["heads"]]:
    raise CheckpointError(f"config.json: {f['hidden']} {hf[f['hidden']]} is"
                          f" not a multiple of {f['heads']} {hf[f['heads']]}")
  for name, low in (("type_vocab_size", 0), ("num_labels", 1)):
    if name in hf and (not _is_int(hf[name]) or hf[name] < low):
      raise CheckpointError(f"config.json: {name} must be an integer >= {low},"
                            f" got {_show(hf[name])}")
  pad = hf.get("pad_token_id")
  if pad is not None and (not _is_int(pad) or not 0 <= pad < hf["vocab_size"]):
    raise CheckpointError(f"config.json: pad_token_id must be null or an"
                          f" integer in [0, vocab_size={hf['vocab_size']}),"
                          f" got {_show(pad)}")
  if fam.position_offset(hf) >= hf["max_position_embeddings"]:
    raise CheckpointError(
        f"config.json: max_position_embeddings {hf['max_position_embeddings']}"
        f" leaves no position after the {fam.position_offset(hf)} rows before"
        " the first token's (pad_token_id + 1)")
  labels = hf.get("id2label")
  if labels is not None and not isinstance(labels, dict):
    raise CheckpointError(f"config.json: id2label must be an object"
                          f" {{\"0\": name, ...}}, got {_show(labels)}")
  for name in (f["activation"], "position_embedding_type"):
    if name in hf and not isinstance(hf[name], str):
      raise CheckpointError(f"config.json: {name} must be a string, got"
                            f" {_show(hf[name])}")
  if f["dropout"] in hf and not (_is_number(hf[f["dropout"]])
                                 and 0 <= hf[f["dropout"]] < 1):
    raise CheckpointError(f"config.json: {f['dropout']} must be a number in"
                          f" [0, 1), got {_show(hf[f['dropout']])}")
  eps = hf.get("layer_norm_eps", 1e-12)
  if not (_is_number(eps) and eps > 0):
    raise CheckpointError(f"config.json: layer_norm_eps must be a number > 0,"
                          f" got {_show(eps)}")


def head_of(m: ModelConfig) -> str:
  """The `from_pretrained` head whose model `m` names."""
  heads = {model: head for head, model in HEADS.items()}
  if m.name not in heads:
    raise CheckpointError(f"this model has no Hugging Face equivalent: model"
                          f" {m.name!r} (saved: {', '.join(heads)})")
  return heads[m.name]


def family_of(m: ModelConfig) -> Family:
  """The family lightjax model `m` is laid out as, or one CheckpointError
  listing every reason it has none."""
  head = head_of(m)
  problems = []
  if m.attention["name"] != "softmax":
    problems.append(f"attention {m.attention['name']!r} (transformers runs"
                    " softmax only)")
  # The MLM model reads every position, and a sentence encoder's pooling
  # is its directory's Pooling module: `pool` is the classifier's layout only.
  pool = m.pool if head == "classifier" else "first"
  if (m.norm_position, m.pos_embedding, pool) != ("post", "learned", "first"):
    problems.append("not BERT's layout (norm_position='post', pos_embedding="
                    "'learned', pool='first')")
  if head == "sentence" and m.pool not in POOLING_MODES:
    problems.append(f"pool {m.pool!r} (sentence-transformers pools with:"
                    f" {', '.join(POOLING_MODES)})")
  if m.num_heads * m.head_dim != m.embed_dim:
    problems.append(f"num_heads * head_dim = {m.num_heads * m.head_dim} is"
                    f" not embed_dim {m.embed_dim} (transformers' head size is"
                    " hidden_size / num_attention_heads: head_dim must divide"
                    " embed_dim, with at most embed_dim / head_dim heads per"
                    " layer)")
  if m.activation not in HF_ACTIVATIONS:
    problems.append(f"activation {m.activation!r}")
  # Pruned head counts / MLP widths are saved zero-padded (io.pad_pruned).
  if m.embed_factor_dim:
    problems.append(f"embed_factor_dim={m.embed_factor_dim!r}")
  if m.share_layers:
    problems.append("share_layers=True")
  if any(s.ranks for s in m.layers):
    problems.append("low-rank projections (low_rank_ranks)")
  if head == "mlm" and m.type_vocab_size == 0:
    problems.append("BertForMaskedLM always adds segment embeddings"
                    " (type_vocab_size=0)")
  found = [f for f in FAMILIES.values()
           if head in f.heads and f.has_layout(m, head)]
  if not found:
    problems.append("its head is neither BERT's (pooler, one linear layer)"
                    " nor DistilBERT's (no segment embeddings or pooler,"
                    " a hidden head of embed_dim with ReLU) nor RoBERTa's"
                    " (one token type, no pooler, a hidden head of"
                    " embed_dim with tanh)")
  if problems:
    raise CheckpointError("this model has no Hugging Face equivalent: "
                          + "; ".join(problems))
  return found[0]

