"""Long Range Arena Table 1 (Tay et al. 2021, arXiv:2011.04006): every
attention variant on every LRA task, with LRA's hyper-parameters (each task
config's `lra` preset), then the table with the paper's accuracies beside.

  python -m lightjax.sweep experiments/lra_table1.py --workdir runs/lra_table1 --dry_run
  python -m lightjax.sweep experiments/lra_table1.py --workdir runs/lra_table1
  python -m lightjax.report runs/lra_table1 --out runs/lra_table1/table   # (run at the end)

Text, Image and Retrieval need their data (README "Tasks": aclImdb,
CIFAR-10, LRA's AAN TSVs under --config.data_dir / $LIGHTJAX_DATA_DIR);
ListOps and Pathfinder are generated. Accelerators: the `lra` presets are
the paper's model sizes (hours per trial on a CPU).

`:smoke`: ListOps and Pathfinder (generated, no download), softmax and
linear, the seconds-long `tiny` presets (a minute on a CPU; the tests run
the smaller experiments/mqar.py:smoke sweep end to end).
"""

from lightjax import attention, sweep

TASKS = {"listops": "configs/listops.py", "text": "configs/lra_text.py",
         "retrieval": "configs/lra_retrieval.py",
         "image": "configs/lra_image.py",
         "pathfinder": "configs/lra_pathfinder.py"}
SMOKE_TASKS = ("listops", "pathfinder")
REPORT = ("-m", "lightjax.report", "{root}", "--out", "{root}/table")


def get_sweep(arg=None):
  if arg not in (None, "smoke"):
    raise ValueError(f"unknown lra_table1 sweep {arg!r}; valid: smoke (or"
                     " none: the full sweep)")
  smoke = arg == "smoke"
  tasks = SMOKE_TASKS if smoke else tuple(TASKS)
  variants = (("softmax", "linear") if smoke else
              tuple(n for n in attention.names() if n != "none"))
  preset = "tiny" if smoke else "lra"
  trials = tuple(
      sweep.Trial(f"{p['task']}/{p['variant']}",
                  f"{TASKS[p['task']]}:{preset},{p['variant']}")
      for p in sweep.product(task=tasks, variant=variants))
  return sweep.Sweep(trials, report=REPORT)
