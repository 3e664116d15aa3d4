"""lightjax.shrink: the driver, layer dropping, LayerDrop cuts and
distillation, on tiny ListOps teachers trained here."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import init_from, objectives, shrink, steps, trainer
from lightjax.shrink import distill, layers, run
from tests.helpers import REPO, load_config, set_fields, train_tiny_listops


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data_dir_module):
  """A tiny 3-layer ListOps teacher (so dropping and cutting have choices)."""
  return train_tiny_listops(str(tmp_path_factory.mktemp("teacher") / "run"),
                            data_dir_module, num_layers=3)


@pytest.fixture(scope="module")
def data_dir_module(tmp_path_factory):
  return str(tmp_path_factory.mktemp("data"))


def _recipe(name, data_dir, teacher_dir, **overrides):
  c = load_config(f"configs/shrink/{name}.py:tiny")
  c.data_dir, c.init_from = data_dir, teacher_dir
  return set_fields(c, overrides)


# --- layer choices ------------------------------------------------------------------


def test_drop_strategies():
  assert layers.drop_order("top", 6, 2) == [4, 5]
  assert layers.drop_order("bottom", 6, 2) == [0, 1]
  assert layers.drop_order("alternate", 6, 2) == [3, 5]
  assert layers.drop_order("alternate", 6, 4) == [1, 3, 4, 5]
  assert layers.drop_order("symmetric", 6, 2) == [2, 3]
  assert layers.drop_order("contribution", 4, 2,
                           np.array([0.1, 0.9, 0.5, 0.95])) == [1, 3]
  with pytest.raises(ValueError, match="cannot drop 3 of 3 layers"):
    layers.drop_order("top", 3, 3)
  with pytest.raises(ValueError, match="cannot drop 0"):
    layers.drop_order("top", 3, 0)
  with pytest.raises(ValueError, match="valid: top, bottom, alternate"):
    layers.drop_order("middle", 3, 1)


def test_layerdrop_every_other_and_distilbert_layers():
  # Fan et al. 2020: p = 0.5 drops depths 2, 4, ... (1-based).
  assert layers.every_other(4, 2) == [0, 2]
  assert layers.every_other(6, 4) == [0, 1, 3, 4]
  assert layers.every_other(6, 3) == [0, 2, 4]
  assert layers.every_other(5, 2) == [0, 4]  # evenly spaced fallback
  with pytest.raises(ValueError, match="keep must be in 1..2"):
    layers.every_other(3, 3)
  assert distill.student_layers(12, 6) == [0, 2, 4, 6, 8, 10]  # DistilBERT
  assert distill.student_layers(3, 1) == [0]


def test_dropped_model_is_the_teacher_without_those_blocks(teacher, data_dir_module):
  """The physically shallower student computes what the teacher computes
  when the dropped blocks are skipped, and holds fewer parameters."""
  c = _recipe("drop_layers", data_dir_module, teacher)
  source, task = run._resolve(c, [])
  model, _ = init_from.load_model(teacher)
  ctx = shrink.Context(
      config=c, options={}, teacher_cfg=c.model, task=task,
      vocab_size=source.vocab_size, num_classes=source.num_classes,
      max_len=source.max_len, evaluate=None)
  out = layers.keep_layers(model, ctx, [0, 2])
  tokens = jnp.asarray(task.splits["validation"]["inputs"][:8])
  student_logits = out.model(tokens)
  model.backbone.blocks = nnx.List([model.backbone.blocks[0],
                                    model.backbone.blocks[2]])
  np.testing.assert_allclose(np.asarray(student_logits),
                             np.asarray(model(tokens)), atol=1e-6)
  assert out.model_cfg.num_layers == 2
  full = sum(v.size for v in shrink.params_of(init_from.load_model(teacher)[0]).values())
  assert sum(v.size for v in shrink.params_of(out.model).values()) < full


# --- runs ---------------------------------------------------------------------------


def test_drop_layers_run_reports_and_resumes(tmp_path, teacher, data_dir_module):
  c = _recipe("drop_layers", data_dir_module, teacher,
              **{"shrink.drop_layers.num_drop": 1,
                 "shrink.drop_layers.strategy": "contribution"})
  workdir = str(tmp_path / "run")
  s = run.shrink_and_evaluate(c, workdir)
  assert s["method"] == "drop_layers"
  assert len(s["shrink_details"]["contribution"]) == 3
  assert s["num_params"]["total"] < s["teacher_num_params"]
  assert s["deploy"]["forward_flops"] < s["teacher_deploy"]["forward_flops"]
  assert s["deploy"]["bytes"] < s["teacher_deploy"]["bytes"]
  for key in ("task", "128"):
    lat = s["deploy"]["latency"][key]
    assert 0 < lat["p50_ms"] <= lat["p90_ms"]
  assert 0 <= s["teacher_val_accuracy"] <= 1 and s["accuracy_kept"] is not None
  on_disk = json.loads(open(os.path.join(workdir, "summary.json")).read())
  assert on_disk["teacher_num_params"] == s["teacher_num_params"]
  report = open(os.path.join(workdir, "shrink_report.md")).read()
  assert "| teacher |" in report and "steps of recovery" in report
  assert os.path.getsize(os.path.join(workdir, "shrink_pareto.png")) > 1000
  # lightjax.report puts shrink runs beside training runs.
  from lightjax import report as report_lib
  paths = report_lib.make_report([workdir, teacher], str(tmp_path / "report"))
  table = open(paths["markdown"]).read()
  assert "shrink method" in table and "| drop_layers |" in table
  # The same command again resumes: nothing is shrunk or trained twice.
  again = run.shrink_and_evaluate(c, workdir)
  assert again["test_accuracy"] == s["test_accuracy"]
  assert again["shrink_details"] == s["shrink_details"]


def test_layerdrop_cut_without_fine_tuning(tmp_path, data_dir_module):
  t = load_config("configs/listops.py:tiny")
  t.data_dir, t.model.num_layers, t.model.layerdrop = data_dir_module, 4, 0.3
  trainer.train_and_evaluate(t, str(tmp_path / "teacher"))
  c = _recipe("layerdrop", data_dir_module, str(tmp_path / "teacher"))
  s = run.shrink_and_evaluate(c, str(tmp_path / "cut"))
  assert s["num_train_steps"] == 0 and s["shrink_details"]["kept_layers"] == [0, 2]
  assert s["shrink_details"]["teacher_layerdrop"] == 0.3
  assert s["test_accuracy"] == s["test_accuracy_before_finetune"]
  student, _ = init_from.load_model(str(tmp_path / "cut" / "student"))
  assert len(student.backbone.blocks) == 2


def test_distillation_objective():
  rng = np.random.default_rng(0)
  s, t = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
  y, w = jnp.asarray(rng.integers(0, 4, 6)), jnp.ones(6)
  hard = objectives.classification(jnp.asarray(s), y, w)
  only_hard = objectives.distillation(jnp.asarray(s), y, w,
                                      teacher_logits_BxC=jnp.asarray(t), alpha=0.0)
  np.testing.assert_allclose(only_hard["loss_sum"], hard["loss_sum"], rtol=1e-6)
  same = objectives.distillation(jnp.asarray(s), y, w,
                                 teacher_logits_BxC=jnp.asarray(s), alpha=1.0)
  assert abs(float(same["loss_sum"])) < 1e-5  # KL(p || p) = 0
  other = objectives.distillation(jnp.asarray(s), y, w,
                                  teacher_logits_BxC=jnp.asarray(t), alpha=1.0)
  assert float(other["loss_sum"]) > 0.01
  assert float(other["correct_sum"]) == float(hard["correct_sum"])


def test_distillation_cosine_term():
  """DistilBERT's cosine loss: mean over an example's real tokens of
  1 - cos(h_student, h_teacher), weighted by `cosine`."""
  rng = np.random.default_rng(1)
  s, y, w = jnp.asarray(rng.normal(size=(3, 4))), jnp.asarray([0, 1, 2]), jnp.ones(3)
  h = rng.normal(size=(3, 5, 8)).astype(np.float32)
  mask = np.ones((3, 5), bool)
  mask[1, 3:] = False
  other = h.copy()
  other[1, 3:] = rng.normal(size=(2, 8))  # differs only at pad positions
  other[2] = -h[2]                        # opposite: 1 - cos = 2
  base = objectives.distillation(s, y, w, teacher_logits_BxC=s)
  with_cos = objectives.distillation(
      s, y, w, teacher_logits_BxC=s, hidden_BxLxE=jnp.asarray(h),
      teacher_hidden_BxLxE=jnp.asarray(other), mask_BxL=jnp.asarray(mask),
      cosine=0.5)
  np.testing.assert_allclose(float(with_cos["loss_sum"] - base["loss_sum"]),
                             0.5 * 2.0, rtol=1e-5)
  with pytest.raises(ValueError, match="needs the hidden states"):
    objectives.distillation(s, y, w, teacher_logits_BxC=s, cosine=1.0)
  with pytest.raises(ValueError, match="same shape"):
    objectives.distillation(
        s, y, w, teacher_logits_BxC=s, hidden_BxLxE=jnp.asarray(h),
        teacher_hidden_BxLxE=jnp.asarray(h[..., :4]), mask_BxL=mask, cosine=1.0)


def test_train_step_runs_the_frozen_teacher(teacher, data_dir_module):
  """The teacher runs inside the compiled step: a student equal to its
  teacher has zero distillation loss (KL and cosine); another teacher
  gives the KL of their logits plus the cosine of their hidden states, as
  computed here from the models; the teacher is never updated."""
  import functools  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from lightjax import data  # pylint: disable=import-outside-toplevel
  task = data.load_task(load_config("configs/listops.py:tiny").task,
                        data_dir_module)
  model, _ = init_from.load_model(teacher)
  batch = {k: jnp.asarray(v[:8]) for k, v in task.splits["train"].items()}
  batch["weights"] = jnp.ones(8)
  objective = functools.partial(objectives.distillation, alpha=1.0,
                                temperature=1.0, cosine=1.0)

  def first_loss(teacher_model):
    student, _ = init_from.load_model(teacher)
    for _, m in nnx.iter_modules(student):  # no dropout: compare exactly
      if isinstance(m, nnx.Dropout):
        m.rate = 0.0
    opt = nnx.Optimizer(student, optax.sgd(0.0), wrt=nnx.Param)
    gd_t, t_state = nnx.split(teacher_model)
    graphdefs = {"model": nnx.graphdef(student), "opt": nnx.graphdef(opt),
                 "teacher": gd_t}
    state = {"model": nnx.state(student), "opt": nnx.state(opt)}
    _, acc = steps.train_step(graphdefs, objective, state, batch,
                              steps.zero_metrics(), t_state,
                              pad_id=task.pad_id)
    return float(acc["loss_sum"]) / float(acc["count"])

  assert abs(first_loss(model)) < 1e-5
  other = layers.keep_layers(model, _ctx_for(teacher, task), [0, 1]).model
  got = first_loss(other)
  logits, h_s, mask = model.with_hidden(batch["inputs"], pad_id=task.pad_id)
  t_logits, h_t, _ = other.with_hidden(batch["inputs"], pad_id=task.pad_id)
  kl = (jax.nn.softmax(t_logits) * (jax.nn.log_softmax(t_logits)
                                     - jax.nn.log_softmax(logits))).sum(-1)
  cos = (optax.cosine_similarity(h_s, h_t) * mask).sum(-1) / mask.sum(-1)
  np.testing.assert_allclose(got, float((kl + 1 - cos).mean()), rtol=1e-4)


def _ctx_for(teacher_dir, task):
  """A shrink Context for `keep_layers` on the teacher (only its config and
  sizes are read)."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  _, source = init_from.load_model(teacher_dir)
  return shrink.Context(
      config=load_config("configs/shrink/distill.py:tiny"), options={},
      teacher_cfg=ml_collections.ConfigDict(source.model), task=task,
      vocab_size=source.vocab_size, num_classes=source.num_classes,
      max_len=source.max_len, evaluate=None)


