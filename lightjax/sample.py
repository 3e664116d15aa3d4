"""Command-line entry point: text from a trained byte-level language model.

  python -m lightjax.sample --workdir RUN --prompt "def " --max_new_tokens 200 \
      [--temperature 0.8 --top_k 40 --seed 0]

RUN is a workdir of `configs/lm.py` (`lightjax.data.lm`: byte b is token
b + 1). Its best-validation model is loaded (`init_from.load_model`), the
prompt is encoded as UTF-8 bytes, and `models.generate.sample` decodes with
every layer's incremental decode state in one jitted `jax.lax.scan`:
temperature 0 (the default) is greedy, otherwise softmax(logits / T) sampling,
among the top_k most likely bytes when --top_k > 0.

Output: the prompt and its continuation on stdout; one line on stderr with
the number of new tokens and tokens/s (the compiled scan's time, compilation
excluded). Exit code 2, with one line on stderr, for a workdir that is not a
byte-level LM, an empty prompt, a prompt (plus new tokens) longer than the
model's max length, or a flag out of range (--max_new_tokens, --top_k or
--seed negative, --temperature negative or not finite, --top_k above the
vocabulary size).
"""

from __future__ import annotations

import math
import os
import sys

from absl import app, flags

from lightjax import cli, config_lib, init_from, models
from lightjax.data import lm
from lightjax.models import generate

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained configs/lm.py run.")
_PROMPT = flags.DEFINE_string("prompt", None, "Text to continue.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 100, "Bytes to generate.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0,
                                  "0 = greedy; > 0 samples softmax(logits/T).")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k most likely"
                              " bytes (0 = all).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.mark_flags_as_required(["workdir", "prompt"])


def _fail(message: str) -> None:
  print(f"lightjax.sample: {message}", file=sys.stderr)
  sys.exit(2)


def check_workdir(workdir: str) -> None:
  """One-line ValueError unless `workdir` holds a byte-level LM."""
  if not os.path.isfile(os.path.join(workdir, init_from.MODEL_JSON)):
    raise ValueError(f"{workdir} is not a lightjax run (no"
                     f" {init_from.MODEL_JSON}); train one with"
                     " configs/lm.py")
  info = init_from.read_model_json(workdir)
  model_name = info["model"].get("name")
  decodes = hasattr(models.get(model_name), "decode_step")
  if not decodes or info.get("task") != lm.NAME:
    raise ValueError(f"{workdir} holds a {model_name} for task"
                     f" {info.get('task')!r}, not a byte-level language model"
                     f" (task {lm.NAME!r}); train one with configs/lm.py")


def check_flags(max_new_tokens: int, temperature: float, top_k: int,
                seed: int) -> None:
  """One-line ValueError for a flag value out of range (before any work)."""
  if max_new_tokens < 0:
    raise ValueError(f"--max_new_tokens must be >= 0, got {max_new_tokens}")
  if not (math.isfinite(temperature) and temperature >= 0):
    raise ValueError("--temperature must be a finite number >= 0 (0 ="
                     f" greedy), got {temperature}")
  if top_k < 0:
    raise ValueError(f"--top_k must be >= 0 (0 = all), got {top_k}")
  if not 0 <= seed < config_lib.SEED_LIMIT:
    raise ValueError(f"--seed must be in [0, 2**32), got {seed}")


def check_top_k(top_k: int, vocab_size: int) -> None:
  """--top_k at most the model's vocabulary (one line)."""
  if top_k > vocab_size:
    raise ValueError(f"--top_k must be at most the model's vocabulary size"
                     f" {vocab_size} (0 = all), got {top_k}")


def main(argv: list[str]) -> None:
  cli.start(argv)
  try:
    check_flags(_MAX_NEW.value, _TEMPERATURE.value, _TOP_K.value,
                _SEED.value)
    check_workdir(_WORKDIR.value)
    prompt_P = lm.encode(_PROMPT.value)
    if not len(prompt_P):
      raise ValueError("the prompt is empty: give at least one character")
    model, source = init_from.load_model(_WORKDIR.value)
    check_top_k(_TOP_K.value, source.vocab_size)
    new_T, tokens_per_s = generate.sample(
        model, prompt_P, _MAX_NEW.value, temperature=_TEMPERATURE.value,
        top_k=_TOP_K.value, seed=_SEED.value)
  except (ValueError, NotImplementedError) as e:
    _fail(str(e))
  except OSError as e:
    _fail(cli.path_message(e))
  print(lm.decode(list(prompt_P) + list(new_T)))
  print(f"lightjax.sample: {len(new_T)} new tokens, {tokens_per_s:.1f}"
        " tokens/s", file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=config_lib.flags_parser("lightjax.sample"))
