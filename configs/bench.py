r"""Speed / memory benchmark of the attention variants (LRA Table 2 style).

  python -m lightjax.bench --config configs/bench.py:cpu_quick --out /tmp/bench_quick
  python -m lightjax.bench --config configs/bench.py:cpu_tiny --out /tmp/bench_tiny
  python -m lightjax.bench --config configs/bench.py:lra_text --out runs/bench_lra
  python -m lightjax.bench --config configs/bench.py:cpu_quick --out /tmp/b \
      --config.variants=softmax,linear --config.lengths=1024,4096

ARG is one preset:
  cpu_quick  2 CPU cores, < 10 minutes with compiles: lengths 1K-8K, a 2-layer
             64-wide model (2 heads x 32, MLP 128), batch 1; softmax, linear,
             performer, linformer, local, bigbird (strided / fixed /
             longformer cost ~3 more minutes of compiles: add them with
             --config.variants=...); decoding at contexts 1K-8K.
  cpu_tiny   seconds; what tests run (softmax and linear at length 256,
             decoding at 64 and 256, a 1-layer 32-wide model).
  lra_text   the accelerator preset, LRA's Text setup (Tay et al. 2021, Table 2:
             byte level, 4 layers, 4 heads, embedding 256, MLP 1024, batch 32,
             lengths 1K-4K), every variant; bf16 matmul peak for MFU.

The softmax baseline of the cpu_quick and lra_text presets is
`implementation="xla"` (`jax.nn.dot_product_attention`): on CPU it is ~1.7x
faster than the einsum reference path, and a speed-up should be measured
against the fastest softmax available, not a slow one.

Model, optimizer and per-variant options use the training configs' fields
(`model.*`, `optim.*`, `model.attention.<variant>.*`), so a benchmarked
variant is built exactly as `lightjax.train` builds it. Lengths are attention
lengths: the model pools by mean (no extra CLS position), so L = 8192 is an
8192 x 8192 softmax and 128 blocks of 64 for the block-sparse variants.

Measured (cpu_quick, 2 shared CPU cores, `time`: 6 min 7 s wall, 80 points):
train-step speed-up over softmax at 8K tokens linear 66x, linformer 53x,
local 54x, performer 50x, bigbird 32x (softmax: 27 s/step); compiled train
memory 0.04-0.08x of softmax's 3.6 GiB; decoding at context 8K: linear
(recurrent) 53,900 tokens/s vs softmax (KV cache) 291 tokens/s.
"""

import ml_collections

from lightjax import config_lib

PRESETS = ("cpu_quick", "cpu_tiny", "lra_text")
BENCHMARKS = ("train_step", "forward", "latency_b1", "decode")


def _base() -> ml_collections.ConfigDict:
  train = config_lib.base_config()
  c = ml_collections.ConfigDict()
  c.config_name = "bench"
  c.seed = 0
  # softmax is always measured (first at each length): it is the baseline of
  # every ratio, measured in the same run.
  c.variants = ("softmax", "linear", "performer", "linformer", "local",
                "bigbird", "strided", "fixed", "longformer")
  c.lengths = (1024, 2048, 4096)
  c.benchmarks = BENCHMARKS
  c.max_len = 0          # model max_len; 0 = each length (a bigger L then fails)
  c.batch_size = 32
  c.warmup = 1           # untimed runs after compiling (first-run effects)
  c.repeats = 5          # timed runs; median and spread are reported
  c.max_timed_s = 0.0    # > 0: fewer repeats once timed runs add up to this
  c.vocab_size = 256     # byte level, like LRA Text
  c.num_classes = 2
  # Skip (status "oom") a CPU measurement whose compiled plan exceeds this
  # fraction of the host's available memory, instead of swapping or being
  # killed by the OS. Accelerators report their own RESOURCE_EXHAUSTED.
  c.host_memory_fraction = 0.8

  c.latency = ml_collections.ConfigDict()
  c.latency.warmup = 2
  c.latency.repeats = 10

  c.decode = ml_collections.ConfigDict()
  c.decode.variants = ()          # () = every variant with supports_decode
  c.decode.contexts = (1024, 2048, 4096, 8192)
  c.decode.batch_size = 1
  c.decode.steps = 32             # decode steps per timed call (one lax.scan)
  c.decode.warmup = 1
  c.decode.repeats = 5

  c.mfu = ml_collections.ConfigDict()
  c.mfu.matmul_dim = 8192         # square bf16 matmul for the device peak
  c.mfu.dtype = "bfloat16"
  c.mfu.repeats = 10

  c.model = train.model
  c.model.pool = "mean"
  c.model.dropout_rate = 0.1
  c.optim = train.optim
  c.model.attention = config_lib.attention_config("softmax")
  return c


