"""What the `python -m lightjax.<name>` entry points share: how a failure
becomes one stderr line and an exit code.

  1            non-finite loss or gradient (the last good checkpoint is kept)
  2            a task's data files or an optional package missing, and
               what the entry point names as bad input (its config errors)
  WorkdirError its own code (in use: 3; unusable: 2; none readable: 1)
  128+signal   interrupted by SIGTERM/SIGINT after saving a checkpoint
"""

from __future__ import annotations

import contextlib
import sys

from absl import logging

from lightjax import checkpointing, data, trainer


@contextlib.contextmanager
def exit_codes(prog: str, bad_input: tuple[type[BaseException], ...] = ()):
  """Runs the body; a known failure prints `prog: message` and exits."""
  def fail(e: BaseException, code: int):
    print(f"{prog}: {e}", file=sys.stderr)
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
