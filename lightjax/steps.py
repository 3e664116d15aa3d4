"""The train and eval steps: pure, jitted functions over plain pytrees.

`train_step(graphdefs, objective, state, batch, acc) -> (state, acc)` is the
trainer's hot path (NNX split/merge inside jit, the state and the metric
accumulator donated) and what `lightjax.bench` times; `eval_step` gives an
objective's sums (and a task metric's) for one batch. Metrics accumulate on
device in `zero_metrics`' buffers; the host reads them only when it logs.

A frozen teacher (`teacher_for`) is an extra input some objectives read
(`Objective.needs_teacher`): its outputs are computed inside the same
compiled step, so nothing is precomputed or stored per example.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx


def zero_metrics() -> dict[str, jax.Array]:
  # Separate buffers: the accumulator is donated to the step.
  acc = {k: jnp.zeros((), jnp.float32) for k in
         ("loss_sum", "correct_sum", "count", "grad_norm_sum", "steps")}
  acc["first_bad_step"] = jnp.full((), -1, jnp.int32)
  return acc


# Batch arrays other than inputs/targets/weights -> the model's keyword
# argument that takes them (GLUE's token types); a batch without one leaves
# the model's default.
MODEL_INPUTS = {"segment_ids": "segment_ids_BxL"}


def _model_inputs(batch) -> dict[str, Any]:
  """The batch's extra arrays as the model's keyword arguments."""
  return {arg: batch[key] for key, arg in MODEL_INPUTS.items() if key in batch}


def apply_model(model, batch, *, deterministic: bool, pad_id: int = 0):
  """`model(inputs, **extra batch arrays, deterministic=..., pad_id=...)`."""
  return model(batch["inputs"], **_model_inputs(batch),
               deterministic=deterministic, pad_id=pad_id)


def apply_with_hidden(model, batch, *, deterministic: bool, pad_id: int = 0):
  """(logits, {"hidden_BxLxE", "mask_BxL"}): the model's last hidden states
  too where it gives them (`EncoderClassifier.with_hidden`), else only the
  logits and {}."""
  if not hasattr(model, "with_hidden"):
    return apply_model(model, batch, deterministic=deterministic,
                       pad_id=pad_id), {}
  logits, hidden, mask = model.with_hidden(
      batch["inputs"], **_model_inputs(batch), deterministic=deterministic,
      pad_id=pad_id)
  return logits, {"hidden_BxLxE": hidden, "mask_BxL": mask}


def teacher_outputs(graphdef, teacher_state, batch, *, pad_id: int = 0):
  """What a distillation objective reads of a frozen teacher (eval mode, no
  gradient): "teacher_logits_BxC" and, where it has them, its last hidden
  states "teacher_hidden_BxLxE"."""
  teacher = nnx.merge(graphdef, jax.lax.stop_gradient(teacher_state))
  logits, hidden = apply_with_hidden(teacher, batch, deterministic=True,
                                     pad_id=pad_id)
  out = {"teacher_logits_BxC": logits}
  if hidden:
    out["teacher_hidden_BxLxE"] = hidden["hidden_BxLxE"]
  return out


def teacher_for(objective, teacher, name: str):
  """(graphdef, state) of the frozen `teacher` when `objective` reads one
  (`Objective.needs_teacher`), else None (a teacher it does not read is
  ignored). `name`: the objective's config name, for the message.

  Raises:
    ValueError: the objective needs a teacher and none was given.
  """
  if not objective.needs_teacher:
    return None
  if teacher is None:
    raise ValueError(
        f"train_objective={name!r} learns from a teacher;"
        " run it through lightjax.shrink (configs/shrink/distill.py), which"
        " gives the trainer the init_from model as the teacher")
  return nnx.split(teacher)


def train_step(graphdefs, objective, state, batch, acc, teacher_state=None, *,
               pad_id: int = 0, wrt=nnx.Param):
  """One AdamW step; a non-finite loss or gradient leaves the state untouched.

  `pad_id` is the task's padding id (`TaskData.pad_id`), masked out of
  attention; `wrt` what is trained (`models.trainable`); `teacher_state`
  (graphdef `graphdefs["teacher"]`) a frozen teacher whose outputs the
  objective reads (`Objective.needs_teacher`, distillation): it runs here,
  in the same compiled step, so nothing is precomputed or stored per
  example, and its hidden states are available to the loss.
  """
  model = nnx.merge(graphdefs["model"], state["model"])
  opt = nnx.merge(graphdefs["opt"], state["opt"])
  step_before = opt.step[...]
  teacher = ({} if teacher_state is None else teacher_outputs(
      graphdefs["teacher"], teacher_state, batch, pad_id=pad_id))

  def loss_fn(model):
    if teacher:
      logits, hidden = apply_with_hidden(model, batch, deterministic=False,
                                         pad_id=pad_id)
      extra = {**teacher, **hidden}
    else:
      logits = apply_model(model, batch, deterministic=False, pad_id=pad_id)
      extra = {}
    sums = objective(logits, batch["targets"], batch["weights"], **extra)
    return sums["loss_sum"] / jnp.maximum(sums["count"], 1.0), sums

  (loss, sums), grads = nnx.value_and_grad(
      loss_fn, argnums=nnx.DiffState(0, wrt), has_aux=True)(model)
  grad_norm = optax.tree.norm(grads)
  opt.update(model, grads)
  new_state = {"model": nnx.state(model), "opt": nnx.state(opt)}
  ok = (jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        & jnp.isfinite(optax.tree.norm(nnx.state(model, nnx.Param))))
  # Keep the last good state (non-finite loss, gradient or updated weights):
  # the loop stops at the next host check, and nothing non-finite is saved.
  new_state = jax.lax.cond(ok, lambda: new_state, lambda: state)
  bad = jnp.where((acc["first_bad_step"] < 0) & ~ok,
                  (step_before + 1).astype(jnp.int32), acc["first_bad_step"])
  acc = {"loss_sum": acc["loss_sum"] + sums["loss_sum"],
         "correct_sum": acc["correct_sum"] + sums.get("correct_sum", 0.0),
         "count": acc["count"] + sums["count"],
         "grad_norm_sum": acc["grad_norm_sum"] + grad_norm,
         "steps": acc["steps"] + 1, "first_bad_step": bad}
  return new_state, acc


def eval_step(graphdefs, objective, model_state, batch, *, pad_id: int = 0,
              metric_sums=None):
  """The objective's sums; with `metric_sums` (objectives.METRIC_SUMS) also
  what the task metric needs, and the batch's "predictions" (not a sum)."""
  model = nnx.merge(graphdefs["model"], model_state)
  logits = apply_model(model, batch, deterministic=True, pad_id=pad_id)
  sums = objective(logits, batch["targets"], batch["weights"])
  if metric_sums is not None:
    extra, predictions_B = metric_sums(logits, batch["targets"],
                                       batch["weights"])
    sums = {**sums, **extra, "predictions": predictions_B}
  return sums
