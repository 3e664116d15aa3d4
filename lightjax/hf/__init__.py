"""Hugging Face checkpoints in and out: BERT, DistilBERT, RoBERTa.

    from lightjax import hf
    model, config = hf.from_pretrained("path/to/dir")      # import
    hf.save_pretrained(model, config.model, "out/dir")     # save back

`families.py` holds one description per family (config both ways, the
tensor map both ways, which lightjax models have its layout); `io.py`
reads and writes checkpoint directories with them. Built on `models/`
(never the reverse): the model registry and `models.weights` (flat
parameter paths, loading into a model) are all it needs.
"""

from lightjax.hf.families import FAMILIES, HEADS, family_of, head_of
from lightjax.hf.io import (CONFIG_FILE, OPTIONAL, PICKLE_FILES,
                            SAFETENSORS_FILE, SAFETENSORS_INDEX,
                            TOKENIZER_FILES, build, config_from_hf,
                            convert_weights, from_pretrained, hf_config_for,
                            hidden_states, load_weights, pad_pruned,
                            read_config, read_tensors, resolve,
                            save_pretrained, verify)
from lightjax.models.weights import CheckpointError, Weights
