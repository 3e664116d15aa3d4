"""Sweeps: a Python file in experiments/ lists trials; one command runs them.

  python -m lightjax.sweep experiments/lra_table1.py --workdir runs/lra
  python -m lightjax.sweep experiments/lra_table1.py:smoke --workdir /tmp/s
  python -m lightjax.sweep experiments/lra_table1.py --workdir runs/lra --dry_run
  python -m lightjax.sweep experiments/lra_table1.py --workdir runs/lra \
      --launcher tpu_vm --tpu my-v4-32 --zone us-central2-b

A sweep file defines `get_sweep(arg) -> Sweep`: its trials, each one
lightjax command (`lightjax.train`, `lightjax.shrink` or `lightjax.bench`)
with a config and overrides, named by a path under the sweep's workdir, and
what turns the finished workdirs into the table (a command, or a function
of the root defined in the sweep file). `product` and
`zipped` build override grids from axes.

Running locally, trials go one after the other, each a fresh process (what
its command line would run by hand): a trial whose workdir has its result
(`summary.json`, or `bench.md` for the bench) is skipped; any other is
started, and the trainer resumes it from its last checkpoint if it was
interrupted, so killing a sweep and rerunning the command loses at most the
steps since a trial's last checkpoint. A failed trial is reported and the
others go on. Launchers print (or run) the same commands elsewhere:
`tpu_vm` as `gcloud compute tpus tpu-vm ssh ... --worker=all` lines (every
host of a pod slice runs a training trial; `--distributed` makes JAX find
the others; a bench trial runs on `--worker=0`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shlex
import subprocess
import sys
import time
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from lightjax import config_lib
from lightjax.registry import Registry

class Program(NamedTuple):
  marker: str      # what it writes when a trial is finished
  out_flag: str    # the flag that names its output directory
  multi_host: bool  # joins a multi-process job (`--distributed`)


# The bench measures one host's devices: on a pod slice one worker runs it.
PROGRAMS = {"lightjax.train": Program("summary.json", "--workdir", True),
            "lightjax.shrink": Program("summary.json", "--workdir", True),
            "lightjax.bench": Program("bench.md", "--out", False)}


@dataclasses.dataclass(frozen=True)
class Trial:
  """One command of a sweep. `config` is a config spec (FILE[:ARG]);
  `overrides` become `--config.key=value`; `{root}` in a value is the
  sweep's workdir (a shrink trial's `init_from` points at another trial)."""
  name: str
  config: str
  overrides: tuple[tuple[str, Any], ...] = ()
  program: str = "lightjax.train"

  def workdir(self, root: str) -> str:
    return os.path.join(root, self.name)

  def argv(self, root: str) -> list[str]:
    out_flag = PROGRAMS[self.program].out_flag
    args = ["-m", self.program, "--config", self.config,
            f"{out_flag}={self.workdir(root)}"]
    for key, value in self.overrides:
      value = str(value).replace("{root}", root)
      args.append(f"--config.{key}={value}")
    return args

  def done(self, root: str) -> bool:
    marker = PROGRAMS[self.program].marker
    return os.path.isfile(os.path.join(self.workdir(root), marker))


@dataclasses.dataclass(frozen=True)
class Sweep:
  trials: tuple[Trial, ...]
  # Once every trial has finished: a command, e.g. ("-m",
  # "lightjax.report", "{root}", "--out", "{root}/table"), or a function of
  # the root (the sweep file's own table maker); () = none. Rerunning a
  # finished sweep remakes the table.
  report: tuple[str, ...] | Callable[[str], Any] = ()

  def __post_init__(self):
    names = [t.name for t in self.trials]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
      raise ValueError(f"sweep trials must have distinct names; repeated: {dupes}")
    for t in self.trials:
      if t.program not in PROGRAMS:
        raise ValueError(f"trial {t.name}: program {t.program!r}; valid:"
                         f" {', '.join(PROGRAMS)}")


def product(**axes: Sequence[Any]) -> list[dict[str, Any]]:
  """Every combination of the axes' values: product(a=[1, 2], b=[3]) ->
  [{a: 1, b: 3}, {a: 2, b: 3}]."""
  keys = list(axes)
  return [dict(zip(keys, values)) for values in
          itertools.product(*(axes[k] for k in keys))]


def zipped(**axes: Sequence[Any]) -> list[dict[str, Any]]:
  """The axes' values side by side (all the same length)."""
  lengths = {k: len(v) for k, v in axes.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f"zipped axes must have one length; got {lengths}")
  keys = list(axes)
  return [dict(zip(keys, values)) for values in zip(*(axes[k] for k in keys))]


