"""Resume compatibility: may this config continue the run in this workdir?

A workdir with checkpoints resumes from them. That is only sound when the
new config trains the same model on the same data in the same order: the
fields in `MUST_MATCH`. Anything else (steps, eval cadence, learning-rate
schedule length) may change between the two commands. `config.json` files
written before a model field existed are read with that field's default
(`view`), which is what the older code built.
"""

from __future__ import annotations

import json
import os
from typing import Any

from lightjax import attention as attention_lib
from lightjax import checkpointing, models

# Config fields a resumed run must share with the run that wrote the workdir.
MUST_MATCH = ("model", "task", "batch_size", "seed")


def check_config(workdir: str, config) -> None:
  """A resumed run must train the same model on the same data order.

  Raises:
    checkpointing.WorkdirError: the workdir's checkpoints are of a run whose
      config.json differs in a `MUST_MATCH` field (named in the message).
  """
  path = os.path.join(workdir, "config.json")
  if (not os.path.isdir(os.path.join(workdir, "checkpoints"))
      or not os.path.exists(path)):
    return
  try:
    with open(path) as f:
      saved = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise checkpointing.WorkdirError(
        f"{path} is not valid JSON ({e}); move it away to resume from the"
        " checkpoints, or use a new --workdir") from None
  if not isinstance(saved, dict):
    raise checkpointing.WorkdirError(
        f"{path} is not a run's config (a JSON {type(saved).__name__});"
        " move it away to resume, or use a new --workdir")
  saved = view(saved)
  now = view(json.loads(json.dumps(config.to_dict(), default=str)))
  diffs = [k for k in MUST_MATCH if saved.get(k) != now.get(k)]
  if diffs:
    raise checkpointing.WorkdirError(
        f"{workdir} holds checkpoints of a run with a different config"
        f" ({', '.join(diffs)} differ from its config.json); use a new"
        " --workdir, or the original settings to resume")


def view(cfg: dict[str, Any]) -> dict[str, Any]:
  """What must match to resume: model fields a config.json written before a
  field existed get that field's default (what the older code built), and of
  the attention options only the chosen variant's count."""
  model = dict(cfg.get("model") or {})
  try:  # ModelConfig's form: defaults filled, per-layer sizes as `layers`
    model = models.ModelConfig.from_dict(model).to_dict()
  except ValueError:
    pass  # not a model this code builds: compared as it is
  # JSON's view, as `cfg` is JSON (a tuple is a list).
  model = json.loads(json.dumps(model, default=str))
  attn = dict(model.pop("attention", None) or {})
  name = attn.get("name")
  options = dict(attn.get(name) or {})
  if name in attention_lib.VARIANTS:
    options = {**attention_lib.get(name).default_options(), **options}
  model["attention"] = {"name": name, "options": options}
  return {**cfg, "model": model}
