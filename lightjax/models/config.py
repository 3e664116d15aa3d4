"""The model's own typed config: what the layers receive.

The run config (`config_lib`, an `ml_collections.ConfigDict`) is the user's
surface: `--config.model.<field>=...` overrides, config.json, model.json.
It is converted once, at the edge, into this frozen `ModelConfig`
(`ModelConfig.from_dict`), which validates itself and is the only thing a
layer reads: no layer sees the run's ConfigDict, and `models/` imports
nothing of the run config (gemma's `TransformerConfig`, nanodo's
`DoConfig(**c.model)`).

`from_dict` is also the one place older saved configs (model.json,
config.json of committed runs) get defaults for fields they predate, so
every saved run keeps loading.

Per-layer sizes are one description, `layers`: a `LayerSpec` (heads, MLP
width, low-rank ranks) per layer, always `num_layers` long. A pruned or
factorised model is then a plain model config. In the run config (and
model.json) `layers` is () for uniform layers, else one {"num_heads",
"mlp_dim", "ranks"} per layer; files written before it existed hold the
parallel lists `heads_per_layer`, `mlp_dims_per_layer` and
`low_rank_ranks`, which `from_dict` reads.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, Callable, Literal, Mapping, get_args

import jax
import jax.numpy as jnp

from lightjax import attention
from lightjax.registry import Registry

NormPosition = Literal["pre", "post"]
Pool = Literal["cls", "mean", "first", "max"]
PosEmbedding = Literal["learned", "sinusoidal"]
# Compute dtypes; parameters always stay float32.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# `ModelConfig.activation` choices (the MLP's and the hidden head's).
ACTIVATIONS: Registry[Callable] = Registry("activation")
# tanh approximation of GELU (jax.nn.gelu's default); Hendrycks & Gimpel 2016 sec. 2.
ACTIVATIONS.register("gelu_tanh", functools.partial(jax.nn.gelu, approximate=True))
# exact x * Phi(x) with the erf, what BERT (Devlin et al. 2019) was trained with.
ACTIVATIONS.register("gelu", functools.partial(jax.nn.gelu, approximate=False))
# DistilBERT's classifier (pre_classifier + ReLU); Sanh et al. 2019.
ACTIVATIONS.register("relu", jax.nn.relu)
# RoBERTa's classification head (dense + tanh); Liu et al. 2019.
ACTIVATIONS.register("tanh", jnp.tanh)

# The block projections a layer may factorise (`LayerSpec.ranks`).
LOW_RANK_MATRICES = ("query", "key", "value", "out", "fc1", "fc2")
# Theseus-only fields (lightjax/models/theseus.py); written only for it.
THESEUS_FIELDS = ("theseus_predecessor_layers", "theseus_replace_rate",
                  "theseus_rate_slope")
_PER_LAYER_LISTS = ("heads_per_layer", "mlp_dims_per_layer", "low_rank_ranks")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One block's sizes: heads (0 = attention pruned away), MLP width
  (0 = MLP pruned away) and low-rank ranks ((matrix, rank) pairs for the
  factorised projections; a matrix not listed is full rank)."""
  num_heads: int
  mlp_dim: int
  ranks: tuple[tuple[str, int], ...] = ()

  def rank(self, matrix: str) -> int:
    """This layer's rank of `matrix` (0 = full)."""
    return dict(self.ranks).get(matrix, 0)


