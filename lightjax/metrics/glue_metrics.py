"""GLUE's metrics as pure numpy functions, and which one each task reports.

GLUE (Wang et al. 2019, "GLUE: A Multi-Task Benchmark and Analysis Platform
for Natural Language Understanding", sec. 3 and Table 1) scores:

  task        metric(s) reported
  CoLA        Matthews correlation (Matthews 1975), as Warstadt et al. 2019
  SST-2       accuracy
  MRPC, QQP   F1 of the positive class (1 = paraphrase / duplicate), and
              accuracy (the leaderboard shows "F1/accuracy")
  STS-B       Pearson and Spearman correlation of predicted vs gold scores
  MNLI        accuracy on matched and on mismatched (two numbers)
  QNLI, RTE   accuracy

`TASK_METRICS` holds this table (keyed by the task names of
`lightjax.data.glue`), `MNLI_SPLITS` says which split gives which MNLI
number, and `compute(task, predictions, labels)` returns a task's metrics.

Streaming (for the trainer's weighted-sum evaluation). Accuracy, F1 and MCC
are functions of the confusion matrix, which sums over batches
(`confusion_matrix` per batch, add, then `*_from_confusion`); padded eval
rows get weight 0. Pearson's r is a function of the sums
(n, Σx, Σy, Σx², Σy², Σxy) (`pearson_sums`, add, `pearson_from_sums`; kept
in float64: the one-pass form loses digits when |mean| >> std, so for long
evaluations centre the scores, e.g. subtract 2.5 on STS-B's 0..5 scale).
Spearman's ρ has no such finite statistic: it needs every prediction
(ranks are global), so gather all predictions and call `spearman` at the
end.

Conventions (those of scikit-learn and Hugging Face `evaluate`, so numbers
compare with published ones): F1 is 0 when there is no true and no
predicted positive; MCC is 0 when a row or column of the confusion matrix
is empty (the denominator vanishes); a correlation is nan when either
input is constant.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# --------------------------------------------------------------- confusion


def confusion_matrix(predictions, labels, num_classes: int,
                     weights=None) -> np.ndarray:
  """C[true, predicted] = summed weight of examples (float64[K, K]).

  Args:
    predictions, labels: int class ids [N] in [0, num_classes).
    weights: [N] per-example weights (default 1; 0 drops padded rows).
  """
  predictions = np.asarray(predictions).astype(np.int64).ravel()
  labels = np.asarray(labels).astype(np.int64).ravel()
  if predictions.shape != labels.shape:
    raise ValueError(
        f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
  for what, x in (("prediction", predictions), ("label", labels)):
    if x.size and (x.min() < 0 or x.max() >= num_classes):
      raise ValueError(
          f"{what} ids must lie in [0, {num_classes}), got"
          f" [{x.min()}, {x.max()}]")
  w = np.ones(labels.shape, np.float64) if weights is None else (
      np.asarray(weights, np.float64).ravel())
  c = np.bincount(labels * num_classes + predictions, weights=w,
                  minlength=num_classes * num_classes)
  return c.reshape(num_classes, num_classes)


def accuracy_from_confusion(c: np.ndarray) -> float:
  """Fraction of (weighted) examples on the diagonal."""
  total = c.sum()
  return float(np.trace(c) / total) if total else float("nan")


def f1_from_confusion(c: np.ndarray, positive: int = 1) -> float:
  """F1 of class `positive` (van Rijsbergen 1979): 2TP / (2TP + FP + FN)."""
  tp = c[positive, positive]
  fp = c[:, positive].sum() - tp
  fn = c[positive, :].sum() - tp
  denominator = 2 * tp + fp + fn
  return float(2 * tp / denominator) if denominator else 0.0


def mcc_from_confusion(c: np.ndarray) -> float:
  """Matthews correlation coefficient (Matthews 1975) of a confusion matrix.

  Binary: (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)). For K
  classes the same formula in Gorodkin's (2004) R_K form, which is what
  scikit-learn's `matthews_corrcoef` computes:
    (s·c − Σ_k p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)),
  s = total, c = correct, t_k = true count, p_k = predicted count of k.
  """
  c = np.asarray(c, np.float64)
  s, correct = c.sum(), np.trace(c)
  t, p = c.sum(axis=1), c.sum(axis=0)
  denominator = np.sqrt((s * s - p @ p) * (s * s - t @ t))
  return float((s * correct - p @ t) / denominator) if denominator else 0.0


# --------------------------------------------------------------- correlations


def pearson_sums(x, y, weights=None) -> np.ndarray:
  """(n, Σx, Σy, Σx², Σy², Σxy) in float64: Pearson's sufficient statistic
  (weighted; weight 0 drops a row). Add the vectors of several batches."""
  x = np.asarray(x, np.float64).ravel()
  y = np.asarray(y, np.float64).ravel()
  if x.shape != y.shape:
    raise ValueError(f"{x.shape[0]} predictions for {y.shape[0]} labels")
  w = np.ones_like(x) if weights is None else np.asarray(
      weights, np.float64).ravel()
  return np.asarray([w.sum(), w @ x, w @ y, w @ (x * x), w @ (y * y),
                     w @ (x * y)])


def pearson_from_sums(sums) -> float:
  """Pearson's r = cov(x, y) / (σx σy) from `pearson_sums` (Pearson 1895)."""
  n, sx, sy, sxx, syy, sxy = (float(v) for v in sums)
  if n <= 0:
    return float("nan")
  cov = sxy - sx * sy / n
  var_x = sxx - sx * sx / n
  var_y = syy - sy * sy / n
  if var_x <= 0 or var_y <= 0:
    return float("nan")
  return float(np.clip(cov / np.sqrt(var_x * var_y), -1.0, 1.0))


