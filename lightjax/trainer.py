"""The train loop, read top to bottom: setup, compile, steps, eval, checkpoint,
test, summary.

`train_and_evaluate(config, workdir)` is the whole job; `lightjax.train` only
parses flags and calls it, so tests and notebooks run the real thing. Its
pieces: `steps` (the jitted steps), `evaluate` (evaluation, best-checkpoint
selection), `resume` (may this workdir resume?), `summary` (summary.json).
The hot path is one compiled `steps.train_step(state, batch, acc)`; metrics
stay on device until a log, eval or checkpoint step, and the next batches
are prepared on a background thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from lightjax import (checkpointing, config_lib, data, errors, evaluate,
                      init_from, models, objectives, optim, resume, sharding,
                      steps, writers)
from lightjax import summary as summary_lib
from lightjax.data import pipeline
from lightjax.metrics import cost
from lightjax.metrics.params import count_params


class Interrupted(Exception):
  """Raised after a SIGTERM/SIGINT was turned into a checkpoint."""

  def __init__(self, step: int, signum: int):
    super().__init__(f"interrupted by signal {signum} at step {step}; a"
                     " checkpoint was saved, rerun the same command to resume")
    self.step, self.signum = step, signum


# --- Setup: mesh, data, workdir, model, restore --------------------------------


@dataclasses.dataclass
class _Setup:
  """What setup builds and the loop, the test pass and the summary read."""
  devices: list[Any]
  mesh: Mesh
  sharding_rules: tuple  # config.sharding_rules
  task: Any
  train_batcher: pipeline.TrainBatcher
  writer: writers.MetricWriter
  ckpt: checkpointing.Checkpointer
  num_params: dict[str, Any]
  schedule: optax.Schedule
  wrt: Any                 # what training updates (models.trainable)
  graphdefs: dict[str, Any]
  state_shardings: Any     # where each array of `state` lives
  state: Any               # {"model", "opt"}: restored if resuming
  acc: dict[str, jax.Array] | None = None
  meta: dict[str, Any] | None = None  # best_val_score, best_step, elapsed_s
  start_step: int = 0
  objective: Any = None        # the task kind's: eval, and train by default
  train_objective: Any = None  # config.train_objective, if set
  task_metrics: tuple[str, ...] = ()  # objectives.task_metric_names(task)
  metric_sums: Callable[..., Any] | None = None  # what task_metrics need
  selection: str = "accuracy"  # evaluate.selection_metric
  teacher_state: Any = None    # a frozen teacher's (steps.teacher_for)

  def put_batch(self, batch):
    return sharding.put_batch(batch, mesh=self.mesh, rules=self.sharding_rules)

  def zero_acc(self) -> dict[str, jax.Array]:
    return sharding.put_global(steps.zero_metrics(),
                               sharding.replicated(self.mesh))


def _mesh_and_data(config, task: data.TaskData | None):
  """Devices, mesh (`config.mesh`: data parallel by default), rules, data;
  checked before the workdir is touched: a layout that cannot work (for the
  devices, the batch or the task's lengths) is one line (sharding.MeshError)."""
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
  return devices, mesh, rules, task


def _build_model(config, workdir: str, task, source, ckpt) -> nnx.Module:
  """The model, from `init_from`'s weights unless the workdir resumes."""
  vocab_size, max_len = task.vocab_size, task.max_len
  if source is not None:  # its embedding and position tables, whole
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
  return model


def _place(model, config, mesh: Mesh, rules) -> dict[str, Any]:
  """Model and optimizer split into graphdefs and a state pytree, placed by
  their logical axis names through the rules (whole on every device when
  only data > 1); a restore lands in the same layout whatever layout it was
  saved from."""
  tx, schedule = optim.make_optimizer(config.optim, config.num_train_steps)
  wrt = models.trainable(model)
  opt = nnx.Optimizer(model, tx, wrt=wrt)
  gd_model, model_state = nnx.split(model)
  gd_opt, opt_state = nnx.split(opt)
  state = {"model": model_state, "opt": opt_state}
  shardings = sharding.state_shardings(state, mesh, rules)
  state = sharding.put_global(state, shardings)
  if any(s.spec for s in jax.tree.leaves(shardings)):
    writers.say(sharding.describe_state(shardings))
  return dict(schedule=schedule, wrt=wrt, state=state, state_shardings=shardings,
              graphdefs={"model": gd_model, "opt": gd_opt})


def _restore(s: _Setup, workdir: str) -> None:
  """The newest readable train checkpoint into `s` (state, accumulator, step,
  meta), the best-so-far from best/ (may be newer); metrics.jsonl cut there."""
  s.meta = {**evaluate.no_best(), "elapsed_s": 0.0}
  s.acc = s.zero_acc()
  # Falls back past unreadable checkpoints (moved aside, with a warning).
  restored = s.ckpt.restore_latest(checkpointing.abstract(
      {"train": s.state, "acc": s.acc}))
  if restored:
    s.start_step, tree, s.meta = restored
    s.state, s.acc = tree["train"], tree["acc"]
    writers.say(f"Resumed from {workdir}/checkpoints at step {s.start_step}.")
  s.writer.resume_at(s.start_step)  # what a killed run wrote past it goes
  evaluate.merge_best(s.meta, s.ckpt.best_meta(checkpointing.abstract(
      s.state["model"])))  # arrays read too: an unreadable best/ is set aside


def _check_model_runs_task(config, task) -> None:
  """The configured model's output fits the task (a model declares its
  `task_kinds`), and an embedding task has its targets: a teacher's
  embeddings, which only a shrink run writes. Before anything is written."""
  kinds = models.task_kinds(config.model.name)
  if kinds is not None and task.kind not in kinds:
    raise errors.ConfigError(
        f"model {config.model.name!r} cannot run task {task.name}"
        f" ({task.kind}): it runs {', '.join(kinds)} tasks")
  if task.kind == "embedding" and np.ndim(task.splits["train"]["targets"]) < 2:
    raise errors.ConfigError(
        f"task {task.name} has no targets of its own: a sentence encoder"
        " learns a teacher's embeddings; run it through lightjax.shrink with"
        " init_from=<the teacher> (docs/real-model.md)")


def _setup(config: ml_collections.ConfigDict, workdir: str,
           stack: contextlib.ExitStack, source: init_from.Source | None = None,
           task: data.TaskData | None = None, teacher=None) -> _Setup:
  """Mesh, data, workdir, model, optimizer and (if resuming) their state.

  `source`: the checkpoint `config.init_from` names (its fields already
  resolved into `config`), loaded unless the workdir has a train state.
  `task`: the task's data when the caller has it loaded, else loaded here.
  `teacher`: a frozen model the train objective reads (`steps.teacher_for`).
  What needs closing (lock, writer, checkpointer) goes on `stack`, so an error
  anywhere in setup or training still releases the workdir.
  """
  devices, mesh, rules, task = _mesh_and_data(config, task)
  if source is not None:  # the checkpoint runs the task: before any output
    init_from.check_task(source, task)
  _check_model_runs_task(config, task)
  batcher = pipeline.TrainBatcher(task.splits["train"], config.batch_size,
                                  config.seed)
  checkpointing.open_workdir(workdir, stack)  # created and locked
  resume.check_config(workdir, config)
  writers.write_json(os.path.join(workdir, "config.json"), config.to_dict())
  writer = writers.MetricWriter(workdir)
  stack.callback(writer.close)
  writers.say(sharding.describe(mesh, config.batch_size, rules))
  if mesh.shape["model"] > 1 and config.model.num_heads % mesh.shape["model"]:
    writers.say(f"Note: model={mesh.shape['model']} does not divide"
                f" num_heads={config.model.num_heads}: heads are split inside"
                " a head, which costs a reshard per layer.")
  ckpt = checkpointing.Checkpointer(workdir, keep=config.keep_checkpoints)
  stack.callback(ckpt.close)
  model = _build_model(config, workdir, task, source, ckpt)
  num_params = count_params(model)
  s = _Setup(devices=devices, mesh=mesh, sharding_rules=rules, task=task,
             train_batcher=batcher, writer=writer, ckpt=ckpt,
             num_params=num_params, **_place(model, config, mesh, rules))
  del model  # from here on the state pytree is the only copy
  _restore(s, workdir)
  # Objectives, and the frozen teacher the train objective may read.
  s.objective, s.task_metrics, s.metric_sums = objectives.for_task(task)
  s.train_objective = objectives.with_pad(
      objectives.train_objective(config, task.kind), task.pad_id)
  s.selection = evaluate.selection_metric(s.objective.reports_accuracy,
                                          s.task_metrics)
  frozen = steps.teacher_for(s.train_objective, teacher,
                             config.get("train_objective"))
  if frozen is not None:
    s.graphdefs["teacher"], state = frozen
    s.teacher_state = sharding.put_global(
        state, sharding.state_shardings(state, mesh, rules))
  writers.say(
      f"{config.config_name or 'run'}: {task.name} ({task.kind}),"
      f" attention={config.model.attention.name}, params={num_params['total']:,}"
      f" (attention {num_params['attention']:,}, embedding"
      f" {num_params['embedding']:,}), devices={len(devices)}x"
      f"{devices[0].device_kind}")
  return s


# --- Compile -----------------------------------------------------------------------


def _compile(config: ml_collections.ConfigDict, s: _Setup):
  """Ahead-of-time compiled train and eval steps and their XLA cost stats:
  the executable we run is the one we measure."""
  pad_id = s.task.pad_id
  # The new state keeps the layout it came in (the next call's input).
  train_jit = jax.jit(functools.partial(steps.train_step, s.graphdefs,
                                        s.train_objective,
                                        pad_id=pad_id, wrt=s.wrt),
                      donate_argnums=(0, 2),
                      out_shardings=(s.state_shardings,
                                     sharding.replicated(s.mesh)))
  eval_jit = jax.jit(functools.partial(steps.eval_step, s.graphdefs,
                                       s.objective, pad_id=pad_id,
                                       metric_sums=s.metric_sums))

  def spec(batch):
    return jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(
        x.shape, x.dtype, sharding=sh), batch,
        sharding.batch_shardings(s.mesh, batch, s.sharding_rules))
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


