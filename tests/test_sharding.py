"""Meshes from config (lightjax/sharding.py): data, fsdp, seq and model axes
on 8 fake CPU devices against one device, placement by logical axis names,
and checkpoints that move between layouts."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from jax.sharding import PartitionSpec as P

from lightjax import sharding
from tests.helpers import REPO, read_jsonl

EIGHT = {"XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
         + " --xla_force_host_platform_device_count=8"}
TINY = ["--config", "configs/listops.py:tiny", "--config.log_every=5",
        "--config.eval_every=10", "--config.checkpoint_every=10",
        "--config.model.dropout_rate=0.0"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("data"))


def _train(args, data_dir, env=None):
  env = {**os.environ, "LIGHTJAX_DATA_DIR": data_dir, **(env or {})}
  proc = subprocess.run([sys.executable, "-m", "lightjax.train", *TINY, *args],
                        cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout + proc.stderr


def _train_losses(workdir):
  return {r["step"]: r["loss"] for r in read_jsonl(os.path.join(workdir,
                                                                "metrics.jsonl"))
          if r["split"] == "train"}


def test_axis_sizes_and_specs():
  full = {"data": 8, "fsdp": 1, "seq": 1, "model": 1}
  assert sharding.axis_sizes({"data": -1, "fsdp": 1}, 8) == full
  assert sharding.axis_sizes({"data": 2, "fsdp": -1}, 8) == {
      "data": 2, "fsdp": 4, "seq": 1, "model": 1}
  for bad, match in (({"data": 3, "fsdp": 1}, "needs 3 devices"),
                     ({"data": -1, "fsdp": 3}, "not a multiple of 3"),
                     ({"data": -1, "fsdp": -1}, "at most one -1"),
                     ({"tensor": 2}, r"unknown axes \['tensor'\]; valid: data,"
                                     r" fsdp, seq, model")):
    with pytest.raises(ValueError, match=match):
      sharding.axis_sizes(bad, 8)
  mesh = {"data": 2, "fsdp": 4, "seq": 1, "model": 2}
  spec = lambda names, shape, rules=sharding.DEFAULT_RULES: sharding.spec_for(
      names, shape, mesh, rules)
  assert spec(("embed", "mlp"), (64, 128)) == P("fsdp", "model")
  assert spec(("mlp", "embed"), (128, 64)) == P("model", "fsdp")
  assert spec(("embed", "embed"), (64, 64)) == P("fsdp")  # one use per axis
  assert spec(("vocab", "embed"), (21, 64)) == P(None, "fsdp")  # 2 !| 21
  assert spec(("norm",), (64,)) == P()  # no rule: whole
  assert spec((None, "embed"), (64, 64)) == P(None, "fsdp")
  # Activations: the batch over data x fsdp; seq of size 1 splits nothing.
  assert spec(("batch", "length", None), (16, 64, 32)) == P(("data", "fsdp"))
  assert spec(("batch",), (6,)) == P("data")  # 8 !| 6, 2 | 6
  # User rules go first; the defaults fill in the rest.
  rules = sharding.check_rules((("embed", None), ("mlp", ("fsdp", "model")),
                                ("vocab", ())))
  assert spec(("embed", "mlp"), (64, 128), rules) == P(None, ("fsdp", "model"))
  assert spec(("vocab", "embed"), (64, 64), rules) == P()  # () = None: whole
  # An activation may split unevenly (XLA pads): a CLS position makes L + 1.
  assert sharding.spec_for(("batch", "length", None), (16, 65, 32),
                           {"data": 2, "seq": 4}, even=False) == P("data", "seq")
  assert spec(("batch", "length"), (16, 65)) == P(("data", "fsdp"))


def test_bad_sharding_rules_list_the_valid_names():
  for rules, match in (((("embd", "fsdp"),), r"unknown logical axis 'embd';"
                        r" valid: batch, length, vocab, embed, heads, mlp,"),
                       ((("embed", "fdsp"),), r"'embed' -> unknown mesh axis"
                        r" 'fdsp'; valid: data, fsdp, seq, model"),
                       ((("embed",),), r"each rule is \(logical name, mesh"
                        r" axis\)"),
                       ((("embed", 3),), r"'embed' -> unknown mesh axis 3")):
    with pytest.raises(sharding.MeshError, match=match):
      sharding.check_rules(rules)


def test_every_parameter_of_every_variant_names_its_axes():
  """The contract that makes placement by rules complete: each nnx.Param
  of every model kind and every attention variant (with the compact
  options that add parameters) carries one logical name per dimension."""
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from lightjax import attention, config_lib, models  # pylint: disable=import-outside-toplevel
  c = config_lib.load_config_file("configs/listops.py:tiny")
  c.model.classifier_hidden_dim = 16
  builds = [(name, "encoder_classifier", {}) for name in attention.names()]
  builds += [("linear", "decoder_lm", {}),
             ("softmax", "encoder_mlm", {"type_vocab_size": 2}),
             ("softmax", "encoder_classifier",
              {"embed_factor_dim": 8, "type_vocab_size": 2, "pooler": True,
               "low_rank_ranks": ({"query": 4, "fc1": 8}, {"out": 4})}),
             ("softmax", "dual_encoder_classifier", {"pooler": True}),
             ("softmax", "sentence_encoder", {"projection_dim": 8})]
  checked = 0
  for name, kind, extra in builds:
    cfg = c.model.copy_and_resolve_references()
    with cfg.unlocked():
      cfg.attention.name, cfg.name = name, kind
      cfg.update(extra)
    m = models.build_model(cfg, vocab_size=20, num_classes=10, max_len=64,
                           rngs=nnx.Rngs(0))
    for path, v in nnx.to_flat_state(nnx.state(m, nnx.Param)):
      names = sharding.logical_names(v)
      assert names is not None and len(names) == v.get_value().ndim, (
          name, kind, path, names)
      assert set(names) <= set(sharding.LOGICAL_AXES) | {None}, names
      checked += 1
  assert checked > 200


def test_fsdp_data_seq_and_model_on_8_devices_match_one(tmp_path, data_dir):
  """Same losses on one device, data parallel over 8, fsdp over 8, and
  data x fsdp x seq x model = 1 x 2 x 2 x 2 (parameters split by their
  logical axes, activations by batch and position); the run logs its
  mesh."""
  args = ["--config.num_train_steps=10", "--config.model.mlp_dim=128"]
  _train([*args, "--workdir", str(tmp_path / "one")], data_dir)
  out = {}
  for name, mesh in (("data", ["--config.mesh.data=-1"]),
                     ("fsdp", ["--config.mesh.data=1", "--config.mesh.fsdp=8"]),
                     ("seq_model", ["--config.mesh.data=1", "--config.mesh.fsdp=2",
                                    "--config.mesh.seq=2",
                                    "--config.mesh.model=2"])):
    out[name] = _train([*args, *mesh, "--workdir", str(tmp_path / name)],
                       data_dir, EIGHT)
  assert ("Mesh {'data': 8, 'fsdp': 1, 'seq': 1, 'model': 1} over 8 cpu"
          " devices: global batch 16, 2 per device.") in out["data"]
  assert ("Mesh {'data': 1, 'fsdp': 8, 'seq': 1, 'model': 1} over 8 cpu"
          " devices: global batch 16, 2 per device.") in out["fsdp"]
  # Every parameter with an embed dimension and its two Adam moments.
  assert "Train state: 60 of 132 arrays split (fsdp 60)" in out["fsdp"]
  assert ("Mesh {'data': 1, 'fsdp': 2, 'seq': 2, 'model': 2} over 8 cpu"
          " devices: global batch 16, 8 per device, 1/2 of their positions"
          " each.") in out["seq_model"]
  assert "(model 72, fsdp 60)" in out["seq_model"], (
      out["seq_model"])
  # Every record (train and validation) at the same step, loss within 1e-4.
  one = read_jsonl(tmp_path / "one" / "metrics.jsonl")
  for name in out:
    got = read_jsonl(tmp_path / name / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in got] == [
        (r["step"], r["split"]) for r in one]
    for a, b in zip(one, got):
      assert abs(a["loss"] - b["loss"]) < 1e-4, (name, a, b)
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert summary["device"]["count"] == 8


def test_parameters_and_activations_really_split():
  """On 8 devices each device holds its share of a kernel (fsdp x model),
  a rule keeps a logical axis whole, and the blocks pin the residual
  stream to (batch, positions) when the mesh has a seq axis."""
  script = """
