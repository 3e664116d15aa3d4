"""sentence-transformers directories: what they add to a Hugging Face checkpoint.

A sentence-transformers model (Reimers & Gurevych 2019, Sentence-BERT) is a
transformers checkpoint plus a pipeline of modules listed in `modules.json`:

    [{"idx": 0, "name": "0", "path": "",           "type": "sentence_transformers.models.Transformer"},
     {"idx": 1, "name": "1", "path": "1_Pooling",  "type": "sentence_transformers.models.Pooling"},
     {"idx": 2, "name": "2", "path": "2_Dense",    "type": "sentence_transformers.models.Dense"},
     {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}]

The Transformer module's folder (`path`, "" = the directory itself) holds
config.json, the weights and the tokenizer, and `sentence_bert_config.json`
({"max_seq_length": 256, "do_lower_case": false}: the tokenizer's truncation
length; sentence-transformers 6 keeps it as tokenizer_config.json's
`model_max_length` instead); `1_Pooling/config.json` says how tokens become
one vector (`pooling_mode_mean_tokens`, `_cls_token` or `_max_tokens`,
or since sentence-transformers 6 `"pooling_mode": "mean"`, "cls" or "max":
lightjax's `pool` "mean", "first" and "max"); an optional Dense module maps
the pooled vector linearly (its folder: config.json {"in_features",
"out_features", "bias", "activation_function"} and model.safetensors with
torch's `linear.weight` [out, in] and `linear.bias`; lightjax's
`projection_dim`, identity activation only); a `Normalize` module
L2-normalises the result. Normalize has no files (sentence-transformers
writes none for it), so `modules.json` is what says whether a model
normalises, never the presence of a `2_Normalize` folder.

This module is that description, both ways: `read` (modules.json, the
pooling and Dense configs -> `SentenceModules`, refusing pipelines lightjax
cannot run with one line naming what it can), `read_dense` (the Dense
weights, as lightjax's kernel [in, out]) and `write` (the same files for a
`sentence_encoder` saved back by `lightjax.hf.save_pretrained`, which
`SentenceTransformer(dir)` loads). `tokenize` turns sentences into the
token ids such a directory's model reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np

from lightjax import files
from lightjax.data import tokenize as tokenize_lib
from lightjax.hf import checkpoint_files
from lightjax.hf.checkpoint_files import (FLOAT_DTYPES, PICKLE_FILES,
                                          SAFETENSORS_FILE)
from lightjax.models.weights import CheckpointError

MODULES_FILE = "modules.json"
SENTENCE_BERT_CONFIG = "sentence_bert_config.json"
VERSIONS_FILE = "config_sentence_transformers.json"

# lightjax's `pool` -> the pooling config's flag for it, and its name in
# sentence-transformers 6's "pooling_mode".
POOLING_MODES = {"mean": "pooling_mode_mean_tokens",
                 "first": "pooling_mode_cls_token",
                 "max": "pooling_mode_max_tokens"}
MODE_NAMES = {"mean": "mean", "first": "cls", "max": "max"}
# Flags of pooling modes lightjax has no equivalent of (refused when set).
OTHER_MODES = ("pooling_mode_mean_sqrt_len_tokens",
               "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
# tokenizer_config.json's model_max_length at or above this means "unset"
# (transformers writes int(1e30) then).
_UNSET_LENGTH = 1 << 20
# The modules lightjax runs, in the only order it runs them (the last two
# optional).
MODULE_TYPES = ("Transformer", "Pooling", "Dense", "Normalize")
PIPELINES = tuple(list(MODULE_TYPES[:2]) + rest for rest in
                  ([], ["Dense"], ["Normalize"], ["Dense", "Normalize"]))
SUPPORTED = (f"lightjax runs {' -> '.join(MODULE_TYPES)} (Dense and"
             " Normalize optional)")
_PACKAGE = "sentence_transformers.models."
# The Dense activations lightjax runs: the identity (`fullname(nn.Identity())`
# as sentence-transformers writes it, and the alias it also imports).
IDENTITY = ("torch.nn.modules.linear.Identity", "torch.nn.Identity")
DENSE_INPUT = "sentence_embedding"  # the pooled vector's key (Dense's default)
# lightjax's projection parameter -> the Dense module's tensor it is read from.
DENSE_TENSORS = {"kernel": "linear.weight", "bias": "linear.bias"}


@dataclasses.dataclass(frozen=True)
class SentenceModules:
  """What a sentence-transformers directory says beyond its checkpoint."""
  transformer_dir: str       # the Transformer module's folder (weights, tokenizer)
  pool: str                  # lightjax's pool: "mean", "first" or "max"
  normalize: bool            # a Normalize module follows the pooling
  max_seq_length: int | None  # the tokenizer's truncation length, if stated
  do_lower_case: bool = False  # sentence_bert_config.json's (lower-cases input)
  projection_dim: int = 0    # a Dense module's out_features (0 = no Dense)
  dense_dir: str = ""        # the Dense module's folder (read), if any


def is_sentence_transformers(directory: str) -> bool:
  """A directory with modules.json (a sentence-transformers model)."""
  return os.path.isfile(os.path.join(directory, MODULES_FILE))


def _module_kind(entry: Any, where: str) -> str:
  """"Transformer" / "Pooling" / "Dense" / "Normalize" for a modules.json
  entry."""
  if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
    raise CheckpointError(f"{where}: every module must be an object with a"
                          f" \"type\", got {str(entry)[:60]}")
  kind = entry["type"].rsplit(".", 1)[-1]
  if kind not in MODULE_TYPES:
    raise CheckpointError(
        f"{where}: module {entry['type']!r} is not supported; {SUPPORTED}")
  return kind


def _modules(directory: str) -> dict[str, str]:
  """{kind: its folder} from modules.json, checked to be Transformer,
  Pooling, optionally Dense and optionally Normalize, in that order."""
  where = os.path.join(directory, MODULES_FILE)
  entries = checkpoint_files.read_json(where)
  if not isinstance(entries, list):
    raise CheckpointError(f"{where} must hold a JSON list of modules, got"
                          f" {type(entries).__name__}")
  kinds = [_module_kind(e, where) for e in entries]
  if kinds not in PIPELINES:
    raise CheckpointError(
        f"{where}: modules {' -> '.join(kinds) or 'none'} are not supported;"
        f" {SUPPORTED}")
  out = {}
  for kind, entry in zip(kinds, entries):
    path = entry.get("path", "")
    if (not isinstance(path, str) or os.path.isabs(path)
        or ".." in path.replace("\\", "/").split("/")):
      raise CheckpointError(f"{where}: the {kind} module's path {path!r} must"
                            " be a folder inside the directory")
    out[kind] = os.path.join(directory, path) if path else directory
  return out


def _pool(pooling_dir: str) -> str:
  """lightjax's `pool` from the Pooling module's config.json."""
  where = os.path.join(pooling_dir, "config.json")
  if not os.path.isfile(where):
    raise CheckpointError(f"no {where} (the Pooling module's config)")
  cfg = checkpoint_files.read_json_object(where)
  if "pooling_mode" in cfg:  # sentence-transformers 6: a name or a list
    modes = cfg["pooling_mode"]
    chosen = [modes] if isinstance(modes, str) else list(modes)
    known = {name: pool for pool, name in MODE_NAMES.items()}
    supported = ", ".join(f"pooling_mode {name!r}" for name in known)
  else:
    chosen = [flag for flag in (*POOLING_MODES.values(), *OTHER_MODES)
              if cfg.get(flag)]
    known = {flag: pool for pool, flag in POOLING_MODES.items()}
    supported = ", ".join(POOLING_MODES.values())
  if len(chosen) != 1 or chosen[0] not in known:
    raise CheckpointError(
        f"{where} sets {', '.join(map(str, chosen)) or 'no pooling mode'};"
        f" lightjax pools with exactly one of: {supported}")
  return known[chosen[0]]


def _positive(where: str, key: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise CheckpointError(f"{where}: {key} must be an integer > 0, got"
                          f" {str(value)[:60]}")
  return value


def dense_config(dense_dir: str) -> dict[str, Any]:
  """{"in_features", "out_features", "bias"} of the Dense module in
  `dense_dir`, checked to be what lightjax's `projection` computes: an
  affine map of the pooled vector with the identity activation (one line
  naming it otherwise; sentence-transformers' default when the config
  names none is Tanh), no residual, reading and writing the pooled
  embedding."""
  where = os.path.join(dense_dir, "config.json")
  if not os.path.isfile(where):
    raise CheckpointError(f"no {where} (the Dense module's config)")
  cfg = checkpoint_files.read_json_object(where)
  activation = cfg.get("activation_function")
  if activation not in IDENTITY:
    shown = (repr(activation)[:80] if activation is not None
             else "unset (sentence-transformers then applies torch.nn.Tanh)")
    raise CheckpointError(
        f"{where}: activation_function {shown} is not supported; lightjax's"
        f" projection is linear: activation_function {IDENTITY[0]!r}")
  if cfg.get("use_residual"):
    raise CheckpointError(f"{where}: use_residual is not supported (lightjax's"
                          " projection is the linear layer alone)")
  for key in ("module_input_name", "module_output_name"):
    if cfg.get(key) not in (None, DENSE_INPUT):
      raise CheckpointError(f"{where}: {key} {str(cfg[key])[:60]!r} is not"
                            f" supported; lightjax projects {DENSE_INPUT!r}")
  return {"in_features": _positive(where, "in_features",
                                   cfg.get("in_features")),
          "out_features": _positive(where, "out_features",
                                    cfg.get("out_features")),
          "bias": bool(cfg.get("bias", True))}


def _dense_file(dense_dir: str) -> str:
  """The Dense module's model.safetensors; a pickle is never loaded."""
  path = os.path.join(dense_dir, SAFETENSORS_FILE)
  if os.path.isfile(path):
    return path
  if os.path.isfile(os.path.join(dense_dir, PICKLE_FILES[0])):
    raise CheckpointError(
        f"{dense_dir} has only {PICKLE_FILES[0]} (a pickle, which lightjax"
        " never loads); convert it once where sentence-transformers is"
        " installed: SentenceTransformer(DIR).save(DIR) writes"
        f" {SAFETENSORS_FILE}")
  raise CheckpointError(f"no {SAFETENSORS_FILE} in {dense_dir} (the Dense"
                        " module's weights)")