# --- The job -----------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       task: data.TaskData | None = None,
                       teacher=None) -> dict[str, Any]:
  """Trains, evaluates, checkpoints; returns (and writes) summary.json.

  `task`: already loaded data for `config.task` (else loaded here).
  `teacher`: a frozen model for a train objective that reads one
  (`steps.teacher_for`); not checkpointed, so a resumed run is given it
  again (lightjax.shrink reloads it).

  Raises `checkpointing.WorkdirError` (one line) when the workdir is a file,
  cannot be created, is in use, holds another config's checkpoints or none
  that reads, or a checkpoint cannot be saved (`CheckpointSaveFailed`).
  """
  timer = writers.StepTimer()
  source = init_from.resolve_config(config)  # its sizes, before the checks
  config_lib.validate(config)
  with contextlib.ExitStack() as stack:
    s = _setup(config, workdir, stack, source, task, teacher)
    train_exec, eval_exec, train_cost, eval_cost = _compile(config, s)
    evaluator = evaluate.Evaluator(
        eval_exec, s.task, config.eval_batch_size, names=s.task_metrics,
        accuracy=s.objective.reports_accuracy, selection=s.selection,
        put_batch=s.put_batch, writer=s.writer, ckpt=s.ckpt, timer=timer)
    state, acc, meta = s.state, s.acc, s.meta

    # --- Train loop: steps, log, validation, checkpoint -------------------------
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
          _log(config, s, timer, step, acc)
          acc = s.zero_acc()
        if step % config.eval_every == 0 or is_last:
          evaluator.validate(step, state, meta)
        if step % config.checkpoint_every == 0 or is_last or guard.requested:
          jax.block_until_ready(acc)
          with timer.pause():
            _save(s, step, {"train": state, "acc": acc},
                  {**meta, "elapsed_s": timer.elapsed()})
        if guard.requested:
          s.ckpt.wait()
          raise Interrupted(step, guard.signum)
    s.ckpt.wait()
    if s.ckpt.best_step() is None:
      # best/ was unreadable (moved aside) and no step ran since: a rerun of
      # a finished run. The final state is then the best there is.
      evaluator.validate(s.start_step, state, meta)
      s.ckpt.wait()

    # --- Test on the best-validation checkpoint, summary --------------------------
    tests, best_meta = evaluator.test(state["model"], config.num_train_steps)
    summary = summary_lib.of_training(
        config, task=s.task.name, num_params=s.num_params,
        selection=s.selection, with_metrics=bool(s.task_metrics), tests=tests,
        best_meta=best_meta, train_cost=train_cost, eval_cost=eval_cost,
        timer=timer)
    summary_lib.write(os.path.join(workdir, "summary.json"), summary)
  writers.say("Done.\n" + summary_lib.table(summary, workdir))
  return summary.to_dict()


