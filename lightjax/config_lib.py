"""Shared config building blocks and start-up validation.

Configs stay plain `get_config(arg)` functions (big_vision style); this module
gives them the common skeleton and checks a resolved config before any work
starts, so a typo fails in a second with the list of valid choices instead of
after compilation.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
from typing import Any, Iterable

import ml_collections

from lightjax import attention, data, errors, models, optim


def base_config() -> ml_collections.ConfigDict:
  """Fields every task config has; tasks override what differs."""
  c = ml_collections.ConfigDict()
  c.config_name = ""          # set by each config file, recorded in summary.json
  c.seed = 0                  # model init, dropout and data order
  c.data_dir = ""             # "" = $LIGHTJAX_DATA_DIR or ~/.cache/lightjax
  # Start from trained weights: "hf:<hub id or directory>" (a Hugging Face
  # checkpoint) or a lightjax workdir; sizes come from it (lightjax.init_from).
  c.init_from = ""

  c.num_train_steps = 1000
  c.batch_size = 32           # global; split over devices (data parallel)
  c.eval_batch_size = 64
  c.log_every = 50            # train metrics to metrics.jsonl / TensorBoard
  c.eval_every = 250          # validation pass, best-checkpoint tracking
  c.checkpoint_every = 250    # resumable train-state checkpoint
  c.keep_checkpoints = 2      # last N train states kept (best kept apart)
  # Device mesh (lightjax/sharding.py): the batch is split over data x fsdp;
  # fsdp > 1 also splits parameters and optimizer state (their embed
  # dimension), seq the activations' positions, model heads / MLP units /
  # vocabulary (tensor parallel). -1 = the devices left over.
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "seq": 1,
                                      "model": 1})
  # (logical axis, mesh axis | None) pairs placed before
  # sharding.DEFAULT_RULES, first pair per name wins; e.g.
  # (("embed", None),) keeps parameters whole under fsdp.
  c.sharding_rules = ()

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 1e-3
  c.optim.schedule = "cosine"  # one of lightjax.optim.SCHEDULES
  c.optim.warmup_steps = 100
  c.optim.weight_decay = 0.01
  c.optim.b1 = 0.9
  c.optim.b2 = 0.98
  c.optim.grad_clip_norm = 1.0  # 0 disables clipping

  # The model's fields and defaults are the typed config's own (each
  # documented there: lightjax/models/config.py, `ModelConfig`).
  c.model = ml_collections.ConfigDict(models.ModelConfig().to_dict())
  c.model.attention = attention_config("softmax")
  return c


def bert_layout(model: ml_collections.ConfigDict, *, activation: str = "gelu",
                layer_norm_eps: float = 1e-12, type_vocab_size: int = 2
                ) -> ml_collections.ConfigDict:
  """Sets BERT's block layout on a run config's `model` (Devlin et al.
  2019), sizes apart: the fields of `models.config.bert_layout`, which the
  model's own `ModelConfig.bert` preset uses too."""
  model.update(models.config.bert_layout(
      activation=activation, layer_norm_eps=layer_norm_eps,
      type_vocab_size=type_vocab_size))
  return model


def attention_config(name: str) -> ml_collections.ConfigDict:
  """{"name": name, <variant>: {its options}} for every registered variant.

  Every variant's options are present, so `--config.model.attention.name=X
  --config.model.attention.X.opt=V` works whatever the config file chose.
  """
  attention.get(name)  # fail early on a bad name
  return ml_collections.ConfigDict({"name": name, **attention.default_options()})


def task_config(name: str, **overrides) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(data.resolve_task_config(overrides, name))