import jax, jax.numpy as jnp
from flax import nnx
from lightjax import config_lib, models, sharding
c = config_lib.load_config_file('configs/listops.py:tiny')
c.model.mlp_dim = 128
m = models.build_model(c.model, vocab_size=20, num_classes=10, max_len=64,
                       rngs=nnx.Rngs(0))
state = nnx.state(m)
def shards(rules=()):
  mesh = sharding.make_mesh({'data': 1, 'fsdp': 4, 'model': 2}, jax.devices())
  placed = jax.device_put(state, sharding.state_shardings(state, mesh, rules))
  mlp = placed['backbone']['blocks'][0]['mlp']
  return [mlp[k]['kernel'][...].addressable_shards[0].data.shape
          for k in ('fc1', 'fc2')]
print(*shards())
print(*shards((('embed', None),)))
gd, st = nnx.split(m)
def classify(st, tokens):  # CLS pooling: the blocks see 64 + 1 positions
  return nnx.merge(gd, st)(tokens)
mesh = sharding.make_mesh({'data': 2, 'seq': 4}, jax.devices())
tokens = sharding.put_batch({'t': jnp.ones((8, 64), jnp.int32)}, mesh)['t']
print(tokens.sharding.spec, c.model.pool)
with sharding.activation_layout(mesh):
  text = jax.jit(classify).lower(st, tokens).as_text()
