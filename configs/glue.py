r"""GLUE fine-tuning (Wang et al. 2019) of a BERT-style encoder.

  python -m lightjax.train --config configs/glue.py:sst2 --workdir /tmp/sst2 \
      --config.task.glue_dir=/data/glue --config.init_from=hf:bert-base-uncased
  python -m lightjax.train --config configs/glue.py:mnli,linear --workdir ... \
      --config.init_from=hf:/ckpt/bert_uncased_L-4_H-256_A-4

Real data: GLUE's TSV files (https://gluebenchmark.com/tasks; its
download_glue_data.py writes <glue_dir>/{CoLA,SST-2,MRPC,QQP,STS-B,MNLI,QNLI,
RTE}/), by default looked for in <data_dir>/glue; the tokenizer is a
`vocab.txt` or `tokenizer.json`, or a checkpoint directory holding one (e.g.
a Hugging Face download of bert-base-uncased), by default the `init_from`
checkpoint's own. With `init_from` (lightjax.init_from) the model's sizes are
the checkpoint's and the sizes below are ignored; without it the encoder
trains from scratch.

ARG is a comma-separated list of one task (cola, sst2, mrpc, qqp, stsb,
mnli, qnli, rte; default sst2), optionally an attention variant (any name in
`lightjax.attention.names()`), and presets:
  (none)  BERT-base (Devlin et al. 2019): 12 layers, 768 wide, 12 heads, MLP
          3072, post-LayerNorm, exact GELU, LayerNorm eps 1e-12, token types,
          pooler on [CLS]; max_length 128, batch 32, AdamW lr 2e-5 with
          linear decay and 10% warm-up, weight decay 0.01, 3 epochs of the
          task's train split. Needs an accelerator.
  tiny    a seconds-long smoke run on tiny TSVs (tests use it).

Reported (summary.json "test_metrics", on GLUE dev, see lightjax.data.glue):
CoLA Matthews corr.; SST-2, QNLI, RTE accuracy; MRPC, QQP F1 and accuracy;
STS-B Pearson and Spearman (a regression head, MSE loss); MNLI accuracy on
matched ("test") and mismatched ("test_mismatched_metrics"). The best
checkpoint is picked on validation accuracy; STS-B on validation Pearson.
"""

from lightjax import config_lib

# Short name -> (task name, GLUE train.tsv rows): the step count is 3 epochs.
TASKS = {
    "cola": ("glue_cola", 8_551),
    "sst2": ("glue_sst2", 67_349),
    "mrpc": ("glue_mrpc", 3_668),
    "qqp": ("glue_qqp", 363_846),
    "stsb": ("glue_stsb", 5_749),
    "mnli": ("glue_mnli", 392_702),
    "qnli": ("glue_qnli", 104_743),
    "rte": ("glue_rte", 2_490),
}
PRESETS = ("tiny",)
EPOCHS = 3


def get_config(arg=None):
  name, chosen = config_lib.parse_arg(arg, PRESETS + tuple(TASKS))
  tasks = [t for t in TASKS if t in chosen]
  if len(tasks) > 1:
    raise ValueError(f"one GLUE task per run, got {', '.join(tasks)}")
  short = tasks[0] if tasks else "sst2"
  task_name, train_rows = TASKS[short]

  c = config_lib.base_config()
  c.config_name = "glue" + (f":{arg}" if arg else "")
  c.model.attention = config_lib.attention_config(name)
  c.task = config_lib.task_config(task_name)  # glue_dir, tokenizer, ...

  # BERT-base, BERT's own layout.
  c.model.embed_dim = 768
  c.model.num_heads = 12
  c.model.head_dim = 64
  c.model.mlp_dim = 3072
  c.model.num_layers = 12
  c.model.dropout_rate = 0.1
  config_lib.bert_layout(c.model)

  # Fine-tuning schedule (Devlin et al. 2019, appendix A.3).
  c.batch_size = 32
  c.eval_batch_size = 64
  train = (1 - c.task.validation_fraction) * train_rows
  c.num_train_steps = max(1, round(EPOCHS * train / c.batch_size))
  c.optim.learning_rate = 2e-5
  c.optim.schedule = "linear"
  c.optim.warmup_steps = c.num_train_steps // 10
  c.optim.weight_decay = 0.01
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.grad_clip_norm = 1.0
  c.log_every = 50
  c.eval_every = c.checkpoint_every = max(1, c.num_train_steps // 6)

  if "tiny" in chosen:
    c.task.max_length = 32
    c.num_train_steps = 8
    c.batch_size = 4
    c.eval_batch_size = 8
    c.log_every = 2
    c.eval_every = c.checkpoint_every = 4
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 1
    c.model.embed_dim = 32
    c.model.num_heads = 2
    c.model.head_dim = 16
    c.model.mlp_dim = 64
    c.model.num_layers = 2
  return c
