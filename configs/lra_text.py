r"""LRA Text: byte-level IMDb sentiment (Long Range Arena, Tay et al. 2021).

  python -m lightjax.train --config configs/lra_text.py --workdir /tmp/lra_text
  python -m lightjax.train --config configs/lra_text.py:linear --workdir /tmp/lra_text_linear
  python -m lightjax.train --config configs/lra_text.py:lra --workdir ...      # LRA, 1K bytes
  python -m lightjax.train --config configs/lra_text.py:lra4k,linear --workdir ...  # 4K bytes

Data: the IMDb reviews of Maas et al. 2011,
https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz, unpacked into
the data dir (`--config.data_dir`, default $LIGHTJAX_DATA_DIR or
~/.cache/lightjax) so that <data_dir>/aclImdb/{train,test}/{pos,neg}/*.txt
exist, or anywhere with `--config.task.imdb_dir=/path/to/aclImdb`. No
TensorFlow needed; `--config.task.source=tfds` reads tfds `imdb_reviews`
instead (needs tensorflow-datasets and TensorFlow). Tokens are bytes + 1, pad
0 (lightjax.data.lra_text). Splits: test = IMDb test (25k); validation = 10%
of IMDb train, seeded; train = the other 22.5k.

ARG is a comma-separated list of an attention variant (any name in
`lightjax.attention.names()`) and presets:
  (none)  CPU default: the first 512 bytes of each review, a 2-layer 64-wide
          model (121k parameters), batch 32, 1500 steps (~2 epochs); the
          compiled train step costs 664 MFLOP per example (XLA cost
          analysis), ~21 GFLOP per step.
  lra     LRA's released Text config
          (lra_benchmarks/text_classification/configs/base_tc_config.py):
          max length 1000, 4 layers, 4 heads, embedding and qkv 256, MLP
          1024, classifier head Dense(1024)-ReLU-Dense on a CLS vector, batch
          32, 20k steps, lr 0.05 with rsqrt decay and 8000 warm-up steps,
          weight decay 0.1; dropout 0.1 (the LRA encoder's default; our model
          has no separate attention dropout). Needs an accelerator.
  lra4k   the same at 4K bytes (4096): the length of the paper's speed and
          memory table (Table 2, 1K-4K). Dense softmax at 4K needs an
          accelerator with memory to match; linear/local variants are the
          point of this preset.
  tiny    a seconds-long smoke run on a tiny aclImdb tree (tests use it).
LRA Table 1 reports test accuracy 64.27 for the Transformer on this task
(lightjax/paper). Measured results of these commands go to results/ with
device and date; none are recorded yet.
"""

from lightjax import config_lib

PRESETS = ("lra", "lra4k", "tiny")


def get_config(arg=None):
  name, presets = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base_config()
  c.config_name = "lra_text" + (f":{arg}" if arg else "")
  c.model.attention = config_lib.attention_config(name)
  c.task = config_lib.task_config("lra_text", max_length=512)

  c.num_train_steps = 1500
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
  c.model.classifier_hidden_dim = 64

  if "lra" in presets or "lra4k" in presets:
    c.task = config_lib.task_config(
        "lra_text", max_length=4096 if "lra4k" in presets else 1000)
    c.num_train_steps = 20_000
    c.batch_size = 32
    c.eval_batch_size = 64
    c.log_every = 100
    c.eval_every = c.checkpoint_every = 1000
    c.optim.learning_rate = 0.05
    c.optim.schedule = "rsqrt"
    c.optim.warmup_steps = 8000
    c.optim.weight_decay = 0.1
    c.model.embed_dim = 256
    c.model.num_heads = 4
    c.model.head_dim = 64
    c.model.mlp_dim = 1024
    c.model.num_layers = 4
    c.model.dropout_rate = 0.1
    c.model.pool = "cls"
    c.model.classifier_hidden_dim = 1024
    c.model.classifier_activation = "relu"
  if "tiny" in presets:
    c.task = config_lib.task_config(
        "lra_text", max_length=64, validation_fraction=0.25)
    c.num_train_steps = 8
    c.batch_size = 8
    c.eval_batch_size = 16
    c.log_every = 2
    c.eval_every = c.checkpoint_every = 4
    c.optim.warmup_steps = 2
    c.model.embed_dim = 32
    c.model.num_heads = 2
    c.model.head_dim = 16
    c.model.mlp_dim = 64
    c.model.num_layers = 1
    c.model.classifier_hidden_dim = 32
  return c
