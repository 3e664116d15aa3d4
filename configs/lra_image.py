r"""LRA Image: CIFAR-10 as 1024 grey pixel tokens (LRA, Tay et al. 2021).

  python -m lightjax.train --config configs/lra_image.py --workdir /tmp/lra_image
  python -m lightjax.train --config configs/lra_image.py:linear --workdir /tmp/lra_image_linear
  python -m lightjax.train --config configs/lra_image.py:lra --workdir ...   # LRA's setup

Data: CIFAR-10, python version (Krizhevsky 2009),
https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, unpacked into the
data dir (`--config.data_dir`, default $LIGHTJAX_DATA_DIR or ~/.cache/lightjax)
so that <data_dir>/cifar-10-batches-py/{data_batch_1..5,test_batch} exist, or
anywhere with `--config.task.cifar_dir=/path/to/cifar-10-batches-py`. No
TensorFlow needed; `--config.task.source=tfds` reads tfds `cifar10` instead
(needs tensorflow-datasets and TensorFlow). Each image is its 1024 grey values
(tf.image.rgb_to_grayscale's formula) + 1, row-major (lightjax.data.lra_image).
Splits: test = CIFAR-10 test (10k); validation = 10% of train, seeded (5k);
train = the other 45k (LRA's sizes).

ARG is a comma-separated list of an attention variant (any name in
`lightjax.attention.names()`) and presets:
  (none)  CPU default: LRA's model (it is small) at batch 32 for 3000 steps
          (~2 epochs); the compiled train step costs 485 MFLOP per example
          (XLA cost analysis), so each step is ~15 GFLOP on the CPU.
  lra     LRA's Image config (lra_benchmarks/image/configs/cifar10/
          base_cifar10_config.py): 1 layer, 1 head, embedding and qkv 32,
          MLP 64, dropout 0.3 (LRA also has attention dropout 0.2, which our
          model does not have), learned positions, CLS pooling, classifier
          head Dense(64)-ReLU-Dense; batch 256, 200 epochs of the 45k train
          images (35,000 steps), lr 5e-4 with one epoch (175 steps) of linear
          warm-up then cosine decay, no weight decay, no gradient clipping.
  tiny    a seconds-long smoke run on tiny CIFAR-format batches (tests use it).
LRA Table 1 reports test accuracy 42.44 for the Transformer on this task
(lightjax/paper). Measured results of these commands go to results/ with
device and date; none are recorded yet.
"""

from lightjax import config_lib

PRESETS = ("lra", "tiny")

# LRA: TRAIN_EXAMPLES // batch_size steps per epoch, NUM_EPOCHS = 200.
_LRA_TRAIN_EXAMPLES = 45_000
_LRA_EPOCHS = 200


def _lra_model(model):
  model.embed_dim = 32
  model.num_heads = 1
  model.head_dim = 32
  model.mlp_dim = 64
  model.num_layers = 1
  model.dropout_rate = 0.3
  model.pos_embedding = "learned"
  model.pool = "cls"
  model.classifier_hidden_dim = 64
  model.classifier_activation = "relu"
  return model


def get_config(arg=None):
  name, presets = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base_config()
  c.config_name = "lra_image" + (f":{arg}" if arg else "")
  c.model.attention = config_lib.attention_config(name)
  c.task = config_lib.task_config("lra_image")

  _lra_model(c.model)
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

  if "lra" in presets:
    c.batch_size = 256
    c.eval_batch_size = 256
    steps_per_epoch = _LRA_TRAIN_EXAMPLES // c.batch_size  # 175
    c.num_train_steps = steps_per_epoch * _LRA_EPOCHS
    c.log_every = 100
    c.eval_every = c.checkpoint_every = steps_per_epoch
    c.optim.learning_rate = 5e-4
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = steps_per_epoch
    c.optim.weight_decay = 0.0
    c.optim.grad_clip_norm = 0.0
  if "tiny" in presets:
    c.task = config_lib.task_config("lra_image", validation_fraction=0.25)
    c.num_train_steps = 6
    c.batch_size = 8
    c.eval_batch_size = 16
    c.log_every = 2
    c.eval_every = c.checkpoint_every = 3
    c.optim.warmup_steps = 2
    c.model.embed_dim = 16
    c.model.head_dim = 16
    c.model.mlp_dim = 32
    c.model.classifier_hidden_dim = 16
  return c
