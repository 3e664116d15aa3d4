"""`python -m lightjax.shrink --config configs/shrink/<recipe>.py --workdir DIR
--config.init_from=<teacher>`: shrink a trained model, recover, report.

The job is `lightjax.shrink.run.shrink_and_evaluate`; see
`lightjax/shrink/__init__.py` for the methods and configs/shrink/ for the
recipes. Exit codes as `lightjax.train`: 2 for a bad config (an unknown
method, a prune fraction outside (0, 1), a drop that removes every layer, a
teacher whose task does not match), 3 when the workdir is in use.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from lightjax import cli, config_lib
from lightjax.shrink import run

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A recipe, e.g. configs/shrink/prune_heads.py.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumes).")
_JOIN = cli.define_distributed_flags()  # as lightjax.train
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  config = _CONFIG.value
  overrides = cli.start_run("lightjax.shrink", argv, config, _JOIN,
                            unnamed=("init_from=",))
  with cli.exit_codes("lightjax.shrink", bad_input=(ValueError, KeyError)):
    run.shrink_and_evaluate(config, _WORKDIR.value, explicit=overrides)


if __name__ == "__main__":
  app.run(main, flags_parser=config_lib.flags_parser("lightjax.shrink"))
