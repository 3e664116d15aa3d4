"""summary.json: one record per run, its schema written and read here only.

The trainer writes it at the end of a run (`lightjax.trainer`), a shrink run
adds its fields (`lightjax.shrink.run`, also for a student scored without
fine-tuning); the report, the sweep and the shrink report read it. `read`
is the one place a summary.json is parsed: files written by older code get
their defaults there, and the field once called "best_val_accuracy" (it
held the selection score, accuracy only for classification) becomes
`best_val_score`.

On disk the record is flat JSON; a further labelled split (MNLI's
test_mismatched) is written as "<split>_accuracy", "<split>_loss" and
"<split>_metrics", as before.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax

from lightjax import writers
from lightjax.metrics import cost

# Fields written only when set: a run without a task metric has no
# "test_metrics"; a shrink run that fine-tuned nothing has no timing, device
# or cost.
_WRITTEN_WHEN_SET = ("test_metrics", "wall_time_s", "device", "cost",
                     "fidelity")
# Written (all of them) when `method` is set: a shrink run's.
_SHRINK_FIELDS = ("method", "shrink_details", "teacher", "teacher_num_params",
                  "teacher_val_accuracy", "teacher_test_accuracy",
                  "val_accuracy_before_finetune",
                  "test_accuracy_before_finetune", "accuracy_kept", "deploy",
                  "teacher_deploy")
# The name `best_val_score` had in summaries written before it was renamed.
_OLD_BEST_VAL = "best_val_accuracy"


@dataclasses.dataclass
class Summary:
  """A finished run. Accuracies are fractions; None where the task has none
  (regression) or a correlation is undefined, and where a file written by
  older code lacks the field (a report prints what there is)."""
  # --- Every run ---------------------------------------------------------------
  config_name: str | None = None  # config file and argument: "listops:tiny"
  task: str | None = None         # data.load_task's name
  attention: str | None = None    # the attention variant's registry name
  num_params: dict[str, Any] | None = None  # count_params: total, by group
  best_step: int | None = None    # the best-validation checkpoint's step
  num_train_steps: int | None = None
  test_accuracy: float | None = None  # of the best checkpoint, not the last
  test_loss: float | None = None
  selection: str = "accuracy"  # what picked best_step: evaluate.selection_metric
  best_val_score: float | None = None  # its value there (loss: negated)
  test_metrics: dict[str, float | None] | None = None  # the task's (GLUE, bpb)
  # Further labelled splits scored on the best checkpoint (MNLI's
  # test_mismatched): {split: {"accuracy", "loss"[, "metrics"]}}.
  further_tests: dict[str, dict[str, Any]] = dataclasses.field(
      default_factory=dict)
  # --- Trained runs ---------------------------------------------------------------
  wall_time_s: float | None = None     # the whole job, resumed parts summed
  device: dict[str, Any] | None = None  # kind, platform, count, process_count
  cost: dict[str, Any] | None = None    # XLA FLOPs and bytes, steps/s
  # --- Shrink runs (lightjax.shrink) ------------------------------------------
  method: str | None = None            # shrink.METHODS name
  shrink_details: dict[str, Any] | None = None  # what the method did
  teacher: str | None = None           # the teacher's init_from spec
  teacher_num_params: int | None = None
  teacher_val_accuracy: float | None = None
  teacher_test_accuracy: float | None = None
  val_accuracy_before_finetune: float | None = None
  test_accuracy_before_finetune: float | None = None
  accuracy_kept: float | None = None   # test accuracy / the teacher's
  deploy: dict[str, Any] | None = None          # shrink.run.deploy_costs
  teacher_deploy: dict[str, Any] | None = None
  # An embedding student's agreement with its teacher on held-out sentences
  # (shrink.run.fidelity): mean_cosine, top1, top10.
  fidelity: dict[str, Any] | None = None

  def to_dict(self) -> dict[str, Any]:
    """The JSON object summary.json holds."""
    out = {}
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if f.name == "further_tests":
        for split, ev in value.items():
          out.update({f"{split}_{k}": v for k, v in ev.items()})
      elif not ((f.name in _WRITTEN_WHEN_SET and value is None)
                or (f.name in _SHRINK_FIELDS and self.method is None)):
        out[f.name] = value
    return out

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Summary:
    """A summary.json object, of this code or older (defaults, renames).

    Raises:
      ValueError: a key is no field of the schema.
    """
    d = dict(d)
    old = d.pop(_OLD_BEST_VAL, None)
    if "best_val_score" not in d:  # written before the rename
      d["best_val_score"] = old
    names = {f.name for f in dataclasses.fields(cls)}
    further = {}
    for key in [k for k in d if k.endswith("_loss") and k not in names]:
      split = key[:-len("_loss")]
      further[split] = {k: d.pop(f"{split}_{k}") for k in
                        ("accuracy", "loss", "metrics") if f"{split}_{k}" in d}
    unknown = sorted(set(d) - names)
    if unknown:
      raise ValueError(f"not summary fields: {', '.join(unknown)}")
    return cls(**d, further_tests=further)


def write(path: str, summary: Summary) -> None:
  """summary.json at `path` (atomic, process 0 only)."""
  writers.write_json(path, summary.to_dict())


def read(path: str) -> Summary:
  """The summary.json at `path`.

  Raises:
    OSError: it cannot be opened.
    ValueError: it is not JSON, or not a summary (the message says why).
  """
  with open(path) as f:
    d = json.load(f)
  if not isinstance(d, dict):
    raise ValueError(f"expected a JSON object, got {type(d).__name__}")
  return Summary.from_dict(d)


def of_training(config, *, task: str, num_params: dict[str, Any],
                selection: str, with_metrics: bool, tests: dict[str, Any],
                best_meta: dict[str, Any], train_cost: dict[str, Any],
                eval_cost: dict[str, Any], timer: writers.StepTimer
                ) -> Summary:
  """A finished training run's summary. `tests`: {split: its evaluation}
  of the best checkpoint, whose meta is `best_meta`; `with_metrics`: the
  task reports metrics of its own; `train_cost` / `eval_cost`: the compiled
  steps' (`metrics.cost.compile_with_stats`)."""
  test = tests["test"]
  further = {split: {"accuracy": ev.get("accuracy"), "loss": ev["loss"],
                     **({"metrics": ev["metrics"]} if "metrics" in ev else {})}
             for split, ev in tests.items() if split != "test"}
  return Summary(
      config_name=config.config_name, task=task,
      attention=config.model.attention.name, num_params=num_params,
      best_step=best_meta["best_step"], num_train_steps=config.num_train_steps,
      test_accuracy=test.get("accuracy"), test_loss=test["loss"],
      selection=selection, best_val_score=best_meta["best_val_score"],
      test_metrics=test["metrics"] if with_metrics else None,
      further_tests=further, wall_time_s=timer.elapsed(),
      device=device_info(), cost={
          "train_flops_per_example": train_cost["flops"] / config.batch_size,
          "forward_flops_per_example":
              eval_cost["flops"] / config.eval_batch_size,
          "train_step_peak_bytes": train_cost.get("peak_bytes"),
          "train_step_temp_bytes": train_cost.get("temp_bytes"),
          "device_peak_bytes": cost.device_peak_bytes(),
          "train_compile_s": train_cost["compile_s"],
          "train_steps_per_s": timer.median_steps_per_s(),
      })


def device_info() -> dict[str, Any]:
  """What `Summary.device` records of the devices this process sees."""
  d = jax.devices()
  return {"kind": d[0].device_kind, "platform": d[0].platform, "count": len(d),
          "process_count": jax.process_count()}


def table(summary: Summary, workdir: str) -> str:
  """The lines printed at the end of a run."""
  p = summary.num_params
  fmt = lambda x: "n/a" if x is None else f"{x:.4f}"
  rows = [(f"test {k} (best ckpt)", fmt(v))
          for k, v in (summary.test_metrics or {}).items() if k != "accuracy"]
  return writers.table([
      ("config", summary.config_name),
      ("attention", summary.attention),
      ("params (total / attn / embed)",
       f"{p['total']:,} / {p['attention']:,} / {p['embedding']:,}"),
      (f"best val {summary.selection}",
       f"{fmt(summary.best_val_score)} @ step {summary.best_step}"),
      ("test accuracy (best ckpt)", fmt(summary.test_accuracy)),
      *rows,
      ("wall time", f"{summary.wall_time_s:.1f} s"),
      ("outputs", workdir),
  ])
