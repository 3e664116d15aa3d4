"""MQAR (Arora et al. 2023, "Zoology", sec. 3): softmax vs linear attention
on the CPU setting of results/mqar_cpu, or the paper's (sequence length,
key-value pairs) presets on an accelerator.

  python -m lightjax.sweep experiments/mqar.py --workdir runs/mqar          # CPU, ~8 min
  python -m lightjax.sweep experiments/mqar.py:zoology --workdir runs/mqar_z
  python -m lightjax.sweep experiments/mqar.py:smoke --workdir /tmp/mqar    # seconds
"""

from lightjax import sweep

PRESETS = {None: ("cpu",), "zoology": ("zoology128", "zoology256"),
           "smoke": ("tiny",)}


def get_sweep(arg=None):
  if arg not in PRESETS:
    raise ValueError(f"unknown mqar sweep {arg!r}; valid: "
                     + ", ".join(str(k) for k in PRESETS if k))
  trials = tuple(
      sweep.Trial(f"{p['preset']}/{p['variant']}",
                  f"configs/mqar.py:{p['preset']},{p['variant']}")
      for p in sweep.product(preset=PRESETS[arg], variant=("softmax", "linear")))
  return sweep.Sweep(trials, report=("-m", "lightjax.report", "{root}",
                                     "--out", "{root}/table"))
