"""Starting a run from trained weights: `config.init_from`.

    --config.init_from=hf:bert-base-uncased      a Hugging Face hub id
    --config.init_from=hf:/ckpt/bert_uncased_L-4_H-256_A-4   or its directory
    --config.init_from=/runs/sst2                a lightjax workdir

The sizes and layout of the model come from the checkpoint: every
`config.model` field except the run's own choices (`RUN_FIELDS`: the
attention variant, dropout, compute dtype, LayerDrop) is replaced by the
checkpoint's, so `configs/glue.py:sst2` (BERT-base sizes) starts from a
4-layer compact BERT without restating its sizes. A size given on the command
line that contradicts the checkpoint is an error (`resolve_config`): a
smaller model is made by `lightjax.shrink`, not by a flag that silently
mismatches the weights.

Keeping the run's `attention` is what converts a checkpoint to another
variant: `--config.model.attention.name=linear` keeps BERT's projections,
embeddings and MLPs and swaps the token-mixing rule; what that variant adds
of its own (Linformer's E/F) starts from its initialiser.

The classifier head is the checkpoint's when the task has as many classes,
else it starts fresh; a text task without a `tokenizer` uses the
checkpoint's own (a Hugging Face directory holds `vocab.txt` or
`tokenizer.json`). The model is built with the checkpoint's position table
(`max_len`, e.g. BERT's 512), so a run that is saved back
(`lightjax.save_pretrained`) is again a full checkpoint. A
sentence-transformers directory (modules.json) is a `sentence_encoder`
with its pooling and normalisation (`lightjax.hf.open_checkpoint`), the
teacher of an embedding distillation; a classification task refuses it.

A lightjax workdir is read through the `model.json` the trainer writes next
to `config.json` (the model config and the dimensions it was built with) and
its best-validation model (`best/`), or the last train state when no best
exists.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
from typing import Any, Callable, Iterable

import jax
import ml_collections
import numpy as np
from flax import nnx

from lightjax import errors, hf, models
from lightjax import checkpointing, writers
from lightjax.models import weights as weights_lib

MODEL_JSON = "model.json"
HF_PREFIX = "hf:"
# Where a shrink run keeps its student before (or without) fine-tuning.
STUDENT_DIR = "student"

# `config.model` fields that stay the run's choice whatever the checkpoint.
RUN_FIELDS = ("attention", "dropout_rate", "dtype", "layerdrop")

Path = tuple


@dataclasses.dataclass
class Source:
  """A checkpoint to start from: its model config, dimensions and weights."""
  spec: str                 # what `init_from` said
  model: dict[str, Any]     # its `config.model` fields
  vocab_size: int
  num_classes: int
  max_len: int
  pad_id: int
  tokenizer: str | None     # a directory or file for the text tasks, if any
  read_weights: Callable[[], dict[Path, np.ndarray]]
  task: str | None = None   # the task a lightjax run trained it on


# --- opening a source -----------------------------------------------------------


def open_source(spec: str) -> Source:
  """The checkpoint `spec` names; one-line `ValueError` when it is none."""
  if spec.startswith(HF_PREFIX):
    return _hf_source(spec)
  if os.path.isfile(os.path.join(spec, MODEL_JSON)):
    return _workdir_source(spec)
  student = os.path.join(spec, STUDENT_DIR)
  if os.path.isfile(os.path.join(student, MODEL_JSON)):
    # A shrink run that fine-tuned nothing (num_train_steps=0): its model
    # is the student it saved, so recipes chain through it too.
    return _workdir_source(student)
  if any(os.path.isdir(os.path.join(spec, d)) for d in ("best", "checkpoints")):
    raise errors.CheckpointError(
        f"{spec!r} is a lightjax workdir written before {MODEL_JSON} existed;"
        " rerun its training command once (it resumes, finds nothing left"
        f" to train and writes {MODEL_JSON})")
  if os.path.isfile(os.path.join(spec, hf.CONFIG_FILE)):
    raise errors.CheckpointError(
        f"{spec!r} looks like a Hugging Face checkpoint (it has"
        f" {hf.CONFIG_FILE}); write init_from=hf:{spec}")
  if os.path.isdir(spec):
    raise errors.CheckpointError(
        f"{spec!r} is a directory without {MODEL_JSON}: not a"
        " lightjax workdir (or one written before model.json existed; rerun"
        " its training to resume and write it)")
  raise errors.CheckpointError(
      f"{spec!r} is neither a lightjax workdir nor"
      " hf:<hub id or checkpoint directory>")


def _hf_source(spec: str) -> Source:
  """A Hugging Face directory or hub id: a classifier, or the
  `sentence_encoder` of a sentence-transformers directory (`hf.open_checkpoint`)."""
  directory, hf_config, config = hf.open_checkpoint(spec[len(HF_PREFIX):])
  head = config.hf.head
  hf.verify(directory, hf_config, config, head=head)  # sizes vs the headers
  return Source(
      spec=spec, model=config.model.to_dict(),
      vocab_size=config.hf.vocab_size, num_classes=config.hf.num_labels,
      max_len=config.hf.max_len, pad_id=config.hf.pad_token_id,
      tokenizer=directory,
      read_weights=lambda: dict(hf.read_weights(directory, hf_config,
                                                config)))


def read_model_json(workdir: str) -> dict[str, Any]:
  path = os.path.join(workdir, MODEL_JSON)
  try:
    with open(path) as f:
      info = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise errors.CheckpointError(f"{path} is not valid JSON ({e})") from None
  if not isinstance(info, dict) or not isinstance(info.get("model"), dict):
    raise errors.CheckpointError(f"{path} is not a lightjax {MODEL_JSON}")
  bad = [k for k in ("vocab_size", "num_classes", "max_len")
         if isinstance(info.get(k), bool) or not isinstance(info.get(k), int)]
  if bad:
    raise errors.CheckpointError(
        f"{path} is not a lightjax {MODEL_JSON}: {', '.join(bad)} missing or"
        " not an integer; rerun the training that wrote it")
  return info


def check_not_training(workdir: str) -> None:
  """`errors.InUse` (exit 3) when a live run holds `workdir`'s lock: its
  checkpoints are still being written (a shrink teacher, an export, any
  load). The lock is `checkpointing.WorkdirLock`'s: an flock on
  <workdir>/.lock whose holder wrote "pid host" in it; a shared flock
  fails while that exclusive one is held. This process's own lock (a
  shrink run reading its own workdir) does not count."""
  path = os.path.join(workdir, ".lock")
  if not os.path.isfile(path):
    return
  try:
    f = open(path, "r")
  except OSError:
    return  # unreadable: not ours to judge; the load itself will say
  with f:
    try:
      fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = f.read().split()
      if holder[:2] == [str(os.getpid()), socket.gethostname()]:
        return
      who = (f" (pid {holder[0]} on host {holder[1]})" if len(holder) >= 2
             else "")
      raise errors.InUse(
          f"{workdir} is still training{who}: wait for it to finish (its"
          f" lock {path} is held), then rerun") from None
    fcntl.flock(f, fcntl.LOCK_UN)


def write_model_json(workdir: str, model_cfg, *, vocab_size: int,
                     num_classes: int, max_len: int, pad_id: int,
                     tokenizer: str | None = None, **extra) -> None:
  """What a model in `workdir` is: its config and the dimensions it was
  built with (the task's vocabulary, classes and length)."""
  cfg = model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg)
  writers.write_json(os.path.join(workdir, MODEL_JSON), {
      "model": cfg, "vocab_size": int(vocab_size),
      "num_classes": int(num_classes), "max_len": int(max_len),
      "pad_id": int(pad_id), "tokenizer": tokenizer or None, **extra})


