"""Command-line entry point: `python -m lightjax.bench --config FILE[:PRESET] --out DIR`.

Flags only; the work is `lightjax.bench.run`. Any config field can be
overridden with `--config.path.to.field=value` (e.g.
`--config.variants=softmax,linear --config.lengths=1024,4096`; a variant with
option overrides is its own row: `softmax:implementation=einsum`); unknown fields
stop the run before anything is built. Writes bench.jsonl, bench.csv,
bench.md and three PNGs into --out (the `minilm` peer benchmark: no PNGs;
see configs/bench.py for presets).
Exit codes: 0 done (failed points are recorded, not fatal), 2 bad config.
"""

from __future__ import annotations

import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from lightjax import bench, cli, config_lib
from lightjax.bench import plan

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Bench config, e.g. configs/bench.py:cpu_quick.",
    lock_config=True)
_OUT = flags.DEFINE_string("out", None, "Output directory.")
flags.mark_flags_as_required(["config", "out"])


def main(argv: list[str]) -> None:
  cli.start(argv)
  config = _CONFIG.value
  try:
    bench.check(config)
  except ValueError as e:
    print(f"lightjax.bench: invalid config: {e}", file=sys.stderr)
    sys.exit(2)
  command = "python -m lightjax.bench " + shlex.join(sys.argv[1:])
  with cli.exit_codes("lightjax.bench"):
    bench.run(config, _OUT.value, command=command)


# Tuple fields given as comma-separated entries on the command line.
_LIST_FLAGS = ("--config.variants", "--config.decode.variants",
               "--config.edge.models", "--config.minilm.students")


def _variant_lists(argv: list[str]) -> list[str]:
  """`--config.variants=a,b:k=v` as the tuple literal ml_collections parses.

  ml_collections reads a tuple override as a Python literal; plain names
  fall back to one string (split later by `plan.listed`), but an entry with
  options (`softmax:implementation=einsum`) is a syntax error to it, and so
  is a list of paths (`--config.minilm.students=runs/a,runs/b`).
  """
  out = []
  for a in argv:
    flag, eq, value = a.partition("=")
    if (eq and flag in _LIST_FLAGS
        and not value.lstrip().startswith(("(", "["))):
      a = f"{flag}={tuple(plan.listed(value))!r}"
    out.append(a)
  return out


if __name__ == "__main__":
  parse = config_lib.flags_parser("lightjax.bench")
  app.run(main, flags_parser=lambda argv: parse(_variant_lists(argv)))
