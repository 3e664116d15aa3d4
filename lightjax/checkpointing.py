"""Orbax checkpoints: the last N train states, the best-validation model, SIGTERM.

Two managers under the workdir:
  checkpoints/  full train state (model, optimizer, dropout RNG) every
                `checkpoint_every` steps, the last `keep` kept. Resuming needs
                only this plus the step: data order is a function of the step
                (`lightjax.data.pipeline`), so no iterator state is stored.
  best/         the model state at the best validation accuracy, kept apart so
                `max_to_keep` of the first never deletes it; the test split is
                scored on it (LRA scored the last checkpoint instead).
Orbax writes to a temporary directory and renames, so a kill mid-save never
leaves a half checkpoint that a resume would pick up.

A checkpoint can still become unreadable afterwards (a copy cut short, a full
disk, bit rot). `restore_latest` then falls back to the newest one that reads
and moves the unreadable ones aside to <workdir>/unreadable_checkpoints/:
never deleted (the user decides), but out of orbax's way, since the resumed
run saves that step number again. One warning line each is all the user sees:
a failed restore's reads are let finish (`_settled_reads`) and orbax does not
parse step metadata up front (`_manager`), which were pages of async
tracebacks and an ERROR log line before.

Every saved array's sha256 is written in the checkpoint's json meta
("checksums", by tree path) and checked after a restore: bytes flipped on
disk that still decode (bit rot, a bad copy) make the checkpoint unreadable
(`ChecksumMismatch`) instead of loading silently. Checkpoints written before
this have none and are not checked.

A save that fails (the checkpoints path is a file, the disk is full) stops
the run with `CheckpointSaveFailed`, one line: orbax saves in a background
thread, so the failure is looked for before the next save and when the run
waits for its saves; an unusable checkpoints path is refused before
training (`check_dirs`). Orbax's own tracebacks of it and its stuck threads
are `lightjax.failed_saves`' business.

`WorkdirLock` keeps a second run off a workdir that is in use: two runs would
interleave one metrics.jsonl and one checkpoint directory.

Orbax's `reached_preemption` is False on a single host without
`jax.distributed.initialize()`, so `PreemptionGuard` installs its own SIGTERM /
SIGINT handler that only sets a flag; the loop polls it and saves.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lightjax import failed_saves

_ITEMS = ("state", "meta")


class WorkdirError(ValueError):
  """The workdir cannot be used as it is; the message is one line for the user.

  `exit_code` is what `lightjax.train` exits with (documented there).
  """

  exit_code = 2


class WorkdirInUse(WorkdirError):
  """Another live process holds the workdir's lock."""

  exit_code = 3


class NoReadableCheckpoint(WorkdirError):
  """Checkpoints exist but none reads; nothing was moved or deleted."""

  exit_code = 1


class CheckpointSaveFailed(WorkdirError):
  """A checkpoint could not be written (path unusable, disk full, I/O).

  Exit 2: what is wrong is the workdir's storage, not lightjax; the message
  names the path and the cause.
  """


class ChecksumMismatch(ValueError):
  """A restored array's bytes differ from those saved (`checksums`)."""


def warn(msg: str) -> None:
  """A warning on stderr, process 0 only (stdout is the progress lines)."""
  if jax.process_index() == 0:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def short_reason(e: BaseException) -> str:
  """A short, one-line reason from a restore error (orbax's can be pages)."""
  text = " ".join(str(e).split()) or "no message"
  text = text if len(text) <= 160 else text[:157] + "..."
  return f"{type(e).__name__}: {text}"


