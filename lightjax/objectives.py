"""Loss and accuracy per task kind (`TaskData.kind` -> objective), as weighted sums (so padded eval rows count 0).

Returning sums rather than means lets the trainer add metrics over steps and
eval batches on device and divide once on the host.

Each objective is an `Objective`: the loss function and, as plain fields,
what it needs and gives (`needs_teacher`, `needs_hidden`, `takes_pad_id`,
the `options` a config may set, the `sums` it returns and so
`reports_accuracy`). Callers read those fields; nothing here or there
inspects a function's signature.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from lightjax.metrics import glue_metrics
from lightjax.registry import Registry

Sums = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Objective:
  """A loss and what it needs, declared once where it is defined.

  Called as `objective(logits, targets, weights, **step_inputs) -> Sums`;
  `bound` values (config options, the task's pad id) are passed too.
  """
  fn: Callable[..., Sums]
  # The sums it returns; "correct_sum" where it reports accuracy.
  sums: tuple[str, ...] = ("loss_sum", "correct_sum", "count")
  # The train step passes a frozen teacher's outputs ("teacher_logits_BxC",
  # "teacher_hidden_BxLxE"); the trainer then needs a `teacher` model.
  needs_teacher: bool = False
  # ... and the student's last hidden states and mask ("hidden_BxLxE",
  # "mask_BxL").
  needs_hidden: bool = False
  # Takes `pad_id`: targets equal to it are not scored (`with_pad`).
  takes_pad_id: bool = False
  # Keyword options `config.objective_options.<name>` may set.
  options: tuple[str, ...] = ()
  # Values bound to it: (name, value) pairs (`bind`).
  bound: tuple[tuple[str, Any], ...] = ()

  @property
  def reports_accuracy(self) -> bool:
    """Whether it returns a "correct_sum" (all but regression)."""
    return "correct_sum" in self.sums

  def bind(self, **values: Any) -> Objective:
    """This objective with `values` passed on every call."""
    return dataclasses.replace(self, bound=self.bound + tuple(values.items()))

  def __call__(self, *args, **kwargs) -> Sums:
    return self.fn(*args, **{**dict(self.bound), **kwargs})

  @staticmethod
  def declare(**fields: Any) -> Callable[[Callable[..., Sums]], Objective]:
    """Decorator: the function as an `Objective` with `fields`."""
    return lambda fn: Objective(fn, **fields)


@Objective.declare()
def classification(logits_BxC, targets_B, weights_B) -> Sums:
  """Cross-entropy and accuracy of one label per sequence."""
  loss_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, targets_B)
  correct_B = (logits_BxC.argmax(-1) == targets_B).astype(jnp.float32)
  return {"loss_sum": (loss_B * weights_B).sum(),
          "correct_sum": (correct_B * weights_B).sum(),
          "count": weights_B.sum()}


@Objective.declare(takes_pad_id=True)
def language_model(logits_BxLxV, targets_BxL, weights_B, pad_id: int = 0) -> Sums:
  """Next-token cross-entropy over non-pad targets (token-level accuracy)."""
  w_BxL = (targets_BxL != pad_id).astype(jnp.float32) * weights_B[:, None]
  loss_BxL = optax.softmax_cross_entropy_with_integer_labels(
      logits_BxLxV, targets_BxL)
  correct_BxL = (logits_BxLxV.argmax(-1) == targets_BxL).astype(jnp.float32)
  return {"loss_sum": (loss_BxL * w_BxL).sum(),
          "correct_sum": (correct_BxL * w_BxL).sum(),
          "count": w_BxL.sum()}


@Objective.declare(sums=("loss_sum", "count"))
def regression(logits_Bx1, targets_B, weights_B) -> Sums:
  """Squared error of the single logit against a float target (GLUE STS-B).

  No accuracy: there is no "correct_sum" (`reports_accuracy` is False), so
  the trainer reports loss (MSE) and the task's metric (Pearson/Spearman).
  """
  pred_B = logits_Bx1[..., 0].astype(jnp.float32)
  err_B = jnp.square(pred_B - targets_B.astype(jnp.float32))
  return {"loss_sum": (err_B * weights_B).sum(), "count": weights_B.sum()}


def hidden_cosine_loss(hidden_BxLxE, teacher_hidden_BxLxE, mask_BxL,
                       option: str, hint: str) -> jax.Array:
  """[B]: the mean over an example's real positions of 1 - cos(h_student,
  h_teacher) of the last hidden states (DistilBERT's cosine embedding loss,
  Sanh et al. 2019 sec. 2). `option` and `hint` name what asked for it when
  the two shapes differ."""
  if hidden_BxLxE.shape != teacher_hidden_BxLxE.shape:
    raise ValueError(
        f"{option} compares hidden states of the same shape; student"
        f" {hidden_BxLxE.shape}, teacher {teacher_hidden_BxLxE.shape} ({hint})")
  cos_BxL = optax.cosine_similarity(hidden_BxLxE.astype(jnp.float32),
                                    teacher_hidden_BxLxE.astype(jnp.float32),
                                    epsilon=1e-8)
  w_BxL = mask_BxL.astype(jnp.float32)
  return ((1.0 - cos_BxL) * w_BxL).sum(-1) / jnp.maximum(w_BxL.sum(-1), 1.0)


@Objective.declare(needs_teacher=True, needs_hidden=True,
                   options=("temperature", "alpha", "cosine"))
def distillation(logits_BxC, targets_B, weights_B, *, teacher_logits_BxC,
                 hidden_BxLxE=None, teacher_hidden_BxLxE=None, mask_BxL=None,
                 temperature: float = 2.0, alpha: float = 0.5,
                 cosine: float = 0.0) -> Sums:
  """Knowledge distillation (Hinton et al. 2015, sec. 2; DistilBERT, Sanh et
  al. 2019, sec. 2): alpha * T^2 * KL(p_teacher^T || p_student^T) +
  (1 - alpha) * cross-entropy with the labels, p^T = softmax(logits / T),
  + cosine * (1 - cos(h_student, h_teacher)).

  T^2 keeps the soft term's gradient scale independent of T (Hinton et al.
  2015, end of sec. 2). The last term is DistilBERT's cosine embedding loss
  ("aligns the directions of the student and teacher hidden states
  vectors", sec. 2; their distiller applies it to the last layer's states
  of the real tokens): the mean over an example's non-pad positions, so it
  needs a student as wide as the teacher. The teacher runs frozen in eval
  mode inside the train step (`trainer.train_step`'s `teacher`), which
  passes its logits and both models' last hidden states. Accuracy is the
  student's against the labels.
  """
  t = temperature
  log_p_BxC = jax.nn.log_softmax(logits_BxC.astype(jnp.float32) / t)
  log_q_BxC = jax.nn.log_softmax(teacher_logits_BxC.astype(jnp.float32) / t)
  kl_B = (jnp.exp(log_q_BxC) * (log_q_BxC - log_p_BxC)).sum(-1)
  hard = classification(logits_BxC, targets_B, weights_B)
  hard_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, targets_B)
  loss_B = alpha * t * t * kl_B + (1.0 - alpha) * hard_B
  if cosine:
    if hidden_BxLxE is None or teacher_hidden_BxLxE is None:
      raise ValueError("objective_options.distillation.cosine needs the"
                       " hidden states of student and teacher: both must be"
                       " encoder_classifier models")
    loss_B = loss_B + cosine * hidden_cosine_loss(
        hidden_BxLxE, teacher_hidden_BxLxE, mask_BxL,
        "objective_options.distillation.cosine", "the student must keep the"
        " teacher's embed_dim and pooling")
  return {**hard, "loss_sum": (loss_B * weights_B).sum()}


@Objective.declare(sums=("loss_sum", "count"))
def embedding(logits_BxD, targets_BxD, weights_B) -> Sums:
  """Mean squared error between the model's sentence embedding and a
  target embedding, the teacher's (Reimers & Gurevych 2020, "Making
  Monolingual Sentence Embeddings Multilingual using Knowledge
  Distillation", eq. 1: 1/|B| sum_j ||M_student(s_j) - M_teacher(s_j)||^2;
  here averaged over the D dimensions too, so the loss reads the same at
  any width).

  The task kind "embedding" (`lightjax.data.sentences`) has no labels: a
  shrink run writes the frozen teacher's embeddings of every sentence into
  the targets once (`lightjax.shrink.run`), so training and evaluation
  read them without running the teacher again; its metric, the mean cosine
  to the teacher, comes from `cosine_sums`.
  """
  diff_BxD = logits_BxD.astype(jnp.float32) - targets_BxD.astype(jnp.float32)
  err_B = jnp.mean(jnp.square(diff_BxD), axis=-1)
  return {"loss_sum": (err_B * weights_B).sum(), "count": weights_B.sum()}


@Objective.declare(sums=("loss_sum", "count"), needs_teacher=True,
                   needs_hidden=True, options=("hidden",))
def embedding_distillation(logits_BxD, targets_BxD, weights_B, *,
                           teacher_logits_BxC, hidden_BxLxE=None,
                           teacher_hidden_BxLxE=None, mask_BxL=None,
                           hidden: float = 0.0) -> Sums:
  """`embedding`'s MSE against the frozen teacher run inside the train step
  (its embedding, `teacher_logits_BxC`, equals the targets a shrink run
  wrote), plus `hidden` * the mean over real tokens of 1 - cos(h_student,
  h_teacher) of the last hidden states (the last-layer term of TinyBERT's
  hidden-state loss, Jiao et al. 2020 eq. 8, as a cosine as in DistilBERT,
  Sanh et al. 2019 sec. 2): it needs a student as wide as the teacher.
  """
  del targets_BxD  # the teacher's own output is the target
  sums = embedding(logits_BxD, teacher_logits_BxC, weights_B)
  if not hidden:
    return sums
  if hidden_BxLxE is None or teacher_hidden_BxLxE is None:
    raise ValueError("objective_options.embedding_distillation.hidden needs"
                     " the hidden states of student and teacher")
  cos_loss_B = hidden_cosine_loss(
      hidden_BxLxE, teacher_hidden_BxLxE, mask_BxL,
      "objective_options.embedding_distillation.hidden",
      "set it to 0 for a narrower student")
  return {**sums, "loss_sum": sums["loss_sum"]
          + hidden * (cos_loss_B * weights_B).sum()}


# --- What a task's evaluation metric needs (see lightjax.metrics.glue_metrics)
# Per kind: (logits, targets, weights, pad_id) -> (sums over the batch,
# predictions_B); `for_task` binds the task's pad id.
# The sums add over eval batches like the objective's; the predictions (class
# ids or scores) are for metrics without a finite statistic (Spearman).


def confusion_sums(logits_BxC, targets_B, weights_B, pad_id: int = 0):
  """Weighted confusion matrix "confusion"[true, predicted] (float32[C, C])."""
  del pad_id  # one label per sequence: nothing is padding
  c = logits_BxC.shape[-1]
  pred_B = logits_BxC.argmax(-1)
  conf_CxC = jnp.zeros((c, c), jnp.float32).at[targets_B, pred_B].add(
      weights_B.astype(jnp.float32))
  return {"confusion": conf_CxC}, pred_B


def pearson_sums(logits_Bx1, targets_B, weights_B, pad_id: int = 0):
  """"pearson_sums" = (n, Σx, Σy, Σx², Σy², Σxy), x the score, y the target."""
  del pad_id  # one score per sequence: nothing is padding
  x_B = logits_Bx1[..., 0].astype(jnp.float32)
  y_B = targets_B.astype(jnp.float32)
  w_B = weights_B.astype(jnp.float32)
  sums = jnp.stack([w_B.sum(), w_B @ x_B, w_B @ y_B, w_B @ (x_B * x_B),
                    w_B @ (y_B * y_B), w_B @ (x_B * y_B)])
  return {"pearson_sums": sums}, x_B


def bits_per_byte_sums(logits_BxLxV, targets_BxL, weights_B, pad_id: int = 0):
  """"nats_and_count" = (sum of next-token cross-entropies in nats, number of
  non-pad targets): the statistic of bits per byte (`bits_per_byte`)."""
  sums = language_model(logits_BxLxV, targets_BxL, weights_B, pad_id)
  return ({"nats_and_count": jnp.stack([sums["loss_sum"], sums["count"]])},
          logits_BxLxV.argmax(-1))


def cosine_sums(logits_BxD, targets_BxD, weights_B, pad_id: int = 0):
  """"cosine_and_count" = (sum of cos(embedding, target), count): the mean
  cosine of a student's sentence embeddings to its teacher's (`cosine`)."""
  del pad_id  # one vector per sentence: nothing is padding
  cos_B = optax.cosine_similarity(logits_BxD.astype(jnp.float32),
                                  targets_BxD.astype(jnp.float32),
                                  epsilon=1e-8)
  w_B = weights_B.astype(jnp.float32)
  return ({"cosine_and_count": jnp.stack([w_B @ cos_B, w_B.sum()])},
          cos_B)


def cosine(cosine_and_count) -> float:
  """Mean cosine from `cosine_sums`' statistic; nan when nothing counted."""
  total, count = (float(x) for x in cosine_and_count)
  return total / count if count > 0 else float("nan")


