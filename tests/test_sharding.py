"""Meshes from config (lightjax/sharding.py): data and fsdp axes on 8 fake
CPU devices against one device, and checkpoints that move between them."""

import json
import os
import subprocess
import sys

import numpy as np
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
  assert sharding.axis_sizes({"data": -1, "fsdp": 1}, 8) == {"data": 8, "fsdp": 1}
  assert sharding.axis_sizes({"data": 2, "fsdp": -1}, 8) == {"data": 2, "fsdp": 4}
  for bad, match in (({"data": 3, "fsdp": 1}, "needs 3 devices"),
                     ({"data": -1, "fsdp": 3}, "not a multiple of 3"),
                     ({"data": -1, "fsdp": -1}, "at most one -1"),
                     ({"model": 2}, r"unknown axes \['model'\]; valid: data, fsdp")):
    with pytest.raises(ValueError, match=match):
      sharding.axis_sizes(bad, 8)
  assert sharding.spec_for((64, 128), 8) == P(None, "fsdp")  # largest dim
  assert sharding.spec_for((1004, 64), 8) == P(None, "fsdp")  # 8 does not divide 1004
  assert sharding.spec_for((1024, 64), 8) == P("fsdp")
  assert sharding.spec_for((128,), 8) == P()  # small: whole everywhere
  assert sharding.spec_for((64, 128), 1) == P()


def test_unknown_sharding_strategy_lists_the_valid_ones():
  import jax  # pylint: disable=import-outside-toplevel
  mesh = sharding.make_mesh({"data": -1}, jax.devices())
  with pytest.raises(sharding.MeshError, match=r"unknown strategy 'shard'"
                     r" for '\.\*'; valid: fsdp, replicate"):
    sharding.state_shardings({"w": np.zeros((4, 4))}, mesh, ((".*", "shard"),))


def test_fsdp_and_data_on_8_devices_match_one(tmp_path, data_dir):
  """Same losses on one device, data parallel over 8, and fsdp over 8 (the
  parameters and optimizer state split); the run logs its mesh."""
  # MLP 128 wide: its kernels (32 x 128) are large enough to be split.
  args = ["--config.num_train_steps=10", "--config.model.mlp_dim=128"]
  _train([*args, "--workdir", str(tmp_path / "one")], data_dir)
  out = {}
  for name, mesh in (("data", ["--config.mesh.data=-1"]),
                     ("fsdp", ["--config.mesh.data=1", "--config.mesh.fsdp=8"]),
                     ("both", ["--config.mesh.data=2", "--config.mesh.fsdp=-1"])):
    out[name] = _train([*args, *mesh, "--workdir", str(tmp_path / name)],
                       data_dir, EIGHT)
  assert ("Mesh {'data': 8, 'fsdp': 1} over 8 cpu devices: global batch 16,"
          " 2 per device.") in out["data"]
  assert ("Mesh {'data': 1, 'fsdp': 8} over 8 cpu devices: global batch 16,"
          " 2 per device.") in out["fsdp"]
  assert "Train state: 12 of" in out["fsdp"]  # fc1/fc2 kernels, Adam's m, v
  assert "Mesh {'data': 2, 'fsdp': 4}" in out["both"]
  one = _train_losses(tmp_path / "one")
  for name in out:
    got = _train_losses(tmp_path / name)
    assert got.keys() == one.keys()
    for step, loss in one.items():
      assert abs(got[step] - loss) < 1e-4, (name, step, got[step], loss)


