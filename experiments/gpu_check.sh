#!/usr/bin/env bash
# One short accelerator check, sized for a ~15-minute GPU lease:
#   1. softmax implementations (auto = cuDNN for bf16, xla, einsum) agree on
#      the GPU (cuDNN: NaN rows for a non-prefix mask, by design), and their
#      attention-only speed at 1K-8K, plus the planned memory of each;
#   2. the LRA Text-shape bench (configs/bench.py:lra_text, train step at
#      4K, bf16, the main variants + the none floor + softmax's xla and
#      einsum paths);
#   3. the LRA ListOps preset (configs/listops.py:lra) for softmax and the
#      efficient variants, shortened to LISTOPS_STEPS steps each (bf16).
# Every stage has its own time limit inside BUDGET_S; whatever finished is
# packed into OUT/results.tar.gz.
#
#   bash experiments/gpu_check.sh OUT_DIR [BUDGET_S] [LISTOPS_STEPS]
set -u
OUT=${1:?usage: gpu_check.sh OUT_DIR [BUDGET_S] [LISTOPS_STEPS]}
BUDGET_S=${2:-420}
LISTOPS_STEPS=${3:-1000}
T0=$(date +%s)
export PYTHONUNBUFFERED=1
export LIGHTJAX_DATA_DIR=/tmp/lightjax_data
WORK=/tmp/gpu_check/results  # packed into $OUT at the end
rm -rf "$WORK"
mkdir -p "$WORK"
left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }
stage() {  # stage NAME LIMIT_S CMD...: run with min(LIMIT_S, time left - 15 s)
  local name=$1 limit=$2; shift 2
  local l; l=$(left); l=$(( l - 15 < limit ? l - 15 : limit ))
  if [ "$l" -lt 20 ]; then echo "== $name: skipped (no time left)"; return; fi
  echo "== $name (limit ${l}s) $(date -u +%FT%TZ)"
  timeout "$l" "$@"; echo "== $name: exit $? after $(( $(date +%s) - T0 ))s"
}

{
  nvidia-smi -L; python3 -c "import jax, flax, optax, orbax.checkpoint as o;
print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__,
      'orbax', o.__version__, jax.devices())"
} > "$WORK/env.txt" 2>&1
cat "$WORK/env.txt"

stage softmax_paths 45 python3 - > "$WORK/softmax_paths.txt" 2>&1 <<'EOF'
"""auto (cuDNN for bf16 on NVIDIA) vs xla vs einsum: agreement and speed."""
import time
import jax, jax.numpy as jnp
from lightjax.attention import softmax
from tests.attention_inputs import padding_mask, qkv
for dtype in (jnp.bfloat16, jnp.float32):
  q, k, v = qkv(0, 4, 1024, 4, 64, dtype=dtype)
  prefix = padding_mask([1024, 700, 1, 1024], 1024)
  holes = prefix.at[0, 5].set(False)  # not right padding: the XLA fallback
  for causal, m in ((False, prefix), (True, prefix), (False, holes)):
    ref = softmax.softmax_attention(q, k, v, mask=m, causal=causal, implementation="einsum")
    for impl in ("auto", "xla"):
      out = softmax.softmax_attention(q, k, v, mask=m, causal=causal, implementation=impl)
      diff = jnp.abs(out.astype(jnp.float32) - ref.astype(jnp.float32))
      nan_rows = int(jnp.isnan(diff).any((1, 2, 3)).sum())
      err = float(jnp.nanmax(diff))
      # cuDNN: a non-prefix mask must give NaN rows (loud), never wrong numbers.
      print(f"{jnp.dtype(dtype).name} causal={causal} prefix_mask={m is prefix} {impl}"
            f"->{softmax.resolve_implementation(impl, q)} max|diff| vs einsum"
            f" {err:.3g}, NaN batch rows {nan_rows}")
for n in (1024, 2048, 4096, 8192):
  q, k, v = qkv(1, 8, n, 4, 64, dtype=jnp.bfloat16)
  m = padding_mask([n] * 8, n)
  row = []
  for impl in ("auto", "xla", "einsum"):
    f = jax.jit(jax.grad(lambda q, k, v: jnp.sum(softmax.softmax_attention(
        q, k, v, mask=m, implementation=impl).astype(jnp.float32)), argnums=(0, 1, 2)))
    temp = f.lower(q, k, v).compile().memory_analysis().temp_size_in_bytes
    jax.block_until_ready(f(q, k, v))
    t = time.perf_counter()
    for _ in range(10):
      r = f(q, k, v)
    jax.block_until_ready(r)
    row.append(f"{impl} {(time.perf_counter() - t) / 10 * 1e3:.2f} ms,"
               f" {temp / 2**20:.0f} MiB temp")
  print(f"fwd+bwd bf16 B=8 H=4 d=64 L={n}: " + ", ".join(row))
EOF
cat "$WORK/softmax_paths.txt"

stage bench_lra_text 100 python3 -m lightjax.bench --config configs/bench.py:lra_text \
  --out "$WORK/bench_lra_text" --config.benchmarks=train_step \
  --config.lengths=4096 --config.model.dtype=bfloat16 --config.repeats=5 \
  --config.max_timed_s=3 \
  --config.variants=softmax,softmax:implementation=xla,softmax:implementation=einsum,linear,performer,linformer,local,bigbird

stage listops_data 60 python3 -c "from lightjax import data
data.load_task({'name': 'listops'})"  # 96k+2k+2k LRA examples, cached

for v in softmax linear performer local; do
  stage "listops_lra_$v" 60 python3 -m lightjax.train --config "configs/listops.py:lra,$v" \
    --workdir "/tmp/runs/listops_lra_$v" --config.num_train_steps="$LISTOPS_STEPS" \
    --config.eval_every="$LISTOPS_STEPS" --config.checkpoint_every="$LISTOPS_STEPS" \
    --config.log_every=250 --config.model.dtype=bfloat16
  mkdir -p "$WORK/listops_lra/$v"
  cp /tmp/runs/listops_lra_$v/{summary,config}.json /tmp/runs/listops_lra_$v/metrics.jsonl \
    "$WORK/listops_lra/$v/" 2>/dev/null
done
python3 -m lightjax.report "$WORK/listops_lra" --out "$WORK/listops_lra" > /dev/null 2>&1

echo "total $(( $(date +%s) - T0 ))s"
tar -czf "$OUT/results.tar.gz" -C /tmp/gpu_check results
