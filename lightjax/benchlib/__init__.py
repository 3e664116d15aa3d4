"""Speed and memory benchmarks of the attention variants (`lightjax.bench`).

Long Range Arena's Table 2 (Tay et al. 2021) compares efficient Transformers
by train steps/s and peak memory at 1K-4K tokens, on TPUs, with the sparse
models simulated by dense masks. This package measures the same quantities
for lightjax's real kernels, and more:

  * ratios to softmax measured in the same run (no cross-run noise);
  * memory from XLA's compiled plan (deterministic, also on CPU) plus the
    device's own peak counter where it has one;
  * compile time apart from run time; XLA FLOPs; MFU on accelerators;
  * batch-1 forward latency (edge use) and autoregressive decode tokens/s
    (KV-cached softmax vs recurrent linear attention);
  * failures (OOM or other) recorded per point, the sweep carries on.

Modules, one job each: `plan` (which points, in what order), `builders`
(models, states, batches), `measure` (the four benchmarks), `timing`,
`failures`, `peak` (MFU), `records` (ratios, jsonl/csv), `progress`,
`render` (bench.md), `plots` (PNGs), `runner` (the loop).
"""

from lightjax.benchlib.runner import OUTPUTS, run

__all__ = ["OUTPUTS", "run"]
