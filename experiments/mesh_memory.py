"""What each mesh axis saves: the planned per-device memory of one train
step (parameters, AdamW moments, batch, activations) on 8 devices, one
bench run per mesh (lightjax/sharding.py), against the same step on one
device.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      python -m lightjax.sweep experiments/mesh_memory.py --workdir runs/mesh_memory
  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      python -m lightjax.sweep experiments/mesh_memory.py:smoke --workdir /tmp/mesh

The default is LRA Text's model (`configs/bench.py:lra_text`: 4 layers,
embedding 256, 4 heads, MLP 1024) at 1K tokens and batch 16 (what a
2-core, 24 GB host can plan and run on one device), softmax and linear
attention; `smoke` is the tests' 1-layer 32-wide model at 256 tokens,
batch 8. The memory is XLA's compiled plan per device, exact and
deterministic for a given program (no timing noise, so runs of different
meshes compare directly); on fake CPU devices the timings mean nothing and
the table leaves them out. After the trials the sweep writes ROOT/table.md
(`write_table`; rerunning the finished sweep remakes it).

Measured (results/mesh_memory_cpu/, 8 fake CPU devices, 6 min): softmax's
plan per device is 9.6x smaller than one device's with data 8, 10.1x with
fsdp 8 (its parameters and Adam state 7.8x), 7.8x with seq 8, 3.1x with
model 8.
"""

import json
import os

from lightjax import sweep, tables

# name -> config.mesh overrides (axes not named are 1).
MESHES = {
    "one_device": {},
    "data8": {"data": 8},
    "fsdp8": {"fsdp": 8},
    "seq8": {"seq": 8},
    "model8": {"model": 8},
    "data2_fsdp2_model2": {"data": 2, "fsdp": 2, "model": 2},
    "fsdp2_seq4": {"fsdp": 2, "seq": 4},
}
PRESETS = {
    None: dict(bench="lra_text", lengths=1024, variants="softmax,linear",
               meshes=tuple(MESHES), batch_size=16, benchmarks="train_step"),
    # + the batch-1 latency, which stays on one device whatever the mesh.
    "smoke": dict(bench="cpu_tiny", lengths=256, variants="softmax",
                  meshes=("one_device", "fsdp2_seq4"), batch_size=8,
                  benchmarks="train_step,latency_b1"),
}


def get_sweep(arg=None):
  if arg not in PRESETS:
    raise ValueError(f"unknown mesh_memory sweep {arg!r}; valid: smoke")
  p = PRESETS[arg]
  trials = tuple(
      sweep.Trial(name, f"configs/bench.py:{p['bench']}", overrides=(
          ("variants", p["variants"]), ("lengths", p["lengths"]),
          ("benchmarks", p["benchmarks"]), ("batch_size", p["batch_size"]),
          ("warmup", 0), ("repeats", 1),
          *((f"mesh.{axis}", n) for axis, n in MESHES[name].items())),
                  program="lightjax.bench")
      for name in p["meshes"])
  return sweep.Sweep(trials, report=write_table)


def _records(root: str, name: str) -> list[dict]:
  with open(os.path.join(root, name, "bench.jsonl")) as f:
    recs = [json.loads(line) for line in f]
  return [r for r in recs if r["benchmark"] == "train_step"
          and r.get("status") == "ok"]


def table(root: str) -> str:
  """Per-device planned MiB of each (mesh, variant), and its ratio to one
  device; the meshes are those found under `root`, in MESHES' order."""
  mib = lambda b: f"{b / 2**20:.2f}"
  names = [n for n in MESHES if os.path.isfile(
      os.path.join(root, n, "bench.jsonl"))]
  base = {(r["variant"], r["seq_len"]): r
          for r in (_records(root, "one_device") if "one_device" in names
                    else [])}
  rows = []
  for name in names:
    for r in _records(root, name):
      one = base.get((r["variant"], r["seq_len"]))
      rows.append([
          name, r["variant"], r["seq_len"], r["batch_size"], r["devices"],
          mib(r["argument_bytes"]), mib(r["temp_bytes"]),
          mib(r["peak_bytes"]),
          (f"{one['peak_bytes'] / r['peak_bytes']:.2f}" if one
           else tables.MISSING)])
  return tables.markdown(
      ["mesh", "variant", "L", "batch", "devices", "arguments MiB/device",
       "temporaries MiB/device", "peak MiB/device", "one device / this"],
      rows)


def write_table(root: str) -> None:
  text = "# Planned train-step memory per device, by mesh\n\n" + table(root)
  with open(os.path.join(root, "table.md"), "w") as f:
    f.write(text)
  print(text)
