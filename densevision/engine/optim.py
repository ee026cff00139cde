"""Optimisers and learning-rate schedules the papers use, from the recipe's ``optimizer`` section.

Learning-rate rule: ``optimizer.lr`` is the rate for the *global* batch ``data.batch_size`` (summed over replicas and
workers). With ``optimizer.base_batch_size`` set, the rate is scaled linearly (Goyal et al. 2017):
``lr = optimizer.lr * data.batch_size / base_batch_size``.
"""

from __future__ import annotations

import math

import keras
from keras import ops

# Decoupled weight decay should not shrink biases or batch-norm parameters.
NO_DECAY_NAMES = ["bias", "beta", "gamma"]


@keras.saving.register_keras_serializable(package="densevision")
class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate as a function of the step, defined in epochs so it survives a resume unchanged.

    Args:
        base_lr: the rate after warm-up.
        steps_per_epoch: optimiser steps in one epoch.
        total_epochs: the planned length of training (poly and cosine reach ``min_lr`` there).
        name: ``constant``, ``exponential`` (``base_lr * decay_rate ** epoch``, per whole epoch, as Tiramisu's
            0.995), ``poly`` (``(1 - t / T) ** power``), ``cosine``, ``step`` (times ``factor`` at each boundary epoch).
        warmup_epochs: linear warm-up from 0 over this many epochs (may be fractional).
    """

    def __init__(self, base_lr, steps_per_epoch, total_epochs, name="constant", decay_rate=0.995, power=0.9,
                 boundaries=(), factor=0.1, min_lr=0.0, warmup_epochs=0.0):
        self.base_lr = float(base_lr)
        self.steps_per_epoch = int(steps_per_epoch)
        self.total_epochs = int(total_epochs)
        self.name = name
        self.decay_rate = float(decay_rate)
        self.power = float(power)
        self.boundaries = [int(b) for b in boundaries]
        self.factor = float(factor)
        self.min_lr = float(min_lr)
        self.warmup_epochs = float(warmup_epochs)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        epoch = step / float(self.steps_per_epoch)
        progress = ops.clip(epoch / float(max(self.total_epochs, 1)), 0.0, 1.0)
        base, low = self.base_lr, self.min_lr
        if self.name == "constant":
            lr = ops.convert_to_tensor(base)
        elif self.name == "exponential":
            lr = base * ops.power(self.decay_rate, ops.floor(epoch))
        elif self.name == "poly":
            lr = (base - low) * ops.power(1.0 - progress, self.power) + low
        elif self.name == "cosine":
            lr = low + 0.5 * (base - low) * (1.0 + ops.cos(math.pi * progress))
        elif self.name == "step":
            passed = sum(ops.cast(epoch >= b, "float32") for b in self.boundaries) if self.boundaries else 0.0
            lr = base * ops.power(self.factor, passed)
        else:
            raise ValueError(f"unknown schedule {self.name!r}")
        lr = ops.maximum(lr, low)
        if self.warmup_epochs > 0:
            lr = lr * ops.minimum(1.0, epoch / self.warmup_epochs)
        return lr

    def get_config(self):
        return {
            "base_lr": self.base_lr, "steps_per_epoch": self.steps_per_epoch, "total_epochs": self.total_epochs,
            "name": self.name, "decay_rate": self.decay_rate, "power": self.power, "boundaries": self.boundaries,
            "factor": self.factor, "min_lr": self.min_lr, "warmup_epochs": self.warmup_epochs,
        }


def effective_lr(recipe) -> float:
    """``optimizer.lr``, scaled linearly to ``data.batch_size`` when ``optimizer.base_batch_size`` is set."""
    opt = recipe.optimizer
    if opt.base_batch_size:
        return opt.lr * recipe.data.batch_size / opt.base_batch_size
    return opt.lr


def build_optimizer(recipe, steps_per_epoch: int, mixed_float16: bool = False) -> keras.optimizers.Optimizer:
    """The recipe's optimiser with its schedule (and loss scaling under ``mixed_float16``)."""
    opt = recipe.optimizer
    sched = opt.schedule
    schedule = EpochSchedule(
        effective_lr(recipe), steps_per_epoch, recipe.train.epochs, name=sched.name, decay_rate=sched.decay_rate,
        power=sched.power, boundaries=sched.boundaries, factor=sched.factor, min_lr=sched.min_lr,
        warmup_epochs=sched.warmup_epochs,
    )
    common = dict(learning_rate=schedule, weight_decay=opt.weight_decay or None, clipnorm=opt.clipnorm)
    if opt.ema_momentum:  # Keras keeps the average in the optimiser; the Trainer swaps it in to validate and save
        common.update(use_ema=True, ema_momentum=opt.ema_momentum)
    if opt.name == "sgd":
        optimizer = keras.optimizers.SGD(momentum=opt.momentum, nesterov=opt.nesterov, **common)
    elif opt.name == "rmsprop":
        optimizer = keras.optimizers.RMSprop(**common)
    elif opt.name == "adam":
        optimizer = keras.optimizers.Adam(**common)
    elif opt.name == "adamw":
        optimizer = keras.optimizers.AdamW(**{**common, "weight_decay": opt.weight_decay})
    else:  # the schema already restricts the names
        raise ValueError(f"unknown optimizer {opt.name!r}")
    if opt.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    if mixed_float16:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
