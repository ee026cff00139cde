"""Stacked hourglass (Newell et al. 2016). (Its residual module and the heatmap MSE loss: tests/test_layers/
test_residual.py, tests/test_tasks/test_pose_losses.py.)

References independent of the code under test: the parameter counts of the original Torch code (3.43M, 6.57M,
12.86M, 25.43M for 1, 2, 4, 8 stacks at 256 features, 16 joints) and an exact hand count from the Torch modules'
shapes (``Residual.lua``, ``hg.lua``); a numpy loss; numpy for the residual's skip rule.
"""

from __future__ import annotations

import numpy as np
import pytest

import densevision  # noqa: F401  (sets the Keras backend first)
import keras
import tensorflow as tf
from densevision.analysis.layer_table import layer_table
from densevision.models import hourglass as hourglass_module
from densevision.models.hourglass import stacked_hourglass
from densevision.recipes import _signature_model
from densevision.registry import MODELS
from densevision.tasks.pose_losses import heatmap_mse

RNG = np.random.default_rng(0)


def random_images(height: int, width: int, batch: int = 2) -> np.ndarray:
    return RNG.uniform(0, 255, (batch, height, width, 3)).astype("float32")


def tiny_hourglass(**options) -> keras.Model:
    return stacked_hourglass(**{"num_stacks": 2, "num_features": 16, "num_joints": 3, **options})


# ------------------------------------------------------------------------------------------ shapes and dtypes


