"""Shrinking a trained Transformer, physically, and measuring what it cost.

    python -m lightjax.shrink --config configs/shrink/<recipe>.py --workdir DIR \
        --config.init_from=<lightjax workdir | hf:<hub id or dir> | shrink workdir>

A recipe names one method (`config.shrink.method`, a name in `METHODS`) and
its options (`config.shrink.<method>`). The run (`lightjax.shrink.run`):
loads the teacher (`init_from`), scores it, applies the method to get a
smaller student (a model whose parameter tree really is smaller: sliced
projections, fewer layers, factorised matrices), saves the student to
`DIR/student/`, recovers accuracy by fine-tuning it with the trainer (or
distilling from the teacher) for `config.num_train_steps` steps (0: none),
and writes summary.json, shrink.json and shrink_report.md with parameters,
FLOPs, bytes on disk and CPU latency of teacher and student.

A method is a function `(teacher, ctx) -> Shrunk`, registered in `METHODS`
(base.py holds these shared types; each method's module registers it):
  teacher  the loaded teacher model (not to be modified)
  ctx      `Context`: the run config, the method's options, the task's data,
           the teacher's dimensions, and helpers to build, evaluate and
           batch.
Every method's result is an ordinary lightjax model config (per-layer head
counts, MLP widths, depth, ranks are config fields), so the student saves,
reloads, resumes and exports like any model.
"""

from lightjax.shrink.base import (
    GLUE_TASKS,
    METHODS,
    Context,
    Path,
    Shrunk,
    axes_of,
    build_with,
    get,
    model_config,
    names,
    params_of,
    recipe,
    register,
    slice_axes,
)

# Importing the method modules registers them.
from lightjax.shrink import (  # noqa: F401
    distill, heads, layers, lowrank, theseus, width)

__all__ = [
    "GLUE_TASKS", "METHODS", "Context", "Path", "Shrunk", "axes_of",
    "build_with", "get", "model_config", "names", "params_of", "recipe",
    "register", "slice_axes",
]