def dense_shapes(dense_dir: str) -> dict[str, tuple[int, ...]]:
  """{"kernel": (in, out), "bias": (out,)}: lightjax's projection as the
  Dense module in `dense_dir` holds it, from its config and safetensors
  header (no tensor read). One line for a missing or unexpected tensor, a
  non-float dtype, or a shape other than its config.json's."""
  cfg = dense_config(dense_dir)
  n_in, n_out = cfg["in_features"], cfg["out_features"]
  path = _dense_file(dense_dir)
  header = checkpoint_files.read_header(path)
  weight, bias = DENSE_TENSORS["kernel"], DENSE_TENSORS["bias"]
  want = {weight: (n_out, n_in)}
  if cfg["bias"]:
    want[bias] = (n_out,)
  if set(header) != set(want):
    raise CheckpointError(f"{path} holds {sorted(header)}; a Dense module with"
                          f" bias={cfg['bias']} holds {sorted(want)}")
  for name, shape in want.items():
    info = header[name]
    if info.dtype not in FLOAT_DTYPES:
      raise CheckpointError(f"{path}: {name} has dtype {info.dtype}; lightjax"
                            f" reads {', '.join(FLOAT_DTYPES)}")
    if info.shape != shape:
      raise CheckpointError(
          f"{path}: {name} is {info.shape}; config.json's in_features"
          f" {n_in} and out_features {n_out} make it {shape}")
  return {"kernel": (n_in, n_out), "bias": (n_out,)}


