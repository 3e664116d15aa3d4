"""The task registry and the types every task module shares.

`TaskData` (what a builder returns), `MissingPackage` (an optional package a
task needs is absent), the registry (`register`, `get`, `names`) and config
resolution (`resolve_task_config`, `load_task`). Task modules import this
module, never the `lightjax.data` package, so the package can import them to
register them without an import cycle (as `lightjax.attention.registry`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping

import numpy as np

from lightjax.errors import DataError, UserInputError
from lightjax.registry import Registry, with_defaults

TaskBuilder = Callable[[Any, str], "TaskData"]

# The three splits every task provides (some add more, e.g. GLUE MNLI's
# "test_mismatched").
SPLITS = ("train", "validation", "test")


class MissingPackage(UserInputError, ImportError):
  """An optional package a task needs is not installed; the message says
  what to install. `python -m lightjax.train` prints it as one line."""


@dataclasses.dataclass(frozen=True)
class TaskData:
  """One task's data, fully materialised in memory.

  Attributes:
    name: registered task name.
    kind: "classification" (one label per sequence), "regression" (one
      float target, e.g. GLUE STS-B), "lm" (next-token) or "embedding" (no
      labels: unlabeled sentences whose "targets" are zeros, e.g. for
      distilling a sentence-embedding model).
    vocab_size: number of input token ids, including the pad id.
    num_classes: number of labels for classification tasks.
    max_len: padded length of every example's `inputs`.
    splits: "train"/"validation"/"test" -> {"inputs": int32[N, max_len] padded
      with `pad_id`, "targets": int32[N] (classification) or int32[N, max_len]}.
    vocab: id -> token string, for decoding and debugging.
    pad_id: the padding id (0 for generated tasks; a pretrained tokenizer's
      own, e.g. RoBERTa's 1, for GLUE).
  """

  name: str
  kind: str
  vocab_size: int
  num_classes: int
  max_len: int
  splits: dict[str, dict[str, np.ndarray]]
  vocab: tuple[str, ...] = ()
  pad_id: int = 0


def _check_builder(name: str, builder: TaskBuilder) -> None:
  if not callable(getattr(builder, "default_config", None)):
    raise TypeError(f"task builder {name!r} has no default_config()")


TASKS: Registry[TaskBuilder] = Registry("task", on_register=_check_builder)
get = TASKS.get
names = TASKS.names


def register(
    name: str, default_config: Callable[[], dict[str, Any]] | None = None,
    check_config: Callable[[dict[str, Any]], None] | None = None,
) -> Callable[[TaskBuilder], TaskBuilder]:
  """Decorator: makes `builder` selectable as `task.name=<name>`.

  The builder must expose `default_config()` (the task's config fields, used to
  build `configs/` and to reject misspelt keys); pass it here or set it as an
  attribute before decorating. `check_config(resolved config)`, if given,
  raises a one-line ValueError for a value out of range; it must not read
  files: `config_lib.validate` runs it (`check_task_config`) before a run
  writes anything.
  """

  def wrap(builder: TaskBuilder) -> TaskBuilder:
    if default_config is not None:
      builder.default_config = default_config
    if check_config is not None:
      builder.check_config = check_config
    return TASKS.register(name, builder)

  return wrap


def default_task_config(name: str) -> dict[str, Any]:
  """The task's default config fields (a fresh dict; includes `name`)."""
  return dict(get(name).default_config())


def _as_dict(task_config: Any) -> dict[str, Any]:
  if hasattr(task_config, "to_dict"):  # ml_collections.ConfigDict
    return dict(task_config.to_dict())
  if isinstance(task_config, Mapping):
    return dict(task_config)
  raise TypeError(f"task config must be a mapping, got {type(task_config)}")


def resolve_task_config(
    task_config: Any, name: str | None = None
) -> dict[str, Any]:
  """Validates `task_config` against its task's defaults and fills the gaps.

  Unknown keys are an error rather than silently ignored, because a misspelt
  key (`num_trian=...`) would otherwise train on the default data unnoticed.

  Args:
    task_config: ConfigDict or mapping with a `name` key (optional if `name`
      is given).
    name: when a builder resolves its own config: the task it builds; a
      config naming another task is an error.
  Returns:
    A plain dict with every default key, overridden by `task_config`.
  """
  config = _as_dict(task_config)
  if name is not None:
    config.setdefault("name", name)
    if config["name"] != name:
      raise ValueError(
          f"task {name!r} was given the config of task {config['name']!r}"
      )
  if "name" not in config:
    raise ValueError(
        f"task config has no 'name'; valid tasks: {', '.join(names())}"
    )
  return with_defaults(config, default_task_config(config["name"]),
                       f"task {config['name']!r}")


def check_task_config(task_config: Any) -> dict[str, Any]:
  """The task's config resolved (unknown keys refused) and checked by its
  builder's `check_config`, without building anything; returns it."""
  config = resolve_task_config(task_config)
  check = getattr(get(config["name"]), "check_config", None)
  if check is not None:
    check(config)
  return config


def check_count(task: str, config: dict[str, Any], key: str,
                minimum: int) -> None:
  """Raises unless `config[key]` is an integer >= `minimum` (one line)."""
  value = config[key]
  if (isinstance(value, bool) or not isinstance(value, (int, float))
      or isinstance(value, float) and not value.is_integer()
      or value < minimum):
    raise ValueError(f"{task} {key} must be an integer >= {minimum}, got"
                     f" {value!r}")


def default_data_dir() -> str:
  """Where generated/downloaded task data is cached: $LIGHTJAX_DATA_DIR or
  ~/.cache/lightjax."""
  return os.environ.get("LIGHTJAX_DATA_DIR") or os.path.expanduser(
      "~/.cache/lightjax"
  )


def load_task(task_config: Any, data_dir: str | None = None) -> TaskData:
  """Builds (or loads from cache) the task named by `task_config.name`."""
  config = resolve_task_config(task_config)
  data_dir = data_dir or default_data_dir()
  if os.path.exists(data_dir) and not os.path.isdir(data_dir):
    raise DataError(f"data directory {data_dir} is a file, not a directory"
                    " (set LIGHTJAX_DATA_DIR or config.data_dir to a"
                    " directory)")
  try:
    return get(config["name"])(config, data_dir)
  except UnicodeDecodeError as e:  # a loader that did not say which file
    raise DataError(f"task {config['name']}: a data file is not UTF-8 text"
                    f" ({e.reason})") from None
