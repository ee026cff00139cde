"""Segmentation models: FC-DenseNet (Jégou et al. 2017), the Tiramisu decoder on backbones and Yu & Koltun's
dilated network (its padding layers and context module: tests/test_layers/test_padding.py, test_context.py).

References are independent of the code under test: numpy padding, a hand count of FC-DenseNet parameters from
block sizes, the paper's Table 2 channel counts, the context module's identity property (paper, Sec. 3) and a
Dense layer on a flattened patch for the fc -> conv reshape.
"""

from __future__ import annotations

import numpy as np
import pytest

import densevision  # noqa: F401  (sets the Keras backend first)
import keras
from densevision.models import dilation as dilation_module
from densevision.models import tiramisu as tiramisu_module
from densevision.recipes import _signature_model
from densevision.registry import MODELS

RNG = np.random.default_rng(0)
CAMVID_CLASSES = 11


def random_images(height: int, width: int, batch: int = 1) -> np.ndarray:
    return RNG.uniform(0, 255, (batch, height, width, 3)).astype("float32")


def tiny_fc_densenet(num_classes: int = 3) -> keras.Model:
    return tiramisu_module.fc_densenet(num_classes, blocks_down=[2, 2], bottleneck=2, growth_rate=4, first_filters=8)


# ------------------------------------------------------------------------------------------ FC-DenseNet


def hand_count_fc_densenet(blocks_down, bottleneck, growth, first_filters=48, num_classes=CAMVID_CLASSES):
    """(trainable, total) parameters of an FC-DenseNet, counted from block sizes alone.

    Each BN-ReLU-conv layer with ``c_in`` inputs: BN gamma+beta (2 c_in trainable) and moving mean+variance
    (2 c_in statistics), conv ``k*k*c_in*c_out + c_out``. Transition up: a 3x3 transposed conv of the g*n new maps
    of the block below to g*n maps. Final 1x1 conv on the last up block's full stack.
    """
    counts = {"trainable": 3 * 3 * 3 * first_filters + first_filters, "stats": 0}

    def bn_relu_conv(c_in, c_out, kernel):
        counts["trainable"] += 2 * c_in + kernel * kernel * c_in * c_out + c_out
        counts["stats"] += 2 * c_in

    channels, skips = first_filters, []
    for layers in blocks_down:
        for j in range(layers):
            bn_relu_conv(channels + j * growth, growth, 3)
        channels += layers * growth
        skips.append(channels)
        bn_relu_conv(channels, channels, 1)  # transition down
    for j in range(bottleneck):
        bn_relu_conv(channels + j * growth, growth, 3)
    below = bottleneck
    for layers, skip in zip(reversed(blocks_down), reversed(skips)):
        counts["trainable"] += 9 * (growth * below) ** 2 + growth * below
        channels = skip + growth * below
        for j in range(layers):
            bn_relu_conv(channels + j * growth, growth, 3)
        channels += layers * growth
        below = layers
    counts["trainable"] += channels * num_classes + num_classes
    return counts["trainable"], counts["trainable"] + counts["stats"]


# name -> (blocks down, bottleneck, growth, exact counts this implementation gives with 11 classes,
#          counts of the paper's reference (Lasagne) code: trainable, with BN statistics)
FC_DENSENETS = {
    "fc_densenet56": ([4] * 5, 4, 12, (1_376_795, 1_397_963), (1.38e6, 1.40e6)),
    "fc_densenet67": ([5] * 5, 5, 16, (3_463_243, 3_502_923), (3.46e6, 3.50e6)),
    "fc_densenet103": ([4, 5, 7, 10, 12], 15, 16, (9_322_091, 9_425_163), (9.32e6, 9.43e6)),
}