def _default_attention() -> dict[str, Any]:
  return {"name": "softmax", **attention.default_options()}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Every model field, its default, and its check.

  The fields match `config.model` of the run config one to one (plus the
  resolved `layers`); each is documented where `config_lib.base_config`
  sets it.
  """
  name: str = "encoder_classifier"  # a name in `models.MODELS`
  embed_dim: int = 128
  num_heads: int = 4
  head_dim: int = 32  # not forced to embed_dim / num_heads
  mlp_dim: int = 256
  num_layers: int = 2
  dropout_rate: float = 0.1
  pos_embedding: PosEmbedding = "learned"
  # "cls": a learned vector prepended; "mean" / "max" over the real
  # (non-pad) tokens; "first": input token 0 (BERT's [CLS]).
  pool: Pool = "cls"
  # "post": BERT's post-LN blocks + embedding LN (Xiong et al. 2020, fig. 1).
  norm_position: NormPosition = "pre"
  activation: str = "gelu_tanh"  # MLP's; "gelu": exact erf GELU (BERT)
  layer_norm_eps: float = 1e-6  # every LayerNorm's (flax's default; BERT 1e-12)
  type_vocab_size: int = 0  # segment embeddings; 0 = none (BERT: 2)
  pooler: bool = False  # BERT's pooler: tanh(dense(pooled)) before the head
  # sentence_encoder: L2-normalise the pooled embedding (sentence-transformers'
  # Normalize module; cosine similarity is then a dot product).
  normalize: bool = False
  # sentence_encoder: a linear map of the pooled vector to this many dims,
  # before normalisation (sentence-transformers' Dense module, identity
  # activation); 0 = none. Width pruning adds one (lightjax.shrink.width) so
  # a narrower student still embeds in its teacher's space.
  projection_dim: int = 0
  classifier_hidden_dim: int = 128  # 0 = a single linear head
  classifier_activation: str = ""  # the hidden head's; "" = `activation`
  # LayerDrop: skip each block w.p. p in training (Fan et al. 2020).
  layerdrop: float = 0.0
  embed_factor_dim: int = 0  # ALBERT factorised token embedding F; 0 = none
  share_layers: bool = False  # ALBERT all-shared: one block, num_layers uses
  dtype: str = "float32"  # compute dtype (`DTYPES`); params stay float32
  # {"name": variant, <variant>: {its options}} for every registered variant.
  attention: Mapping[str, Any] = dataclasses.field(
      default_factory=_default_attention)
  # BERT-of-Theseus (models/theseus.py): predecessor depth, replacement
  # probability and its slope per step.
  theseus_predecessor_layers: int = 0
  theseus_replace_rate: float = 0.5
  theseus_rate_slope: float = 0.0
  # One LayerSpec per layer: heads and MLP width (0 = that sublayer pruned
  # away), ranks {"query".."fc2": r}: W = down @ up (absent or 0 = full).
  # () = every layer (num_heads, mlp_dim), full rank.
  layers: tuple[LayerSpec, ...] = ()

  def __post_init__(self):
    if not self.layers:
      uniform = LayerSpec(self.num_heads, self.mlp_dim)
      object.__setattr__(self, "layers", (uniform,) * self.num_layers)
    self.validate()

  # --- reading and writing -------------------------------------------------

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
    """From a run config's `model` section (a ConfigDict or a dict read
    from model.json / config.json); fields it predates get their defaults,
    and files written before `layers` existed give per-layer sizes as the
    lists `heads_per_layer`, `mlp_dims_per_layer`, `low_rank_ranks`.
    Unknown fields are an error naming the valid ones."""
    d = dict(d.to_dict() if hasattr(d, "to_dict") else d)
    lists = {k: d.pop(k, ()) or () for k in _PER_LAYER_LISTS}
    given = d.pop("layers", ()) or ()
    if given and any(lists.values()):
      raise ValueError("config.model: give per-layer sizes as layers, not"
                       " also as heads_per_layer / mlp_dims_per_layer /"
                       " low_rank_ranks (older files' form)")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise ValueError(f"config.model has unknown field(s) {unknown};"
                       f" valid: {', '.join(sorted(names))}")
    if "attention" in d:
      d["attention"] = _plain(d["attention"])
    base = cls(**d)
    if given:
      return dataclasses.replace(base, layers=_layer_specs(base, given))
    return dataclasses.replace(base, layers=_layers_from_lists(base, **lists))

  def to_dict(self) -> dict[str, Any]:
    """The run config's `model` section (plain tuples and dicts,
    JSON-ready): `layers` is () where every layer has the uniform sizes,
    else one {"num_heads", "mlp_dim", "ranks"} per layer."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    out["attention"] = _plain(self.attention)
    if self.name != "theseus_classifier":
      for k in THESEUS_FIELDS:
        out.pop(k)
    out["layers"] = () if self.uniform else tuple(
        {"num_heads": s.num_heads, "mlp_dim": s.mlp_dim,
         "ranks": dict(s.ranks)} for s in self.layers)
    return out

  def replace(self, **changes) -> "ModelConfig":
    """A copy with `changes` (run-config field names; `layers` as dicts or
    LayerSpecs), checked again."""
    return ModelConfig.from_dict({**self.to_dict(), **changes})

  # --- presets ---------------------------------------------------------------

  @classmethod
  def bert(cls, *, embed_dim: int, num_heads: int, mlp_dim: int,
           num_layers: int, dropout_rate: float = 0.1,
           activation: str = "gelu", layer_norm_eps: float = 1e-12,
           type_vocab_size: int = 2, **overrides) -> "ModelConfig":
    """BERT's block layout (Devlin et al. 2019) at these sizes: post-LN
    blocks with an embedding LayerNorm, learned positions, segment
    embeddings, the [CLS] token read through the tanh pooler into one
    linear layer. The one place this layout is written: GLUE configs and
    the Hugging Face import both use it."""
    return cls(**{**bert_layout(activation=activation,
                                layer_norm_eps=layer_norm_eps,
                                type_vocab_size=type_vocab_size),
                  "embed_dim": embed_dim, "num_heads": num_heads,
                  "head_dim": embed_dim // max(num_heads, 1),
                  "mlp_dim": mlp_dim, "num_layers": num_layers,
                  "dropout_rate": dropout_rate, **overrides})

  # --- checks ------------------------------------------------------------------

  def validate(self) -> None:
    """One-line ValueError naming the field and the valid choices."""
    _choice("norm position", self.norm_position, get_args(NormPosition))
    _choice("pool", self.pool, get_args(Pool))
    _choice("position embedding", self.pos_embedding, get_args(PosEmbedding))
    _choice("dtype", self.dtype, tuple(DTYPES))
    _choice("activation", self.activation, tuple(ACTIVATIONS.names()))
    if self.classifier_activation:
      _choice("activation", self.classifier_activation,
              tuple(ACTIVATIONS.names()))
    attention.check_options(self.attention["name"],
                            self.attention.get(self.attention["name"], {}))
    for key in ("embed_dim", "num_heads", "head_dim", "mlp_dim", "num_layers"):
      value = getattr(self, key)
      if _not_int(value) or value <= 0:
        raise ValueError(f"config.model.{key} must be positive, got {value!r}")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError("config.model.dropout_rate must be in [0, 1), got"
                       f" {self.dropout_rate}")
    if not self.layer_norm_eps > 0:
      raise ValueError("config.model.layer_norm_eps must be positive, got"
                       f" {self.layer_norm_eps}")
    if _not_int(self.type_vocab_size) or self.type_vocab_size < 0:
      raise ValueError("config.model.type_vocab_size must be >= 0 (0 = no"
                       f" segment embeddings), got {self.type_vocab_size}")
    if not 0.0 <= self.layerdrop <= 1.0:  # a run needs < 1 (config_lib)
      raise ValueError(f"config.model.layerdrop must be in [0, 1) for"
                       f" training, [0, 1] for a model, got {self.layerdrop}")
    if _not_int(self.embed_factor_dim) or self.embed_factor_dim < 0:
      raise ValueError("config.model.embed_factor_dim must be an integer >= 0"
                       f" (0 = no factorised embedding), got"
                       f" {self.embed_factor_dim!r}")
    if _not_int(self.projection_dim) or self.projection_dim < 0:
      raise ValueError("config.model.projection_dim must be an integer >= 0"
                       f" (0 = no projection), got {self.projection_dim!r}")
    if self.projection_dim and self.name != "sentence_encoder":
      raise ValueError(f"config.model.projection_dim projects a sentence"
                       f" embedding; model {self.name!r} has none (use"
                       " sentence_encoder, or projection_dim=0)")
    if len(self.layers) != self.num_layers:
      raise ValueError(f"config.model has {len(self.layers)} layer sizes,"
                       f" num_layers is {self.num_layers}")
    if self.share_layers and len(set(self.layers)) > 1:
      raise ValueError(
          "config.model.share_layers uses one block in every layer, so its"
          " per-layer sizes (heads_per_layer, mlp_dims_per_layer,"
          " low_rank_ranks) must be the same in every layer, got"
          f" {[(s.num_heads, s.mlp_dim, dict(s.ranks)) for s in self.layers]}")

  # --- derived -------------------------------------------------------------------

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]

  @property
  def head_activation(self) -> str:
    """The hidden head's nonlinearity: `classifier_activation`, else the
    MLP's."""
    return self.classifier_activation or self.activation

  @property
  def uniform(self) -> bool:
    """Every layer at (num_heads, mlp_dim), full rank."""
    return set(self.layers) == {LayerSpec(self.num_heads, self.mlp_dim)}

  def matrix_shapes(self, num_heads: int, mlp_dim: int
                    ) -> dict[str, tuple[int, int]]:
    """[in, out] of each block projection of a layer with these sizes."""
    e, inner = self.embed_dim, num_heads * self.head_dim
    return {"query": (e, inner), "key": (e, inner), "value": (e, inner),
            "out": (inner, e), "fc1": (e, mlp_dim), "fc2": (mlp_dim, e)}


