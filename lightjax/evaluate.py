"""Evaluation and best-checkpoint selection.

`evaluate_split` runs a compiled `steps.eval_step` over one split and turns
the summed metrics into means and the task's metrics (GLUE's accuracy, F1,
Matthews, Pearson/Spearman; bits per byte); `evaluate_model` does the same
for a model outside a training run. `selection_metric` / `selection_score`
say which validation pass is the best checkpoint: the test split is scored
on that one, not on the last. `Evaluator` does both inside a training run:
validation passes that keep the best model in best/, then the test pass.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lightjax import checkpointing, objectives, steps, writers
from lightjax.data import pipeline
from lightjax.metrics import glue_metrics


# Task metric (objectives.task_metric_names) -> (eval sum it is a function
# of, that function). Metrics not here (Spearman) use all the predictions.
_FROM_SUMS = {
    "accuracy": ("confusion", glue_metrics.accuracy_from_confusion),
    "f1": ("confusion", glue_metrics.f1_from_confusion),
    "matthews_corrcoef": ("confusion", glue_metrics.mcc_from_confusion),
    "pearson": ("pearson_sums", glue_metrics.pearson_from_sums),
    "bits_per_byte": ("nats_and_count", objectives.bits_per_byte),
    "cosine": ("cosine_and_count", objectives.cosine),
}


def task_metrics(names, totals, predictions=None, labels=None
                 ) -> dict[str, float | None]:
  """The task's metrics from eval totals (and host predictions where a metric
  needs them); nan (e.g. a correlation of constant predictions) is None."""
  out = {}
  for name in names:
    if name in _FROM_SUMS and _FROM_SUMS[name][0] in totals:
      key, fn = _FROM_SUMS[name]
      value = fn(np.asarray(totals[key], np.float64))
    else:
      value = glue_metrics.METRICS[name](predictions, labels)
    out[name] = float(value) if np.isfinite(value) else None
  return out


def evaluate_split(eval_fn, task, split: str, batch_size: int, *,
                   names=(), accuracy: bool = True, put_batch=None
                   ) -> dict[str, Any]:
  """Loss, accuracy (if any), "examples" and, for a task with a metric,
  "metrics" of one split; `eval_fn(batch)` is a compiled `eval_step`."""
  needs_predictions = any(n not in _FROM_SUMS for n in names)
  totals, predictions = None, []
  for batch in pipeline.eval_batches(task.splits[split], batch_size):
    sums = dict(eval_fn(put_batch(batch) if put_batch else batch))
    p = sums.pop("predictions", None)
    if needs_predictions:
      predictions.append(p)  # fetched once, below
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  t = jax.device_get(totals)
  ev = {**finalize(t, accuracy), "examples": int(t["count"])}
  if names:
    labels = np.asarray(task.splits[split]["targets"])
    preds = (np.concatenate(jax.device_get(predictions))[:len(labels)]
             if needs_predictions else None)
    ev["metrics"] = task_metrics(names, t, preds, labels)
  return ev


def evaluate_model(model, task, split: str = "validation", *,
                   batch_size: int = 64) -> dict[str, Any]:
  """`evaluate_split` of a model outside a training run (a shrinking
  recipe's teacher, a student that is not fine-tuned): the trainer's own
  jitted `eval_step`, on the default device."""
  graphdef, state = nnx.split(model)
  objective, names, metric_sums = objectives.for_task(task)
  step = jax.jit(functools.partial(
      steps.eval_step, {"model": graphdef}, objective, pad_id=task.pad_id,
      metric_sums=metric_sums))
  return evaluate_split(functools.partial(step, state), task, split,
                        batch_size, names=names,
                        accuracy=objective.reports_accuracy)


def predict(model, task, splits, *, batch_size: int = 64
            ) -> dict[str, np.ndarray]:
  """{split: the model's outputs for every row of it, in order} (float32
  numpy) for each of `splits`: logits, or a sentence encoder's embeddings
  (what a shrink run writes as an embedding task's targets and scores
  fidelity on). One compiled forward serves every split (eval batches all
  have one shape)."""
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda st, batch: steps.apply_model(
      nnx.merge(graphdef, st), batch, deterministic=True, pad_id=task.pad_id))
  return {split: np.concatenate([
      np.asarray(forward(state, batch), np.float32)[
          :int(batch[pipeline.WEIGHTS].sum())]
      for batch in pipeline.eval_batches(task.splits[split], batch_size)])
          for split in splits}


def selection_metric(reports_accuracy: bool, names) -> str:
  """What picks the best checkpoint: validation accuracy where the objective
  has one (classification), else the task's headline metric (STS-B:
  Pearson), else the loss (lowest)."""
  if reports_accuracy:
    return "accuracy"
  return names[0] if names else "loss"


def selection_score(ev: dict[str, Any], metric: str) -> float:
  """Higher is better; a missing (nan) correlation scores -1, its minimum."""
  if metric == "loss":
    return -ev["loss"]
  value = ev.get(metric, ev.get("metrics", {}).get(metric))
  return -1.0 if value is None else float(value)


def finalize(sums, accuracy: bool = True) -> dict[str, float]:
  """Host-side means from summed metrics (train accumulator or eval totals).

  "accuracy" only where asked and summed (a regression objective has none).
  """
  t = jax.device_get(sums)
  n = max(float(t["count"]), 1.0)
  out = {"loss": float(t["loss_sum"]) / n}
  if accuracy and "correct_sum" in t:
    out["accuracy"] = float(t["correct_sum"]) / n
  return out


def eval_line(ev: dict[str, Any]) -> str:
  """One pass's numbers as printed: "loss 0.1234, accuracy 0.5678, ..."."""
  parts = [f"{k} {ev[k]:.4f}" for k in ("loss", "accuracy") if k in ev]
  parts += [f"{k} {'nan' if v is None else f'{v:.4f}'}"
            for k, v in ev.get("metrics", {}).items() if k != "accuracy"]
  return ", ".join(parts)