def trainable_count(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("name", list(FC_DENSENETS))
def test_fc_densenet_parameter_counts(name):
    blocks_down, bottleneck, growth, exact, reference = FC_DENSENETS[name]
    model = MODELS.get(name)(num_classes=CAMVID_CLASSES)
    hand = hand_count_fc_densenet(blocks_down, bottleneck, growth)
    assert hand == exact
    assert (trainable_count(model), model.count_params()) == hand
    for got, ref in zip(hand, reference):
        assert abs(got - ref) / ref < 0.01, f"{name}: {got} parameters, reference code has {ref:.3g}"
    if name == "fc_densenet103":
        check_fc_densenet103_channels(model)


def check_fc_densenet103_channels(model):
    """Feature-map counts m after each block of FC-DenseNet103 (growth 16), worked by hand from the paper's
    rules: the down path's m grows by n*16 per block from 48; each up block holds skip + transition up +
    its own n*16 new maps, ending at the paper's m = 256 before the classifier."""
    down_outputs = [model.get_layer(f"down{i}_layer{n}_concat").output.shape[-1] for i, n in enumerate([4, 5, 7, 10, 12], 1)]
    assert down_outputs == [112, 192, 304, 464, 656]
    # transition ups see only the new maps of the block below: 15*16, 12*16, 10*16, 7*16, 5*16
    assert [model.get_layer(f"tu{i}_deconv").input.shape[-1] for i in range(1, 6)] == [240, 192, 160, 112, 80]
    up_blocks = [
        model.get_layer(f"tu{i}_concat").output.shape[-1] + model.get_layer(f"up{i}_new_maps").output.shape[-1]
        for i in range(1, 5)
    ]
    assert up_blocks == [1088, 816, 576, 384]
    assert model.get_layer("logits").input.shape[-1] == 256  # the last up block's whole stack
    assert all(
        layer.momentum == 0.9 for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
    )


def test_fc_densenet_any_size_is_the_top_left_crop_of_the_padded_image():
    model = tiramisu_module.fc_densenet56(num_classes=5)
    image = random_images(36, 52)
    logits = model(image, training=False).numpy()
    assert logits.shape == (1, 36, 52, 5) and logits.dtype == np.float32
    padded = np.pad(image, [(0, 0), (0, 64 - 36), (0, 64 - 52), (0, 0)])  # zeros, bottom/right, to /32
    reference = model(padded, training=False).numpy()
    assert reference.shape == (1, 64, 64, 5)
    np.testing.assert_allclose(logits, reference[:, :36, :52], rtol=1e-4, atol=1e-4)


def test_fc_densenet_logits_stay_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = tiny_fc_densenet()
        assert model.get_layer("first_conv").compute_dtype == "bfloat16"
        assert model(random_images(20, 12)).dtype == "float32"
    finally:
        keras.config.set_dtype_policy(previous)


def test_fc_densenet_bad_options_name_the_key():
    with pytest.raises(ValueError, match="blocks_up"):
        tiramisu_module.fc_densenet(3, blocks_down=[2, 2], bottleneck=2, growth_rate=4, blocks_up=[2])
    with pytest.raises(ValueError, match="blocks_down"):
        tiramisu_module.fc_densenet(3, blocks_down=[], bottleneck=2)
    with pytest.raises(ValueError, match="num_classes"):
        tiramisu_module.fc_densenet(0, blocks_down=[2], bottleneck=2)


def test_save_and_load_roundtrip_gives_the_same_outputs(tmp_path):
    model = tiny_fc_densenet()
    path = tmp_path / "fc_densenet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    image = random_images(20, 12)
    # predict runs the graph (tf.function) path of the padding layers with unknown sizes
    np.testing.assert_allclose(loaded.predict(image, verbose=0), model(image, training=False), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ backbone models


def test_vgg_fc_weights_reshape_to_the_equivalent_convolution():
    # a scaled-down fc1 (7x7x4 inputs -> 6 units): Dense on the flattened 7x7 patch == 7x7 valid convolution
    patch = RNG.normal(size=(1, 7, 7, 4)).astype("float32")
    kernel1, bias1 = RNG.normal(size=(7 * 7 * 4, 6)).astype("float32"), RNG.normal(size=(6,)).astype("float32")
    kernel2, bias2 = RNG.normal(size=(6, 5)).astype("float32"), RNG.normal(size=(5,)).astype("float32")
    fc1, fc2 = dilation_module.vgg16_fc_to_conv_weights([kernel1, bias1], [kernel2, bias2], fc6_input_channels=4)
    dense = patch.reshape(1, -1) @ kernel1 + bias1  # what keras.applications' Flatten + fc1 compute
    conv = keras.layers.Conv2D(6, 7)
    conv.build(patch.shape)
    conv.set_weights(fc1)
    np.testing.assert_allclose(conv(patch).numpy().reshape(1, 6), dense, rtol=1e-4, atol=1e-4)
    assert fc2[0].shape == (1, 1, 6, 5)


BACKBONES = ["vgg16", "resnet50", "densenet121"]


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_tiramisu_decoder_on_backbones_keeps_odd_sizes(backbone):
    for output_stride in (32, 8):
        model = MODELS.get("tiramisu")(
            num_classes=4, backbone=backbone, output_stride=output_stride, decoder_blocks=[2, 2, 2, 2, 2],
            growth_rate=4, freeze="P3",
        )
        logits = model(random_images(36, 52), training=False)
        assert tuple(logits.shape) == (1, 36, 52, 4) and logits.dtype == "float32"
        # decoder transition ups take only the new maps: 2 layers x growth 4
        assert model.get_layer("tu2_deconv").input.shape[-1] == 8
        inner = model.get_layer(backbone)
        assert not inner.get_layer(next(l.name for l in inner.layers if l.weights)).trainable  # frozen stem
        assert inner.layers[-1].trainable


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_dilation_network_on_backbones_keeps_odd_sizes(backbone):
    model = MODELS.get("dilation")(num_classes=4, backbone=backbone, context="large")
    image = random_images(36, 52)
    logits = model(image, training=False)
    assert tuple(logits.shape) == (1, 36, 52, 4) and logits.dtype == "float32"
    # front end at output stride 8 of the input padded to 40x56
    assert tuple(model.get_layer("front_end_logits").output.shape[1:]) == (None, None, 4)
    front = keras.Model(model.input, model.get_layer("front_end_logits").output)
    assert front(image).shape[1:3] == (40 // 8, 56 // 8)
    if backbone == "vgg16":
        fc6 = model.get_layer("fc1")
        assert tuple(fc6.kernel.shape) == (7, 7, 512, 4096) and fc6.dilation_rate == (4, 4)
        assert tuple(model.get_layer("fc2").kernel.shape) == (1, 1, 4096, 4096)


@pytest.mark.slow
def test_dilation_on_a_backbone_survives_save_and_load(tmp_path):
    model = MODELS.get("dilation")(num_classes=3, backbone="resnet50", context="large", fc_filters=32)
    model.save(tmp_path / "dilation.keras")
    loaded = keras.saving.load_model(tmp_path / "dilation.keras", safe_mode=True)
    image = random_images(36, 52)
    np.testing.assert_allclose(loaded(image, training=False), model(image, training=False), rtol=1e-4, atol=1e-4)


def test_dilation_rejects_unknown_context():
    with pytest.raises(ValueError, match="context"):
        MODELS.get("dilation")(num_classes=3, context="huge")


# ------------------------------------------------------------------------------------------ registry / recipe


@pytest.mark.parametrize(
    "name, options",
    [
        ("fc_densenet", {"num_classes": 11, "blocks_down": [4, 4], "bottleneck": 4, "growth_rate": 12}),
        ("fc_densenet103", {"num_classes": 11, "bn_momentum": 0.99}),
        ("tiramisu", {"num_classes": 11, "backbone": "resnet50", "decoder_blocks": [4, 4, 4, 4, 4], "freeze": "P2"}),
        ("dilation", {"num_classes": 11, "context": "large", "freeze": None}),
    ],
)
def test_builders_validate_recipe_options_from_their_signatures(name, options):
    schema, fields = _signature_model(MODELS.get(name), ())
    assert schema(**options).model_dump()["num_classes"] == 11
    with pytest.raises(Exception, match="num_classes"):
        schema(**{**options, "num_classes": "eleven"})
    with pytest.raises(Exception):
        schema(**options, unknown_key=1)
