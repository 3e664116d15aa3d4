"""Atomic file writes: the one way lightjax writes a file that others read.

WHY: a reader (a resumed run, `lightjax.report`, a concurrent data loader) or
a crash must never see a half-written file. The content goes to a temporary
file in the same directory, is flushed to disk, then `os.replace`d over the
target (atomic on POSIX within one filesystem). Orbax does the same for
checkpoints (temporary directory, then rename).

`check_output_dir` refuses, before any work, an output directory the user
named that is a file (one line; nothing is written).
"""

from __future__ import annotations

import os
import tempfile
from typing import IO, Callable

from lightjax import errors


def atomic_write(path: str, write: Callable[[IO], None],
                 binary: bool = False) -> None:
  """Calls write(f) on a temporary file, then renames it to `path`."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-",
                             suffix=os.path.splitext(path)[1])
  try:
    with os.fdopen(fd, "wb" if binary else "w") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    # mkstemp creates the file 0600; give it what open() would (0666 - umask)
    # so other users' report and bench runs can read it.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def check_output_dir(path: str, flag: str = "--out") -> None:
  """`errors.PathError` (one line) when `path`, where an entry point is to
  write its files, is an existing file (or its parent is); called before
  any work, so nothing is read, computed or written first."""
  here = os.path.abspath(path)
  while here and not os.path.exists(here):
    parent = os.path.dirname(here)
    if parent == here:
      return
    here = parent
  if not os.path.isdir(here):
    where = "" if here == os.path.abspath(path) else f": {here}"
    raise errors.PathError(
        f"{flag} {path}{where} is a file, not a directory; give a directory"
        " (it is created if missing)")
