"""`python -m lightjax.save_pretrained --workdir RUN --out DIR`: a lightjax run
as a Hugging Face checkpoint directory.

Writes config.json, model.safetensors and the run's tokenizer files, which
`transformers.AutoModelForSequenceClassification.from_pretrained(DIR)` loads
and `--config.init_from=hf:DIR` starts a lightjax run from. A
`sentence_encoder` run (e.g. a student distilled from a sentence-transformers
model) is written as a sentence-transformers directory (`BertModel` +
modules.json, pooling, normalisation) that `SentenceTransformer(DIR)` loads. The model is the
run's best-validation one (`--checkpoint=last`: the last train state). A run
started from a Hugging Face checkpoint keeps that checkpoint's config.json
fields that lightjax has no use for (label names, initializer_range).

Only models transformers can run are written: BERT's or DistilBERT's layout
with softmax attention (see `lightjax.hf.hf_config_for`); anything
else is refused with the fields that stand in the way. Exit code 2 then.
"""

from __future__ import annotations

import json
import os

import ml_collections

from absl import app, flags, logging

from lightjax import cli, config_lib, hf, init_from

_FLAGS = {}


def _define_flags() -> None:
  """Flags exist only when this module is the program: the library function
  `export` is imported by tests beside other CLIs that define --out."""
  _FLAGS["workdir"] = flags.DEFINE_string("workdir", None,
                                          "A lightjax run's --workdir.")
  _FLAGS["out"] = flags.DEFINE_string("out", None,
                                      "Directory to write the checkpoint to.")
  _FLAGS["checkpoint"] = flags.DEFINE_enum(
      "checkpoint", "best", ["best", "last"],
      "best-validation model, or the last train state")
  flags.mark_flags_as_required(["workdir", "out"])


def export(workdir: str, out: str, which: str = "best") -> dict:
  """Writes `workdir`'s model to `out`; returns the written config.json."""
  source = init_from.open_source(workdir)
  model, _ = init_from.load_model(workdir, which=which)
  run = {}
  if os.path.exists(os.path.join(workdir, "config.json")):
    with open(os.path.join(workdir, "config.json")) as f:
      run = json.load(f)
  base = None
  spec = run.get("init_from") or ""
  if spec.startswith(init_from.HF_PREFIX):
    try:  # the imported checkpoint's config.json, for the fields we lack
      base = hf.read_config(hf.resolve(spec[len(init_from.HF_PREFIX):]))
    except hf.CheckpointError as e:
      logging.warning("not keeping %s's extra config fields: %s", spec, e)
  lowercase = (run.get("task") or {}).get("lowercase", True)
  return hf.save_pretrained(
      model, _model_config(source), out, pad_id=source.pad_id,
      tokenizer=source.tokenizer, base=base,
      tokenizer_config={"do_lower_case": bool(lowercase),
                        "model_max_length": source.max_len})


def _model_config(source: init_from.Source):
  return ml_collections.ConfigDict(source.model)


def main(argv: list[str]) -> None:
  cli.start(argv)
  with cli.exit_codes("lightjax.save_pretrained", bad_input=(ValueError,)):
    config = export(_FLAGS["workdir"].value, _FLAGS["out"].value,
                    _FLAGS["checkpoint"].value)
  labels = config.get("id2label")
  print(f"Wrote {_FLAGS['out'].value}: {config['architectures'][0]}"
        + (f", {len(labels)} labels." if labels else "."))


if __name__ == "__main__":
  _define_flags()
  app.run(main, flags_parser=config_lib.flags_parser(
      "lightjax.save_pretrained"))