def get_config(arg=None):
  arg = arg or "cpu_quick"
  if arg not in PRESETS:
    raise ValueError(f"unknown bench preset {arg!r}; valid: {', '.join(PRESETS)}")
  c = _base()
  c.config_name = f"bench:{arg}"
  a = c.model.attention

  if arg == "cpu_quick":
    # strided, fixed and longformer do not fit the 10-minute budget (their
    # train steps take ~10 s each to compile on 2 cores).
    c.variants = ("softmax", "linear", "performer", "linformer", "local",
                  "bigbird")
    c.lengths = (1024, 2048, 4096, 8192)
    c.batch_size = 1
    c.warmup = 1
    c.repeats = 3
    c.max_timed_s = 15.0
    c.latency.warmup = 1
    c.latency.repeats = 5
    c.model.num_layers = 2
    c.model.embed_dim = 64
    c.model.num_heads = 2
    c.model.head_dim = 32
    c.model.mlp_dim = 128
    c.model.classifier_hidden_dim = 64
    a.softmax.implementation = "xla"
    a.linformer.proj_len = 128
    a.performer.num_features = 128
    a.local.block_size = 64
    a.bigbird.block_size = 64
    a.strided.stride = 64
    a.fixed.stride = 64
    a.longformer.window = 128
    c.decode.contexts = (1024, 2048, 4096, 8192)
    c.decode.steps = 64
    c.decode.repeats = 5

  elif arg == "cpu_tiny":
    # Every train step costs seconds of XLA compile on CPU whatever its size,
    # so the tiny preset is two variants (the decoding pair) at one length.
    c.variants = ("softmax", "linear")
    c.lengths = (256,)
    c.batch_size = 1
    c.warmup = 1
    c.repeats = 2
    c.latency.warmup = 1
    c.latency.repeats = 2
    c.model.num_layers = 1
    c.model.embed_dim = 32
    c.model.num_heads = 2
    c.model.head_dim = 16
    c.model.mlp_dim = 64
    c.model.classifier_hidden_dim = 0
    c.decode.contexts = (64, 256)
    c.decode.steps = 4
    c.decode.repeats = 2

  elif arg == "lra_text":
    c.lengths = (1024, 2048, 3072, 4096)
    c.batch_size = 32
    c.warmup = 2
    c.repeats = 10
    c.max_timed_s = 30.0
    c.model.num_layers = 4
    c.model.embed_dim = 256
    c.model.num_heads = 4
    c.model.head_dim = 64
    c.model.mlp_dim = 1024
    c.model.classifier_hidden_dim = 256
    a.softmax.implementation = "xla"
    a.linformer.proj_len = 256
    a.performer.num_features = 256
    a.local.block_size = 64
    a.bigbird.block_size = 64
    a.strided.stride = 64
    a.fixed.stride = 64
    a.longformer.window = 128
    c.decode.contexts = (1024, 2048, 4096, 8192, 16384)
    c.decode.batch_size = 32
    c.decode.steps = 64
    c.decode.repeats = 5
  return c