def bits_per_byte(nats_and_count) -> float:
  """Mean next-byte cross-entropy in bits: (sum of nats / count) / ln 2.

  For a byte-level model (`lightjax.data.lm`) this is bits per byte, the
  compression rate an arithmetic coder driven by the model would reach
  (Shannon 1948; the enwik8 / text8 metric). nan when nothing was counted.
  """
  nats, count = (float(x) for x in nats_and_count)
  return nats / count / math.log(2.0) if count > 0 else float("nan")


METRIC_SUMS: dict[str, Callable[..., tuple[Sums, jax.Array]]] = {
    "classification": confusion_sums,
    "regression": pearson_sums,
    "lm": bits_per_byte_sums,  # read only by tasks that list bits_per_byte
    "embedding": cosine_sums,
}

# Task -> the metrics it reports, for tasks outside GLUE's table
# (`glue_metrics.TASK_METRICS`): the byte-level LM (`lightjax.data.lm`).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "lm": ("bits_per_byte",),
    "sentences": ("cosine",),  # to the teacher (lightjax.data.sentences)
}


def task_metric_names(task_name: str) -> tuple[str, ...]:
  """The metrics task `task_name` reports (the trainer's one lookup): GLUE's
  table, else TASK_METRICS above, else none."""
  return tuple(glue_metrics.TASK_METRICS.get(task_name)
               or TASK_METRICS.get(task_name, ()))


