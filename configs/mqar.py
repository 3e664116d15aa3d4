r"""MQAR, multi-query associative recall (Arora et al. 2023, Zoology), generated locally.

  python -m lightjax.train --config configs/mqar.py:cpu --workdir /tmp/mqar_softmax
  python -m lightjax.train --config configs/mqar.py:cpu,linear --workdir /tmp/mqar_linear
  python -m lightjax.train --config configs/mqar.py:zoology128 --workdir ...  # accelerator

A causal `decoder_lm` reads k1 v1 k2 v2 ... then the keys again and must
predict each key's value; accuracy is over those answer positions only (the
"lm" objective's token accuracy over non-pad targets). See
`lightjax/data/mqar.py` for the generator.

ARG is a comma-separated list of an attention variant (any name in
`lightjax.attention.names()`) and at most one size preset:
  (none)      Zoology's fig. 2 setting at length 64 with 4 kv pairs:
              vocabulary 8192, 100k train sequences, a 2-layer model of
              width 64 with one head, 64 epochs at batch 512. Accelerator.
  zoology128  length 128, 8 kv pairs, otherwise as (none).
  zoology256  length 256, 16 kv pairs, batch 256, otherwise as (none).
  cpu         a CPU-sized setting where softmax and linear attention part:
              length 64, 8 kv pairs, vocabulary 128, the same 2-layer
              width-64 one-head model without dropout, 2000 steps at batch
              64, lr 3e-3; minutes per variant on 2 cores. Measured:
              results/mqar_cpu/ (experiments/mqar_cpu.sh runs it).
  tiny        a seconds-long smoke run (tests use it).
The (sequence length, kv pairs) settings (64, 4), (128, 8), (256, 16) and
the training recipe are Zoology's (Arora et al. 2023, sec. 3 and fig. 2;
HazyResearch/zoology, experiments/paper_configs/iclr24_zoology_figure2),
which also sweeps the learning rate over logspace(-4, -2, 4).
"""

from lightjax import config_lib

PRESETS = ("zoology128", "zoology256", "cpu", "tiny")


def get_config(arg=None):
  name, presets = config_lib.parse_arg(arg, PRESETS)
  if len(presets) > 1:
    raise ValueError(f"configs/mqar.py takes one size preset, got"
                     f" {sorted(presets)}")
  c = config_lib.base_config()
  c.config_name = "mqar" + (f":{arg}" if arg else "")
  c.model.name = "decoder_lm"
  c.model.attention = config_lib.attention_config(name)
  # Zoology fig. 2 (iclr24_zoology_figure2/configs.py): vocabulary 8192,
  # 100k train and 3k test sequences, non-query slots left empty (here: pad).
  c.task = config_lib.task_config(
      "mqar", vocab_size=8192, seq_len=64, num_kv_pairs=4,
      random_non_queries=False, num_train=100_000, num_validation=3_000,
      num_test=3_000)

  # 64 epochs of 100k sequences at batch 512 (Zoology: 256 at length 256).
  c.batch_size = 512
  c.num_train_steps = 64 * 100_000 // c.batch_size
  c.eval_batch_size = 500
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 1000
  # Zoology sweeps the learning rate over logspace(-4, -2, 4) per model.
  c.optim.learning_rate = 1e-3
  c.optim.schedule = "cosine"
  c.optim.warmup_steps = 500
  c.optim.weight_decay = 0.1
  # Zoology's attention model: 2 layers of one head at width d_model (64 is
  # the smallest of fig. 2) with dropout 0.1. Its blocks have no MLP (an
  # identity "state mixer"); ours keep a small one, because a zero-width
  # MLP (mlp_dims_per_layer=(0, 0)) cannot be checkpointed by orbax (it
  # refuses zero-size arrays).
  c.model.embed_dim = 64
  c.model.num_heads = 1
  c.model.head_dim = 64
  c.model.mlp_dim = 128
  c.model.num_layers = 2
  c.model.dropout_rate = 0.1

  if "zoology128" in presets:
    c.task.seq_len, c.task.num_kv_pairs = 128, 8
  if "zoology256" in presets:
    c.task.seq_len, c.task.num_kv_pairs = 256, 16
    c.batch_size = 256
    c.num_train_steps = 64 * 100_000 // c.batch_size
  if "cpu" in presets:
    # Measured: results/mqar_cpu/ (tuning notes in its README).
    c.task.update(vocab_size=128, seq_len=64, num_kv_pairs=8,
                  num_validation=1_000, num_test=3_000)
    c.num_train_steps = 2000
    c.batch_size = 64
    c.eval_batch_size = 200
    c.log_every = 50
    c.eval_every = c.checkpoint_every = 250
    c.optim.learning_rate = 3e-3
    c.optim.warmup_steps = 100
    c.model.dropout_rate = 0.0
  if "tiny" in presets:
    c.task.update(vocab_size=64, seq_len=32, num_kv_pairs=4, num_train=256,
                  num_validation=64, num_test=64)
    c.num_train_steps = 10
    c.batch_size = 16
    c.eval_batch_size = 32
    c.log_every = 5
    c.eval_every = c.checkpoint_every = 5
    c.optim.warmup_steps = 2
    c.model.embed_dim = 32
    c.model.head_dim = 32
    c.model.mlp_dim = 64
  return c