def test_distillation_needs_a_teacher(tmp_path, data_dir_module):
  c = load_config("configs/listops.py:tiny")
  c.data_dir, c.train_objective = data_dir_module, "distillation"
  with pytest.raises(ValueError, match="learns from a teacher; run it through"
                     " lightjax.shrink"):
    trainer.train_and_evaluate(c, str(tmp_path / "w"))


@pytest.mark.slow
def test_distill_run_uses_the_teachers_logits(tmp_path, teacher, data_dir_module):
  c = _recipe("distill", data_dir_module, teacher)
  s = run.shrink_and_evaluate(c, str(tmp_path / "d"))
  assert s["shrink_details"] == {"kept_layers": [0], "init": "teacher"}
  assert s["num_params"]["total"] < s["teacher_num_params"]
  saved = json.loads(open(tmp_path / "d" / "config.json").read())
  assert saved["train_objective"] == "distillation"
  assert saved["model"]["num_layers"] == 1
  # With DistilBERT's cosine term on the last hidden states.
  c = _recipe("distill", data_dir_module, teacher,
              **{"objective_options.distillation.cosine": 1.0})
  cos = run.shrink_and_evaluate(c, str(tmp_path / "cos"))
  assert cos["num_params"] == s["num_params"]
  train = [json.loads(line) for line in open(tmp_path / "cos" / "metrics.jsonl")
           if '"train"' in line]
  plain = [json.loads(line) for line in open(tmp_path / "d" / "metrics.jsonl")
           if '"train"' in line]
  assert train[0]["loss"] > plain[0]["loss"]  # the cosine term adds to it
  # The scratch baseline: same student, fresh weights.
  c = _recipe("distill", data_dir_module, teacher,
              **{"shrink.distill.init": "scratch", "train_objective": ""})
  b = run.shrink_and_evaluate(c, str(tmp_path / "b"))
  assert b["num_params"] == s["num_params"]
  assert b["val_accuracy_before_finetune"] != s["val_accuracy_before_finetune"] or (
      b["test_accuracy_before_finetune"] != s["test_accuracy_before_finetune"])