class WorkdirLock:
  """An exclusive lock on <workdir>/.lock, holding the holder's pid and host.

  flock, not the file's existence, is the lock: the kernel drops it when the
  holder exits however it dies, so a lock file left by a dead process never
  blocks. The pid/host inside are only for the message. Only process 0 locks
  (the others of a multi-host job share its workdir by design).
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, ".lock")
    self._file = None

  def acquire(self) -> "WorkdirLock":
    if jax.process_index() != 0:
      return self
    # "a+", not "w": truncating before holding the lock would wipe the
    # holder's pid/host that the refusal message reads.
    f = open(self.path, "a+")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().split()
      f.close()
      who = (f"pid {holder[0]} on host {holder[1]}" if len(holder) >= 2
             else "another process")
      workdir = os.path.dirname(self.path)
      raise WorkdirInUse(
          f"workdir {workdir} is in use by {who} (lock {self.path}); wait for"
          " it to finish or use another --workdir") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()} {socket.gethostname()}\n")
    f.flush()
    self._file = f
    return self

  def release(self) -> None:
    if self._file is not None:
      # The file stays (unlinking a lock file races with a new holder).
      self._file.truncate(0)
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
    return False


def _manager(directory: str, keep: int) -> ocp.CheckpointManager:
  # lightweight_initialize: orbax would otherwise read every step's
  # _CHECKPOINT_METADATA on creation, for commit times that only time-based
  # keep policies use (ours keeps the last N by step), and log an ERROR line
  # for one that does not parse, before `restore_latest` knows whether that
  # checkpoint reads at all (it reports an unreadable one itself, once).
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=keep, create=True, lightweight_initialize=True),
      item_names=_ITEMS,
  )


class _SettlingLoop(asyncio.SelectorEventLoop):
  """An event loop that, on close, first lets its unfinished tasks finish.

  Orbax runs a restore's reads as tasks in a fresh event loop and closes it
  when the restore returns. When one read fails, the restore raises at once
  and the loop closes under the sibling reads still in flight in
  tensorstore's threads; each then reports completion to the closed loop
  and prints a `RuntimeError: Event loop is closed` traceback (hundreds of
  lines for one unreadable checkpoint). Letting them finish first (local
  reads: milliseconds) ends the failed restore cleanly.
  """

  SETTLE_S = 60.0  # bounded: a read that never ends must not hang the run

  def close(self) -> None:
    if not self.is_running() and not self.is_closed():
      deadline = time.monotonic() + self.SETTLE_S
      while (pending := asyncio.all_tasks(self)) and (
          left := deadline - time.monotonic()) > 0:
        done, _ = self.run_until_complete(asyncio.wait(pending, timeout=left))
        for task in done:  # read, or asyncio logs "never retrieved" for each
          if not task.cancelled():
            task.exception()
    super().close()


class _SettlingPolicy(asyncio.DefaultEventLoopPolicy):

  def new_event_loop(self) -> asyncio.AbstractEventLoop:
    return _SettlingLoop()


@contextlib.contextmanager
def _settled_reads():
  """Event loops created in this block settle their tasks before closing.

  Only around restores, where the main thread waits on orbax and no save is
  in flight (the trainer waits for saves before restoring the best model).
  """
  previous = asyncio.get_event_loop_policy()
  asyncio.set_event_loop_policy(_SettlingPolicy())
  try:
    yield
  finally:
    asyncio.set_event_loop_policy(previous)


def abstract(tree):
  """Shape/dtype/sharding skeleton used as the restore target."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _is_empty(x) -> bool:
  return hasattr(x, "shape") and 0 in tuple(x.shape)


def without_empty(tree):
  """`tree` with zero-size arrays left out (None): orbax refuses to save
  them ("Cannot save arrays with zero size"), and a model with a layer
  pruned to 0 heads or 0 MLP units has some (its [E, 0] projections)."""
  return jax.tree.map(lambda x: None if _is_empty(x) else x, tree)


def with_empty(restored, abstract_state):
  """Puts back, as zeros of their shape and dtype, the zero-size arrays
  `without_empty` left out (they hold no numbers, so nothing is lost)."""
  return jax.tree.map(
      lambda a, r: jnp.zeros(a.shape, a.dtype) if _is_empty(a) else r,
      abstract_state, restored)


# The files a run keeps in its workdir (the lock, writers, the trainer's).
WORKDIR_FILES = (".lock", "config.json", "model.json", "metrics.jsonl",
                 "summary.json")


def open_workdir(workdir: str, stack: contextlib.ExitStack) -> None:
  """Creates `workdir` and holds its `WorkdirLock` until `stack` closes.

  Raises:
    WorkdirError: it is a file, holds a directory where a file goes
      (`WORKDIR_FILES`), cannot be created, or is in use.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir {workdir} is a file, not a directory")
  for name in WORKDIR_FILES:  # a folder there: the first write would fail
    if os.path.isdir(path := os.path.join(workdir, name)):
      raise WorkdirError(f"{path} is a directory, where the run keeps a file;"
                         " move it away or use another --workdir")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(
        f"--workdir {workdir} cannot be created: {e.strerror}") from None
  # Before anything is written: a second run would interleave metrics.jsonl
  # and the checkpoints of the first.
  stack.enter_context(WorkdirLock(workdir))
  check_dirs(workdir)  # a save that cannot work: refused before any output


def _meta(saved) -> dict[str, Any]:
  """A checkpoint's json metadata as this code names it: the best
  validation selection score is "best_val_score", which checkpoints written
  before the rename call "best_val_accuracy"."""
  meta = dict(saved)
  if "best_val_accuracy" in meta:
    old = meta.pop("best_val_accuracy")
    meta.setdefault("best_val_score", old)
  return meta


def _flat(tree) -> dict[str, Any]:
  """{"a/b/0": array} of a state tree, whatever form it has (nnx State with
  Variables, or the plain nested dicts orbax restores without a target)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
            for k in path]
    while keys and keys[-1] in ("value", "raw_value"):
      keys.pop()
    out["/".join(keys)] = leaf
  return out


