"""Task data behind one registry, plus the shared batching pipeline.

A task is a builder registered under a name:

  builder(task_config, data_dir) -> TaskData

where `task_config` is the `config.task` sub-dict (an
`ml_collections.ConfigDict` or a plain dict) whose keys are exactly those of
the builder's `default_config()`. The trainer never branches on task names: it
calls `load_task(config.task, data_dir)` and reads the returned `TaskData`, so
adding a task is one file plus one `@base.register` line (and one import
below).

The registry and the shared types live in `base.py`; task modules import it
(and sibling helpers such as `arrays`, `cache`, `tokenize`), never this
package, which imports them below to register them.

Every split is held in memory as padded numpy arrays of equal leading dimension;
`lightjax.data.pipeline` turns them into deterministic, step-indexed batches.

This package must not import `lightjax.models` or `lightjax.attention`: the data
is model-agnostic, and keeping the dependency one-way lets data tooling run
without building any model code.
"""

from lightjax.data.base import (
    TASKS,
    MissingPackage,
    TaskBuilder,
    TaskData,
    check_task_config,
    default_data_dir,
    default_task_config,
    get,
    load_task,
    names,
    register,
    resolve_task_config,
)

# Importing the task modules registers them.
from lightjax.data import listops  # noqa: F401
from lightjax.data import glue  # noqa: F401
from lightjax.data import pathfinder  # noqa: F401
from lightjax.data import lm  # noqa: F401
from lightjax.data import lra_image, lra_text  # noqa: F401
from lightjax.data import lra_retrieval  # noqa: F401
from lightjax.data import mqar  # noqa: F401
from lightjax.data import sentences  # noqa: F401

__all__ = [
    "MissingPackage",
    "TaskBuilder",
    "TaskData",
    "check_task_config",
    "default_data_dir",
    "default_task_config",
    "TASKS",
    "get",
    "load_task",
    "names",
    "register",
    "resolve_task_config",
]
