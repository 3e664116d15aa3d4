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

Orbax's `reached_preemption` is False on a single host without
`jax.distributed.initialize()`, so `PreemptionGuard` installs its own SIGTERM /
SIGINT handler that only sets a flag; the loop polls it and saves.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import jax
import orbax.checkpoint as ocp

_ITEMS = ("state", "meta")


def _manager(directory: str, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
      item_names=_ITEMS,
  )


def abstract(tree):
  """Shape/dtype/sharding skeleton used as the restore target."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
  """Saves/restores {"state": pytree, "meta": json dict} by step."""

  def __init__(self, workdir: str, keep: int = 2):
    self.last = _manager(os.path.join(workdir, "checkpoints"), keep)
    self.best = _manager(os.path.join(workdir, "best"), 1)

  @staticmethod
  def _save(mgr, step: int, state, meta: dict[str, Any], force: bool) -> None:
    mgr.save(step, force=force, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  @staticmethod
  def _restore(mgr, step: int, abstract_state):
    out = mgr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        meta=ocp.args.JsonRestore()))
    return out["state"], dict(out["meta"])

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def save(self, step: int, state, meta: dict[str, Any], force=False) -> None:
    self._save(self.last, step, state, meta, force)

  def restore(self, abstract_state, step: int | None = None):
    step = self.latest_step() if step is None else step
    return self._restore(self.last, step, abstract_state)

  def save_best(self, step: int, state, meta: dict[str, Any]) -> None:
    if self.best_step() == step:  # a resumed run re-evaluating the same step
      return
    self._save(self.best, step, state, meta, force=True)

  def best_step(self) -> int | None:
    return self.best.latest_step()

  def best_meta(self) -> dict[str, Any] | None:
    """The best checkpoint's json metadata (no arrays read), or None."""
    step = self.best_step()
    if step is None:
      return None
    out = self.best.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))
    return dict(out["meta"])

  def restore_best(self, abstract_state):
    return self._restore(self.best, self.best_step(), abstract_state)

  def wait(self) -> None:
    self.last.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.last.close()
    self.best.close()


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
