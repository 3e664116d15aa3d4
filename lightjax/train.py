"""Command-line entry point: `python -m lightjax.train --config FILE[:ARG] --workdir DIR`.

Flags only; the job is `lightjax.trainer.train_and_evaluate`. Any config field
can be overridden with `--config.path.to.field=value`. Unknown fields and
unknown variant names stop the run before anything is built, with the valid
choices listed. Rerunning with the same --workdir resumes from the last
readable checkpoint (unreadable newer ones, and an unreadable best/, are
moved to <workdir>/unreadable_checkpoints/ with a warning, never deleted; a
checkpoint whose arrays no longer match the sha256 saved with them counts as
unreadable). metrics.jsonl is cut back to the resumed step, so each
(step, split) appears once however often a run is killed and rerun.

Exit codes:
  0        done
  1        error: non-finite loss (the last good checkpoint is kept), or the
           workdir has checkpoints and none of them reads
  2        bad flag value, bad config (an `init_from` that is no checkpoint,
           or a size contradicting it), a task's input files missing (GLUE's
           TSVs, the lm task's text) or an optional package it needs, or an
           unusable --workdir (a file, not creatable, or holding checkpoints
           of a different config), or a checkpoint save that failed (its
           checkpoints path is a file, a full disk): the run stops at that
           save, or at the next one (orbax saves in the background), with
           one line naming the path and the cause
  3        --workdir is in use by another run (<workdir>/.lock is held);
           nothing was written
  128+sig  stopped by SIGTERM/SIGINT after saving a checkpoint
Each refusal is one line on stderr.
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from lightjax import cli, config_lib, init_from, sharding, trainer

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/listops.py or configs/listops.py:linear.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumes if it has checkpoints).")
_JOIN = cli.define_distributed_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  config = _CONFIG.value
  overrides = cli.start_run("lightjax.train", argv, config, _JOIN)
  try:
    # A checkpoint's sizes replace the config file's; a size given on the
    # command line that contradicts them is refused here.
    init_from.resolve_config(config, explicit=overrides)
    config_lib.validate(config)
  except ValueError as e:
    print(f"lightjax.train: invalid config: {e}", file=sys.stderr)
    sys.exit(2)
  with cli.exit_codes("lightjax.train", bad_input=(sharding.MeshError,)):
    trainer.train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main, flags_parser=config_lib.flags_parser("lightjax.train"))
