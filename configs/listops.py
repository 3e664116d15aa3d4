r"""ListOps (Long Range Arena, Tay et al. 2021), generated locally: no download.

  python -m lightjax.train --config configs/listops.py --workdir /tmp/listops
  python -m lightjax.train --config configs/listops.py:linear --workdir /tmp/listops_linear
  python -m lightjax.train --config configs/listops.py:lra --workdir ...   # paper size

ARG is a comma-separated list of an attention variant (any name in
`lightjax.attention.names()`) and presets:
  (none)  CPU default: 20k generated examples of 17..127 tokens, a 2-layer
          64-wide model (81k parameters), 1500 steps; minutes on 2 CPU cores.
  lra     the LRA ListOps setup (lra_benchmarks/listops/configs/base_listops_config.py):
          96k examples of 501..1999 tokens, 4 layers, 8 heads, embedding 512,
          MLP 1024, batch 32, 5k steps, lr 0.05 with rsqrt decay and 1000
          warm-up steps, weight decay 0.1. Needs an accelerator.
  long    the CPU-sized long-sequence setup: examples of 500..1023 tokens
          (LRA's lower half), the default 2-layer model, batch 8, 300 steps:
          8 minutes for softmax on 2 CPU cores and 1-5 for the
          efficient variants (results/listops_long_cpu/). A short budget:
          it shows the cost side; accuracy needs many more steps.
  tiny    a seconds-long smoke run (tests use it).
Measured results of these commands, with device and date, are in results/
(main job: results/main_job/; every variant: results/listops_cpu/).
"""

from lightjax import config_lib

PRESETS = ("long", "lra", "tiny")


def get_config(arg=None):
  name, presets = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base_config()
  c.config_name = "listops" + (f":{arg}" if arg else "")
  c.model.attention = config_lib.attention_config(name)
  c.task = config_lib.task_config(
      "listops", num_train=20_000, num_validation=2_000, num_test=2_000,
      min_length=16, max_length=128)

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

  if "lra" in presets:
    c.task = config_lib.task_config("listops")  # LRA's defaults
    c.num_train_steps = 5000
    c.eval_every = c.checkpoint_every = 500
    c.log_every = 100
    c.optim.learning_rate = 0.05
    c.optim.schedule = "rsqrt"
    c.optim.warmup_steps = 1000
    c.optim.weight_decay = 0.1
    c.model.embed_dim = 512
    c.model.num_heads = 8
    c.model.head_dim = 64
    c.model.mlp_dim = 1024
    c.model.num_layers = 4
    c.model.classifier_hidden_dim = 512
  if "long" in presets:
    # Sequences up to 1K: long enough that softmax's L x L scores dominate
    # a 64-wide model, short enough that its run fits a CPU.
    c.task = config_lib.task_config(
        "listops", num_train=10_000, num_validation=500, num_test=500,
        min_length=500, max_length=1024)
    c.num_train_steps = 300
    c.batch_size = 8
    c.eval_batch_size = 50
    c.log_every = 25
    c.eval_every = c.checkpoint_every = 100
    c.optim.warmup_steps = 30
  if "tiny" in presets:
    c.task = config_lib.task_config(
        "listops", num_train=512, num_validation=64, num_test=64,
        min_length=8, max_length=64)
    c.num_train_steps = 20
    c.batch_size = 16
    c.eval_batch_size = 32
    c.log_every = 5
    c.eval_every = c.checkpoint_every = 10
    c.model.embed_dim = 32
    c.model.num_heads = 2
    c.model.head_dim = 16
    c.model.mlp_dim = 64
    c.model.classifier_hidden_dim = 32
  return c
