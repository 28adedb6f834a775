"""The optimizer and its learning-rate schedule, and the step counts (per pass, per epoch, schedule lengths)
they are sized by."""
import math

import keras


def build_optimizer(train, train_rows):
    """The `train` section's optimizer, its learning rate on the section's schedule (cosine: linear warm-up, then
    decay to 1% of the peak at the last epoch)."""
    lr = train.learning_rate
    if train.schedule == "cosine":
        lengths = schedule_steps(train, train_rows)
        warmup, total = lengths["warmup_steps"], lengths["decay_steps"]
        lr = keras.optimizers.schedules.CosineDecay(lr * 0.1 if warmup else lr, total, alpha=0.01,
                                                    warmup_target=lr if warmup else None, warmup_steps=warmup)
    optimizers = {"adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=train.weight_decay),
                  "adam": lambda: keras.optimizers.Adam(lr),
                  "sgd": lambda: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)}
    return optimizers[train.optimizer]()


def pass_steps(train_rows, batch_size):
    """Steps of one pass over the training images (the training stream repeats: every batch is full)."""
    return max(1, math.ceil(train_rows / batch_size))


def epoch_steps(train, train_rows):
    """Steps of one epoch: `train.steps_per_epoch`, else a pass."""
    return train.steps_per_epoch or pass_steps(train_rows, train.batch_size)


def schedule_steps(train, train_rows):
    """{warmup_steps, decay_steps} of the cosine schedule for the `train` section's epochs (what
    `app.training.optimizer.build_optimizer` builds it with)."""
    steps = epoch_steps(train, train_rows)
    warmup = int(train.warmup_epochs * steps)
    return {"warmup_steps": warmup, "decay_steps": max(train.epochs * steps - warmup, 1)}
