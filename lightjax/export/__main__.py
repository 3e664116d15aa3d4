"""Command line: `python -m lightjax.export --workdir RUN --format onnx|stablehlo --out DIR`.

  --int8      (onnx) also write model.int8.onnx (int8 weights and activations)
  --int8_recipe dynamic | smoothquant (default) | smoothquant_fp32_down
  --decode    a decoder LM's single-token decode step instead of its forward
  --nocheck   skip running the export against the JAX model
  --length N  the forward's sequence length, 1..max_len (default: the model's max_len)

The work is `lightjax.export.export_run`; this file parses flags, prints
what export.json records, and turns failures into one line on stderr with
exit code 2 (a workdir without a model or checkpoint, a model a format
cannot express, a missing optional package: the line names what to
install).
"""

from __future__ import annotations

from absl import app, flags

from lightjax import cli, config_lib, export
from lightjax.export import quantize

_WORKDIR = flags.DEFINE_string("workdir", None, "A lightjax run (train or"
                               " shrink workdir, or a saved student).")
_FORMAT = flags.DEFINE_string("format", "onnx", "onnx or stablehlo.")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_INT8 = flags.DEFINE_bool("int8", False, "ONNX: also an int8 model.")
_INT8_RECIPE = flags.DEFINE_enum(
    "int8_recipe", quantize.DEFAULT_RECIPE, list(quantize.RECIPES),
    "With --int8: dynamic (no calibration), smoothquant (SmoothQuant,"
    " calibrated on the run's train split) or smoothquant_fp32_down (the"
    " narrowing MatMuls, e.g. the MLP's down projection, left in float32:"
    " more faithful, less fast). See lightjax/export/quantize.py.")
_DECODE = flags.DEFINE_bool("decode", False, "Export a decoder LM's decode"
                            " step (state as inputs/outputs).")
_CHECK = flags.DEFINE_bool("check", True, "Run the export against the JAX"
                           " model (validation split, or greedy decoding).")
_LENGTH = flags.DEFINE_integer("length", 0, "Forward sequence length (0 ="
                               " the model's max_len).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where the run's task data"
                                " is (for the check).")
flags.mark_flags_as_required(["workdir", "out"])


def _line(name: str, check: dict) -> str:
  if "tokens_equal" in check:
    return (f"  {name}: greedy tokens {'equal' if check['tokens_equal'] else 'DIFFER'}"
            f" over {check['new_tokens']} new tokens")
  acc = (f", accuracy {check['accuracy']:.4f} (JAX {check['jax_accuracy']:.4f})"
         if "accuracy" in check else "")
  if "mean_cosine" in check:
    acc += f", mean cosine to JAX {check['mean_cosine']:.5f}"
  return (f"  {name}: max |logit diff| {check['max_abs_logit_diff']:.2e},"
          f" argmax equal on {check['argmax_agree']}/{check['examples']}"
          f" ({check['data']}){acc}")


def main(argv: list[str]) -> None:
  cli.start(argv)
  with cli.exit_codes("lightjax.export", bad_input=(ValueError,)):
    record = export.export_run(
        _WORKDIR.value, _FORMAT.value, _OUT.value, decode=_DECODE.value,
        int8=_INT8.value, check=_CHECK.value, length=_LENGTH.value,
        data_dir=_DATA_DIR.value, int8_recipe=_INT8_RECIPE.value)
  print(f"Wrote {_OUT.value}/{record['file']} ({record['bytes']:,} bytes,"
        f" {record['kind']}, {record.get('converter')}, symbolic dims"
        f" {record.get('symbolic_dims')})")
  if "int8" in record:
    q = record["int8"]
    print(f"Wrote {_OUT.value}/{q['file']} ({q['bytes']:,} bytes,"
          f" {q['size_ratio']:.1%} of fp32; {q['weight_values_8bit_share']:.1%}"
          f" of weight values in 8 bits; recipe {q['recipe']})")
  for name, check in record.get("check", {}).items():
    print(_line(name, check))
  print(f"Details: {_OUT.value}/{export.EXPORT_JSON}")


if __name__ == "__main__":
  app.run(main, flags_parser=config_lib.flags_parser("lightjax.export"))