def _workdir_source(workdir: str) -> Source:
  check_not_training(workdir)
  info = read_model_json(workdir)
  return Source(
      spec=workdir, vocab_size=info["vocab_size"],
      # ModelConfig's form (files before `layers` hold per-layer lists).
      model=models.ModelConfig.from_dict(info["model"]).to_dict(),
      num_classes=info["num_classes"], max_len=info["max_len"],
      pad_id=info.get("pad_id", 0), tokenizer=info.get("tokenizer"),
      read_weights=lambda: read_workdir_weights(workdir, info),
      task=info.get("task"))


def _model_params(info: dict[str, Any]) -> dict[Path, Any]:
  """{path: abstract array} of the model `info` describes (nothing allocated)."""
  cfg = ml_collections.ConfigDict(info["model"])
  model = nnx.eval_shape(lambda: models.build_model(
      cfg, vocab_size=info["vocab_size"], num_classes=info["num_classes"],
      max_len=info["max_len"], rngs=nnx.Rngs(0)))
  return {tuple(p): v for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def read_workdir_weights(workdir: str, info: dict[str, Any] | None = None,
                         which: str = "best") -> dict[Path, np.ndarray]:
  """The model parameters saved in a workdir: `best/` (falling back to the
  newest readable train checkpoint), or `which="last"` (newest readable
  train checkpoint, then `best/`). An unreadable checkpoint (its checksums
  included) is passed over with one warning naming the one used instead;
  nothing is moved (a reader leaves the workdir as it is: the next training
  run on it sets unreadable checkpoints aside)."""
  info = info or read_model_json(workdir)
  candidates = [("best", ()), ("checkpoints", ("train", "model"))]
  if which == "last":
    candidates.reverse()
  failed = []
  for folder, prefix in candidates:
    directory = os.path.abspath(os.path.join(workdir, folder))
    for step in checkpointing.steps_in(directory):
      where = f"{workdir}/{folder}/{step}"
      try:
        tree, _ = checkpointing.restore_any(directory, step)
        for key in prefix:
          tree = tree[key]
      except Exception as e:  # pylint: disable=broad-except
        failed.append(f"{where} ({checkpointing.short_reason(e)})")
        continue
      if failed:
        checkpointing.warn(f"checkpoint {'; '.join(failed)} is unreadable;"
                           f" using {where} instead")
      return _select_params(tree, _model_params(info), where)
  if failed:
    raise errors.CheckpointError("no readable checkpoint: " + "; ".join(failed))
  raise errors.CheckpointError(f"no checkpoint in {workdir}/best or {workdir}/checkpoints")


def _select_params(tree, params: dict[Path, Any], where: str
                   ) -> dict[Path, np.ndarray]:
  """The restored state's parameters, keyed like the model's (ints for
  list indices); RNG state and other variables are left out."""
  flat = {}
  for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [getattr(k, "key", getattr(k, "idx", None)) for k in key_path]
    if keys and keys[-1] == "value":
      keys = keys[:-1]
    flat[tuple(int(k) if isinstance(k, str) and k.isdigit() else k
               for k in keys)] = leaf
  out = {}
  for path, var in params.items():
    if path not in flat and 0 in tuple(var.shape):
      # Zero-size arrays are not saved (checkpointing.without_empty).
      out[path] = np.zeros(var.shape, np.float32)
      continue
    if path not in flat:
      raise errors.CheckpointError(f"{where} has no parameter {'/'.join(map(str, path))}")
    out[path] = np.asarray(flat[path], np.float32)
  return out


# --- the run's config -----------------------------------------------------------


def resolve_config(config: ml_collections.ConfigDict,
                   explicit: Iterable[str] = ()) -> Source | None:
  """Writes the checkpoint's model fields into `config` (in place).

  `explicit` are the `--config.` keys the user gave (e.g.
  "model.num_layers=6"); one that sets a checkpoint field to another value
  is a `ValueError`. Idempotent: resolving a resolved config changes nothing.
  Returns the source, or None without `init_from`.
  """
  if not config.get("init_from"):
    return None
  try:
    source = open_source(config.init_from)
  except ValueError as e:
    raise errors.ConfigError(f"config.init_from: {e}") from None
  given = {}
  for item in explicit:
    key, _, value = item.partition("=")
    if key.startswith("model.") and key.split(".")[1] not in RUN_FIELDS:
      given[key.split(".")[1]] = value
  with config.unlocked():
    for field, value in source.model.items():
      if field in RUN_FIELDS:
        continue
      if field in config.model and isinstance(config.model[field], tuple):
        value = tuple(value)
      if field in given and (field not in config.model
                             or config.model[field] != value):
        raise errors.ConfigError(
            f"--config.model.{field}={given[field]} contradicts init_from="
            f"{config.init_from} (its {field} is {value!r}); a run that starts"
            " from a checkpoint takes its sizes from it. To make the model"
            " smaller, use lightjax.shrink")
      config.model[field] = value
    if "tokenizer" in config.task and not config.task.tokenizer and source.tokenizer:
      config.task.tokenizer = source.tokenizer
  return source


def check_task(source: Source, task) -> None:
  """The checkpoint's model can run the task (its outputs: a label per
  sequence, a token per position, a sentence embedding) and the task's data
  fits its embeddings; before anything is written."""
  name = source.model.get("name") or models.ModelConfig().name
  kinds = (models.task_kinds(name)
           if name in models.names() else None)  # unknown: build_model says
  if kinds is not None and task.kind not in kinds:
    trained = f" (trained on task {source.task})" if source.task else ""
    hint = (f"start from a checkpoint made for {task.kind} tasks"
            if name != hf.HEADS["sentence"] else
            "to fine-tune a sentence-transformers encoder as a classifier,"
            " start from a copy of its directory without modules.json (read"
            " as a BERT classifier)")
    raise errors.CheckpointError(
        f"init_from={source.spec} holds a model {name}{trained}, which cannot"
        f" run task {task.name} ({task.kind}); {hint}")
  if task.vocab_size > source.vocab_size:
    raise errors.CheckpointError(
        f"task {task.name}'s vocabulary has {task.vocab_size} ids but"
        f" init_from={source.spec} embeds {source.vocab_size}; use the"
        " checkpoint's own tokenizer (leave the task's tokenizer empty)")
  if task.max_len > source.max_len:
    raise errors.CheckpointError(
        f"task {task.name}'s length {task.max_len} exceeds init_from="
        f"{source.spec}'s {source.max_len} positions; lower the task's"
        " max_length")


def load_into(model: nnx.Module, source: Source, num_classes: int) -> list[str]:
  """The checkpoint's weights into `model`; returns what kept its initialiser
  (the head when the class count differs, a variant's own parameters)."""
  weights = source.read_weights()
  if num_classes != source.num_classes:
    weights = {p: w for p, w in weights.items() if p[0] != "head"}
  return weights_lib.load(model, weights, optional=weights_lib.HEAD_MODULES)


def load_model(spec: str, *, seed: int = 0, which: str = "best"):
  """(model, source) with the checkpoint's weights: for save-back, shrinking
  and evaluation outside the trainer. `which`: a workdir's "best" model or
  its "last" train state."""
  source = open_source(spec)
  if which != "best" and not spec.startswith(HF_PREFIX):
    source.read_weights = lambda: read_workdir_weights(source.spec,
                                                       which=which)
  model = models.build_model(
      ml_collections.ConfigDict(source.model), vocab_size=source.vocab_size,
      num_classes=source.num_classes, max_len=source.max_len,
      rngs=nnx.Rngs(seed))
  load_into(model, source, source.num_classes)
  return model, source


def save_model(directory: str, model: nnx.Module, model_cfg, *,
               vocab_size: int, num_classes: int, max_len: int, pad_id: int,
               tokenizer: str | None = None, **extra) -> None:
  """Writes `model` as a directory `init_from` (and `load_model`) reads:
  model.json + its parameters as the `best/` checkpoint. How a shrinking
  recipe hands its (physically smaller) model to the fine-tuning run."""
  write_model_json(directory, model_cfg, vocab_size=vocab_size,
                   num_classes=num_classes, max_len=max_len, pad_id=pad_id,
                   tokenizer=tokenizer, **extra)
  ckpt = checkpointing.Checkpointer(directory, keep=1)
  try:
    ckpt.save_best(0, nnx.state(model, nnx.Param),
                   {"best_val_score": -1.0, "best_step": 0})
    ckpt.wait()
  finally:
    ckpt.close()
