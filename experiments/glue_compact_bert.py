"""A compact BERT on GLUE (Turc et al. 2019, "Well-Read Students Learn
Better": bert_uncased_L-4_H-256_A-4): fine-tune it on each task, prune half
its heads, distil the pruned model from the fine-tuned one, and tabulate.

  python -m lightjax.sweep experiments/glue_compact_bert.py --workdir runs/glue \
      --dry_run
  GLUE_DIR=/data/glue python -m lightjax.sweep experiments/glue_compact_bert.py \
      --workdir runs/glue

Needs the GLUE TSVs ($GLUE_DIR, README "Pretrained BERT and GLUE") and the
checkpoint from the Hugging Face hub (or a local copy: $BERT=hf:/path).
No smoke variant: GLUE data cannot be generated (tests/test_glue_train.py
runs the same commands on TSVs the test writes and the tiny fixture BERT).
"""

import os

from lightjax import sweep

TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")


def get_sweep(arg=None):
  if arg is not None:
    raise ValueError(f"glue_compact_bert takes no sweep argument, got {arg!r}")
  glue = os.environ.get("GLUE_DIR", "/data/glue")
  bert = os.environ.get("BERT", "hf:google/bert_uncased_L-4_H-256_A-4")
  trials = []
  for task in TASKS:
    data = (("task.glue_dir", glue),)
    trials.append(sweep.Trial(f"{task}/finetuned", f"configs/glue.py:{task}",
                              data + (("init_from", bert),)))
    trials.append(sweep.Trial(
        f"{task}/pruned", f"configs/shrink/prune_heads.py:{task}",
        data + (("init_from", "{root}/" + task + "/finetuned"),),
        program="lightjax.shrink"))
    trials.append(sweep.Trial(
        f"{task}/distilled", f"configs/shrink/distill.py:{task}",
        data + (("init_from", "{root}/" + task + "/finetuned"),
                ("shrink.distill.student_from", "{root}/" + task + "/pruned")),
        program="lightjax.shrink"))
  return sweep.Sweep(tuple(trials), report=("-m", "lightjax.report", "{root}",
                                            "--out", "{root}/table"))
