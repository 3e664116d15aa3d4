"""Writes the tiny Hugging Face BERT fixture the import tests compare against.

Needs `torch` and `transformers` (install them for this script only; the
tests themselves need neither):

    pip install torch transformers
    python scripts/make_bert_fixture.py
    # -> tests/fixtures/{bert,distilbert,bert_mlm,roberta}_tiny/

It builds a tiny randomly initialised `BertForSequenceClassification`
(seeded), saves it with `save_pretrained` (config.json + model.safetensors,
and a 99-token WordPiece tokenizer: vocab.txt, tokenizer.json, ...),
runs it in eval mode on fixed inputs with right padding and token types, and
writes the inputs, every layer's hidden states (embeddings output first) and
the logits to `expected.npz` next to it; the same for a tiny
`DistilBertForSequenceClassification` (no token types), a tiny
`BertForMaskedLM` (its logits are the masked-LM logits [B, L, V]) and a
tiny `RobertaForSequenceClassification` (RoBERTa's ids: <s> 0, <pad> 1,
</s> 2; no tokenizer, as a BPE vocabulary is not worth it here).
`tests/test_hf_import.py` and `tests/test_hf_mlm.py` load the directories
with `lightjax.hf.from_pretrained` and compare to 1e-5.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

# The fixture's inputs: right padding (pad id 0) and two segments, [CLS] = 2.
TOKENS = np.array([
    [2, 11, 12, 13, 3, 21, 22, 3, 0, 0, 0, 0],
    [2, 40, 41, 42, 43, 44, 45, 3, 50, 51, 52, 3],
    [2, 98, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0],
], np.int64)
SEGMENTS = np.array([
    [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
], np.int64)

BERT_CONFIG = dict(
    vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=37, max_position_embeddings=64, type_vocab_size=2,
    hidden_act="gelu", layer_norm_eps=1e-12, num_labels=3, pad_token_id=0,
    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
)


# RoBERTa (Liu et al. 2019): one token type, pad id 1, and fairseq's
# positions from pad + 1, so the table has 64 + 2 rows; its LayerNorm eps.
ROBERTA_CONFIG = dict(
    vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=37, max_position_embeddings=66, type_vocab_size=1,
    hidden_act="gelu", layer_norm_eps=1e-5, num_labels=3, pad_token_id=1,
    bos_token_id=0, eos_token_id=2, hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)
# TOKENS in RoBERTa's special ids: [CLS] 2 -> <s> 0, [SEP] 3 -> </s> 2,
# padding 0 -> <pad> 1 (other ids unchanged).
ROBERTA_TOKENS = np.select([TOKENS == 2, TOKENS == 3, TOKENS == 0],
                           [0, 2, 1], TOKENS)


DISTILBERT_CONFIG = dict(
    vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
    max_position_embeddings=64, activation="gelu", num_labels=3,
    pad_token_id=0, dropout=0.1, attention_dropout=0.1,
)


def _perturb(model, torch, seed):
  """Non-trivial LayerNorm / bias values (HF initialises them to 1 and 0)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("bias") or "LayerNorm" in name:
        p.add_(0.1 * torch.randn(p.shape, generator=g))


# The fixtures' WordPiece vocabulary (99 ids, the models' vocab_size): BERT's
# special tokens at the ids TOKENS uses ([PAD] 0, [CLS] 2, [SEP] 3), then
# the words the GLUE tests write, then filler.
WORDS = ("the cat sat a dog ran is good bad movie . on mat and it was not very"
         " great film story".split())
VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
         + [f"w{i}" for i in range(99 - 5 - len(WORDS))])


def _save_tokenizer(out_dir: str) -> None:
  """vocab.txt + tokenizer.json etc., as `BertTokenizerFast.save_pretrained`."""
  import transformers

  vocab = os.path.join(out_dir, "vocab.txt")
  with open(vocab, "w", encoding="utf-8") as f:
    f.write("".join(t + "\n" for t in VOCAB))
  transformers.BertTokenizerFast(vocab_file=vocab, do_lower_case=True
                                 ).save_pretrained(out_dir)


