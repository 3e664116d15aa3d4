r"""LRA Pathfinder (Linsley et al. 2018; LRA, Tay et al. 2021 sec. 3.4).

  python -m lightjax.train --config configs/lra_pathfinder.py --workdir /tmp/pathfinder
  python -m lightjax.train --config configs/lra_pathfinder.py:linear --workdir /tmp/pathfinder_linear
  python -m lightjax.train --config configs/lra_pathfinder.py:lra --workdir ...   # LRA's setup
  # LRA's released images instead of generated ones:
  python -m lightjax.train --config configs/lra_pathfinder.py:lra --workdir ... \
      --config.task.source=original --config.task.original_dir=/data/lra_release/lra_release/pathfinder32

Binary: are the two dots joined by one dashed path? Each image is its
image_size**2 grey values + 1 (lightjax.data.pathfinder). Data: generated
from a seed by default (no download; cached under the data dir), or LRA's
released PNGs with `task.source=original`
(https://storage.googleapis.com/long-range-arena/lra_release.gz; the folder
lra_release/lra_release/pathfinder32 holds curv_baseline,
curv_contour_length_9 and curv_contour_length_14 = contour_length 6, 9, 14).
Generated images are not LRA's images (see the module doc): their accuracies
are not comparable with LRA Table 1 (Transformer 71.40 on the originals).

ARG is a comma-separated list of an attention variant (any name in
`lightjax.attention.names()`) and presets:
  (none)  CPU default: 20k generated 32x32 images (contour length 14), a
          2-layer 64-wide model with mean pooling, 3000 steps of batch 32.
  lra     LRA's Pathfinder-32 setup (lra_benchmarks/image/configs/pathfinder32/
          base_pathfinder32_config.py + transformer_base.py): 160k/20k/20k
          images, 1 layer, 4 heads, embedding 128, qkv 64 (head_dim 16),
          MLP 128, dropout 0.2 (LRA's attention dropout 0.1 is not modelled),
          fixed sinusoidal positions (learn_pos_emb=False), mean pooling,
          classifier head Dense(128)-ReLU-Dense; batch 512, 200 epochs
          (312 steps each: 62,400 steps), lr 1e-3 with one epoch of linear
          warm-up then cosine decay, no weight decay, no gradient clipping.
          Needs an accelerator (length 1024, batch 512).
  tiny    a seconds-long smoke run (tests use it).
Measured results of these commands go to results/ with device and date; none
are recorded yet.
"""

from lightjax import config_lib

PRESETS = ("lra", "tiny")

# LRA: TRAIN_EXAMPLES // batch_size steps per epoch, NUM_EPOCHS = 200.
_LRA_TRAIN_EXAMPLES = 160_000
_LRA_EPOCHS = 200


def get_config(arg=None):
  name, presets = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base_config()
  c.config_name = "lra_pathfinder" + (f":{arg}" if arg else "")
  c.model.attention = config_lib.attention_config(name)
  c.task = config_lib.task_config(
      "lra_pathfinder", num_train=20_000, num_validation=2_000,
      num_test=2_000)

  c.num_train_steps = 3000
  c.batch_size = 32
  c.eval_batch_size = 100
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  c.optim.learning_rate = 1e-3
  c.optim.schedule = "cosine"
  c.optim.warmup_steps = 200
  c.optim.weight_decay = 0.0
  c.model.embed_dim = 64
  c.model.num_heads = 4
  c.model.head_dim = 16
  c.model.mlp_dim = 128
  c.model.num_layers = 2
  c.model.pos_embedding = "sinusoidal"
  c.model.pool = "mean"
  c.model.classifier_hidden_dim = 64
  c.model.classifier_activation = "relu"

  if "lra" in presets:
    c.task = config_lib.task_config("lra_pathfinder")  # 160k/20k/20k, 32x32
    c.batch_size = 512
    c.eval_batch_size = 512
    steps_per_epoch = _LRA_TRAIN_EXAMPLES // c.batch_size  # 312
    c.num_train_steps = steps_per_epoch * _LRA_EPOCHS
    c.log_every = 100
    c.eval_every = c.checkpoint_every = steps_per_epoch
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = steps_per_epoch
    c.optim.weight_decay = 0.0
    c.optim.grad_clip_norm = 0.0
    c.model.embed_dim = 128
    c.model.num_heads = 4
    c.model.head_dim = 16
    c.model.mlp_dim = 128
    c.model.num_layers = 1
    c.model.dropout_rate = 0.2
    c.model.classifier_hidden_dim = 128
  if "tiny" in presets:
    c.task = config_lib.task_config(
        "lra_pathfinder", num_train=64, num_validation=16, num_test=16,
        contour_length=6, num_distractors=1, distractor_length=2)
    c.num_train_steps = 6
    c.batch_size = 8
    c.eval_batch_size = 16
    c.log_every = 2
    c.eval_every = c.checkpoint_every = 3
    c.optim.warmup_steps = 2
    c.model.embed_dim = 16
    c.model.num_heads = 2
    c.model.head_dim = 8
    c.model.mlp_dim = 32
    c.model.num_layers = 1
    c.model.classifier_hidden_dim = 16
  return c
