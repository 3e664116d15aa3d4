"""Atomic file writes: the one way lightjax writes a file that others read.

WHY: a reader (a resumed run, `lightjax.report`, a concurrent data loader) or
a crash must never see a half-written file. The content goes to a temporary
file in the same directory, is flushed to disk, then `os.replace`d over the
target (atomic on POSIX within one filesystem). Orbax does the same for
checkpoints (temporary directory, then rename).
"""

from __future__ import annotations

import os
import tempfile
from typing import IO, Callable


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
