r"""LRA Retrieval (Tay et al. 2021): AAN citation pairs, byte level, two towers.

Needs LRA's released TSVs (lightjax/data/lra_retrieval.py): download
https://storage.googleapis.com/long-range-arena/lra_release.gz and extract it
in the data dir, so that <data_dir>/lra_release/tsv_data/ holds
new_aan_pairs.{train,eval,test}.tsv (or point --config.task.aan_dir at that
folder). Then:

  python -m lightjax.train --config configs/lra_retrieval.py --workdir /tmp/aan
  python -m lightjax.train --config configs/lra_retrieval.py:linear --workdir /tmp/aan_linear
  python -m lightjax.train --config configs/lra_retrieval.py:lra --workdir ...   # paper size

The model is `dual_encoder_classifier` (lightjax/models/retrieval.py): one
shared encoder per document, [u, v, u*v, u-v] into an MLP.

ARG is a comma-separated list of an attention variant (any name in
`lightjax.attention.names()`) and presets:
  (none)  CPU default: 128 bytes per document (at 512 a step took ~10 s
          on 2 CPU cores), every train pair, 2,000 validation pairs (a
          seeded subset), the whole test split; a 2-layer 64-wide encoder
          (133k parameters), 1000 steps of batch 32: ~0.6 s per step on 2
          shared CPU cores (timed on synthetic files in LRA's format,
          2026-11-27), so ~10 min of training plus the evaluations.
  lra     LRA's matching setup (lra_benchmarks/matching/configs/
          base_match_config.py): 4000 bytes per document, every pair, 4
          layers, 4 heads, emb 128, qkv 128 (head_dim 32), MLP 512, the
          dual head's MLP 512 -> 256 with ReLU, batch 32, 5000 steps, lr
          0.05 with `constant * linear_warmup * rsqrt_decay` and 8000
          warm-up steps (so the run ends inside the warm-up, as LRA's
          does), weight decay 0.1, Adam b2 0.98, dropout 0.1, no gradient
          clipping, sinusoidal positions (LRA's encoder default), CLS
          pooling. Needs an accelerator.
  tiny    a seconds-long smoke run on tiny files (tests write them).
No result of these commands has been measured yet: the data is not on the
machines this was written on.
"""

from lightjax import config_lib

PRESETS = ("lra", "tiny")


def get_config(arg=None):
  name, presets = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base_config()
  c.config_name = "lra_retrieval" + (f":{arg}" if arg else "")
  c.model.attention = config_lib.attention_config(name)
  c.model.name = "dual_encoder_classifier"
  c.task = config_lib.task_config(
      "lra_retrieval", max_length=128, num_validation=2000)

  c.num_train_steps = 1000
  c.batch_size = 32
  c.eval_batch_size = 100
  c.log_every = 50
  c.eval_every = 250
  c.checkpoint_every = 250
  c.optim.learning_rate = 1e-3
  c.optim.schedule = "cosine"
  c.optim.warmup_steps = 100
  c.optim.weight_decay = 0.01
  c.model.embed_dim = 64
  c.model.num_heads = 4
  c.model.head_dim = 16
  c.model.mlp_dim = 128
  c.model.num_layers = 2
  c.model.pool = "cls"
  c.model.classifier_hidden_dim = 128
  c.model.classifier_activation = "relu"  # LRA's dual head

  if "lra" in presets:
    c.task = config_lib.task_config("lra_retrieval")  # LRA's defaults
    c.num_train_steps = 5000
    # LRA evaluates every 100 steps; a pass over the whole eval split at
    # 2 x 4000 bytes would then be most of the run, so every 500 here.
    c.eval_every = c.checkpoint_every = 500
    c.log_every = 100
    c.optim.learning_rate = 0.05
    c.optim.schedule = "rsqrt"
    c.optim.warmup_steps = 8000
    c.optim.weight_decay = 0.1
    c.optim.grad_clip_norm = 0.0  # LRA's matching/train.py does not clip
    c.model.embed_dim = 128
    c.model.num_heads = 4
    c.model.head_dim = 32
    c.model.mlp_dim = 512
    c.model.num_layers = 4
    c.model.dropout_rate = 0.1
    c.model.pos_embedding = "sinusoidal"
    c.model.classifier_hidden_dim = 512
  if "tiny" in presets:
    c.task = config_lib.task_config("lra_retrieval", max_length=48)
    c.num_train_steps = 10
    c.batch_size = 8
    c.eval_batch_size = 16
    c.log_every = 5
    c.eval_every = c.checkpoint_every = 5
    c.model.embed_dim = 32
    c.model.num_heads = 2
    c.model.head_dim = 16
    c.model.mlp_dim = 64
    c.model.classifier_hidden_dim = 32
  return c
