"""The shrink package's shared types: a method's input (`Context`) and
result (`Shrunk`), the method registry (`METHODS`; each method module
registers itself), the parameter-tree helpers methods build students with
(`slice_axes`: the one way a method cuts weights), and `recipe`, the config
of configs/shrink/<method>.py.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterator

import ml_collections
import numpy as np
from flax import nnx

from lightjax import config_lib, models, sharding
from lightjax.models import weights as weights_lib
from lightjax.registry import Registry

Path = tuple


@dataclasses.dataclass
class Shrunk:
  """A method's result: the student, its config.model, and what was done
  (JSON-able; e.g. which heads were removed), recorded in shrink.json."""
  model: nnx.Module
  model_cfg: ml_collections.ConfigDict
  details: dict[str, Any]
  # A two-phase method (Theseus): `model` is first trained for
  # `prepare_steps` (in <workdir>/replacing), then `extract(trained model)`
  # gives the student.
  prepare_steps: int = 0
  extract: Callable[[nnx.Module], "Shrunk"] | None = None


@dataclasses.dataclass
class Context:
  """What a method may use besides the teacher."""
  config: ml_collections.ConfigDict   # the whole run config
  options: dict[str, Any]             # config.shrink.<method>
  teacher_cfg: ml_collections.ConfigDict  # the teacher's config.model
  task: Any                           # lightjax.data.TaskData
  vocab_size: int
  num_classes: int
  max_len: int
  evaluate: Callable[..., dict[str, Any]]  # (model, split) -> eval dict

  @property
  def pad_id(self) -> int:
    return self.task.pad_id

  def build(self, model_cfg, seed: int | None = None) -> nnx.Module:
    """A freshly initialised model of `model_cfg` with the teacher's dims."""
    seed = self.config.seed if seed is None else seed
    return models.build_model(model_cfg, vocab_size=self.vocab_size,
                              num_classes=self.num_classes,
                              max_len=self.max_len, rngs=nnx.Rngs(seed))

  def batches(self, split: str = "train", num_examples: int = 512,
              batch_size: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The first `num_examples` of `split` in batches (numpy, no weights):
    the data importance scores and contributions are measured on."""
    data = self.task.splits[split]
    n = min(num_examples, len(data["targets"]))
    bs = batch_size or self.config.eval_batch_size
    for lo in range(0, n, bs):
      yield {k: np.asarray(v[lo:min(lo + bs, n)]) for k, v in data.items()}


METHODS: Registry[Callable[[nnx.Module, Context], Shrunk]] = Registry(
    "shrink method")
register, get, names = METHODS.register, METHODS.get, METHODS.names


# --- parameter trees ---------------------------------------------------------------


def params_of(model: nnx.Module) -> dict[Path, np.ndarray]:
  """{parameter path: float32 numpy array}."""
  return {tuple(p): np.asarray(v[...], np.float32)
          for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def axes_of(model: nnx.Module) -> dict[Path, tuple[str | None, ...]]:
  """{parameter path: its logical axis names} (`attention.param_axes`:
  "embed" the residual width, "heads" the concatenated heads, "mlp" the
  feed-forward units, "norm" a LayerNorm's; `sharding.LOGICAL_AXES`).
  Every parameter of every model names each of its dimensions (a contract
  tests/test_sharding.py checks), so a method can cut a dimension by what
  it is rather than by parameter paths."""
  out = {}
  for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    names = sharding.logical_names(variable)
    if names is None or len(names) != variable[...].ndim:
      raise ValueError(f"parameter {weights_lib.name(tuple(path))} does not"
                       " name each of its dimensions (attention.param_axes);"
                       " it cannot be sliced")
    out[tuple(path)] = names
  return out


def slice_axes(weights: dict[Path, np.ndarray],
               axes: dict[Path, tuple[str | None, ...]],
               index_of: Callable[[Path, str | None, int], Any]
               ) -> dict[Path, np.ndarray]:
  """`weights` with every dimension d of each parameter cut to
  `index_of(path, axes[path][d], size of d)` (integer indices, in the order
  given: a permutation is allowed), or kept whole where that is None.

  The one slicing path of the shrink methods: heads (the "heads" columns of
  a block's q/k/v and rows of its out), MLP units ("mlp" of a block's
  fc1/fc2) and residual channels ("embed" and "norm" everywhere) are each
  an `index_of`."""
  out = {}
  for path, value in weights.items():
    for dim, axis in enumerate(axes[path]):
      index = index_of(path, axis, value.shape[dim])
      if index is not None:
        value = np.take(value, np.asarray(index, int), axis=dim)
    out[path] = value
  return out


def build_with(ctx: Context, model_cfg, weights: dict[Path, np.ndarray],
               optional: tuple[str, ...] = ()) -> nnx.Module:
  """`model_cfg` built with the teacher's dims and filled with `weights`;
  every parameter must get a weight of its exact shape (or be under
  `optional`), so a slicing mistake is an error, not a silent init."""
  model = ctx.build(model_cfg)
  weights_lib.load(model, weights, optional=optional)
  return model


def model_config(cfg, **changes) -> ml_collections.ConfigDict:
  """A student's `config.model`: the teacher's `cfg` with `changes`
  (ModelConfig fields; `layers` as LayerSpecs or dicts), checked as a
  ModelConfig and written in the run config's form."""
  return ml_collections.ConfigDict(
      models.as_model_config(cfg).replace(**changes).to_dict())


# --- recipes (configs/shrink/*.py) -------------------------------------------------

GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")


def recipe(here: str, arg: str | None, method: str, **options
           ) -> ml_collections.ConfigDict:
  """A shrink recipe's config: the task's config file, recovery settings,
  and `shrink.method` with `options` (`config.shrink.<method>`).

  `arg` (comma-separated): a GLUE task name (configs/glue.py:<task>; the
  teacher an imported or fine-tuned BERT), "sentences"
  (configs/sentences.py: a sentence encoder distilled toward its teacher's
  embeddings on unlabeled text, e.g. all-MiniLM-L6-v2), else ListOps
  (configs/listops.py, the README's default model); "tiny" for the smoke
  preset of either. `here` is the recipe file (configs/shrink/x.py): the
  task configs are read next to it. Recovery on ListOps: a third of the
  teacher's 1500 steps at half its learning rate.
  """
  parts = [p for p in (arg or "").split(",") if p]
  unknown = [p for p in parts
             if p not in GLUE_TASKS + ("tiny", "listops", "sentences")]
  if unknown:
    raise ValueError(f"unknown recipe argument(s) {unknown}; valid: listops,"
                     f" sentences, tiny, {', '.join(GLUE_TASKS)}")
  glue = [p for p in parts if p in GLUE_TASKS]
  configs = os.path.join(os.path.dirname(os.path.abspath(here)), "..")
  tiny = ",tiny" if "tiny" in parts else ""
  if glue:
    c = config_lib.load_config_file(
        os.path.join(configs, "glue.py") + f":{glue[0]}{tiny}")
  elif "sentences" in parts:
    c = config_lib.load_config_file(
        os.path.join(configs, "sentences.py") + (":tiny" if tiny else ""))
  else:
    c = config_lib.load_config_file(os.path.join(configs, "listops.py")
                                    + (":tiny" if tiny else ""))
    if not tiny:
      c.num_train_steps = 500
      c.optim.learning_rate = 5e-4
      c.optim.warmup_steps = 50
      c.eval_every = c.checkpoint_every = 100
  if "sentences" in parts and options.get("importance") == "gradient":
    # The loss of an embedding student is its distance to the teacher's
    # embeddings: zero at the teacher, and so is its gradient. Activation
    # importance (Minitron) needs no loss.
    options["importance"] = "activation"
  name = os.path.splitext(os.path.basename(here))[0]
  c.config_name = f"shrink/{name}" + (f":{arg}" if arg else "")
  c.shrink = ml_collections.ConfigDict({"method": method, method: options})
  return c
