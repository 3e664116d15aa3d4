"""Every shrinking recipe on the README's default ListOps model, and the
accuracy-vs-cost Pareto table (results/shrink_listops_cpu/ was made by the
shell version of this, experiments/shrink_listops.sh).

  python -m lightjax.sweep experiments/shrink_pareto.py --workdir runs/shrink
  python -m lightjax.sweep experiments/shrink_pareto.py:smoke --workdir /tmp/shrink

The teacher trains first; each recipe then starts from it (`init_from`
names the teacher's workdir under the sweep's root).
"""

from lightjax import sweep

RECIPES = ("prune_heads", "prune_ffn", "drop_layers", "distill", "theseus",
           "low_rank")


def get_sweep(arg=None):
  if arg not in (None, "smoke"):
    raise ValueError(f"unknown shrink_pareto sweep {arg!r}; valid: smoke (or"
                     " none: the full sweep)")
  suffix = ":tiny" if arg == "smoke" else ""
  recipes = ("prune_heads", "drop_layers") if arg == "smoke" else RECIPES
  trials = [sweep.Trial("teacher", f"configs/listops.py{suffix}")]
  trials += [sweep.Trial(name, f"configs/shrink/{name}.py{suffix}",
                         (("init_from", "{root}/teacher"),),
                         program="lightjax.shrink") for name in recipes]
  return sweep.Sweep(tuple(trials), report=("-m", "lightjax.report", "{root}",
                                            "--out", "{root}/table"))
