"""Re-estimate batch-norm statistics after training ("precise BN", Wu & Johnson 2021).

Keras' BatchNormalization keeps an exponential moving average (momentum 0.99) of the batch statistics; after a short
training run that average still remembers the early weights, and inference-mode predictions are poor. Measured on
real CamVid: FC-DenseNet56 after 240 steps scored 0.03 val mIoU with the moving averages and 0.234 after
re-estimating them over 100 training batches, with dropout off and no weight change.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from densevision.progress import progress_bar


def _batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)
            and layer.trainable]


def recompute_batchnorm_statistics(model: keras.Model, dataset: tf.data.Dataset, num_batches: int,
                                   progress: bool = True) -> int:
    """Replace every trainable BatchNormalization's moving mean/variance with the average over ``num_batches``.

    Args:
        model: the trained model; its weights are not changed.
        dataset: yields example dicts (training augmentation is fine; only ``batch["image"]`` (B, H, W, 3) is used),
            not distributed: under a strategy every worker averages the same whole batches, as one device would.
        num_batches: how many batches to read.

    Returns:
        The number of batches used (empty batches are skipped).
    """
    layers = _batchnorm_layers(model)
    if not layers or num_batches <= 0:
        return 0
    dropouts = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dropout)]
    saved = [(layer, layer.momentum) for layer in layers]
    saved_rates = [(layer, layer.rate) for layer in dropouts]
    for layer in dropouts:  # dropout would change the statistics the inference model sees
        layer.rate = 0.0
    for layer in layers:  # momentum 0: each forward pass leaves exactly its batch's statistics in the moving ones
        layer.momentum = 0.0

    # One compiled forward pass: graph execution frees each activation after its last use, where an eager
    # functional call keeps them all (FC-DenseNet56 on three 360x480 frames: ~12 GB eager).
    @tf.function
    def batch_statistics(images):
        model(images, training=True)
        return [(layer.moving_mean.value, layer.moving_variance.value) for layer in layers]

    sums = None
    used = 0
    try:
        for batch in progress_bar(dataset.take(num_batches), total=num_batches, desc="precise BN",
                                  enabled=progress):
            if batch["image"].shape[0] == 0:  # no statistics in an empty batch (its mean is NaN): skip it
                continue
            stats = [(m.numpy().astype(np.float64), v.numpy().astype(np.float64))
                     for m, v in batch_statistics(batch["image"])]
            sums = stats if sums is None else [(sm + m, sv + v) for (sm, sv), (m, v) in zip(sums, stats)]
            used += 1
        if used:
            for layer, (mean_sum, var_sum) in zip(layers, sums):
                layer.moving_mean.assign((mean_sum / used).astype(layer.moving_mean.dtype))
                layer.moving_variance.assign((var_sum / used).astype(layer.moving_variance.dtype))
    finally:
        for layer, momentum in saved:
            layer.momentum = momentum
        for layer, rate in saved_rates:
            layer.rate = rate
    return used