def read_dense(dense_dir: str) -> dict[str, np.ndarray]:
  """{"kernel": [in, out] (torch's linear.weight [out, in] transposed, as
  every imported kernel), "bias": [out] (zeros for bias=False, which
  computes the same)}, float32, checked (`dense_shapes`) and finite."""
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  shapes = dense_shapes(dense_dir)
  path = _dense_file(dense_dir)
  try:
    tensors = load_file(path)
  except Exception as e:  # safetensors' own errors: one line, the file named
    raise CheckpointError(f"cannot read {path}:"
                          f" {checkpoint_files.one_line(e)}") from e
  out = {"kernel": np.asarray(tensors[DENSE_TENSORS["kernel"]], np.float32).T,
         "bias": np.asarray(tensors.get(DENSE_TENSORS["bias"],
                                        np.zeros(shapes["bias"])), np.float32)}
  for name, value in out.items():
    if not np.isfinite(value).all():
      raise CheckpointError(f"{path}: the Dense {name} holds non-finite"
                            " values (NaN or inf)")
  return out


def _max_seq_length(transformer_dir: str, st_config: dict) -> int | None:
  """sentence_bert_config.json's max_seq_length, else tokenizer_config.json's
  model_max_length (where sentence-transformers 6 keeps it), else None."""
  length = st_config.get("max_seq_length")
  where = os.path.join(transformer_dir, SENTENCE_BERT_CONFIG)
  if length is None:
    where = os.path.join(transformer_dir, "tokenizer_config.json")
    tokenizer_config = (checkpoint_files.read_json_object(where)
                        if os.path.isfile(where) else {})
    length = tokenizer_config.get("model_max_length")
    if isinstance(length, (int, float)) and length >= _UNSET_LENGTH:
      length = None
  if length is not None and (not isinstance(length, int)
                             or isinstance(length, bool) or length <= 0):
    raise CheckpointError(f"{where}: the maximum sequence length must be an"
                          f" integer > 0, got {str(length)[:60]}")
  return length


