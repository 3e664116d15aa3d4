"""Command line: `python -m lightjax.sweep experiments/FILE.py[:ARG] --workdir ROOT`.

  --dry_run              print every trial's command (and whether it is
                         finished), run nothing
  --launcher tpu_vm      print the `gcloud compute tpus tpu-vm ssh` line of
    --tpu NAME --zone Z  each trial (--execute runs them, one after the other)
    [--project P]

The work is `lightjax.sweep` (run_local, LAUNCHERS); exit code 0 when every
trial finished, 1 when one failed (the others still ran), 2 for bad input
(a missing sweep file, an unknown launcher, a launcher's missing flag).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

from absl import app, flags

from lightjax import cli, config_lib, sweep

_WORKDIR = flags.DEFINE_string("workdir", None, "Root of the trials' workdirs.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands only.")
_LAUNCHER = flags.DEFINE_string("launcher", "local", "local or tpu_vm.")
_TPU = flags.DEFINE_string("tpu", "", "tpu_vm: the TPU VM (slice) name.")
_ZONE = flags.DEFINE_string("zone", "", "tpu_vm: its zone.")
_PROJECT = flags.DEFINE_string("project", "", "tpu_vm: the GCP project.")
_EXECUTE = flags.DEFINE_bool("execute", False, "tpu_vm: run the gcloud"
                             " commands instead of printing them.")
flags.mark_flags_as_required(["workdir"])


def _fail(message: str) -> None:
  print(f"lightjax.sweep: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv: list[str]) -> None:
  if len(argv) < 2:
    _fail("give one sweep file: experiments/FILE.py[:ARG]")
  cli.start(argv, positional=1)
  with cli.exit_codes("lightjax.sweep", bad_input=(ValueError,)):
    _run(sweep.load(argv[1]))


def _run(s: "sweep.Sweep") -> None:
  root = _WORKDIR.value
  if _LAUNCHER.value == "local":
    if _DRY_RUN.value:
      for t in s.trials:
        mark = "finished" if t.done(root) else "to run"
        print(f"# {t.name} ({mark})\n" + shlex.join(["python", *t.argv(root)]))
      print(f"# {len(s.trials)} trials")
      return
    status = sweep.run_local(s, root)
    failed = [k for k, v in status.items() if v.startswith("failed")]
    print(f"{len(status) - len(failed)} of {len(status)} trials finished"
          + (f"; failed: {', '.join(failed)}" if failed else "."))
    sys.exit(1 if failed else 0)
  make = sweep.LAUNCHERS.get(_LAUNCHER.value)
  commands = make(s, root, tpu=_TPU.value, zone=_ZONE.value,
                  project=_PROJECT.value)
  if not _EXECUTE.value or _DRY_RUN.value:
    for cmd in commands:
      print(shlex.join(cmd))
    return
  if shutil.which(commands[0][0]) is None:
    _fail(f"{commands[0][0]} not found: install the Google Cloud CLI"
          " (https://cloud.google.com/sdk/docs/install) or drop --execute")
  for cmd in commands:
    rc = subprocess.run(cmd, check=False).returncode
    if rc:
      sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=config_lib.flags_parser("lightjax.sweep"))
