"""Long Range Arena Table 2 (speed and memory, Tay et al. 2021): the bench
on LRA Text's shape, every variant at 1K-4K tokens, with the paper's
figures and ratios beside ours in bench.md.

  python -m lightjax.sweep experiments/lra_table2.py --workdir runs/lra_table2   # accelerator
  python -m lightjax.sweep experiments/lra_table2.py:cpu --workdir runs/bench_cpu
  python -m lightjax.sweep experiments/lra_table2.py:smoke --workdir /tmp/bench
"""

from lightjax import sweep

PRESET = {None: "lra_text", "cpu": "cpu_quick", "smoke": "cpu_tiny"}


def get_sweep(arg=None):
  if arg not in PRESET:
    raise ValueError(f"unknown lra_table2 sweep {arg!r}; valid: cpu, smoke")
  return sweep.Sweep((sweep.Trial("bench", f"configs/bench.py:{PRESET[arg]}",
                                  program="lightjax.bench"),))