def _digest(x) -> str:
  if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  return hashlib.sha256(np.ascontiguousarray(np.asarray(x)).tobytes()
                        ).hexdigest()


def checksums(tree) -> dict[str, str]:
  """sha256 of each array's bytes, by tree path (`_flat`)."""
  return {k: _digest(v) for k, v in _flat(tree).items()
          if hasattr(v, "shape") and (not hasattr(v, "is_fully_addressable")
                                      or v.is_fully_addressable)}


def verify(tree, saved: dict[str, str] | None) -> None:
  """Raises `ChecksumMismatch` when an array of `tree` (a restored state)
  differs from the `checksums` recorded when it was saved (None: a
  checkpoint from before checksums, nothing to check)."""
  if not saved:
    return
  for key, leaf in _flat(tree).items():
    if key in saved and _digest(leaf) != saved[key]:
      raise ChecksumMismatch(f"array {key} does not match its saved sha256"
                             " (the files changed after they were written)")


def check_dirs(workdir: str) -> None:
  """Refuses a workdir whose checkpoints/ or best/ is not a directory."""
  for name in ("checkpoints", "best"):
    path = os.path.join(workdir, name)
    if os.path.exists(path) and not os.path.isdir(path):
      raise CheckpointSaveFailed(
          f"cannot save checkpoints: {path} is a file, not a directory; move"
          " it away or use another --workdir")


def restore_any(directory: str, step: int):
  """(state, meta) of one checkpoint restored as saved (no target), its
  checksums verified; raises whatever makes it unreadable."""
  mgr = _manager(directory, 1)
  try:
    with _settled_reads():
      out = mgr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
    meta = dict(out["meta"] or {})
    verify(out["state"], meta.pop("checksums", None))
    return out["state"], _meta(meta)
  finally:
    mgr.close()


def steps_in(directory: str) -> list[int]:
  """The finished checkpoint steps in `directory`, newest first."""
  if not os.path.isdir(directory):
    return []
  return sorted((int(n) for n in os.listdir(directory) if n.isdigit()),
                reverse=True)


