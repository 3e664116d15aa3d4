"""What the `python -m lightjax.<name>` entry points share: how a failure
becomes one stderr line and an exit code, and the flags that join a
multi-process job (the entry points that train: train, shrink).

  1            non-finite loss or gradient (the last good checkpoint is kept)
  2            a task's data files or an optional package missing, and
               what the entry point names as bad input (its config errors)
  WorkdirError its own code (in use: 3; unusable, or a checkpoint save
               failed: 2; none readable: 1)
  128+signal   interrupted by SIGTERM/SIGINT after saving a checkpoint
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable

from absl import app, flags, logging

from lightjax import checkpointing, data, sharding, trainer


def define_distributed_flags() -> Callable[[str], None]:
  """Defines --coordinator_address, --num_processes, --process_id and
  --distributed; returns `join(prog)`, which main calls before anything
  touches a device (`sharding.initialize_distributed`; bad values: one
  line, exit 2)."""
  coordinator = flags.DEFINE_string(
      "coordinator_address", "", "host:port of process 0 of a multi-process"
      " job (with --num_processes and --process_id); see --distributed.")
  num_processes = flags.DEFINE_integer("num_processes", 0,
                                       "Processes in the job.")
  process_id = flags.DEFINE_integer("process_id", -1,
                                    "This process's index.")
  auto = flags.DEFINE_bool(
      "distributed", False, "Join a multi-host job JAX detects by itself"
      " (Cloud TPU VM pod slices, Slurm, Open MPI).")

  def join(prog: str) -> None:
    try:
      sharding.initialize_distributed(coordinator.value, num_processes.value,
                                      process_id.value, auto.value)
    except ValueError as e:
      print(f"{prog}: {e}", file=sys.stderr)
      sys.exit(2)
  return join


def start(argv: list[str]) -> None:
  """What every absl entry point does first: refuses extra arguments and
  keeps orbax's per-save / per-restore INFO lines off the terminal (unless
  --verbosity is given)."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def start_run(prog: str, argv: list[str], config, join: Callable[[str], None],
              unnamed: tuple[str, ...] = ()) -> list[str]:
  """What a training entry point (train, shrink) does before its work:
  `start`, joins a multi-process job, and names the run after its
  `--config.` overrides (runs that differ must not share a name: reports
  group by it), leaving out overrides that start with one of `unnamed`.
  Returns the overrides ("key=value")."""
  start(argv)
  join(prog)
  overrides = [a[len("--config."):] for a in sys.argv
               if a.startswith("--config.")]
  named = [o for o in overrides if not o.startswith(unnamed)]
  if named:
    with config.unlocked():
      config.config_name += "[" + ",".join(named) + "]"
  return overrides


@contextlib.contextmanager
def exit_codes(prog: str, bad_input: tuple[type[BaseException], ...] = ()):
  """Runs the body; a known failure prints `prog: message` and exits."""
  def fail(e: BaseException, code: int):
    print(f"{prog}: {e}", file=sys.stderr)
    if isinstance(e, checkpointing.CheckpointSaveFailed):
      # orbax's threads of the failed save wait forever for a signal that
      # never comes, and interpreter exit would join them: leave now.
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)  # pylint: disable=protected-access
    sys.exit(code)

  try:
    yield
  except trainer.Interrupted as e:
    logging.warning(str(e))
    fail(e, 128 + e.signum)
  except FloatingPointError as e:
    fail(e, 1)
  except checkpointing.WorkdirError as e:  # before ValueError: a subclass
    fail(e, e.exit_code)
  except (FileNotFoundError, data.MissingPackage) as e:
    # a task's data files, or an optional package it needs (the message
    # says which, and what to do)
    fail(e, 2)
  except bad_input as e:
    fail(e, 2)
