"""Hugging Face checkpoints in and out: BERT, DistilBERT, RoBERTa, and
sentence-transformers directories (a BERT pooled into sentence embeddings).

    from lightjax import hf
    model, config = hf.from_pretrained("path/to/dir")      # import
    hf.save_pretrained(model, config.model, "out/dir")     # save back

`families.py` holds one description per family (config both ways, the
tensor map both ways, which lightjax models have its layout) and
`sentence_transformers.py` the description of a sentence-transformers
pipeline (modules.json, pooling, normalisation) both ways; `io.py` reads
checkpoint directories with them and `save.py` writes them. Built on
`models/` (never the reverse): the model registry and `models.weights`
(flat parameter paths, loading into a model) are all it needs.
"""

from lightjax.hf import sentence_transformers
from lightjax.hf.checkpoint_files import (CONFIG_FILE, PICKLE_FILES,
                                          SAFETENSORS_FILE, SAFETENSORS_INDEX)
from lightjax.hf.families import FAMILIES, HEADS, family_of, head_of
from lightjax.hf.io import (OPTIONAL, build, config_from_hf, convert_weights,
                            from_pretrained, hidden_states, load_weights,
                            open_checkpoint, read_config, read_tensors,
                            read_weights, resolve, verify)
from lightjax.hf.save import (TOKENIZER_FILES, for_transformers,
                              hf_config_for, pad_pruned, save_pretrained)
from lightjax.models.weights import CheckpointError, Weights
