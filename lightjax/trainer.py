"""The train loop, read top to bottom: setup, compile, loop, test, summary.

`_setup` (workdir and its lock, mesh, data, model, restore) and `_compile` are
the named steps before the loop; `_summary` builds summary.json after it.

`train_and_evaluate(config, workdir)` is the whole job; `lightjax.train` only
parses flags and calls it, so tests and notebooks run the real thing.

The hot path is one jitted, pure `train_step(state, batch, acc) -> (state, acc)`
over plain pytrees (NNX split/merge inside jit). Metrics accumulate on device
and are fetched only at log, eval and checkpoint steps; the next batches are
prepared on a background thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from lightjax import attention as attention_lib
from lightjax import checkpointing, config_lib, data, init_from, models
from lightjax import objectives, optim, sharding
from lightjax import writers
from lightjax.data import pipeline
from lightjax.metrics import cost, glue_metrics
from lightjax.metrics.params import count_params


class Interrupted(Exception):
  """Raised after a SIGTERM/SIGINT was turned into a checkpoint."""

  def __init__(self, step: int, signum: int):
    super().__init__(f"interrupted by signal {signum} at step {step}; a"
                     " checkpoint was saved, rerun the same command to resume")
    self.step, self.signum = step, signum


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


def train_step(graphdefs, objective, state, batch, acc, teacher_state=None, *,
               pad_id: int = 0, wrt=nnx.Param):
  """One AdamW step; a non-finite loss or gradient leaves the state untouched.

  `pad_id` is the task's padding id (`TaskData.pad_id`), masked out of
  attention; `wrt` what is trained (`models.trainable`); `teacher_state`
  (graphdef `graphdefs["teacher"]`) a frozen teacher whose outputs the
  objective reads (`objectives.needs_teacher`, distillation): it runs here,
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


# Task metric (objectives.task_metric_names) -> (eval sum it is a function
# of, that function). Metrics not here (Spearman) use all the predictions.
_FROM_SUMS = {
    "accuracy": ("confusion", glue_metrics.accuracy_from_confusion),
    "f1": ("confusion", glue_metrics.f1_from_confusion),
    "matthews_corrcoef": ("confusion", glue_metrics.mcc_from_confusion),
    "pearson": ("pearson_sums", glue_metrics.pearson_from_sums),
    "bits_per_byte": ("nats_and_count", objectives.bits_per_byte),
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
      eval_step, {"model": graphdef}, objective, pad_id=task.pad_id,
      metric_sums=metric_sums))
  return evaluate_split(functools.partial(step, state), task, split,
                        batch_size, names=names,
                        accuracy=objectives.reports_accuracy(objective))


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


def _check_resume_config(workdir: str, config) -> None:
  """A resumed run must train the same model on the same data order."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = _resume_view(json.load(f))
  now = _resume_view(json.loads(json.dumps(config.to_dict(), default=str)))
  diffs = [k for k in _RESUME_MUST_MATCH if saved.get(k) != now.get(k)]
  if diffs:
    raise checkpointing.WorkdirError(
        f"{workdir} holds checkpoints of a run with a different config"
        f" ({', '.join(diffs)} differ from its config.json); use a new"
        " --workdir, or the original settings to resume")


_RESUME_MUST_MATCH = ("model", "task", "batch_size", "seed")


def _resume_view(cfg: dict[str, Any]) -> dict[str, Any]:
  """What must match to resume: model fields a config.json written before a
  field existed get that field's default (what the older code built), and of
  the attention options only the chosen variant's count."""
  model = dict(cfg.get("model") or {})
  # JSON's view of the defaults, as `cfg` is JSON (a tuple field is a list).
  defaults = json.loads(json.dumps(config_lib.base_config().model.to_dict(),
                                   default=str))
  attn = dict(model.pop("attention", None) or {})
  defaults.pop("attention")
  model = {**defaults, **model}
  name = attn.get("name")
  options = dict(attn.get(name) or {})
  if name in attention_lib.VARIANTS:
    options = {**attention_lib.get(name).default_options(), **options}
  model["attention"] = {"name": name, "options": options}
  return {**cfg, "model": model}


