r"""Distil a trained model into a student of half its depth (DistilBERT,
Sanh et al. 2019; soft targets of Hinton et al. 2015).

  python -m lightjax.train --config configs/listops.py --workdir runs/listops
  python -m lightjax.shrink --config configs/shrink/distill.py \
      --workdir runs/shrink/distill --config.init_from=runs/listops
  # the baseline it must beat: same student, fresh weights, labels only
  python -m lightjax.shrink --config configs/shrink/distill.py \
      --workdir runs/shrink/scratch --config.init_from=runs/listops \
      --config.shrink.distill.init=scratch --config.train_objective=classification
  # a pruned teacher as the student:
  python -m lightjax.shrink --config configs/shrink/distill.py --workdir ... \
      --config.init_from=runs/listops \
      --config.shrink.distill.student_from=runs/shrink/prune_heads

  # DistilBERT's cosine loss on the last hidden states, too:
  python -m lightjax.shrink --config configs/shrink/distill.py --workdir ... \
      --config.init_from=runs/listops \
      --config.objective_options.distillation.cosine=1.0

The student keeps one teacher layer of every two (`num_layers`, default half;
lightjax/shrink/distill.py) and trains on alpha * T^2 * KL(teacher || student)
at temperature T + (1 - alpha) * cross-entropy + cosine * (1 - cos(h_student,
h_teacher)) (`objective_options.distillation`; the teacher runs frozen inside
each train step). The cosine term needs a student as wide as the teacher
(embed_dim), which every student made here is.

`:sentences` (a sentence encoder, e.g. all-MiniLM-L6-v2, on unlabeled
text): the MSE between student and teacher embeddings instead (the
teacher's embeddings computed once; `train_objective=embedding_distillation`
with `objective_options.embedding_distillation.hidden` adds the last hidden
states' cosine, the teacher then running in every step).
"""

import ml_collections

from lightjax import shrink


def get_config(arg=None):
  c = shrink.recipe(__file__, arg, "distill", num_layers=0, init="teacher",
                    student_from="")
  if c.task.name == "sentences":
    # No labels: the MSE to the teacher's embeddings (Reimers & Gurevych
    # 2020), which the shrink run wrote as the targets once (the task
    # kind's objective). --config.train_objective=embedding_distillation
    # runs the teacher in each step instead, for its `hidden` term.
    c.train_objective = ""
    c.objective_options = ml_collections.ConfigDict(
        {"embedding_distillation": {"hidden": 0.0}})
    return c
  c.train_objective = "distillation"
  c.objective_options = ml_collections.ConfigDict(
      {"distillation": {"temperature": 2.0, "alpha": 0.5, "cosine": 0.0}})
  return c
