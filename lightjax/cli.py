"""What the `python -m lightjax.<name>` entry points share: how a failure
becomes one stderr line and an exit code (`exit_codes`, the one place that
decides), argument checks (`start`), and the flags that join a
multi-process job (the entry points that train: train, shrink).

  0            done
  1            non-finite loss or gradient (the last good checkpoint is
               kept), or a bug in lightjax (its traceback is printed)
  2            the user's input: `lightjax.errors.UserInputError` (config,
               data, checkpoint, path errors), a missing file, a path of the
               wrong kind (a file where a directory goes), an optional
               package missing, what the entry point names as bad input
  3            a workdir in use by a live run (its .lock is held)
  WorkdirError its own code (in use: 3; unusable, or a checkpoint save
               failed: 2; none readable: 1)
  128+signal   interrupted by SIGTERM/SIGINT after saving a checkpoint
               (a train loop), or by SIGINT anywhere else (130)
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Callable

from absl import flags, logging

from lightjax import checkpointing, data, errors, sharding, trainer


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


def prog_name() -> str:
  """"lightjax.train" for `python -m lightjax.train` (from sys.argv[0])."""
  path = os.path.abspath(sys.argv[0] if sys.argv else "lightjax")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  rel = os.path.relpath(path, root)
  if rel.startswith("..") or not rel.endswith(".py"):
    return os.path.basename(path)
  rel = rel[:-3].replace(os.sep, ".")
  return rel[:-len(".__main__")] if rel.endswith(".__main__") else rel


def fail(prog: str, message: object, code: int = 2):
  """Prints `prog: message` (one line) on stderr and exits with `code`."""
  print(f"{prog}: {message}", file=sys.stderr)
  sys.exit(code)


def start(argv: list[str], *, positional: int = 0) -> None:
  """What every absl entry point does first: refuses extra arguments (one
  line, exit 2; `positional` is how many the entry point takes) and
  keeps orbax's per-save / per-restore INFO lines off the terminal (unless
  --verbosity is given)."""
  if len(argv) > 1 + positional:
    fail(prog_name(), f"unexpected arguments: {' '.join(argv[1 + positional:])}"
         " (every option is a --flag; see --help)")
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


def path_message(e: OSError) -> str:
  """One line for an OSError about a path the user gave."""
  if isinstance(e, errors.UserInputError) or e.filename is None:
    return str(e)
  hint = {FileExistsError: " (a file where a directory is needed)",
          NotADirectoryError: " (a file where a directory is needed)",
          IsADirectoryError: " (a directory where a file is needed)",
          }.get(type(e), "")
  return f"{e.filename}: {e.strerror}{hint}"


@contextlib.contextmanager
def exit_codes(prog: str, bad_input: tuple[type[BaseException], ...] = ()):
  """Runs the body; a known failure prints `prog: message` (one line) and
  exits with its code (module docstring). The one place that decides which
  exceptions are the user's input, for every entry point; anything else
  (a bug in lightjax) keeps its traceback."""
  try:
    yield
  except trainer.Interrupted as e:
    fail(prog, e, 128 + e.signum)  # once: not logged as well
  except KeyboardInterrupt:  # Ctrl-C outside a train loop's guard
    fail(prog, f"interrupted by signal {signal.SIGINT.value} (SIGINT); rerun"
         " the same command (a training run resumes from its last"
         " checkpoint)", 128 + signal.SIGINT)
  except FloatingPointError as e:
    fail(prog, e, 1)
  except checkpointing.CheckpointSaveFailed as e:
    # orbax's threads of the failed save wait forever for a signal that
    # never comes, and interpreter exit would join them: leave now.
    print(f"{prog}: {e}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(e.exit_code)  # pylint: disable=protected-access
  except checkpointing.WorkdirError as e:  # before ValueError: a subclass
    fail(prog, e, e.exit_code)
  except (errors.UserInputError, data.MissingPackage) as e:
    # config, data, checkpoint, path errors, an optional package missing
    # (the message says which, and what to do)
    fail(prog, e, getattr(e, "exit_code", 2))
  except (FileNotFoundError, FileExistsError, NotADirectoryError,
          IsADirectoryError, PermissionError) as e:
    # a path the user gave: missing, or of the wrong kind
    fail(prog, path_message(e), 2)
  except bad_input as e:
    fail(prog, e, 2)