def _device_info() -> dict[str, Any]:
  d = jax.devices()
  return {"kind": d[0].device_kind, "platform": d[0].platform, "count": len(d),
          "process_count": jax.process_count()}


@dataclasses.dataclass
class _Setup:
  """What setup builds and the loop, the test pass and the summary read."""
  devices: list[Any]
  mesh: Mesh
  sharding_rules: tuple  # config.sharding_rules
  state_shardings: Any   # where each array of `state` lives
  put_batch: Callable[[Any], Any]
  zero_acc: Callable[[], dict[str, jax.Array]]
  task: Any
  objective: Callable[..., Any]  # the task kind's: eval, and train by default
  train_objective: Callable[..., Any]  # config.train_objective, if set
  wrt: Any                       # what training updates (models.trainable)
  task_metrics: tuple[str, ...]  # objectives.task_metric_names(task), or ()
  metric_sums: Callable[..., Any] | None  # what task_metrics need, if any
  selection: str                 # see selection_metric
  train_batcher: pipeline.TrainBatcher
  num_params: dict[str, Any]
  schedule: optax.Schedule
  graphdefs: dict[str, Any]
  state: Any               # {"model", "opt"}: restored if resuming
  teacher_state: Any       # a frozen teacher's (distillation), or None
  acc: dict[str, jax.Array]
  meta: dict[str, Any]     # best_val_accuracy, best_step, elapsed_s
  start_step: int
  ckpt: checkpointing.Checkpointer
  writer: writers.MetricWriter