def parse_arg(arg: str | None, presets: Iterable[str]) -> tuple[str, set[str]]:
  """Splits "linear,lra" into (attention name, {presets}).

  Each comma-separated token is an attention variant or one of `presets`.
  """
  presets = set(presets)
  name, chosen = "softmax", set()
  for tok in filter(None, (arg or "").split(",")):
    if tok in presets:
      chosen.add(tok)
    elif tok in attention.names():
      name = tok
    else:
      raise ValueError(
          f"unknown config argument {tok!r}; valid: attention variants"
          f" ({', '.join(attention.names())}) or presets"
          f" ({', '.join(sorted(presets))})")
  return name, chosen


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks names against their registries and numbers against their ranges."""
  # The model's own fields and checks (models/config.py), and a causal
  # model's attention.
  models.check(config.model)
  if config.model.get("layerdrop", 0.0) >= 1.0:  # the model allows 1
    raise ValueError(f"config.model.layerdrop must be in [0, 1), got"
                     f" {config.model.layerdrop} (1 would never train a block)")
  optim.SCHEDULES.get(config.optim.schedule)
  data.get(config.task.name)
  check_values(config)


# The largest seed + 1: the model's init and dropout streams take `seed` and
# `seed + 1`, numpy's data order [seed, epoch]; both need a non-negative
# integer, and 2**32 keeps every PRNG implementation in range.
SEED_LIMIT = 2**32


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_values(config: ml_collections.ConfigDict, *,
                 min_train_steps: int = 1) -> None:
  """The run-level numbers in range (step counts, seed, optimizer) and the
  task's own config check (`data.check_task_config`): one-line ValueErrors
  naming the field, its valid range and the value given, raised before
  anything is built or written.

  `min_train_steps`: 1 for a training run; lightjax.shrink allows 0 (no
  recovery fine-tuning).
  """
  steps = config.num_train_steps
  if not _is_int(steps) or steps < min_train_steps:
    raise ValueError(f"config.num_train_steps must be an integer >="
                     f" {min_train_steps}, got {steps!r}")
  for key in ("batch_size", "eval_batch_size", "log_every",
              "eval_every", "checkpoint_every", "keep_checkpoints"):
    if config[key] <= 0:
      raise ValueError(f"config.{key} must be positive, got {config[key]}")
  seed = config.seed
  if not _is_int(seed) or not 0 <= seed < SEED_LIMIT:
    raise ValueError(f"config.seed must be an integer in [0, 2**32), got"
                     f" {seed!r}")
  check_optim(config.optim)
  data.check_task_config(config.task)


def check_optim(opt: ml_collections.ConfigDict) -> None:
  """`config.optim`'s numbers: finite, and each in its range (one line)."""
  def bad(key: str, valid: str) -> ValueError:
    return ValueError(f"config.optim.{key} must be {valid}, got {opt[key]!r}")

  def number(key: str) -> float:
    if not _is_number(opt[key]) or not math.isfinite(opt[key]):
      raise bad(key, _RANGES[key])
    return opt[key]

  if not number("learning_rate") >= 0:  # 0: the weights stay as loaded
    raise bad("learning_rate", _RANGES["learning_rate"])
  if not number("weight_decay") >= 0:
    raise bad("weight_decay", _RANGES["weight_decay"])
  warmup = opt.warmup_steps
  if not _is_int(warmup) or warmup < 0:
    raise bad("warmup_steps", _RANGES["warmup_steps"])
  for key in ("b1", "b2"):
    if not 0 <= number(key) < 1:
      raise bad(key, _RANGES[key])
  if not number("grad_clip_norm") >= 0:
    raise bad("grad_clip_norm", _RANGES["grad_clip_norm"])


_RANGES = {
    "learning_rate": "a finite number >= 0",
    "weight_decay": "a finite number >= 0",
    "warmup_steps": "an integer >= 0",
    "b1": "a number in [0, 1)",
    "b2": "a number in [0, 1)",
    "grad_clip_norm": "a finite number >= 0 (0: no clipping)",
}


# --- command-line overrides -------------------------------------------------


class PathError(KeyError):
  """`lookup` met a missing field; str() is the whole message."""

  def __str__(self) -> str:
    return str(self.args[0])


def lookup(tree: Any, dotted: str) -> Any:
  """tree["a"]["b"]["c"] for dotted = "a.b.c" (ConfigDicts and plain dicts).

  The one dotted-path lookup of the package (config overrides, bench config
  checks, report columns over summary.json).

  Raises:
    PathError: naming the first missing field and the valid ones there.
  """
  node, walked = tree, []
  for part in dotted.split("."):
    where = "config" + "".join(f".{w}" for w in walked)
    if not hasattr(node, "keys"):
      raise PathError(f"{where} is a {type(node).__name__}, it has no field"
                      f" {part!r}")
    if part not in node:
      raise PathError(
          f"unknown config key {dotted!r}: {where} has no field {part!r};"
          f" valid fields of {where}: {', '.join(sorted(node.keys()))}")
    node, walked = node[part], walked + [part]
  return node


def check_overrides(config: ml_collections.ConfigDict,
                    argv: Iterable[str], flag: str = "config") -> list[str]:
  """Error messages for every `--config.a.b=...` naming a field that is not there."""
  errors, prefix = [], f"--{flag}."
  for a in argv:
    if a.startswith(prefix):
      key = a[len(prefix):].split("=", 1)[0]
      try:
        lookup(config, key)
      except PathError as e:
        errors.append(str(e))
  return errors


