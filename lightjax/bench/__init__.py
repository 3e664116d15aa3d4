"""Speed and memory benchmarks of the attention variants (`lightjax.bench`).

Long Range Arena's Table 2 (Tay et al. 2021) compares efficient Transformers
by train steps/s and peak memory at 1K-4K tokens, on TPUs, with the sparse
models simulated by dense masks. This package measures the same quantities
for lightjax's real kernels, and more:

  * ratios to softmax (its fastest exact kernel, `implementation="auto"`)
    measured in the same run, so no cross-run noise enters them; a variant
    with option overrides (`softmax:implementation=einsum`) is a row of its
    own with its ratio to that default;
  * a floor: `none`, attention replaced by the identity, measured at every
    length right after softmax, so each variant's time and memory are also a
    multiple of what the rest of the model costs;
  * memory from XLA's compiled plan (deterministic, also on CPU) plus the
    device's own peak counter where it has one;
  * compile time apart from run time; XLA FLOPs; MFU on accelerators;
  * batch-1 forward latency (edge use) and autoregressive decode tokens/s
    (KV-cached softmax vs recurrent linear attention);
  * edge deployment (`edge`): batch-1 latency p50 / p95 of the JAX-jitted
    forward against the same model exported to ONNX, fp32 and int8, in
    onnxruntime, with the file sizes, also for trained or shrunk run
    directories (`configs/bench.py:edge`);
  * failures (OOM or other) recorded per point, the sweep carries on;
  * a real pretrained model against the runtimes a user would otherwise
    pick (`minilm`: transformers in PyTorch, a packaged int8 ONNX, lightjax's
    JAX, ONNX fp32 / int8 and shrunk students, interleaved in one run, with
    each row's fidelity to the float32 teacher; `configs/bench.py:minilm`).

`python -m lightjax.bench` (`__main__.py`) parses flags and calls `run`.
Modules: `plan` (which points, in what order, variant entries, checks,
progress/ETA), `measure` (building, compiling, timing, failures, MFU peak,
and the benchmarks' registry), `records` (ratios, jsonl/csv), `render`
(bench.md), `plots` (PNGs), `runner` (the loop and the outputs);
`minilm` (the peer benchmark's run), `peers` (its rows: one runtime each),
`minilm_table` (its bench.md).
"""

from lightjax.bench.runner import OUTPUTS, check, run

__all__ = ["OUTPUTS", "check", "run"]
