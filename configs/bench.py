r"""Speed / memory benchmark of the attention variants (LRA Table 2 style).

  python -m lightjax.bench --config configs/bench.py:cpu_quick --out results/bench_cpu_quick
  python -m lightjax.bench --config configs/bench.py:cpu_tiny --out /tmp/bench_tiny
  python -m lightjax.bench --config configs/bench.py:lra_text --out runs/bench_lra
  python -m lightjax.bench --config configs/bench.py:cpu_quick --out /tmp/b \
      --config.variants=softmax,softmax:implementation=einsum,linear \
      --config.lengths=1024,4096

ARG is one preset:
  cpu_quick  2 CPU cores, < 10 minutes with compiles: lengths 1K-8K, a 2-layer
             64-wide model (2 heads x 32, MLP 128), batch 1; softmax, the
             einsum softmax path (`softmax:implementation=einsum`), linear,
             performer, linformer, local, bigbird (strided / fixed /
             longformer add minutes of compiles: add them with
             --config.variants=...); decoding at contexts 1K-8K. Its last
             run, with the command, device, date and wall time, is
             results/bench_cpu_quick/bench.md.
  cpu_tiny   seconds; what tests run (softmax, its einsum path and linear at
             length 256, decoding at 64 and 256, a 1-layer 32-wide model).
  lra_text   the accelerator preset, LRA's Text setup (Tay et al. 2021, Table 2:
             byte level, 4 layers, 4 heads, embedding 256, MLP 1024, batch 32,
             lengths 1K-4K), every variant; bf16 matmul peak for MFU.

Every preset measures softmax first at each length, with its default
`implementation="auto"` (the fastest exact kernel on the platform, see
`lightjax/attention/softmax.py`): a speed-up is only meaningful against the
fastest softmax available. Right after it comes `none` (attention replaced
by the identity), the floor every variant's time and memory are also given
as a multiple of. A variant entry `name:key=value` (several joined by ';' or
'+') is that variant with options changed, measured as a row of its own.

Model, optimizer and per-variant options use the training configs' fields
(`model.*`, `optim.*`, `model.attention.<variant>.*`), so a benchmarked
variant is built exactly as `lightjax.train` builds it. Lengths are attention
lengths: the model pools by mean (no extra CLS position), so L = 8192 is an
8192 x 8192 softmax and 128 blocks of 64 for the block-sparse variants.
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
  # softmax and none are always measured (first at each length): the
  # baseline of every ratio and the floor, measured in the same run. An entry
  # "name:key=value" is a variant with options overridden, as its own row.
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
  # Pinned here, so a changed default elsewhere cannot silently change what
  # a preset measures: 64-token blocks / strides, a 128-token window.
  a = c.model.attention
  a.local.block_size = a.bigbird.block_size = 64
  a.strided.stride = a.fixed.stride = 64
  a.longformer.window = 128
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
    c.variants = ("softmax", "softmax:implementation=einsum", "linear",
                  "performer", "linformer", "local", "bigbird")
    c.update(dict(lengths=(1024, 2048, 4096, 8192), batch_size=1, warmup=1,
                  repeats=3, max_timed_s=15.0))
    c.latency.update(dict(warmup=1, repeats=5))
    c.model.update(dict(num_layers=2, embed_dim=64, num_heads=2, head_dim=32,
                        mlp_dim=128, classifier_hidden_dim=64))
    a.linformer.proj_len = 128
    a.performer.num_features = 128
    c.decode.update(dict(contexts=(1024, 2048, 4096, 8192), steps=64,
                         repeats=5))

  elif arg == "cpu_tiny":
    # Every train step costs seconds of XLA compile on CPU whatever its size,
    # so the tiny preset is few variants (the decoding pair, and the einsum
    # path as an entry with an override) at one length.
    c.variants = ("softmax", "softmax:implementation=einsum", "linear")
    c.update(dict(lengths=(256,), batch_size=1, warmup=1, repeats=2))
    c.latency.update(dict(warmup=1, repeats=2))
    c.model.update(dict(num_layers=1, embed_dim=32, num_heads=2, head_dim=16,
                        mlp_dim=64, classifier_hidden_dim=0))
    c.decode.update(dict(contexts=(64, 256), steps=4, repeats=2,
                         variants=("linear",)))  # + softmax, none: the pair

  elif arg == "lra_text":
    # Every registered variant (the base list) at LRA Text's lengths.
    c.update(dict(lengths=(1024, 2048, 3072, 4096), batch_size=32, warmup=2,
                  repeats=10, max_timed_s=30.0))
    c.model.update(dict(num_layers=4, embed_dim=256, num_heads=4, head_dim=64,
                        mlp_dim=1024, classifier_hidden_dim=256))
    a.linformer.proj_len = 256
    a.performer.num_features = 256
    c.decode.update(dict(contexts=(1024, 2048, 4096, 8192, 16384),
                         batch_size=32, steps=64, repeats=5))
  return c
