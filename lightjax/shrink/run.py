"""One shrinking run, read top to bottom: teacher, shrink, measure, recover,
report.

`shrink_and_evaluate(config, workdir)` is the whole job
(`python -m lightjax.shrink` only parses flags):

  1. Teacher: `config.init_from` loaded (`lightjax.init_from`), scored on
     validation and test with the trainer's eval step.
  2. Shrink: the recipe's method (`lightjax.shrink.METHODS`) makes the
     student, saved to `<workdir>/student/` (model.json + weights), and
     scored before any fine-tuning. `shrink.json` records both scores, what
     the method did and the teacher's deployment costs.
  3. Recover: `config.num_train_steps > 0` fine-tunes the student with the
     trainer in `<workdir>` (`init_from=<workdir>/student`), by distillation
     from the teacher when `config.train_objective == "distillation"` (the
     teacher runs frozen inside the train step: its logits, and its hidden
     states for DistilBERT's cosine term). 0 steps: the student is scored
     as it is (LayerDrop cuts).
  4. Report: summary.json (the trainer's keys plus `method`,
     `teacher_num_params`, `teacher_val_accuracy`, `teacher_test_accuracy`,
     `accuracy_kept`, `deploy` and `teacher_deploy`), shrink_report.md and
     shrink_pareto.png.

Rerunning the same command resumes: steps 1-2 are read back from
shrink.json and student/, the fine-tune resumes from its checkpoints.
Deployment costs (`deploy`): parameters, XLA forward FLOPs at batch 1,
bytes of the weights as a safetensors file, and CPU batch-1 latency p50/p90
at the task's length and at 128 tokens (`lightjax.metrics.latency`), teacher
and student measured in the same process.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from typing import Any, Iterable

import ml_collections
import numpy as np

from lightjax import (checkpointing, config_lib, data, evaluate, files,
                      init_from, trainer, writers)
from lightjax import summary as summary_lib
from lightjax.data import cache as data_cache
from lightjax.data import sentences
from lightjax.metrics import embedding as embedding_metrics
from lightjax.metrics import latency
from lightjax.metrics.params import count_params
from lightjax.shrink import report
from lightjax.shrink.base import METHODS, Context, Shrunk, params_of

STUDENT = init_from.STUDENT_DIR
SHRINK_JSON = "shrink.json"
LATENCY_LENGTHS = ("task", 128)


def _weights_bytes(model) -> int:
  """Size of the model's weights written as one safetensors file."""
  from safetensors.numpy import save  # pylint: disable=import-outside-toplevel
  return len(save({"/".join(map(str, p)): np.ascontiguousarray(v)
                   for p, v in params_of(model).items()}))


def deploy_costs(model, task, max_len: int, repeats: int = 200
                 ) -> dict[str, Any]:
  """Parameters, bytes, forward FLOPs and CPU batch-1 latency of `model`
  (one measurement per distinct length: ListOps' task length is 128)."""
  out = {"num_params": count_params(model)["total"],
         "bytes": _weights_bytes(model), "latency": {}}
  measured = {}
  for length in LATENCY_LENGTHS:
    seq = task.max_len if length == "task" else min(int(length), max_len)
    if seq not in measured:
      measured[seq] = latency.cpu_latency(model, seq, pad_id=task.pad_id,
                                          repeats=repeats)
    lat = measured[seq]
    out["latency"][str(length)] = lat
    if length == "task":
      out["forward_flops"] = lat["forward_flops"]
  return out


def _resolve(config, explicit: Iterable[str]):
  """The teacher (its config resolved into `config`), its source and the
  task's data; the task must be the teacher's (classes, vocabulary)."""
  if not config.get("init_from"):
    raise ValueError("a shrink run needs a teacher: --config.init_from=<lightjax"
                     " workdir | hf:<hub id or dir>>")
  explicit = list(explicit)
  source = init_from.resolve_config(config, explicit)
  if not any(k.startswith("model.attention") for k in explicit):
    with config.unlocked():  # the teacher's variant, unless asked otherwise
      config.model.attention = ml_collections.ConfigDict(source.model["attention"])
  task = data.load_task(config.task, config.data_dir or data.default_data_dir())
  init_from.check_task(source, task)
  if task.num_classes != source.num_classes:
    raise ValueError(
        f"init_from={source.spec} was trained for {source.num_classes}"
        f" classes; task {task.name} has {task.num_classes}: give the recipe"
        " the teacher's task")
  return source, task