def read(directory: str) -> SentenceModules:
  """The sentence-transformers description of `directory` (module
  docstring); one-line CheckpointError for anything lightjax cannot run."""
  modules = _modules(directory)
  transformer = modules["Transformer"]
  config_path = os.path.join(transformer, SENTENCE_BERT_CONFIG)
  st_config = (checkpoint_files.read_json_object(config_path)
               if os.path.isfile(config_path) else {})
  dense = modules.get("Dense", "")
  return SentenceModules(
      transformer_dir=transformer, pool=_pool(modules["Pooling"]),
      normalize="Normalize" in modules,
      max_seq_length=_max_seq_length(transformer, st_config),
      do_lower_case=bool(st_config.get("do_lower_case", False)),
      projection_dim=dense_config(dense)["out_features"] if dense else 0,
      dense_dir=dense)


def _write_json(path: str, value: Any) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  files.atomic_write(path, lambda f: json.dump(value, f, indent=2))


def _write_dense(folder: str, dense: dict[str, np.ndarray]) -> None:
  """A Dense module in `folder`: config.json (identity activation) and
  model.safetensors (torch's linear.weight [out, in], linear.bias)."""
  from safetensors.numpy import save as to_bytes  # pylint: disable=import-outside-toplevel
  kernel_ExD = np.asarray(dense["kernel"], np.float32)
  _write_json(os.path.join(folder, "config.json"), {
      "in_features": int(kernel_ExD.shape[0]),
      "out_features": int(kernel_ExD.shape[1]), "bias": True,
      "activation_function": IDENTITY[0]})
  tensors = {DENSE_TENSORS["kernel"]: np.ascontiguousarray(kernel_ExD.T),
             DENSE_TENSORS["bias"]: np.asarray(dense["bias"], np.float32)}
  files.atomic_write(os.path.join(folder, SAFETENSORS_FILE),
                     lambda f: f.write(to_bytes(tensors,
                                                metadata={"format": "pt"})),
                     binary=True)


