"""lightjax.sweep: the sweep files in experiments/, the dry run, launchers,
and the smoke sweep run for real, killed, rerun and tabulated."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from lightjax import attention, sweep
from tests.helpers import REPO


def _sweep(*args, timeout=120):
  return subprocess.run([sys.executable, "-m", "lightjax.sweep", *args],
                        cwd=REPO, capture_output=True, text=True,
                        timeout=timeout)


def test_axes():
  assert sweep.product(a=[1, 2], b=["x"]) == [{"a": 1, "b": "x"},
                                             {"a": 2, "b": "x"}]
  assert sweep.zipped(a=[1, 2], b=[3, 4]) == [{"a": 1, "b": 3},
                                             {"a": 2, "b": 4}]
  with pytest.raises(ValueError, match="one length"):
    sweep.zipped(a=[1], b=[1, 2])
  with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
    sweep.Sweep((sweep.Trial("a", "c.py"), sweep.Trial("a", "d.py")))


def test_lra_table1_dry_run_is_the_full_grid(tmp_path):
  proc = _sweep("experiments/lra_table1.py", "--workdir", str(tmp_path),
                "--dry_run")
  assert proc.returncode == 0, proc.stderr
  commands = [l for l in proc.stdout.splitlines() if l.startswith("python")]
  variants = [n for n in attention.names() if n != "none"]
  assert len(commands) == 5 * len(variants)
  for config in ("listops", "lra_text", "lra_retrieval", "lra_image",
                 "lra_pathfinder"):
    for v in variants:
      assert (f"python -m lightjax.train --config configs/{config}.py:lra,{v}"
              f" --workdir={tmp_path}/") in proc.stdout, (config, v)


@pytest.mark.parametrize("spec", ["experiments/mqar.py",
                                  "experiments/shrink_pareto.py",
                                  "experiments/lra_table2.py",
                                  "experiments/glue_compact_bert.py",
                                  "experiments/mesh_memory.py"])
def test_every_sweep_file_loads(spec, tmp_path):
  s = sweep.load(os.path.join(REPO, spec))
  assert s.trials
  for t in s.trials:
    argv = t.argv(str(tmp_path))
    assert argv[:2] == ["-m", t.program] and "{root}" not in " ".join(argv)


@pytest.mark.slow
def test_tpu_vm_launcher_prints_gcloud_lines(tmp_path):
  proc = _sweep("experiments/mqar.py", "--workdir", "/shared/mqar",
                "--launcher", "tpu_vm", "--tpu", "v4-32", "--zone",
                "us-central2-b")
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert len(lines) == 2
  assert lines[0].startswith("gcloud compute tpus tpu-vm ssh v4-32"
                             " --zone=us-central2-b --worker=all")
  assert ("python3 -m lightjax.train --config configs/mqar.py:cpu,softmax"
          " --workdir=/shared/mqar/cpu/softmax --distributed") in lines[0]
  # Shrink trials join the slice too; a bench trial runs on worker 0 alone.
  proc = _sweep("experiments/shrink_pareto.py:smoke", "--workdir", "/s",
                "--launcher", "tpu_vm", "--tpu", "v4-32", "--zone", "z")
  assert proc.returncode == 0, proc.stderr
  shrink = [l for l in proc.stdout.splitlines() if "lightjax.shrink" in l]
  assert shrink and all("--worker=all" in l and l.endswith("--distributed'")
                        for l in shrink)
  proc = _sweep("experiments/lra_table2.py", "--workdir", "/b",
                "--launcher", "tpu_vm", "--tpu", "v4-32", "--zone", "z")
  assert proc.returncode == 0, proc.stderr
  [bench] = proc.stdout.splitlines()
  assert "--worker=0" in bench and "--distributed" not in bench
  proc = _sweep("experiments/mqar.py", "--workdir", str(tmp_path),
                "--launcher", "tpu_vm")
  assert proc.returncode == 2
  assert proc.stderr.strip() == ("lightjax.sweep: --launcher tpu_vm needs"
                                 " --tpu NAME and --zone ZONE")


SMOKE = "experiments/mqar.py:smoke"


def test_smoke_sweep_survives_a_kill_and_makes_its_table(tmp_path):
  """The smoke MQAR sweep (two trials): killed while its second trial
  trains, rerun; the finished trial is skipped, the interrupted one
  resumes, the table has every trial."""
  root = tmp_path / "sweep"
  env = {**os.environ, "LIGHTJAX_DATA_DIR": str(tmp_path / "data")}
  cmd = [sys.executable, "-m", "lightjax.sweep",
         SMOKE, "--workdir", str(root)]
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
  trials = [t.name for t in sweep.load(os.path.join(REPO, SMOKE)).trials]
  assert len(trials) == 2
  first, second = root / trials[0], root / trials[1]
  second_log = root / (trials[1] + ".log")

  def second_is_training():  # a progress line: the loop (and its SIGTERM
    # guard) runs; "Compiled train step" comes before the guard is set
    return second_log.exists() and re.search(r"step +\d+/\d+",
                                             second_log.read_text())
  deadline = time.monotonic() + 240
  while time.monotonic() < deadline and not second_is_training():
    time.sleep(0.1)
  os.killpg(proc.pid, signal.SIGTERM)  # the sweep and its running trial
  proc.communicate(timeout=120)
  assert (first / "summary.json").exists()
  assert not (second / "summary.json").exists()
  rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
  assert f"[1/2] {trials[0]}: finished before, skipped" in rerun.stdout
  assert "2 of 2 trials finished." in rerun.stdout
  log = second_log.read_text()
  assert "Resumed from" in log, log[-2000:]
  table = (root / "table" / "table.md").read_text()
  for name in trials:
    assert f"| {name} |" in table or f"| {name.split('/')[-1]} |" in table


@pytest.mark.slow
def test_mesh_memory_smoke_sweep_tabulates_per_device_memory(tmp_path):
  """experiments/mesh_memory.py:smoke on 8 fake devices: the bench on one
  device (its default, whatever the host has) and on fsdp 2 x seq 4; the
  sweep's own report function writes the table, in which the sharded train
  step plans several times less memory per device."""
  env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
         + " --xla_force_host_platform_device_count=8"}
  proc = subprocess.run(
      [sys.executable, "-m", "lightjax.sweep", "experiments/mesh_memory.py:smoke",
       "--workdir", str(tmp_path)], cwd=REPO, env=env, capture_output=True,
      text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  lines = (tmp_path / "table.md").read_text().splitlines()
  rows = {tuple(c.strip() for c in l.strip("|").split("|")[:2]):
          [c.strip() for c in l.strip("|").split("|")]
          for l in lines if l.startswith("| ") and "---" not in l}
  assert rows[("one_device", "softmax")][4] == "1"  # devices
  for mesh in ("fsdp2_seq4",):
    row = rows[(mesh, "softmax")]
    assert row[4] == "8"
    assert float(row[-1]) > 4, row  # one device's peak / this mesh's
    md = (tmp_path / mesh / "bench.md").read_text()
    assert "## Failed measurements\nNone." in md  # batch-1 latency ran too
    assert "## Batch-1 forward latency" in md