def _save_and_record(model, out_dir: str, torch, *, tokens=TOKENS, pad_id=0,
                     tokenizer=True, **arrays) -> None:
  """save_pretrained(out_dir) with a tokenizer, then expected.npz: the
  inputs, every layer's hidden states and the logits of `model` on `tokens`
  (right padding `pad_id` masked) and the given extra int inputs (e.g.
  token_type_ids=SEGMENTS)."""
  model.eval()
  os.makedirs(out_dir, exist_ok=True)
  model.save_pretrained(out_dir, safe_serialization=True)
  if tokenizer:
    _save_tokenizer(out_dir)
  with torch.no_grad():
    out = model(
        input_ids=torch.from_numpy(tokens),
        attention_mask=torch.from_numpy((tokens != pad_id).astype(np.int64)),
        output_hidden_states=True,
        **{k: torch.from_numpy(v) for k, v in arrays.items()},
    )
  hidden = np.stack([h.numpy() for h in out.hidden_states])  # [N+1, B, L, E]
  saved_inputs = {_SAVED_NAME[k]: v.astype(np.int32) for k, v in arrays.items()}
  np.savez_compressed(
      os.path.join(out_dir, "expected.npz"), tokens=tokens.astype(np.int32),
      **saved_inputs, hidden_states=hidden.astype(np.float32),
      logits=out.logits.numpy().astype(np.float32),
  )


# Model input name -> its name in expected.npz.
_SAVED_NAME = {"token_type_ids": "segment_ids"}


def make_bert(out_dir: str, seed: int = 0) -> None:
  import torch
  import transformers

  torch.manual_seed(seed)
  config = transformers.BertConfig(**BERT_CONFIG)
  model = transformers.BertForSequenceClassification(config)
  _perturb(model, torch, seed + 1)
  _save_and_record(model, out_dir, torch, token_type_ids=SEGMENTS)
  print(f"wrote {out_dir}: transformers {transformers.__version__}, "
        f"torch {torch.__version__}")


def make_bert_mlm(out_dir: str, seed: int = 0) -> None:
  """Tiny BertForMaskedLM: BERT_CONFIG's encoder, no pooler, and the MLM
  head whose decoder is tied to the word embeddings (Devlin et al. 2019
  sec. 3.1); `_perturb` also moves the shared output bias off zero."""
  import torch
  import transformers

  torch.manual_seed(seed)
  config = {k: v for k, v in BERT_CONFIG.items() if k != "num_labels"}
  model = transformers.BertForMaskedLM(transformers.BertConfig(**config))
  _perturb(model, torch, seed + 1)
  _save_and_record(model, out_dir, torch, token_type_ids=SEGMENTS)
  print(f"wrote {out_dir}")


def make_roberta(out_dir: str, seed: int = 0) -> None:
  """Tiny RobertaForSequenceClassification on ROBERTA_TOKENS (pad id 1)."""
  import torch
  import transformers

  torch.manual_seed(seed)
  model = transformers.RobertaForSequenceClassification(
      transformers.RobertaConfig(**ROBERTA_CONFIG))
  _perturb(model, torch, seed + 1)
  _save_and_record(model, out_dir, torch, tokens=ROBERTA_TOKENS, pad_id=1,
                   tokenizer=False)
  print(f"wrote {out_dir}")


def make_distilbert(out_dir: str, seed: int = 0) -> None:
  """Tiny DistilBertForSequenceClassification; no token types (Sanh et al. 2019)."""
  import torch
  import transformers

  torch.manual_seed(seed)
  model = transformers.DistilBertForSequenceClassification(
      transformers.DistilBertConfig(**DISTILBERT_CONFIG))
  _perturb(model, torch, seed + 1)
  _save_and_record(model, out_dir, torch)
  print(f"wrote {out_dir}")


def main():
  here = os.path.dirname(os.path.abspath(__file__))
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures"),
                      help="writes OUT/bert_tiny, OUT/distilbert_tiny,"
                      " OUT/bert_mlm_tiny and OUT/roberta_tiny")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  make_bert(os.path.normpath(os.path.join(args.out, "bert_tiny")), args.seed)
  make_distilbert(os.path.normpath(os.path.join(args.out, "distilbert_tiny")),
                  args.seed)
  make_bert_mlm(os.path.normpath(os.path.join(args.out, "bert_mlm_tiny")),
                args.seed)
  make_roberta(os.path.normpath(os.path.join(args.out, "roberta_tiny")),
               args.seed)


if __name__ == "__main__":
  main()