def test_fsdp_really_splits_the_parameters():
  """On 8 devices with fsdp=8 each device holds 1/8 of a large kernel."""
  script = """
import jax, numpy as np
from flax import nnx
from lightjax import config_lib, models, sharding
c = config_lib.load_config_file('configs/listops.py:tiny')
c.model.mlp_dim = 128
m = models.build_model(c.model, vocab_size=20, num_classes=10, max_len=64,
                       rngs=nnx.Rngs(0))
mesh = sharding.make_mesh({'data': 1, 'fsdp': 8}, jax.devices())
state = nnx.state(m)
placed = jax.device_put(state, sharding.state_shardings(state, mesh))
kernel = placed['backbone']['blocks'][0]['mlp']['fc1']['kernel'][...]
print(kernel.shape, kernel.addressable_shards[0].data.shape, len(kernel.devices()))
# A rule keeps fc1 whole; the first match wins, so fc2 is still split.
rules = (("fc1", "replicate"), (".*", "fsdp"))
placed = jax.device_put(state, sharding.state_shardings(state, mesh, rules))
mlp = placed['backbone']['blocks'][0]['mlp']
print(mlp['fc1']['kernel'][...].addressable_shards[0].data.shape,
      mlp['fc2']['kernel'][...].addressable_shards[0].data.shape)
"""
  env = {**os.environ, **EIGHT}
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines() == ["(32, 128) (32, 16) 8",
                                             "(32, 128) (16, 32)"], proc.stdout


@pytest.mark.parametrize("first,then", [("fsdp8", "one"), ("one", "fsdp8")])
def test_checkpoints_move_between_device_counts(tmp_path, data_dir, first,
                                                then):
  """10 steps on one layout, resumed for 10 more on the other: the losses
  of steps 11-20 are those of the same two runs on one device."""
  layouts = {"one": (["--config.model.mlp_dim=128"], None),
             "fsdp8": (["--config.model.mlp_dim=128", "--config.mesh.data=1",
                        "--config.mesh.fsdp=8"], EIGHT)}

  def two_legs(workdir, a, b):
    for layout, steps in ((a, 10), (b, 20)):
      args, env = layouts[layout]
      out = _train([*args, f"--config.num_train_steps={steps}", "--workdir",
                    workdir], data_dir, env)
    return out

  two_legs(str(tmp_path / "ref"), "one", "one")
  work = str(tmp_path / "moved")
  out = two_legs(work, first, then)
  assert "Resumed from" in out and "at step 10" in out
  ref, got = _train_losses(tmp_path / "ref"), _train_losses(work)
  assert got.keys() == ref.keys()
  for step in got:
    assert abs(got[step] - ref[step]) < 1e-4, (step, got[step], ref[step])
  summary = json.loads(open(os.path.join(work, "summary.json")).read())
  assert summary["device"]["count"] == (8 if then == "fsdp8" else 1)


def _free_port() -> int:
  import socket  # pylint: disable=import-outside-toplevel
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_with_jax_distributed_match_one(tmp_path, data_dir):
  """Two real processes joined by jax.distributed over localhost (one CPU
  device each, gloo collectives), each putting only its half of every
  batch on its device: the same losses as one process; process 0 alone
  writes the logs; orbax checkpoints from both."""
  args = ["--config.num_train_steps=10"]
  _train([*args, "--workdir", str(tmp_path / "one")], data_dir)
  port = _free_port()
  env = {**os.environ, "LIGHTJAX_DATA_DIR": data_dir}
  procs = [subprocess.Popen(
      [sys.executable, "-m", "lightjax.train", *TINY, *args, "--workdir",
       str(tmp_path / "two"), f"--coordinator_address=localhost:{port}",
       "--num_processes=2", f"--process_id={i}"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
  assert "Mesh {'data': 2, 'fsdp': 1} over 2 cpu devices: global batch 16," \
      " 8 per device." in outs[0]
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


def test_a_mesh_the_devices_cannot_hold_is_one_line(tmp_path, data_dir):
  env = {**os.environ, "LIGHTJAX_DATA_DIR": data_dir, **EIGHT}
  proc = subprocess.run(
      [sys.executable, "-m", "lightjax.train", *TINY, "--workdir",
       str(tmp_path / "w"), "--config.mesh.data=3"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "lightjax.train: config.mesh {'data': 3, 'fsdp': 1} needs 3 devices;"
      " there are 8")
  assert not (tmp_path / "w").exists()  # nothing written