def test_distill_student_from_a_model_or_its_fresh_architecture(
    tmp_path, teacher, data_dir_module):
  """student_from: that model's weights (a pruned teacher as the student),
  or with init=scratch its architecture freshly initialised (the baseline)."""
  got = {}
  for init in ("teacher", "scratch"):
    c = _recipe("distill", data_dir_module, teacher,
                **{"shrink.distill.student_from": teacher,
                   "shrink.distill.init": init, "num_train_steps": 0})
    got[init] = run.shrink_and_evaluate(c, str(tmp_path / init))
    assert got[init]["shrink_details"] == {"student_from": teacher,
                                           "init": init}
  loaded, _ = init_from.load_model(teacher)
  assert got["teacher"]["best_val_score"] == pytest.approx(
      got["teacher"]["teacher_val_accuracy"])
  assert got["scratch"]["num_params"] == got["teacher"]["num_params"]
  # A run that fine-tuned nothing chains through its saved student.
  chained, source = init_from.load_model(str(tmp_path / "scratch"))
  assert source.spec == str(tmp_path / "scratch" / "student")
  fresh, _ = init_from.load_model(str(tmp_path / "scratch" / "student"))
  assert all(np.array_equal(a, shrink.params_of(chained)[p])
             for p, a in shrink.params_of(fresh).items())
  assert not np.allclose(shrink.params_of(fresh)[("head", "kernel")],
                         shrink.params_of(loaded)[("head", "kernel")])