# --- In a training run: validation with best-checkpoint selection, test ------


def no_best() -> dict[str, Any]:
  """The checkpoint meta of a run with no best checkpoint yet."""
  return {"best_val_score": -1.0, "best_step": -1}


def merge_best(meta: dict[str, Any], best: dict[str, Any] | None) -> None:
  """Updates a resumed run's `meta` with best/'s (`best`, None when there
  is no readable one), which may be newer than the last train checkpoint."""
  if best is None:
    # No (readable) best/ to score the test split on: track it afresh.
    meta.update(no_best())
  elif best["best_val_score"] >= meta["best_val_score"]:
    meta.update(best_val_score=best["best_val_score"],
                best_step=best["best_step"])


@dataclasses.dataclass
class Evaluator:
  """A training run's evaluation: validation passes that keep the best
  model (by `selection`) in best/, and the test splits scored on it.

  The run's checkpoint meta holds the best so far: "best_val_score" (the
  selection score, higher is better) and "best_step".
  """
  eval_fn: Callable[..., Any]  # compiled steps.eval_step(model_state, batch)
  task: Any
  batch_size: int
  names: tuple[str, ...]       # the task's metrics
  accuracy: bool               # the objective reports accuracy
  selection: str               # selection_metric
  put_batch: Callable[[Any], Any]
  writer: writers.MetricWriter
  ckpt: checkpointing.Checkpointer
  timer: writers.StepTimer

  def split(self, model_state, split: str) -> dict[str, Any]:
    return evaluate_split(functools.partial(self.eval_fn, model_state),
                          self.task, split, self.batch_size, names=self.names,
                          accuracy=self.accuracy, put_batch=self.put_batch)

  def validate(self, step: int, state, meta: dict[str, Any]) -> None:
    """Validation pass; a new best goes to best/. Not training time."""
    jax.block_until_ready(state)  # pending train steps count as training
    with self.timer.pause():
      ev = self.split(state["model"], "validation")
      self.writer.write(step, "validation",
                        {**ev, "elapsed_s": self.timer.elapsed()})
      score = selection_score(ev, self.selection)
      improved = meta["best_step"] < 0 or score > meta["best_val_score"]
      if improved:
        meta.update(best_val_score=score, best_step=step)
        self.ckpt.save_best(step, state["model"], dict(meta))
      writers.say(f"  validation @ {step}: {eval_line(ev)}"
                  f"{'  (best)' if improved else ''}")

  def test(self, model_state, step: int
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The test split and any further labelled one (MNLI's
    test_mismatched), scored on the best checkpoint (`model_state` gives
    its structure), recorded at `step`; and that checkpoint's meta."""
    best_state, best_meta = self.ckpt.restore_best(
        checkpointing.abstract(model_state))
    tests = {}
    for split in self.task.splits:
      if split not in ("train", "validation"):
        tests[split] = self.split(best_state, split)
        self.writer.write(step, split,
                          {**tests[split], "best_step": best_meta["best_step"]})
        writers.say(f"  {split} (best checkpoint): {eval_line(tests[split])}")
    return tests, best_meta