@pytest.mark.parametrize("num_stacks", [1, 2])
@pytest.mark.parametrize("height, width, depth", [(64, 64, 4), (128, 96, 4), (128, 96, 3)])
def test_outputs_are_a_list_of_float32_quarter_size_heatmaps(num_stacks, height, width, depth):
    model = tiny_hourglass(num_stacks=num_stacks, depth=depth, zero_init_heads=False)
    outputs = model(random_images(height, width))
    assert isinstance(outputs, list) and len(outputs) == num_stacks
    for heatmaps in outputs:
        assert tuple(heatmaps.shape) == (2, height // 4, width // 4, 3)
        assert heatmaps.dtype == tf.float32
    assert model.output_names == [f"stack{s}_heatmaps" for s in range(1, num_stacks + 1)]


def test_unknown_size_inside_tf_function_and_static_size_errors():
    model = tiny_hourglass(num_stacks=1, depth=2)
    step = tf.function(lambda x: model(x, training=True), input_signature=[tf.TensorSpec((None, None, None, 3))])
    assert tuple(step(random_images(36, 20, batch=1))[-1].shape) == (1, 9, 5, 3)  # odd sizes at every level
    with pytest.raises(ValueError, match="input height 66 .* multiple of 4"):
        tiny_hourglass(input_shape=(66, 64, 3))
    with pytest.raises(ValueError, match="input_shape must be"):
        tiny_hourglass(input_shape=(64, 64, 1))
    with pytest.raises(ValueError, match="num_features must be even"):
        tiny_hourglass(num_features=15)
    with pytest.raises(ValueError, match="needs a backbone"):
        tiny_hourglass(weights="imagenet")


def test_outputs_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = tiny_hourglass(zero_init_heads=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    outputs = model(random_images(64, 64, batch=1))
    assert [o.dtype for o in outputs] == [tf.float32, tf.float32]
    assert model.get_layer("stack1_heatmap_conv").compute_dtype == "bfloat16"


def test_backbone_p2_replaces_the_stem():
    model = stacked_hourglass(num_stacks=1, num_features=16, num_joints=3, backbone="vgg16")
    outputs = model(random_images(64, 96, batch=1))
    assert tuple(outputs[-1].shape) == (1, 16, 24, 3)
    backbone = model.get_layer("vgg16_p2")
    assert backbone.output.shape[1:] == (None, None, 256)  # VGG16's P2 is block3_conv3: stride 4, 256 channels
    assert "stem_conv" not in [layer.name for layer in model.layers]


# ------------------------------------------------------------------------------------------ parameters


def torch_hourglass_params(num_stacks: int, features: int = 256, joints: int = 16, depth: int = 4) -> int:
    """Trainable parameters of ``hg.lua`` by hand from its Torch modules (BN: weight + bias; convs with bias)."""
    bn = lambda c: 2 * c  # noqa: E731
    conv = lambda k, cin, cout: k * k * cin * cout + cout  # noqa: E731

    def res(cin, cout):
        body = bn(cin) + conv(1, cin, cout // 2) + bn(cout // 2) + conv(3, cout // 2, cout // 2) + bn(cout // 2) \
            + conv(1, cout // 2, cout)
        return body + (conv(1, cin, cout) if cin != cout else 0)

    stem = conv(7, 3, 64) + bn(64) + res(64, 128) + res(128, 128) + res(128, features)
    one_hourglass = (3 * depth + 1) * res(features, features)  # per level: up, down, low; one at the bottom
    head = res(features, features) + conv(1, features, features) + bn(features) + conv(1, features, joints)
    remap = conv(1, features, features) + conv(1, joints, features)
    return stem + num_stacks * (one_hourglass + head) + (num_stacks - 1) * remap


@pytest.mark.parametrize("num_stacks, published_millions", [(1, 3.43), (2, 6.57), (4, 12.86), (8, 25.43)])
def test_parameter_counts_match_the_original_torch_code(num_stacks, published_millions):
    model = stacked_hourglass(num_stacks=num_stacks, num_features=256, num_joints=16, zero_init_heads=False)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    # Torch's count is Keras' trainable count: BN scale and offset, not the running mean and variance
    assert trainable == torch_hourglass_params(num_stacks)
    assert round(trainable / 1e6, 2) == published_millions
    running_stats = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert running_stats == model.count_params() - trainable and running_stats > 0


def test_layer_table_totals_agree_with_keras():
    model = tiny_hourglass(depth=3)
    table = layer_table(model, (64, 96, 3))
    assert table["totals"]["params"] == model.count_params()
    rows = {row["name"]: row for row in table["layers"]}
    for name in ("stack1_heatmaps", "stack2_heatmaps"):
        assert rows[name]["output_shape"] == [16, 24, 3] and rows[name]["jump"] == 4


# ------------------------------------------------------------------------------------------ initialisation


def test_zero_init_heads_give_exactly_zero_outputs_and_paper_init_does_not():
    images = random_images(32, 32)
    zero = tiny_hourglass(depth=3)
    for training in (False, True):
        for heatmaps in zero(images, training=training):
            assert not np.any(heatmaps.numpy())
    paper = tiny_hourglass(zero_init_heads=False, depth=3)
    assert all(np.abs(h.numpy()).max() > 0 for h in paper(images))


# ------------------------------------------------------------------------------------------ checkpoints, training


def test_keras_file_reloads_in_safe_mode_with_identical_outputs(tmp_path):
    model = tiny_hourglass(zero_init_heads=False, depth=3)
    images = random_images(64, 96)
    path = str(tmp_path / "hourglass.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    for before, after in zip(model(images), reloaded(images)):
        np.testing.assert_array_equal(before.numpy(), after.numpy())


def test_a_few_steps_reduce_the_loss_on_a_fixed_heatmap():
    keras.utils.set_random_seed(0)
    model = stacked_hourglass(num_stacks=2, num_features=16, num_joints=2, depth=1)
    images = tf.constant(random_images(32, 32, batch=2))
    rows, cols = np.mgrid[:8, :8]
    peaks = [np.exp(-((cols - c) ** 2 + (rows - r) ** 2) / (2 * 1.0 ** 2)) for r, c in ((2, 3), (5, 6))]
    target = tf.constant(np.broadcast_to(np.stack(peaks, -1), (2, 8, 8, 2)).astype("float32"))
    weight = tf.ones((2, 2))
    optimizer = keras.optimizers.Adam(1e-2)

    def step():  # eager: tracing the gradient of even a tiny hourglass costs more than 8 eager steps
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(heatmap_mse(target, weight, model(images, training=True)))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    losses = [float(step()) for _ in range(8)]
    # zero heads: the first loss is exactly that of an all-zero prediction, summed over the two stacks
    np.testing.assert_allclose(losses[0], 2 * np.mean(target.numpy() ** 2), rtol=1e-6)
    assert losses[-1] < 0.5 * losses[0], losses


def test_registered_and_recipe_options_validate():
    assert MODELS.get("stacked_hourglass") is hourglass_module.stacked_hourglass
    options, _ = _signature_model(stacked_hourglass, ())
    validated = options(num_stacks=1, input_shape=[128, 96, 3], backbone="resnet50").model_dump()
    assert validated["input_shape"] == (128, 96, 3) and validated["zero_init_heads"] is True
    with pytest.raises(Exception, match="num_stack"):
        options(num_stack=1)
