"""The one on-disk cache of task arrays: `.npz` files under the data dir.

Generated tasks (ListOps, MQAR, Pathfinder) and encoded ones (GLUE, LRA
Text, Pathfinder's decoded originals) are built once per config and stored
as `<data_dir>/<folder>/<readable name>_<digest>.npz`, the digest
(`digest`) covering every input that changes the arrays. `cached` is the one
load-or-build-and-store step behind all of them:

  * the file holds one array per (split, field), named `<split><sep><field>`,
    and optionally a "params" string, the `stamp`: the sorted-key JSON of what
    the arrays were built from, re-checked on load so a file whose name
    matches but whose content was built from something else is not reused;
  * a missing, unreadable (truncated, not an npz, a field missing) or
    mis-stamped file is rebuilt and overwritten, with a warning;
  * the file is written atomically (`lightjax.files.atomic_write`: a
    temporary file, then `os.replace`), so a concurrent reader or a crash
    never sees half a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Callable, Sequence

from absl import logging
import numpy as np

from lightjax import files

Splits = dict[str, dict[str, np.ndarray]]

STAMP_KEY = "params"


def digest(key: Any, length: int = 10) -> str:
  """The first `length` hex digits of the sha256 of `key` as sorted-key JSON
  (the suffix that makes a cache file's name unique to its inputs)."""
  text = json.dumps(key, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:length]


def npz_path(data_dir: str, folder: str, name: str, key: Any,
             digits: int = 10) -> str:
  """`<data_dir>/<folder>/<name>_<digest(key, digits)>.npz`: a cache file
  named readably by `name` and uniquely by everything in `key`."""
  return os.path.join(data_dir, folder, f"{name}_{digest(key, digits)}.npz")


def rows(splits: Splits, field: str = "targets") -> dict[str, int]:
  """split -> its number of rows (the length of its `field`), for log lines."""
  return {s: len(d[field]) for s, d in splits.items()}


def _read(path: str, stamp: Any, splits: Sequence[str],
          fields: Sequence[str], sep: str, what: str,
          redo: str) -> Splits | None:
  """The arrays stored at `path`, or None if absent, unusable or stamped
  with other params (the last two with a warning)."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      if stamp is not None and json.loads(str(f[STAMP_KEY])) != json.loads(
          json.dumps(stamp, sort_keys=True)):
        logging.warning("%s cache %s has other params; %s", what, path, redo)
        return None
      return {s: {k: f[f"{s}{sep}{k}"] for k in fields} for s in splits}
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("Unreadable %s cache %s (%s); %s", what, path, e, redo)
    return None


def cached(path: str, build: Callable[[], Splits], *, splits: Sequence[str],
           fields: Sequence[str], what: str, stamp: Any = None,
           made: Callable[[Splits], str] | None = None, sep: str = "_",
           redo: str = "regenerating") -> Splits:
  """Loads split -> field -> array from the cache at `path`, or builds and
  stores it.

  Args:
    path: the `.npz` file.
    build: makes {split: {field: array}} (what is stored, and returned).
    splits / fields: the arrays stored and read back, in order.
    what: the data's name in log lines ("ListOps").
    stamp: JSON-able description of the inputs, stored and compared on
      load; None for caches whose path digest is the whole check.
    made: the log line's start after building (default "Generated <what>"),
      followed by " in <seconds> s; caching to <path>".
    sep: between split and field in the stored array names.
    redo: what the warning says is done about an unusable file.
  Returns:
    {split: {field: array}} for `splits` x `fields`.
  """
  loaded = _read(path, stamp, splits, fields, sep, what, redo)
  if loaded is not None:
    logging.info("Loaded %s from cache %s", what, path)
    return loaded
  start = time.perf_counter()
  built = build()
  built = {s: {k: built[s][k] for k in fields} for s in splits}
  logging.info("%s in %.1f s; caching to %s",
               made(built) if made else f"Generated {what}",
               time.perf_counter() - start, path)
  arrays = {f"{s}{sep}{k}": v for s, d in built.items() for k, v in d.items()}
  if stamp is not None:
    arrays[STAMP_KEY] = np.asarray(json.dumps(stamp, sort_keys=True))
  # Atomic: a concurrent reader or a crash never sees a half-written cache.
  files.atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)
  return built
