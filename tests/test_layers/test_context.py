"""densevision.layers.context: the context module of Yu & Koltun (2016), identity-initialised, against equation 5
and table 1."""

from __future__ import annotations

import numpy as np
import pytest

import densevision  # noqa: F401  (sets the Keras backend first)
import keras

from densevision.layers.context import ContextIdentity, context_module

RNG = np.random.default_rng(0)


def context_model(num_classes: int, kind: str, relative_noise=None) -> keras.Model:
    inputs = keras.Input((None, None, num_classes))
    return keras.Model(inputs, context_module(inputs, num_classes, kind, relative_noise=relative_noise, seed=1))


@pytest.mark.parametrize("kind, noise", [("basic", None), ("large", 0.0)])
def test_fresh_context_module_passes_non_negative_maps_through(kind, noise):
    maps = RNG.uniform(0, 4, (2, 24, 20, 3)).astype("float32")
    model = context_model(3, kind, noise)
    np.testing.assert_allclose(model(maps).numpy(), maps, rtol=1e-5, atol=1e-5)
    # layers 1-7 are truncated (ReLU): negative scores come out as zero
    signed = RNG.normal(size=(1, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(model(signed).numpy(), np.maximum(signed, 0), rtol=1e-5, atol=1e-5)


def test_large_context_module_noise_breaks_ties_but_stays_close_to_identity():
    maps = RNG.uniform(0, 4, (1, 24, 20, 3)).astype("float32")
    model = context_model(3, "large")
    out = model(maps).numpy()
    assert np.abs(out - maps).max() < 0.05 * maps.max()
    second = model.get_layer("context_conv2").kernel.numpy()[1, 1]  # 2C -> 2C: two maps per class
    assert not np.allclose(second[:, 0], second[:, 1])  # the two maps of class 0 differ


def test_context_identity_matches_equation_5_by_hand():
    # C = 2 classes, 4 input maps (2 per class), 6 output maps (3 per class): weight C / c_out = 1/3
    kernel = ContextIdentity(2)((3, 3, 4, 6)).numpy()
    centre = np.array(
        [[1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1]], dtype="float32"
    ) / 3
    np.testing.assert_allclose(kernel[1, 1], centre)
    kernel[1, 1] = 0
    assert not kernel.any()
    with pytest.raises(ValueError, match="must divide"):
        ContextIdentity(4)((3, 3, 6, 8))


@pytest.mark.parametrize("kind, widths", [("basic", [1] * 8), ("large", [2, 2, 4, 8, 16, 32, 32, 1])])
def test_context_module_parameters_follow_table_1(kind, widths):
    classes = 4
    model = context_model(classes, kind)
    channels = [classes] + [w * classes for w in widths]
    kernels = [3] * 7 + [1]
    expected = sum(k * k * a * b + b for k, a, b in zip(kernels, channels[:-1], channels[1:]))
    assert model.count_params() == expected
    if kind == "basic":  # the paper: "approximately 64 C^2 parameters" (plus 8 C biases)
        assert expected == 64 * classes**2 + 8 * classes
    dilations = [model.get_layer(f"context_conv{i}").dilation_rate[0] for i in range(1, 9)]
    assert dilations == [1, 1, 2, 4, 8, 16, 1, 1]


def test_context_module_survives_save_and_load(tmp_path):
    model = context_model(2, "large")
    model.save(tmp_path / "context.keras")
    loaded = keras.saving.load_model(tmp_path / "context.keras", safe_mode=True)
    maps = RNG.normal(size=(1, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(loaded(maps), model(maps), rtol=1e-6, atol=1e-6)
    assert isinstance(loaded.get_layer("context_conv3").kernel_initializer, ContextIdentity)