print(sum('sharding_constraint' in l and '[{"data"}, {"seq"}, {}]' in l
          and '8x65x32' in l for l in text.splitlines()))
"""
  env = {**os.environ, **EIGHT}
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines() == [
      "(8, 64) (64, 8)",  # [32, 128] over fsdp 4 x model 2, and transposed
      "(32, 64) (64, 32)",  # embed kept whole
      "P('data', 'seq') cls",
      "2",  # one constraint per block, seq splitting 65 positions unevenly
  ], proc.stdout


@pytest.mark.slow
def test_checkpoints_move_between_device_counts(tmp_path, data_dir):
  """10 steps on one layout, resumed for 10 more on the other, both ways:
  the losses of steps 11-20 are those of the same two runs on one device.
  (The one-device first leg is shared: its workdir is copied at step 10.)"""
  layouts = {"one": (["--config.model.mlp_dim=128"], None),
             "fsdp8": (["--config.model.mlp_dim=128", "--config.mesh.data=1",
                        "--config.mesh.fsdp=8"], EIGHT)}

  def leg(workdir, layout, steps):
    args, env = layouts[layout]
    return _train([*args, f"--config.num_train_steps={steps}", "--workdir",
                   str(workdir)], data_dir, env)

  ref, to8, to1 = tmp_path / "ref", tmp_path / "to8", tmp_path / "to1"
  leg(ref, "one", 10)
  shutil.copytree(ref, to8)
  leg(ref, "one", 20)
  leg(to1, "fsdp8", 10)
  outs = {to8: leg(to8, "fsdp8", 20), to1: leg(to1, "one", 20)}
  want = _train_losses(ref)
  for work, out in outs.items():
    assert "Resumed from" in out and "at step 10" in out
    got = _train_losses(work)
    assert got.keys() == want.keys()
    for step in got:
      assert abs(got[step] - want[step]) < 1e-4, (work, step, got[step],
                                                   want[step])
    summary = json.loads((work / "summary.json").read_text())
    assert summary["device"]["count"] == (8 if work == to8 else 1)


def _free_port() -> int:
  import socket  # pylint: disable=import-outside-toplevel
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_jax_distributed_match_one(tmp_path, data_dir):
  """Two real processes joined by jax.distributed over localhost (two CPU
  devices each, gloo collectives; data across the processes, seq within
  each), each putting only its half of every batch on its devices, split
  by position: the same losses as one process; process 0 alone writes
  the logs; orbax checkpoints from both."""
  args = ["--config.num_train_steps=10"]
  _train([*args, "--workdir", str(tmp_path / "one")], data_dir)
  port = _free_port()
  env = {**os.environ, "LIGHTJAX_DATA_DIR": data_dir,
         "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
         + " --xla_force_host_platform_device_count=2"}
  procs = [subprocess.Popen(
      [sys.executable, "-m", "lightjax.train", *TINY, *args,
       "--config.mesh.data=2", "--config.mesh.seq=2", "--workdir",
       str(tmp_path / "two"), f"--coordinator_address=localhost:{port}",
       "--num_processes=2", f"--process_id={i}"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
  assert ("Mesh {'data': 2, 'fsdp': 1, 'seq': 2, 'model': 1} over 4 cpu"
          " devices: global batch 16, 8 per device, 1/2 of their positions"
          " each.") in outs[0]
  assert "step     10/10" in outs[0] and "step     10/10" not in outs[1]
  one = read_jsonl(tmp_path / "one" / "metrics.jsonl")
  two = read_jsonl(tmp_path / "two" / "metrics.jsonl")
  assert [(r["step"], r["split"]) for r in one] == [
      (r["step"], r["split"]) for r in two]
  for a, b in zip(one, two):
    assert abs(a["loss"] - b["loss"]) < 1e-5, (a, b)
  summary = json.loads((tmp_path / "two" / "summary.json").read_text())
  assert summary["device"]["process_count"] == 2
  assert os.path.isdir(tmp_path / "two" / "checkpoints" / "10")


@pytest.mark.slow
def test_bad_distributed_flags_are_one_line(tmp_path, data_dir):
  env = {**os.environ, "LIGHTJAX_DATA_DIR": data_dir}
  proc = subprocess.run(
      [sys.executable, "-m", "lightjax.train", *TINY, "--workdir",
       str(tmp_path), "--coordinator_address=localhost:1234"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "lightjax.train: --coordinator_address needs --num_processes >= 1 and"
      " 0 <= --process_id < num_processes; got 0 and -1")
  # lightjax.shrink takes the same flags (a sweep runs it on every host).
  proc = subprocess.run(
      [sys.executable, "-m", "lightjax.shrink", "--config",
       "configs/shrink/prune_heads.py", "--workdir", str(tmp_path / "s"),
       "--coordinator_address=localhost:1234", "--num_processes=2"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "lightjax.shrink: --coordinator_address needs --num_processes >= 1 and"
      " 0 <= --process_id < num_processes; got 2 and -1")


def test_a_mesh_the_devices_cannot_hold_is_one_line(tmp_path, data_dir):
  env = {**os.environ, "LIGHTJAX_DATA_DIR": data_dir, **EIGHT}
  proc = subprocess.run(
      [sys.executable, "-m", "lightjax.train", *TINY, "--workdir",
       str(tmp_path / "w"), "--config.mesh.data=3"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "lightjax.train: config.mesh {'data': 3, 'fsdp': 1, 'seq': 1, 'model': 1}"
      " needs 3 devices; there are 8")
  assert not (tmp_path / "w").exists()  # nothing written
  # Positions split over seq must divide the task's length (checked with
  # the data, still before the workdir).
  proc = subprocess.run(
      [sys.executable, "-m", "lightjax.train", *TINY, "--workdir",
       str(tmp_path / "w"), "--config.mesh.data=4", "--config.mesh.seq=2",
       "--config.task.max_length=63"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "lightjax.train: config.mesh splits positions into 2 parts (seq), which"
      " do not divide the length 63 of 'inputs'")
  assert not (tmp_path / "w").exists()