def pearson(x, y) -> float:
  """Pearson's correlation, two-pass (centred first: exact to rounding)."""
  x = np.asarray(x, np.float64).ravel()
  y = np.asarray(y, np.float64).ravel()
  if x.shape != y.shape:
    raise ValueError(f"{x.shape[0]} predictions for {y.shape[0]} labels")
  if x.size == 0:
    return float("nan")
  dx, dy = x - x.mean(), y - y.mean()
  denominator = np.sqrt((dx @ dx) * (dy @ dy))
  if not denominator:
    return float("nan")
  return float(np.clip(dx @ dy / denominator, -1.0, 1.0))


def rankdata(x) -> np.ndarray:
  """1-based ranks, ties given the mean of the ranks they span
  (scipy.stats.rankdata's default "average" method)."""
  x = np.asarray(x).ravel()
  order = np.argsort(x, kind="stable")
  sorted_x = x[order]
  # Start of each run of equal values in sorted order.
  new_run = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
  run_id = np.cumsum(new_run) - 1
  starts = np.flatnonzero(new_run)
  ends = np.append(starts[1:], x.size)  # Exclusive.
  mean_rank = (starts + 1 + ends) / 2.0  # Mean of ranks starts+1 .. ends.
  ranks = np.empty(x.size, np.float64)
  ranks[order] = mean_rank[run_id]
  return ranks


def spearman(x, y) -> float:
  """Spearman's ρ (Spearman 1904): Pearson's r of the ranks, ties averaged.

  Needs every prediction at once: ranks are global, so no per-batch sums.
  """
  x = np.asarray(x).ravel()
  y = np.asarray(y).ravel()
  if x.shape != y.shape:
    raise ValueError(f"{x.shape[0]} predictions for {y.shape[0]} labels")
  return pearson(rankdata(x), rankdata(y))


# --------------------------------------------------------------- per example


def accuracy(predictions, labels) -> float:
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  if predictions.shape != labels.shape:
    raise ValueError(f"{predictions.shape} predictions for {labels.shape}"
                     " labels")
  return float(np.mean(predictions == labels)) if labels.size else float("nan")


def f1(predictions, labels, positive: int = 1) -> float:
  """F1 of the positive class (MRPC: 1 = paraphrase; QQP: 1 = duplicate)."""
  k = int(max(np.max(predictions, initial=0), np.max(labels, initial=0),
              positive)) + 1
  return f1_from_confusion(confusion_matrix(predictions, labels, k), positive)


def matthews_corrcoef(predictions, labels) -> float:
  """Matthews correlation (CoLA)."""
  k = int(max(np.max(predictions, initial=0), np.max(labels, initial=0))) + 1
  return mcc_from_confusion(confusion_matrix(predictions, labels, k))


# --------------------------------------------------------------- the table

METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_corrcoef": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}

# Task -> the metrics GLUE reports for it, the headline one first.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "glue_cola": ("matthews_corrcoef",),
    "glue_sst2": ("accuracy",),
    "glue_mrpc": ("f1", "accuracy"),
    "glue_qqp": ("f1", "accuracy"),
    "glue_stsb": ("pearson", "spearman"),
    "glue_mnli": ("accuracy",),
    "glue_qnli": ("accuracy",),
    "glue_rte": ("accuracy",),
}

# MNLI's two reported numbers: split of `lightjax.data.glue` -> name.
MNLI_SPLITS = {"test": "matched", "test_mismatched": "mismatched"}


def compute(task: str, predictions, labels) -> dict[str, float]:
  """Every metric GLUE reports for `task`.

  Args:
    task: a key of TASK_METRICS, e.g. "glue_mrpc".
    predictions: class ids [N] (argmax of the logits), or scores for STS-B.
    labels: the split's "targets".
  Returns:
    metric name -> value, in TASK_METRICS order.
  """
  if task not in TASK_METRICS:
    raise ValueError(
        f"no GLUE metric for task {task!r}; valid: {', '.join(TASK_METRICS)}")
  return {name: METRICS[name](predictions, labels)
          for name in TASK_METRICS[task]}
