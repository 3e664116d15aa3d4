"""What an orbax save that failed leaves behind, handled so that the user
sees one line (`checkpointing.CheckpointSaveFailed`, naming the path and the
cause) and the process ends.

  * Its ERROR log records: orbax saves in background threads, and a failed
    save logs its traceback there (twice: the thread that raised, the one
    that waited for it), then once more from `wait_until_finished`: 60+
    lines before the one that says what to do. `HeldErrors`, installed on
    absl's logger while a `Checkpointer` is open, holds orbax's ERROR
    records back; the failure reaches the user as `CheckpointSaveFailed`,
    and any held record it did not account for is printed as one warning
    line when the checkpointer closes (nothing is lost).
  * Its threads, which wait forever for a signal the failed commit never
    sends (`release_threads`).

Private orbax API for the threads (pinned 0.12.8), so best effort: the entry
points also leave by `os._exit` after a failed save (`cli.exit_codes`).
"""

from __future__ import annotations

import logging
import os
import threading

from absl import logging as absl_logging

_ORBAX = os.path.join("orbax", "checkpoint", "")


class HeldErrors(logging.Filter):
  """Holds back orbax's ERROR records (and their tracebacks) logged through
  absl between `install` and `remove`; other records pass."""

  def __init__(self):
    super().__init__()
    self.held: list[logging.LogRecord] = []

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.ERROR and _ORBAX in record.pathname:
      self.held.append(record)
      return False
    return True

  def install(self) -> "HeldErrors":
    absl_logging.get_absl_logger().addFilter(self)
    return self

  def remove(self) -> list[str]:
    """Stops holding; returns the first line of each record held since
    the last `clear`."""
    absl_logging.get_absl_logger().removeFilter(self)
    lines = [" ".join(r.getMessage().split("\n", 1)[0].split())
             for r in self.held]
    self.held = []
    return lines

  def clear(self) -> None:
    """Forgets the records held so far (a failure that was reported)."""
    self.held = []


def release_threads() -> None:
  """Ends orbax's threads left by a failed save.

  Each waits (orbax's async timeout, many minutes) for a signal from the
  commit that failed, and interpreter exit joins them: the run would never
  end. Marked cancelled and given their signal, they return without doing
  anything.
  """
  try:
    # pylint: disable=g-import-not-at-top,protected-access
    from orbax.checkpoint._src.futures import future as ocp_future
    for t in threading.enumerate():
      if isinstance(t, ocp_future._SignalingThread) and t.is_alive():
        t._cancelled = True
        ocp_future.set_signals(t._receive_signals,
                               operation_id=t._operation_id)
  except Exception:  # pylint: disable=broad-except
    pass