def as_model_config(cfg) -> ModelConfig:
  """`cfg` itself if typed, else `ModelConfig.from_dict(cfg)`: the edge
  where a run config's `model` section (or a model.json dict) becomes the
  typed config."""
  return cfg if isinstance(cfg, ModelConfig) else ModelConfig.from_dict(cfg)


def bert_layout(*, activation: str = "gelu", layer_norm_eps: float = 1e-12,
                type_vocab_size: int = 2) -> dict[str, Any]:
  """BERT's layout fields (sizes apart), for `ModelConfig.bert` and for a
  run config's `model` section (`config_lib.bert_layout`)."""
  return {"pos_embedding": "learned", "norm_position": "post",
          "activation": activation, "layer_norm_eps": layer_norm_eps,
          "type_vocab_size": type_vocab_size, "pool": "first",
          "pooler": True, "classifier_hidden_dim": 0}


def _not_int(value) -> bool:
  return isinstance(value, bool) or not isinstance(value, numbers.Integral)


def _choice(what: str, value, valid: tuple[str, ...]) -> None:
  """One line naming the bad value and the valid ones (a registry's words)."""
  if value not in valid:
    raise ValueError(f"unknown {what} {value!r}; valid:"
                     f" {', '.join(sorted(valid))}")


def _plain(tree):
  """Nested mappings as plain dicts, sequences as tuples."""
  if hasattr(tree, "to_dict"):
    tree = tree.to_dict()
  if isinstance(tree, Mapping):
    return {k: _plain(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return tuple(_plain(v) for v in tree)
  return tree


def _per_layer(base: ModelConfig, name: str, values, default: int
               ) -> tuple[int, ...]:
  values = tuple(values)
  if not values:
    return (default,) * base.num_layers
  if len(values) != base.num_layers:
    raise ValueError(f"config.model.{name} has {len(values)} entries,"
                     f" num_layers is {base.num_layers}")
  if any(_not_int(v) or v < 0 for v in values):
    raise ValueError(f"config.model.{name} entries must be integers >= 0,"
                     f" got {values}")
  return tuple(int(v) for v in values)


def _ranks(base: ModelConfig, i: int, entry, heads: int, mlp_dim: int
           ) -> tuple[tuple[str, int], ...]:
  """Layer i's `low_rank_ranks` entry, checked: known matrices, integer
  ranks in 0..min(in, out); full-rank (0) entries dropped."""
  field = "config.model.low_rank_ranks"
  if not hasattr(entry, "items"):
    raise ValueError(f"{field}[{i}] must be a {{matrix: rank}} dict, got"
                     f" {entry!r}")
  unknown = sorted(set(entry.keys()) - set(LOW_RANK_MATRICES))
  if unknown:
    raise ValueError(f"{field}[{i}] has unknown matrix name(s) {unknown};"
                     f" valid: {', '.join(LOW_RANK_MATRICES)}")
  shapes = base.matrix_shapes(heads, mlp_dim)
  out = []
  for name in LOW_RANK_MATRICES:
    if name not in entry:
      continue
    rank = entry[name]
    if _not_int(rank) or rank < 0:
      raise ValueError(f"{field}[{i}][{name!r}] must be an integer >= 0"
                       f" (0 = full rank), got {rank!r}")
    din, dout = shapes[name]
    if rank > min(din, dout):
      raise ValueError(f"{field}[{i}][{name!r}] = {rank} exceeds min(in, out)"
                       f" = {min(din, dout)} of that [{din}, {dout}] matrix")
    if rank:
      out.append((name, int(rank)))
  return tuple(out)


def _layers_from_lists(base: ModelConfig, heads_per_layer=(),
                       mlp_dims_per_layer=(), low_rank_ranks=()
                       ) -> tuple[LayerSpec, ...]:
  """The run config's three per-layer lists as one LayerSpec per layer."""
  heads = _per_layer(base, "heads_per_layer", heads_per_layer, base.num_heads)
  widths = _per_layer(base, "mlp_dims_per_layer", mlp_dims_per_layer,
                      base.mlp_dim)
  entries = tuple(low_rank_ranks)
  if entries and len(entries) != base.num_layers:
    raise ValueError(f"config.model.low_rank_ranks has {len(entries)} entries"
                     f" (one {{matrix: rank}} per layer), num_layers is"
                     f" {base.num_layers}")
  entries = entries or ({},) * base.num_layers
  return tuple(LayerSpec(h, w, _ranks(base, i, e, h, w))
               for i, (h, w, e) in enumerate(zip(heads, widths, entries)))


def _layer_specs(base: ModelConfig, layers) -> tuple[LayerSpec, ...]:
  """`layers` given as {"num_heads", "mlp_dim", "ranks"} dicts (or
  LayerSpecs), each checked as the lists are."""
  if len(layers) != base.num_layers:
    raise ValueError(f"config.model.layers has {len(layers)} entries,"
                     f" num_layers is {base.num_layers}")
  out = []
  for i, s in enumerate(layers):
    if isinstance(s, LayerSpec):
      s = {"num_heads": s.num_heads, "mlp_dim": s.mlp_dim,
           "ranks": dict(s.ranks)}
    if not hasattr(s, "items") or set(s) - {"num_heads", "mlp_dim", "ranks"}:
      raise ValueError(f"config.model.layers[{i}] must be a dict with"
                       f" num_heads, mlp_dim and ranks, got {s!r}")
    h, w = s.get("num_heads", base.num_heads), s.get("mlp_dim", base.mlp_dim)
    for key, v in (("num_heads", h), ("mlp_dim", w)):
      if _not_int(v) or v < 0:
        raise ValueError(f"config.model.layers[{i}].{key} must be an"
                         f" integer >= 0, got {v!r}")
    out.append(LayerSpec(int(h), int(w),
                         _ranks(base, i, s.get("ranks") or {}, h, w)))
  return tuple(out)