def _check_objective(name: str, obj: Any) -> None:
  if not isinstance(obj, Objective):
    raise TypeError(f"objective {name!r} must be an objectives.Objective"
                    f" (what it needs, declared); got {type(obj).__name__}")


OBJECTIVES: Registry[Objective] = Registry("objective", _check_objective)
OBJECTIVES.register("classification", classification)
OBJECTIVES.register("lm", language_model)
OBJECTIVES.register("regression", regression)
OBJECTIVES.register("distillation", distillation)
OBJECTIVES.register("embedding", embedding)
OBJECTIVES.register("embedding_distillation", embedding_distillation)
register, get, names = OBJECTIVES.register, OBJECTIVES.get, OBJECTIVES.names


def train_objective(config, kind: str) -> Objective:
  """The objective training minimises: `config.train_objective` (e.g.
  "distillation"), or (empty) the task kind's. Evaluation always uses the
  task kind's.

  Options live under the objective's name, as attention options do:
  `config.objective_options.distillation.temperature`; an objective takes
  only its own entry, so a recipe's distillation options do not stand in
  the way of `--config.train_objective=classification`."""
  name = config.get("train_objective") or kind
  all_options = dict(config.get("objective_options") or {})
  unknown = sorted(set(all_options) - set(names()))
  if unknown:
    raise ValueError(f"config.objective_options has entries for unknown"
                     f" objective(s) {unknown}; valid: {', '.join(names())}")
  objective = get(name)  # unknown: the registry lists the valid names
  options = dict(all_options.get(name) or {})
  bad = sorted(set(options) - set(objective.options))
  if bad:
    raise ValueError(f"config.objective_options.{name} {bad} are not options"
                     f" of the {name!r} objective; valid:"
                     f" {', '.join(objective.options) or '(none)'}")
  return objective.bind(**options) if options else objective


def with_pad(objective: Objective, pad_id: int) -> Objective:
  """`objective` with the task's padding id bound where it takes one
  (`takes_pad_id`: the lm objective ignores targets equal to `pad_id`);
  other objectives are returned as they are."""
  return objective.bind(pad_id=pad_id) if objective.takes_pad_id else objective


def for_task(task) -> tuple[Objective, tuple[str, ...],
                            Callable[..., Any] | None]:
  """What evaluating `task` (a `data.TaskData`) uses: its kind's objective
  and its metric names (`task_metric_names`) and, when it has any, its
  kind's metric sums; each with the task's pad id bound."""
  names = task_metric_names(task.name)
  metric_sums = METRIC_SUMS.get(task.kind) if names else None
  return (with_pad(get(task.kind), task.pad_id), names,
          functools.partial(metric_sums, pad_id=task.pad_id)
          if metric_sums else None)