def _check_finite(s: _Setup, acc) -> None:
  """Stops the run at the first non-finite step the accumulator saw."""
  bad = int(jax.device_get(acc["first_bad_step"]))
  if bad >= 0:
    last, _ = s.ckpt.latest_step(), s.ckpt.wait()
    raise FloatingPointError(
        f"non-finite loss or gradient at step {bad}; stopped. The last good"
        f" checkpoint (step {last}) is kept in {s.ckpt.workdir}/checkpoints."
        " Try a lower optim.learning_rate, optim.grad_clip_norm, or"
        " model.dtype=float32.")


def _log(config, s: _Setup, timer: writers.StepTimer, step: int, acc) -> None:
  """Train metrics accumulated since the last log step."""
  _check_finite(s, acc)
  a = jax.device_get(acc)
  m = evaluate.finalize(a, s.objective.reports_accuracy)
  sps = timer.rate(step)
  m.update(grad_norm=float(a["grad_norm_sum"]) / max(float(a["steps"]), 1),
           learning_rate=float(s.schedule(step - 1)), steps_per_s=sps,
           examples_per_s=sps * config.batch_size, elapsed_s=timer.elapsed())
  s.writer.write(step, "train", m)
  writers.say(writers.progress_line(step, config.num_train_steps, m, sps))


def _save(s: _Setup, step: int, tree, meta: dict[str, Any]) -> None:
  """The train state at `step`, once, after checking that it is finite."""
  _check_finite(s, tree["acc"])
  if s.ckpt.latest_step() != step:
    s.ckpt.save(step, tree, meta, force=True)