def write(directory: str, modules: SentenceModules, *, embed_dim: int,
          base: str | None = None,
          dense: dict[str, np.ndarray] | None = None) -> None:
  """Writes modules.json, 1_Pooling/config.json, 2_Dense/ (`dense`: the
  projection's {"kernel": [in, out], "bias": [out]}, with
  `modules.projection_dim`), the Normalize folder (if `normalize`),
  sentence_bert_config.json and config_sentence_transformers.json into
  `directory`, whose checkpoint is the Transformer module (path ""); module
  folders are named `<idx>_<type>`, as sentence-transformers names them.
  `base`: a sentence-transformers directory whose
  config_sentence_transformers.json is kept (its prompts and similarity
  function)."""
  if modules.pool not in POOLING_MODES:
    raise CheckpointError(
        f"pool {modules.pool!r} has no sentence-transformers pooling mode;"
        f" saved: {', '.join(POOLING_MODES)}")
  width = dense["kernel"].shape[1] if dense is not None else 0
  if width != modules.projection_dim:
    raise CheckpointError(f"projection_dim {modules.projection_dim} but the"
                          f" Dense weights given project to {width}")
  kinds = [kind for kind in MODULE_TYPES
           if (kind != "Dense" or width) and (kind != "Normalize"
                                              or modules.normalize)]
  paths = {kind: f"{i}_{kind}" if i else "" for i, kind in enumerate(kinds)}
  _write_json(os.path.join(directory, MODULES_FILE), [
      {"idx": i, "name": str(i), "path": paths[kind], "type": _PACKAGE + kind}
      for i, kind in enumerate(kinds)])
  _write_json(os.path.join(directory, paths["Pooling"], "config.json"), {
      "word_embedding_dimension": int(embed_dim),
      **{flag: pool == modules.pool for pool, flag in POOLING_MODES.items()},
      **{flag: False for flag in OTHER_MODES}, "include_prompt": True})
  if width:
    _write_dense(os.path.join(directory, paths["Dense"]), dense)
  if modules.normalize:
    os.makedirs(os.path.join(directory, paths["Normalize"]), exist_ok=True)
  st_config = {"do_lower_case": modules.do_lower_case}
  if modules.max_seq_length is not None:
    st_config["max_seq_length"] = int(modules.max_seq_length)
  _write_json(os.path.join(directory, SENTENCE_BERT_CONFIG), st_config)
  versions = os.path.join(base, VERSIONS_FILE) if base else ""
  kept = (checkpoint_files.read_json_object(versions)
          if versions and os.path.isfile(versions) else {})
  _write_json(os.path.join(directory, VERSIONS_FILE), {
      "similarity_fn_name": "cosine", **kept,
      "__version__": {"lightjax": "save_pretrained"}})


def tokenize(directory: str, sentences: Sequence[str], *,
             max_seq_length: int | None = None) -> tuple[np.ndarray, int]:
  """(token ids int32 [N, L], pad id): `sentences` as the model of
  `directory` (a sentence-transformers or Hugging Face directory) reads
  them, one [CLS] ... [SEP] row each, truncated to `max_seq_length`
  (default: the directory's, `read`; else 512) and right-padded to
  the longest row (what sentence-transformers feeds; padding is masked, so
  a longer pad changes nothing but the cost). Segment ids are all 0, the
  model's default. sentence_bert_config.json's `do_lower_case` lower-cases
  the text first, as sentence-transformers does."""
  modules = read(directory) if is_sentence_transformers(directory) else None
  folder = modules.transformer_dir if modules else directory
  length = max_seq_length or (modules and modules.max_seq_length) or 512
  tokenizer_config = os.path.join(folder, "tokenizer_config.json")
  lowercase = (checkpoint_files.read_json_object(tokenizer_config).get(
      "do_lower_case", True) if os.path.isfile(tokenizer_config) else True)
  tokenizer = tokenize_lib.load_tokenizer(folder, lowercase=lowercase)
  texts = list(sentences)
  if modules and modules.do_lower_case:
    texts = [text.lower() for text in texts]
  ids_NxL, _ = tokenizer.encode(texts, None, length)
  longest = int((ids_NxL != tokenizer.pad_id).sum(1).max(initial=1))
  return ids_NxL[:, :longest], tokenizer.pad_id