def config_spec(argv: Iterable[str], flag: str = "config") -> str | None:
  """The value of `--config=SPEC` / `--config SPEC` in argv, if any."""
  argv = list(argv)
  for i, a in enumerate(argv):
    if a.startswith(f"--{flag}="):
      return a.split("=", 1)[1]
    if a == f"--{flag}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def flags_parser(prog: str):
  """An absl `flags_parser` that checks `--config.*` overrides first.

  ml_collections reports an unknown override as a bare AttributeError
  traceback; this loads the config file itself, names every unknown field
  with the valid ones, and exits with code 2 before anything is built. A
  flag value absl rejects (`--config.num_train_steps=abc`, a missing
  --workdir) is one line naming the flag and what it expects, also code 2:
  absl's own handler is skipped when a custom parser is given, which left a
  40-line traceback.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top

  def parse(argv: list[str]) -> list[str]:
    spec = config_spec(argv)
    if spec:
      try:
        errors = check_overrides(load_config_file(spec), argv)
      except (ValueError, FileNotFoundError) as e:
        print(f"{prog}: bad --config {spec!r}: {e}", file=sys.stderr)
        sys.exit(2)
      if errors:
        print(f"{prog}: " + "\n".join(errors), file=sys.stderr)
        sys.exit(2)
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      print(f"{prog}: {flag_error_line(e, flags.FLAGS, argv)}", file=sys.stderr)
      sys.exit(2)

  return parse


# absl parser class -> what a user should type; `flag_type()` says "string"
# for ml_collections' ConfigDict fields, so the class is the better key.
_EXPECTED = {"IntegerParser": "int", "FloatParser": "float",
             "BooleanParser": "true or false", "TupleParser": "a tuple",
             "_ConfigDictParser": "a dict"}


def flag_error_line(e: Exception, flag_values, argv: Iterable[str]) -> str:
  """One line for an absl flags.Error, e.g. "bad value for --x: expected int, got 'abc'".

  absl words a bad value as "flag --NAME=VALUE: REASON" (IllegalFlagValueError);
  the value is taken from argv, as it may itself hold ": ".
  """
  import re  # pylint: disable=g-import-not-at-top
  msg = " ".join(str(e).split())
  m = re.match(r"flag --([\w.-]+)=", msg)
  if not m:
    return msg
  name, argv = m.group(1), list(argv)
  if msg.endswith(f"Flag --{name} must have a value other than None."):
    return f"missing required flag --{name}"
  value = None
  for i, a in enumerate(argv):
    if a.startswith(f"--{name}="):
      value = a.split("=", 1)[1]
    elif a == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  prefix = f"flag --{name}={value}: "
  reason = msg[len(prefix):] if msg.startswith(prefix) else msg
  parser = flag_values[name].parser if name in flag_values else None
  expected = _EXPECTED.get(type(parser).__name__)
  if expected and value is not None:
    return f"bad value for --{name}: expected {expected}, got {value!r}"
  return f"bad value for --{name}: {reason}"


@contextlib.contextmanager
def user_code(path: str, what: str):
  """Runs code of the user's file `path` (a config or sweep file): whatever
  it raises becomes one-line `errors.ConfigError` naming the file, the
  exception and the line of `path` it came from (a ValueError it raises on
  purpose, e.g. an unknown argument, keeps its own message)."""
  try:
    yield
  except errors.UserInputError:
    raise
  except SyntaxError as e:
    raise errors.ConfigError(f"{path}: syntax error at line {e.lineno}:"
                             f" {e.msg}") from None
  except ValueError as e:
    raise errors.ConfigError(f"{path}: {what}: {e}") from None
  except Exception as e:  # pylint: disable=broad-except  # the user's code
    import traceback  # pylint: disable=g-import-not-at-top
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if os.path.abspath(f.filename) == os.path.abspath(path)]
    where = f" (line {frames[-1].lineno})" if frames else ""
    raise errors.ConfigError(f"{path}: {what} raised {type(e).__name__}:"
                             f" {e}{where}") from None


def import_file(path: str, name: str):
  """The Python file `path` run as a module named `name` (config and sweep
  files live outside the package); `errors.ConfigError` when it raises or
  does not parse."""
  mod_spec = importlib.util.spec_from_file_location(name, path)
  if mod_spec is None:
    raise errors.ConfigError(f"{path} is not a Python file")
  module = importlib.util.module_from_spec(mod_spec)
  with user_code(path, "importing it"):
    mod_spec.loader.exec_module(module)
  return module


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads "path/to/config.py[:arg]" the way ml_collections' config flag does."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} does not exist"
                            if not os.path.exists(path) else
                            f"config file {path!r} is not a file")
  module = import_file(path, "_lightjax_config")
  if not callable(getattr(module, "get_config", None)):
    raise errors.ConfigError(f"{path} defines no get_config()")
  with user_code(path, "get_config"):
    config = module.get_config(arg) if arg else module.get_config()
  if not isinstance(config, (ml_collections.ConfigDict, dict)):
    raise errors.ConfigError(f"{path}: get_config returned"
                             f" {type(config).__name__}, not a ConfigDict")
  return config