def load(spec: str) -> Sweep:
  """The Sweep of "experiments/file.py[:arg]"."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ValueError(f"no sweep file {path}")
  module = config_lib.import_file(path, "_lightjax_sweep")
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"{path} defines no get_sweep(arg)")
  with config_lib.user_code(path, "get_sweep"):
    return module.get_sweep(arg or None)


def _python() -> list[str]:
  return [sys.executable]


def run_local(sweep: Sweep, root: str, *, say=print,
              extra: Iterable[str] = ()) -> dict[str, str]:
  """Runs every trial not finished yet, in order; returns name -> status
  ("skipped" | "done" | "failed (exit N)"). Then, if none failed, the
  sweep's report."""
  os.makedirs(root, exist_ok=True)
  status, n = {}, len(sweep.trials)
  start = time.monotonic()
  for i, trial in enumerate(sweep.trials, 1):
    if trial.done(root):
      status[trial.name] = "skipped"
      say(f"[{i}/{n}] {trial.name}: finished before, skipped")
      continue
    say(f"[{i}/{n}] {trial.name}: {shlex.join(['python', *trial.argv(root)])}")
    log = os.path.join(trial.workdir(root) + ".log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "a") as f:
      rc = subprocess.run([*_python(), *trial.argv(root), *extra], stdout=f,
                          stderr=subprocess.STDOUT).returncode
    status[trial.name] = "done" if rc == 0 else f"failed (exit {rc}, log {log})"
    left = sum(1 for t in sweep.trials[i:] if not t.done(root))
    say(f"[{i}/{n}] {trial.name}: {status[trial.name]}; {left} to go,"
        f" {time.monotonic() - start:.0f} s so far")
  failed = [k for k, v in status.items() if v.startswith("failed")]
  if sweep.report and not failed:
    if callable(sweep.report):
      say(f"Report: the sweep file's {sweep.report.__name__}({root!r})")
      try:
        sweep.report(root)
      except Exception as e:  # pylint: disable=broad-except
        say(f"Report failed: {type(e).__name__}: {e}")  # trials are kept
    else:
      cmd = [a.replace("{root}", root) for a in sweep.report]
      say("Report: " + shlex.join(["python", *cmd]))
      subprocess.run([*_python(), *cmd], check=False)
  return status


# --- launchers: the same commands, elsewhere --------------------------------------

LAUNCHERS: Registry = Registry("launcher")


def tpu_vm_commands(sweep: Sweep, root: str, *, tpu: str, zone: str,
                    project: str = "", repo_dir: str = "~/lightjax"
                    ) -> list[list[str]]:
  """One `gcloud compute tpus tpu-vm ssh` per trial: every worker of the
  slice runs a training trial (`--worker=all`) with `--distributed`, so
  `jax.distributed.initialize()` finds the others on its own; worker 0
  alone runs a bench trial (it measures one host's devices)."""
  if not tpu or not zone:
    raise ValueError("--launcher tpu_vm needs --tpu NAME and --zone ZONE")
  out = []
  for trial in sweep.trials:
    multi = PROGRAMS[trial.program].multi_host
    inner = shlex.join(["python3", *trial.argv(root),
                        *(["--distributed"] if multi else [])])
    cmd = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, f"--zone={zone}",
           f"--worker={'all' if multi else 0}",
           f"--command=cd {repo_dir} && {inner}"]
    if project:
      cmd.insert(5, f"--project={project}")
    out.append(cmd)
  return out


LAUNCHERS.register("tpu_vm", tpu_vm_commands)