def _open_workdir(workdir: str, stack: contextlib.ExitStack) -> None:
  """Creates and locks the workdir; each refusal is one line, not a traceback."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise checkpointing.WorkdirError(
        f"--workdir {workdir} is a file, not a directory")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise checkpointing.WorkdirError(
        f"--workdir {workdir} cannot be created: {e.strerror}") from None
  # Before anything is written: a second run would interleave metrics.jsonl
  # and the checkpoints of the first.
  stack.enter_context(checkpointing.WorkdirLock(workdir))


def _setup(config: ml_collections.ConfigDict, workdir: str,
           stack: contextlib.ExitStack,
           source: init_from.Source | None = None,
           task: data.TaskData | None = None, teacher=None) -> _Setup:
  """Workdir, mesh, data, model, optimizer and (if resuming) their state.

  `source`: the checkpoint `config.init_from` names (its fields already
  resolved into `config`), loaded unless the workdir has a train state.
  `task`: the task's data when the caller has it loaded, else loaded here.
  `teacher`: the frozen model a distillation objective learns from.

  What needs closing (lock, writer, checkpointer) goes on `stack`, so an error
  anywhere in setup or training still releases the workdir.
  """
  # --- Devices, mesh (`config.mesh`: data parallel by default) and data ----
  # Checked before the workdir is touched: a layout that cannot work (for
  # the devices, the batch or the task's lengths) is one line
  # (sharding.MeshError), with nothing written.
  devices = jax.devices()
  mesh = sharding.make_mesh(config.get("mesh") or {}, devices)
  rules = tuple(config.get("sharding_rules") or ())
  ways = sharding.check_batch(mesh, config.batch_size, rules)  # and rules
  if config.eval_batch_size % ways:
    # Evaluation only: pad rows weigh 0, so a larger batch changes nothing.
    with config.unlocked():
      config.eval_batch_size += ways - config.eval_batch_size % ways
  if task is None:
    task = data.load_task(config.task, config.data_dir or data.default_data_dir())
  for split in task.splits.values():  # positions over seq: every length
    sharding.batch_shardings(mesh, split, rules)
  train_batcher = pipeline.TrainBatcher(task.splits["train"], config.batch_size,
                                        config.seed)

  # --- Workdir ------------------------------------------------------------------
  _open_workdir(workdir, stack)
  if os.path.isdir(os.path.join(workdir, "checkpoints")):
    _check_resume_config(workdir, config)
  writers.write_json(os.path.join(workdir, "config.json"), config.to_dict())
  writer = writers.MetricWriter(workdir)
  stack.callback(writer.close)
  replicated = sharding.replicated(mesh)
  writers.say(sharding.describe(mesh, config.batch_size, rules))
  if mesh.shape["model"] > 1 and config.model.num_heads % mesh.shape["model"]:
    writers.say(f"Note: model={mesh.shape['model']} does not divide"
                f" num_heads={config.model.num_heads}: heads are split inside"
                " a head, which costs a reshard per layer.")

  # --- Model (from `init_from`'s weights unless resuming) and optimizer -----
  ckpt = checkpointing.Checkpointer(workdir, keep=config.keep_checkpoints)
  stack.callback(ckpt.close)
  vocab_size, max_len = task.vocab_size, task.max_len
  if source is not None:  # its embedding and position tables, whole
    init_from.check_task(source, task)
    vocab_size, max_len = source.vocab_size, source.max_len
  rngs = nnx.Rngs(params=config.seed, dropout=config.seed + 1)
  model = models.build_model(config.model, vocab_size=vocab_size,
                             num_classes=task.num_classes, max_len=max_len,
                             rngs=rngs)
  init_from.write_model_json(
      workdir, config.model, vocab_size=vocab_size,
      num_classes=task.num_classes, max_len=max_len, pad_id=task.pad_id,
      tokenizer=config.task.get("tokenizer"), task=task.name)
  if source is not None and ckpt.latest_step() is None:
    fresh = init_from.load_into(model, source, task.num_classes)
    writers.say(f"Initialised from {source.spec}"
                + (f"; fresh: {', '.join(fresh)}" if fresh else "") + ".")
  num_params = count_params(model)
  tx, schedule = optim.make_optimizer(config.optim, config.num_train_steps)
  wrt = models.trainable(model)
  opt = nnx.Optimizer(model, tx, wrt=wrt)
  gd_model, model_state = nnx.split(model)
  gd_opt, opt_state = nnx.split(opt)
  state = {"model": model_state, "opt": opt_state}
  # Parameters and optimizer state: placed by their logical axis names
  # through the rules (whole on every device when only data > 1); a
  # restore below lands in the same layout whatever layout it was saved
  # from.
  shardings = sharding.state_shardings(state, mesh, rules)
  state = sharding.put_global(state, shardings)
  if any(s.spec for s in jax.tree.leaves(shardings)):
    writers.say(sharding.describe_state(shardings))
  del model, opt  # from here on the state pytree is the only copy

  # --- Restore ------------------------------------------------------------------
  meta = {"best_val_accuracy": -1.0, "best_step": -1, "elapsed_s": 0.0}
  zero_acc = lambda: sharding.put_global(zero_metrics(), replicated)
  acc, start_step = zero_acc(), 0
  # Falls back past unreadable checkpoints (moved aside, with a warning).
  restored = ckpt.restore_latest(checkpointing.abstract(
      {"train": state, "acc": acc}))
  if restored:
    start_step, tree, meta = restored
    state, acc = tree["train"], tree["acc"]
    writers.say(f"Resumed from {workdir}/checkpoints at step {start_step}.")
  best = ckpt.best_meta()  # may be newer than the last train checkpoint
  if best is None:
    # No (readable) best/ to score the test split on: track it afresh.
    meta.update(best_val_accuracy=-1.0, best_step=-1)
  elif best["best_val_accuracy"] >= meta["best_val_accuracy"]:
    meta.update(best_val_accuracy=best["best_val_accuracy"],
                best_step=best["best_step"])
  objective, names, metric_sums = objectives.for_task(task)
  train_objective = objectives.with_pad(
      objectives.train_objective(config, task.kind), task.pad_id)
  graphdefs = {"model": gd_model, "opt": gd_opt}
  teacher_state = None
  if objectives.needs_teacher(train_objective):
    if teacher is None:
      raise ValueError(
          f"train_objective={config.train_objective!r} learns from a teacher;"
          " run it through lightjax.shrink (configs/shrink/distill.py), which"
          " gives the trainer the init_from model as the teacher")
    graphdefs["teacher"], teacher_state = nnx.split(teacher)
    teacher_state = sharding.put_global(
        teacher_state, sharding.state_shardings(teacher_state, mesh, rules))
  writers.say(
      f"{config.config_name or 'run'}: {task.name} ({task.kind}),"
      f" attention={config.model.attention.name}, params={num_params['total']:,}"
      f" (attention {num_params['attention']:,}, embedding"
      f" {num_params['embedding']:,}), devices={len(devices)}x"
      f"{devices[0].device_kind}")
  return _Setup(
      devices=devices, mesh=mesh, sharding_rules=rules,
      state_shardings=shardings,
      put_batch=functools.partial(sharding.put_batch, mesh=mesh, rules=rules),
      zero_acc=zero_acc, task=task, objective=objective,
      train_objective=train_objective,
      task_metrics=names, metric_sums=metric_sums,
      selection=selection_metric(objectives.reports_accuracy(objective), names),
      train_batcher=train_batcher, num_params=num_params, schedule=schedule,
      wrt=wrt, graphdefs=graphdefs, state=state, teacher_state=teacher_state,
      acc=acc,
      meta=meta, start_step=start_step, ckpt=ckpt, writer=writer)


def _compile(config: ml_collections.ConfigDict, s: _Setup):
  """Ahead-of-time compiled train and eval steps and their XLA cost stats.

  Compiled ahead of time so that the executable we run is the one we measure.
  """
  pad_id = s.task.pad_id
  # The new state keeps the layout it came in (the next call's input).
  train_jit = jax.jit(functools.partial(train_step, s.graphdefs,
                                        s.train_objective,
                                        pad_id=pad_id, wrt=s.wrt),
                      donate_argnums=(0, 2),
                      out_shardings=(s.state_shardings,
                                     sharding.replicated(s.mesh)))
  eval_jit = jax.jit(functools.partial(eval_step, s.graphdefs, s.objective,
                                       pad_id=pad_id,
                                       metric_sums=s.metric_sums))

  def spec(batch):
    return jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(
        x.shape, x.dtype, sharding=sh), batch,
                        sharding.batch_shardings(s.mesh, batch,
                                                 s.sharding_rules))
  # Traced in the mesh's activation layout (sharding.constrain in blocks).
  with sharding.activation_layout(s.mesh, s.sharding_rules):
    train_exec, train_cost = cost.compile_with_stats(
        train_jit, s.state, spec(s.train_batcher.batch(0)), s.zero_acc(),
        s.teacher_state)
    eval_exec, eval_cost = cost.compile_with_stats(
        eval_jit, s.state["model"], spec(next(pipeline.eval_batches(
            s.task.splits["validation"], config.eval_batch_size))))
  writers.say(f"Compiled train step in {train_cost['compile_s']:.1f} s:"
              f" {train_cost['flops'] / config.batch_size / 1e6:.1f} MFLOP/example,"
              f" {train_cost.get('peak_bytes', 0) / 2**20:.1f} MiB planned"
              + (" per device." if len(s.devices) > 1 else "."))
  return train_exec, eval_exec, train_cost, eval_cost


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       task: data.TaskData | None = None,
                       teacher=None) -> dict[str, Any]:
  """Trains, evaluates, checkpoints; returns (and writes) summary.json.

  `task`: already loaded data for `config.task` (else loaded here).
  `teacher`: a frozen model for a train objective that learns from one
  (`objectives.needs_teacher`: distillation); not checkpointed, so a
  resumed run is given it again (lightjax.shrink reloads it).

  Raises `checkpointing.WorkdirError` (one-line message) when the workdir is a
  file, cannot be created, is in use by another run, holds another config's
  checkpoints, or holds checkpoints none of which reads.
  """
  timer = writers.StepTimer()
  source = init_from.resolve_config(config)  # its sizes, before the checks
  config_lib.validate(config)
  with contextlib.ExitStack() as stack:
    s = _setup(config, workdir, stack, source, task, teacher)
    train_exec, eval_exec, train_cost, eval_cost = _compile(config, s)
    ckpt, writer, meta = s.ckpt, s.writer, s.meta
    state, acc = s.state, s.acc

    def evaluate(model_state, split: str) -> dict[str, Any]:
      return evaluate_split(
          functools.partial(eval_exec, model_state), s.task, split,
          config.eval_batch_size, names=s.task_metrics,
          accuracy=objectives.reports_accuracy(s.objective),
          put_batch=s.put_batch)

    def check_finite(acc) -> None:
      bad = int(jax.device_get(acc["first_bad_step"]))
      if bad >= 0:
        last = ckpt.latest_step()
        ckpt.wait()
        raise FloatingPointError(
            f"non-finite loss or gradient at step {bad}; stopped. The last good"
            f" checkpoint (step {last}) is kept in {workdir}/checkpoints. Try a"
            " lower optim.learning_rate, optim.grad_clip_norm, or"
            " model.dtype=float32.")

    def validate(step: int) -> None:
      """Validation pass; a new best goes to best/. Not training time."""
      jax.block_until_ready(state)  # pending train steps count as training
      with timer.pause():
        ev = evaluate(state["model"], "validation")
        writer.write(step, "validation", {**ev, "elapsed_s": timer.elapsed()})
        # meta's "best_val_accuracy" holds the selection score (the name is
        # kept for older checkpoints): accuracy, or see selection_metric.
        score = selection_score(ev, s.selection)
        improved = meta["best_step"] < 0 or score > meta["best_val_accuracy"]
        if improved:
          meta.update(best_val_accuracy=score, best_step=step)
          ckpt.save_best(step, state["model"], dict(meta))
        writers.say(f"  validation @ {step}: {_eval_line(ev)}"
                    f"{'  (best)' if improved else ''}")

    def save(step: int, acc) -> None:
      check_finite(acc)
      if ckpt.latest_step() != step:
        ckpt.save(step, {"train": state, "acc": acc},
                  {**meta, "elapsed_s": timer.elapsed()}, force=True)

    # --- Train loop -----------------------------------------------------------------
    timer.start(s.start_step, elapsed_before=meta["elapsed_s"])
    batches = pipeline.Prefetcher(s.train_batcher.iterate(s.start_step),
                                  size=2, transform=s.put_batch)
    stack.callback(batches.close)
    with checkpointing.PreemptionGuard() as guard:
      for step in range(s.start_step + 1, config.num_train_steps + 1):
        batch = next(batches)
        with jax.transfer_guard("disallow"):
          state, acc = train_exec(state, batch, acc, s.teacher_state)
        is_last = step == config.num_train_steps

        if step % config.log_every == 0 or is_last:
          check_finite(acc)
          a = jax.device_get(acc)
          m = finalize(a, objectives.reports_accuracy(s.objective))
          sps = timer.rate(step)
          m.update(grad_norm=float(a["grad_norm_sum"]) / max(float(a["steps"]), 1),
                   learning_rate=float(s.schedule(step - 1)), steps_per_s=sps,
                   examples_per_s=sps * config.batch_size,
                   elapsed_s=timer.elapsed())
          writer.write(step, "train", m)
          writers.say(writers.progress_line(step, config.num_train_steps, m, sps))
          acc = s.zero_acc()

        if step % config.eval_every == 0 or is_last:
          validate(step)

        if step % config.checkpoint_every == 0 or is_last or guard.requested:
          jax.block_until_ready(acc)
          with timer.pause():
            save(step, acc)

        if guard.requested:
          ckpt.wait()
          raise Interrupted(step, guard.signum)
    ckpt.wait()
    if ckpt.best_step() is None:
      # best/ was unreadable (moved aside) and no step ran since: a rerun of
      # a finished run. The final state is then the best there is.
      validate(s.start_step)
      ckpt.wait()

    # --- Test on the best-validation checkpoint -----------------------------------
    best_state, best_meta = ckpt.restore_best(checkpointing.abstract(state["model"]))
    # "test", and any further labelled split (MNLI's test_mismatched).
    tests = {}
    for split in s.task.splits:
      if split not in ("train", "validation"):
        tests[split] = evaluate(best_state, split)
        writer.write(config.num_train_steps, split,
                     {**tests[split], "best_step": best_meta["best_step"]})
        writers.say(f"  {split} (best checkpoint): {_eval_line(tests[split])}")
    summary = _summary(config, s, tests, best_meta, train_cost, eval_cost,
                       timer)
    writers.write_json(os.path.join(workdir, "summary.json"), summary)
  writers.say("Done.\n" + _done_table(config, summary, workdir))
  return summary


def _eval_line(ev: dict[str, Any]) -> str:
  parts = [f"{k} {ev[k]:.4f}" for k in ("loss", "accuracy") if k in ev]
  parts += [f"{k} {'nan' if v is None else f'{v:.4f}'}"
            for k, v in ev.get("metrics", {}).items() if k != "accuracy"]
  return ", ".join(parts)


def _summary(config, s: _Setup, tests, best_meta, train_cost, eval_cost,
             timer: writers.StepTimer) -> dict[str, Any]:
  """summary.json: one record per run, what reports and the bench read.

  "best_val_accuracy" is None where selection is not on accuracy
  (regression: "selection" names the metric, "best_val_score" its value);
  a task with a GLUE metric adds "test_metrics" (and "<split>_metrics",
  "_accuracy", "_loss" for a further split such as MNLI's
  test_mismatched)."""
  test = tests["test"]
  by_accuracy = s.selection == "accuracy"
  extra = {}
  if s.task_metrics:
    extra["test_metrics"] = test["metrics"]
  for split, ev in tests.items():
    if split != "test":
      extra.update({f"{split}_accuracy": ev.get("accuracy"),
                    f"{split}_loss": ev["loss"]})
      if "metrics" in ev:
        extra[f"{split}_metrics"] = ev["metrics"]
  return {
      **extra,
      "selection": s.selection,
      "best_val_score": best_meta["best_val_accuracy"],
      "config_name": config.config_name,
      "task": s.task.name,
      "attention": config.model.attention.name,
      "num_params": s.num_params,
      "best_val_accuracy": (best_meta["best_val_accuracy"] if by_accuracy
                            else None),
      "best_step": best_meta["best_step"],
      "test_accuracy": test.get("accuracy"),
      "test_loss": test["loss"],
      "num_train_steps": config.num_train_steps,
      "wall_time_s": timer.elapsed(),
      "device": _device_info(),
      "cost": {
          "train_flops_per_example": train_cost["flops"] / config.batch_size,
          "forward_flops_per_example": eval_cost["flops"] / config.eval_batch_size,
          "train_step_peak_bytes": train_cost.get("peak_bytes"),
          "train_step_temp_bytes": train_cost.get("temp_bytes"),
          "device_peak_bytes": cost.device_peak_bytes(),
          "train_compile_s": train_cost["compile_s"],
          "train_steps_per_s": timer.median_steps_per_s(),
      },
  }


def _done_table(config, summary: dict[str, Any], workdir: str) -> str:
  p = summary["num_params"]
  fmt = lambda x: "n/a" if x is None else f"{x:.4f}"
  rows = [(f"test {k} (best ckpt)", fmt(v))
          for k, v in (summary.get("test_metrics") or {}).items()
          if k != "accuracy"]
  return writers.table([
      ("config", config.config_name),
      ("attention", config.model.attention.name),
      ("params (total / attn / embed)",
       f"{p['total']:,} / {p['attention']:,} / {p['embedding']:,}"),
      (f"best val {summary['selection']}",
       f"{fmt(summary['best_val_score'])} @ step {summary['best_step']}"),
      ("test accuracy (best ckpt)", fmt(summary["test_accuracy"])),
      *rows,
      ("wall time", f"{summary['wall_time_s']:.1f} s"),
      ("outputs", workdir),
  ])