def test_objectives_declare_what_they_take():
  """An objective's declared `options` and `takes_pad_id` are what its
  function takes (the declaration the trainer reads cannot drift)."""
  import inspect  # pylint: disable=import-outside-toplevel
  step_inputs = {"teacher_logits_BxC", "teacher_hidden_BxLxE", "hidden_BxLxE",
                 "mask_BxL"}
  for name in objectives.names():
    objective = objectives.get(name)
    params = inspect.signature(objective.fn).parameters
    assert objective.options == tuple(
        p for p, v in params.items() if v.kind == v.KEYWORD_ONLY
        and p not in step_inputs), name
    assert objective.takes_pad_id == ("pad_id" in params), name
    assert objective.needs_teacher == ("teacher_logits_BxC" in params), name
    assert objective.needs_hidden == ("hidden_BxLxE" in params), name
  assert objectives.distillation.needs_teacher
  assert not objectives.regression.reports_accuracy


def test_objective_options_are_checked():
  import ml_collections  # pylint: disable=import-outside-toplevel
  def objective(name, options):
    return objectives.train_objective(ml_collections.ConfigDict(
        {"train_objective": name, "objective_options": options}),
        "classification")
  assert objective("distillation", {"distillation": {"temperature": 3.0}}
                   ).bound == (("temperature", 3.0),)
  # Another objective's options are not this one's business.
  assert objective("classification", {"distillation": {"alpha": 1.0}}
                   ) is objectives.classification
  with pytest.raises(ValueError, match=r"distillation \['temp'\] are not"
                     r" options of the 'distillation' objective; valid:"
                     r" temperature, alpha, cosine$"):
    objective("distillation", {"distillation": {"temp": 3.0}})
  with pytest.raises(ValueError, match=r"unknown objective\(s\) \['distil'\];"
                     r" valid: classification, distillation"):
    objective("distillation", {"distil": {"alpha": 1.0}})


