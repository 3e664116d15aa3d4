"""The exceptions that mean "the user's input is wrong", not "lightjax has a bug".

A leaf module (it imports nothing of lightjax), so any module may raise these
or derive its own errors from them. `lightjax.cli.exit_codes` maps them, in
one place for every entry point, to one stderr line and `exit_code` (2; 3
for a workdir another run holds); anything else still ends in a traceback.

  UserInputError       base; exit code 2
    ConfigError        a config file or a config value (also a ValueError)
    DataError          a task's input files: missing, unreadable, malformed
                       (also a ValueError; lightjax.data's own errors derive
                       from it)
    CheckpointError    weights or a run directory that cannot be used (also a
                       ValueError; lightjax.models.weights.CheckpointError)
    PathError          a path of the wrong kind (a file where a directory
                       goes, a folder where a file goes); also an OSError
    InUse              a run directory another live process holds; exit 3
"""

from __future__ import annotations


class UserInputError(Exception):
  """The user's input is wrong; str() is the whole one-line message."""
  exit_code = 2


class ConfigError(UserInputError, ValueError):
  """A config file (raises, no get_config, returns None) or a config value."""


class DataError(UserInputError, ValueError):
  """A task's input files are missing, unreadable or malformed."""


class CheckpointError(UserInputError, ValueError):
  """Weights or a run directory that cannot be used."""


class PathError(UserInputError, OSError):
  """A path of the wrong kind (a file where a directory goes, ...)."""

  def __str__(self) -> str:
    return str(self.args[0]) if self.args else ""


class InUse(UserInputError):
  """A run directory is held by another live process (its .lock)."""
  exit_code = 3
