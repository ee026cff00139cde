"""Precise BN: moving statistics become the plain average of the batch statistics; weights do not change."""

import numpy as np
import tensorflow as tf

import densevision  # noqa: F401
import keras
from densevision.engine.precise_bn import recompute_batchnorm_statistics


def test_moving_statistics_become_the_average_of_batch_statistics():
    rng = np.random.default_rng(0)
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(2, 1, name="conv")(inputs)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.BatchNormalization(momentum=0.99, name="bn")(x)
    model = keras.Model(inputs, x)
    batches = [rng.normal(loc=i, scale=1.0 + i, size=(2, 4, 4, 3)).astype("float32") for i in range(5)]
    dataset = tf.data.Dataset.from_tensor_slices({"image": np.stack(batches), "mask": np.zeros(5)})
    kernel_before = model.get_layer("conv").get_weights()[0].copy()

    used = recompute_batchnorm_statistics(model, dataset, num_batches=5, progress=False)

    # Reference: the conv outputs (dropout off) of each batch, their per-batch mean and variance, averaged.
    conv_only = keras.Model(inputs, model.get_layer("conv").output)
    features = [conv_only(b).numpy().reshape(-1, 2) for b in batches]
    expected_mean = np.mean([f.mean(axis=0) for f in features], axis=0)
    expected_var = np.mean([f.var(axis=0) for f in features], axis=0)
    bn = model.get_layer("bn")
    assert used == 5
    np.testing.assert_allclose(bn.moving_mean.numpy(), expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), expected_var, rtol=1e-3, atol=1e-5)
    np.testing.assert_array_equal(model.get_layer("conv").get_weights()[0], kernel_before)
    assert bn.momentum == 0.99 and model.get_layer("drop").rate == 0.5  # settings restored


def test_an_empty_batch_is_skipped():
    """An empty batch has no statistics: averaging it in would make every moving mean NaN."""
    rng = np.random.default_rng(1)
    inputs = keras.Input((2, 2, 3))
    bn_layer = keras.layers.BatchNormalization(name="bn")
    model = keras.Model(inputs, bn_layer(inputs))
    full = rng.normal(size=(2, 2, 2, 3)).astype("float32")
    batches = [full, full[:0], full[::-1] * 3.0]
    dataset = tf.data.Dataset.from_generator(lambda: ({"image": batch} for batch in batches),
                                             output_signature={"image": tf.TensorSpec((None, 2, 2, 3))})

    used = recompute_batchnorm_statistics(model, dataset, num_batches=3, progress=False)

    assert used == 2
    expected = np.mean([batches[0].reshape(-1, 3).mean(0), batches[2].reshape(-1, 3).mean(0)], axis=0)
    np.testing.assert_allclose(bn_layer.moving_mean.numpy(), expected, rtol=1e-5, atol=1e-6)