def test_cli_bad_input_is_one_line(tmp_path, teacher, data_dir_module):
  env = {**os.environ, "LIGHTJAX_DATA_DIR": data_dir_module}
  base = [sys.executable, "-m", "lightjax.shrink", "--config",
          "configs/shrink/drop_layers.py:tiny", "--workdir", str(tmp_path / "w")]
  cases = [
      ([], "needs a teacher: --config.init_from"),
      ([f"--config.init_from={teacher}", "--config.shrink.drop_layers.num_drop=3"],
       "cannot drop 3 of 3 layers"),
      ([f"--config.init_from={teacher}", "--config.shrink.method=prune_all"],
       "unknown shrink method 'prune_all'; valid:"),
      ([f"--config.init_from={teacher}", "--config.model.num_layers=2"],
       "contradicts init_from"),
  ]
  for extra, message in cases:
    r = subprocess.run(base + extra, cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2, (extra, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], (extra, r.stderr)


def test_theseus_freezes_the_predecessor_and_extracts_the_successor(
    tmp_path, teacher, data_dir_module):
  """Phase 1 trains only the successor (and the shared embeddings/head);
  the student is the successor alone, an ordinary encoder_classifier."""
  c = _recipe("theseus", data_dir_module, teacher,
              **{"shrink.theseus.successor_layers": 1})
  s = run.shrink_and_evaluate(c, str(tmp_path / "t"))
  assert s["shrink_details"]["predecessor_layers"] == 3
  hybrid, _ = init_from.load_model(str(tmp_path / "t" / "replacing"))
  start, _ = init_from.load_model(str(tmp_path / "t" / "replacing_init"))
  got, was = shrink.params_of(hybrid), shrink.params_of(start)
  frozen = [p for p in got if p[:2] == ("backbone", "predecessor")]
  assert len(frozen) > 0
  for p in frozen:
    np.testing.assert_array_equal(got[p], was[p], err_msg=str(p))
  assert any(not np.array_equal(got[p], was[p]) for p in got
             if p[:2] == ("backbone", "blocks"))
  assert int(hybrid.backbone.theseus_step[...]) == 0  # loaded: params only
  student, _ = init_from.load_model(str(tmp_path / "t"))
  assert type(student).__name__ == "EncoderClassifier"
  assert len(student.backbone.blocks) == 1
  assert s["num_params"]["total"] < s["teacher_num_params"]