class Checkpointer:
  """Saves/restores {"state": pytree, "meta": json dict} by step."""

  def __init__(self, workdir: str, keep: int = 2):
    self.workdir = workdir
    check_dirs(workdir)
    self.last = _manager(os.path.join(workdir, "checkpoints"), keep)
    self.best = _manager(os.path.join(workdir, "best"), 1)
    self.failed = False  # a save failed: close must not wait on orbax
    # orbax's tracebacks of a failed save: CheckpointSaveFailed says it once
    self._errors = failed_saves.HeldErrors().install()

  def _check_saves(self, mgr) -> None:
    """Raises `CheckpointSaveFailed` if a background save of `mgr` failed."""
    try:
      mgr.wait_until_finished()
      mgr.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except
      self.failed = True
      failed_saves.release_threads()
      self._errors.clear()  # the same failure, said once below
      raise CheckpointSaveFailed(
          f"cannot save checkpoints in {mgr.directory}: {short_reason(e)}"
      ) from None

  def _save(self, mgr, step: int, state, meta: dict[str, Any],
            force: bool) -> None:
    self._check_saves(mgr)  # the previous save (orbax waits for it anyway)
    state = without_empty(state)
    meta = {**meta, "checksums": checksums(state)}
    try:
      mgr.save(step, force=force, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    except Exception as e:  # pylint: disable=broad-except
      self.failed = True
      self._errors.clear()
      raise CheckpointSaveFailed(
          f"cannot save checkpoint {self._path(mgr, step)}: {short_reason(e)}"
      ) from None

  @staticmethod
  def _restore(mgr, step: int, abstract_state):
    with _settled_reads():
      out = mgr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(without_empty(abstract_state)),
          meta=ocp.args.JsonRestore()))
    meta = dict(out["meta"])
    verify(out["state"], meta.pop("checksums", None))
    return with_empty(out["state"], abstract_state), _meta(meta)

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def save(self, step: int, state, meta: dict[str, Any], force=False) -> None:
    self._save(self.last, step, state, meta, force)

  def restore(self, abstract_state, step: int | None = None):
    step = self.latest_step() if step is None else step
    return self._restore(self.last, step, abstract_state)

  def restore_latest(self, abstract_state):
    """(step, state, meta) of the newest train checkpoint that reads, or None.

    Unreadable newer ones are moved aside with a warning once an older one has
    read: that it reads shows the files, not the restore target, are at fault.
    If none reads, nothing is moved (a changed model would fail them all the
    same) and `NoReadableCheckpoint` names them.
    """
    failed = []
    for step in sorted(self.last.all_steps(), reverse=True):
      try:
        state, meta = self._restore(self.last, step, abstract_state)
      except Exception as e:  # pylint: disable=broad-except
        failed.append((step, short_reason(e)))
        continue
      for bad, reason in failed:
        dest = self._move_aside(self.last, bad, str(bad))
        warn(f"checkpoint {self._path(self.last, bad)} is unreadable ({reason});"
             f" moved it to {dest} (not deleted) and resumed from step {step}")
      return step, state, meta
    if failed:
      raise NoReadableCheckpoint(
          "no readable checkpoint, refusing to start over: " + "; ".join(
              f"{self._path(self.last, st)} ({r})" for st, r in failed) +
          ". Move them out of the way to train from scratch, or use another"
          " --workdir")
    return None

  @staticmethod
  def _path(mgr, step: int) -> str:
    return os.path.join(str(mgr.directory), str(step))

  def _move_aside(self, mgr, step: int, name: str) -> str:
    """Moves an unreadable step directory to unreadable_checkpoints/NAME[-N]."""
    aside = os.path.join(self.workdir, "unreadable_checkpoints")
    dest, n = os.path.join(aside, name), 1
    while os.path.exists(dest):
      dest, n = os.path.join(aside, f"{name}-{n}"), n + 1
    if jax.process_index() == 0:
      os.makedirs(aside, exist_ok=True)
      shutil.move(self._path(mgr, step), dest)
    mgr.reload()  # orbax caches the list of steps
    return dest

  def save_best(self, step: int, state, meta: dict[str, Any]) -> None:
    if self.best_step() == step:  # a resumed run re-evaluating the same step
      return
    self._save(self.best, step, state, meta, force=True)

  def best_step(self) -> int | None:
    return self.best.latest_step()

  def best_meta(self, abstract_model=None) -> dict[str, Any] | None:
    """The best checkpoint's json metadata, or None.

    With `abstract_model` its arrays are read (and checked) too, not only
    the json. An unreadable one is moved aside with a warning and None
    returned: the run then tracks the best from its next validation on (a
    finished run's rerun validates its final state, the newest train
    checkpoint), so the test split is still scored on a checkpoint that
    exists.
    """
    step = self.best_step()
    if step is None:
      return None
    try:
      if abstract_model is not None:
        return self._restore(self.best, step, abstract_model)[1]
      with _settled_reads():
        out = self.best.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))
      return _meta({k: v for k, v in out["meta"].items() if k != "checksums"})
    except Exception as e:  # pylint: disable=broad-except
      path = self._path(self.best, step)
      dest = self._move_aside(self.best, step, f"best-{step}")
      warn(f"best-validation checkpoint {path} is unreadable"
           f" ({short_reason(e)}); moved it to {dest} (not deleted); the best checkpoint is chosen"
           " again from the next validation (a finished run: its newest"
           " train checkpoint)")
      return None

  def restore_best(self, abstract_state):
    return self._restore(self.best, self.best_step(), abstract_state)

  def wait(self) -> None:
    """Waits for the saves in flight; `CheckpointSaveFailed` if one failed."""
    self._check_saves(self.last)
    self._check_saves(self.best)

  def close(self) -> None:
    if not self.failed:  # orbax's threads of a failed save wait forever
      self.last.close()
      self.best.close()
    for line in self._errors.remove():  # none said otherwise: one line each
      warn(f"orbax: {line}")


class PreemptionGuard:
  """Turns SIGTERM/SIGINT into a flag the train loop polls between steps.

  A second signal restores the default handler's behaviour (immediate exit),
  so a stuck run can still be killed.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum: int | None = None
    self._previous = {}

  def __enter__(self):
    for s in self.SIGNALS:
      try:
        self._previous[s] = signal.signal(s, self._handle)
      except ValueError:  # not the main thread (e.g. a test runner thread)
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)
    self.signum = signum

  @property
  def requested(self) -> bool:
    return self.signum is not None

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    return False