def _fingerprint(arrays: Iterable[np.ndarray]) -> str:
  """sha256 of arrays' shapes, dtypes and bytes (what a cache key needs of
  a teacher's weights and a task's token ids)."""
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    h.update(f"{a.shape}{a.dtype}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def label_with_teacher(teacher, task, batch_size: int, data_dir: str):
  """An embedding task (`TaskData.kind == "embedding"`, unlabeled
  sentences) with the frozen teacher's embedding of every sentence as its
  targets: computed once, then the student is trained toward them and
  scored against them (`objectives.embedding`, Reimers & Gurevych 2020).
  Cached under `data_dir`, keyed by the teacher's weights and the task's
  token ids, so every student of one teacher reuses them. Other tasks are
  returned unchanged."""
  if task.kind != "embedding":
    return task
  names = sorted(task.splits)
  params = params_of(teacher)
  key = {"teacher": _fingerprint(params[p] for p in sorted(params)),
         "architecture": str(sorted((p, v.shape) for p, v in params.items())),
         "inputs": _fingerprint(task.splits[n][k] for n in names
                                for k in sorted(task.splits[n])
                                if k != "targets")}
  path = data_cache.npz_path(data_dir, "teacher_targets", task.name, key, 16)
  writers.say("The teacher's embedding of every sentence (the targets):"
              f" {path}")
  targets = data_cache.cached(
      path, lambda: {n: {"targets": out} for n, out in evaluate.predict(
          teacher, task, names, batch_size=batch_size).items()},
      splits=names, fields=("targets",), what="teacher embeddings",
      made=lambda _: "Embedded every sentence with the teacher")
  splits = {n: {**task.splits[n], "targets": targets[n]["targets"]}
            for n in names}
  return dataclasses.replace(task, splits=splits)


def fidelity(student, task, batch_size: int, teacher=None,
             stsb=None) -> dict[str, float] | None:
  """How faithfully `student` reproduces the teacher's embeddings (the
  targets `label_with_teacher` wrote) on the held-out test sentences: mean
  cosine (where the widths match) and top-1 / top-10 retrieval agreement
  (`lightjax.metrics.embedding`). With `stsb` (`sentences.stsb_pairs`:
  GLUE STS-B's dev pairs), also STS-B Spearman of the student and of the
  `teacher` (Cer et al. 2017; the number sentence-transformers reports).
  None for other tasks."""
  if task.kind != "embedding":
    return None
  s_NxD = evaluate.predict(student, task, ["test"],
                           batch_size=batch_size)["test"]
  t_NxD = np.asarray(task.splits["test"]["targets"])
  out = {"sentences": int(len(t_NxD))}
  if s_NxD.shape == t_NxD.shape:
    out["mean_cosine"] = embedding_metrics.mean_cosine(s_NxD, t_NxD)
  ks = tuple(k for k in (1, 10) if k < len(t_NxD))
  out.update(embedding_metrics.retrieval_agreement(s_NxD, t_NxD, ks))
  if stsb is not None:
    pairs, gold = stsb
    pair_task = dataclasses.replace(task, splits=pairs)
    for who, model in (("stsb_spearman", student),
                       ("teacher_stsb_spearman", teacher)):
      if model is not None:
        emb = evaluate.predict(model, pair_task, sorted(pairs),
                               batch_size=batch_size)
        out[who] = embedding_metrics.sts_spearman(emb["stsb_a"],
                                                  emb["stsb_b"], gold)
  return out


def _headline(ev: dict[str, Any]) -> float:
  """A split's accuracy, else its task metric (an embedding task: cosine)."""
  value = ev.get("accuracy")
  if value is None and ev.get("metrics"):
    value = next(iter(ev["metrics"].values()))
  return float("nan") if value is None else value


def _evaluate(model, task, batch_size: int) -> dict[str, Any]:
  return {split: evaluate.evaluate_model(model, task, split,
                                         batch_size=batch_size)
          for split in ("validation", "test")}


def _run_config(config, init_dir: str, **changes) -> ml_collections.ConfigDict:
  """A copy of `config` (with `changes`) for a trainer run that starts from
  the model saved in `init_dir`: its sizes from that model.json, the
  attention variant this run's."""
  cfg = copy.deepcopy(config)
  with cfg.unlocked():
    cfg.init_from = init_dir
    for key, value in changes.items():
      cfg[key] = value
    attention = cfg.model.attention
  init_from.resolve_config(cfg)
  with cfg.unlocked():
    cfg.model.attention = attention
  return cfg


def _prepare(config, workdir: str, source, task, out: Shrunk) -> Shrunk:
  """A two-phase method's first phase (Theseus' module replacement): trains
  `out.model` with the trainer in <workdir>/replacing (resumable), then
  extracts the student from its best checkpoint."""
  init_dir = os.path.join(workdir, "replacing_init")
  init_from.save_model(init_dir, out.model, out.model_cfg,
                       vocab_size=source.vocab_size,
                       num_classes=source.num_classes, max_len=source.max_len,
                       pad_id=source.pad_id, tokenizer=source.tokenizer)
  cfg = _run_config(config, init_dir, num_train_steps=out.prepare_steps,
                    train_objective="")  # module replacing: no extra loss
  writers.say(f"Phase 1: {out.prepare_steps} steps of training"
              f" {out.model_cfg.name} in {workdir}/replacing.")
  trainer.train_and_evaluate(cfg, os.path.join(workdir, "replacing"),
                             task=task)
  trained, _ = init_from.load_model(os.path.join(workdir, "replacing"))
  student = out.extract(trained)
  student.details = {**out.details, **student.details}
  return student


def _shrink(config, workdir: str, teacher, source, task) -> dict[str, Any]:
  """Steps 1-2: teacher scored, student made, saved and scored."""
  method = config.shrink.method
  METHODS.get(method)  # an unknown method lists the valid ones
  writers.say(f"Teacher {source.spec}: {count_params(teacher)['total']:,}"
              " parameters; scoring it.")
  teacher_eval = _evaluate(teacher, task, config.eval_batch_size)
  options = dict(config.shrink.get(method) or {})
  ctx = Context(
      config=config, options=options,
      teacher_cfg=ml_collections.ConfigDict(source.model), task=task,
      vocab_size=source.vocab_size, num_classes=source.num_classes,
      max_len=source.max_len,
      evaluate=lambda m, split="validation": evaluate.evaluate_model(
          m, task, split, batch_size=config.eval_batch_size))
  out = METHODS.get(method)(teacher, ctx)
  if out.extract is not None:
    out = _prepare(config, workdir, source, task, out)
  student_dir = os.path.join(workdir, STUDENT)
  init_from.save_model(student_dir, out.model, out.model_cfg,
                       vocab_size=source.vocab_size,
                       num_classes=source.num_classes, max_len=source.max_len,
                       pad_id=source.pad_id, tokenizer=source.tokenizer,
                       method=method, teacher=source.spec)
  student_eval = _evaluate(out.model, task, config.eval_batch_size)
  writers.say(
      f"{method}: {count_params(teacher)['total']:,} -> "
      f"{count_params(out.model)['total']:,} parameters; validation"
      f" {'accuracy' if task.kind != 'embedding' else 'cosine'}"
      f" {_headline(teacher_eval['validation']):.4f} ->"
      f" {_headline(student_eval['validation']):.4f} before fine-tuning.")
  record = {
      "method": method, "options": options, "teacher": source.spec,
      "details": out.details,
      "teacher_eval": teacher_eval, "student_eval_before": student_eval,
  }
  writers.write_json(os.path.join(workdir, SHRINK_JSON), record)
  return record


def _untuned_summary(config, task, student, ev) -> summary_lib.Summary:
  """The summary of a student scored as it is (0 fine-tuning steps): its
  evaluation before fine-tuning `ev` ({"validation", "test"}), selected on
  accuracy at step 0."""
  return summary_lib.Summary(
      config_name=config.config_name, task=task.name,
      attention=config.model.attention.name,
      num_params=count_params(student), best_step=0, num_train_steps=0,
      selection="accuracy", best_val_score=ev["validation"].get("accuracy"),
      test_accuracy=ev["test"].get("accuracy"), test_loss=ev["test"]["loss"],
      test_metrics=ev["test"].get("metrics"))


def shrink_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        explicit: Iterable[str] = ()) -> dict[str, Any]:
  """The whole shrink job; returns (and writes) summary.json.

  `explicit`: the `--config.` overrides given on the command line (a size
  that contradicts the teacher is refused, see `init_from.resolve_config`).
  """
  config = copy.deepcopy(config)
  # Numbers in range before the teacher is read or anything written;
  # 0 steps: the student is scored as made, with no recovery fine-tuning.
  config_lib.check_values(config, min_train_steps=0)
  files.check_output_dir(workdir, "--workdir")
  source, task = _resolve(config, explicit)
  os.makedirs(workdir, exist_ok=True)
  record_path = os.path.join(workdir, SHRINK_JSON)
  with checkpointing.WorkdirLock(workdir):
    # Read once: scored and shrunk (never modified), the distillation
    # targets, and measured beside the student.
    teacher, _ = init_from.load_model(config.init_from, seed=config.seed)
    task = label_with_teacher(teacher, task, config.eval_batch_size,
                              config.data_dir or data.default_data_dir())
    if os.path.exists(record_path) and os.path.exists(
        os.path.join(workdir, STUDENT, init_from.MODEL_JSON)):
      with open(record_path) as f:
        record = json.load(f)
      writers.say(f"Resuming: the student in {workdir}/{STUDENT} ({record['method']}).")
    else:
      record = _shrink(config, workdir, teacher, source, task)

  # --- 3. Recover ---------------------------------------------------------------
  student_dir = os.path.join(workdir, STUDENT)
  if config.num_train_steps > 0:
    ft = _run_config(config, student_dir)  # the student's sizes
    # The teacher runs frozen inside each train step when the objective
    # learns from it (distillation); other objectives ignore it.
    summary = summary_lib.Summary.from_dict(trainer.train_and_evaluate(
        ft, workdir, task=task, teacher=teacher))
    student, _ = init_from.load_model(workdir)
  else:
    # The run's config, as a trained run has one (what its task was: an
    # export reads it to check the model on that task's data).
    writers.write_json(os.path.join(workdir, "config.json"), config.to_dict())
    student, _ = init_from.load_model(student_dir)
    summary = _untuned_summary(config, task, student,
                               record["student_eval_before"])

  # --- 4. Report -------------------------------------------------------------------
  # Teacher and student measured here, one after the other, every time the
  # run is scored (a resumed run too): latency is only comparable within one
  # process on one machine state.
  teacher_eval = record["teacher_eval"]
  teacher_deploy = deploy_costs(teacher, task, source.max_len)
  deploy = deploy_costs(student, task, source.max_len)
  t_test = teacher_eval["test"].get("accuracy")
  summary = dataclasses.replace(
      summary, method=record["method"], shrink_details=record["details"],
      teacher=record["teacher"],
      teacher_num_params=teacher_deploy["num_params"],
      teacher_val_accuracy=teacher_eval["validation"].get("accuracy"),
      teacher_test_accuracy=t_test,
      val_accuracy_before_finetune=record["student_eval_before"][
          "validation"].get("accuracy"),
      test_accuracy_before_finetune=record["student_eval_before"][
          "test"].get("accuracy"),
      accuracy_kept=(summary.test_accuracy / t_test
                     if t_test and summary.test_accuracy is not None
                     else None),
      deploy=deploy, teacher_deploy=teacher_deploy,
      fidelity=fidelity(
          student, task, config.eval_batch_size, teacher=teacher,
          stsb=(sentences.stsb_pairs(config.task, config.data_dir
                                     or data.default_data_dir())
                if task.kind == "embedding" else None)))
  summary_lib.write(os.path.join(workdir, "summary.json"), summary)
  out = summary.to_dict()
  paths = report.write(workdir, out)
  writers.say("Shrink report:\n" + report.table(out) + "\nWrote "
              + ", ".join(paths))
  return out
