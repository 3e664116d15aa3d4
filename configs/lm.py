r"""Byte-level language modelling (`lightjax.data.lm`) with a causal decoder_lm.

  python -m lightjax.train --config configs/lm.py --workdir /tmp/lm
  python -m lightjax.train --config configs/lm.py:performer --workdir /tmp/lm_perf \
      --config.task.path=/path/to/text_or_directory
  python -m lightjax.sample --workdir /tmp/lm --prompt "def " --max_new_tokens 200

Text: `task.path`, a text file or a directory of text files; by default this
repository's own `lightjax/` package (its Python sources, about 0.6 MB), so
the command runs with nothing to download. Reported: bits per byte
(summary.json "test_metrics": mean next-byte cross-entropy / ln 2 on the
held-out test regions, best-validation checkpoint), and next-byte accuracy.

ARG is a comma-separated list of an attention variant and presets. The model
is causal, so the variant must support causal attention (every registered
one except linformer, which projects the whole sequence and so cannot be);
all of those also decode incrementally (`python -m lightjax.sample`).
  (none)  CPU default: windows of 128 bytes, a 2-layer 128-wide decoder
          (4 heads of 32, MLP 256), batch 32, 600 steps: a few minutes on
          2 CPU cores (about 1 step/s measured on a shared 2-core machine;
          the full run's bits per byte is not measured yet).
  tiny    a seconds-long smoke run (tests use it, with their own small text).
"""

import os

from lightjax import config_lib

PRESETS = ("tiny",)
DEFAULT_TEXT = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "lightjax")


def get_config(arg=None):
  name, presets = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base_config()
  c.config_name = "lm" + (f":{arg}" if arg else "")
  c.model.name = "decoder_lm"
  c.model.attention = config_lib.attention_config(name)
  c.task = config_lib.task_config("lm", path=DEFAULT_TEXT, max_length=128)

  c.num_train_steps = 600
  c.batch_size = 32
  c.eval_batch_size = 64
  c.log_every = 50
  c.eval_every = 200
  c.checkpoint_every = 200
  c.optim.learning_rate = 2e-3
  c.optim.schedule = "cosine"
  c.optim.warmup_steps = 100
  c.optim.weight_decay = 0.01
  c.model.embed_dim = 128
  c.model.num_heads = 4
  c.model.head_dim = 32
  c.model.mlp_dim = 256
  c.model.num_layers = 2
  c.model.dropout_rate = 0.0

  if "tiny" in presets:
    c.task = config_lib.task_config("lm", path=DEFAULT_TEXT, max_length=32,
                                    num_regions=10, validation_fraction=0.1,
                                    test_fraction=0.1)
    c.num_train_steps = 20
    c.batch_size = 8
    c.eval_batch_size = 16
    c.log_every = 5
    c.eval_every = c.checkpoint_every = 10
    c.model.embed_dim = 32
    c.model.num_heads = 2
    c.model.head_dim = 16
    c.model.mlp_dim = 64
    c.model.num_layers = 1
  return c
