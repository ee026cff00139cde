"""Backbones against keras.applications: same weights, same names, same features; dilation, freezing, files."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import densevision  # noqa: F401  (sets the Keras backend first)
import keras
from keras.src.utils import file_utils as keras_file_utils

from densevision.backbones import api, common, weights
from densevision.backbones import densenet, resnet, vgg  # noqa: F401  (registration)
from densevision.backbones.common import DilatedAveragePooling2D
from densevision.layers.preprocessing import Preprocess
from densevision.registry import BACKBONES, UnknownNameError

APPLICATIONS = {
    "vgg16": (keras.applications.VGG16, keras.applications.vgg16.preprocess_input),
    "vgg19": (keras.applications.VGG19, keras.applications.vgg19.preprocess_input),
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet.preprocess_input),
    "resnet101": (keras.applications.ResNet101, keras.applications.resnet.preprocess_input),
    "resnet152": (keras.applications.ResNet152, keras.applications.resnet.preprocess_input),
    "densenet121": (keras.applications.DenseNet121, keras.applications.densenet.preprocess_input),
    "densenet169": (keras.applications.DenseNet169, keras.applications.densenet.preprocess_input),
    "densenet201": (keras.applications.DenseNet201, keras.applications.densenet.preprocess_input),
}
SMALL = ["vgg16", "resnet50", "densenet121"]
LARGE = ["vgg19", "resnet101", "resnet152", "densenet169", "densenet201"]

# keras.applications layers that the module docstrings name as P1..P5 (timm features_only choice)
FEATURE_LAYERS = {
    "vgg16": ["block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3", "block5_pool"],
    "resnet50": ["conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"],
    "densenet121": [
        "conv1_relu", "conv2_block6_concat", "conv3_block12_concat", "conv4_block24_concat", "relu"
    ],
}


def randomize(model: keras.Model, seed: int) -> keras.Model:
    """Give every weight a random value of a sensible scale (BN statistics included, unlike a fresh init)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if not layer.weights:
            continue
        values = []
        for variable in layer.weights:
            shape, kind = tuple(variable.shape), variable.path.split("/")[-1]
            if kind == "kernel":
                fan_in = int(np.prod(shape[:-1]))
                value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            elif kind in ("gamma", "moving_variance"):
                value = rng.uniform(0.5, 1.5, shape)
            else:  # bias, beta, moving_mean
                value = rng.normal(0.0, 0.1, shape)
            values.append(value.astype("float32"))
        layer.set_weights(values)
    return model


@functools.lru_cache(maxsize=None)
def reference(name: str) -> keras.Model:
    """keras.applications ``include_top=False`` model with seeded random weights."""
    constructor, _ = APPLICATIONS[name]
    return randomize(constructor(include_top=False, weights=None, input_shape=(None, None, 3)), seed=0)


def copy_from_reference(model: keras.Model, name: str) -> keras.Model:
    """Set each weighted layer of ``model`` from the reference layer of the same name (test-side, by hand)."""
    ref = reference(name)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(ref.get_layer(layer.name).get_weights())
    return model


@functools.lru_cache(maxsize=None)
def backbone_like_reference(name: str, output_stride: int = 32) -> keras.Model:
    return copy_from_reference(api.build_backbone(name, output_stride=output_stride), name)


def random_images(height: int, width: int, batch: int = 1, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, 3)).astype("float32")


def assert_close(actual, expected, rtol=1e-4):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = float(np.abs(expected).max()) + 1e-6
    assert float(np.abs(actual - expected).max()) <= rtol * scale, (
        f"max difference {np.abs(actual - expected).max():.3g} vs scale {scale:.3g}"
    )


def weighted_layers(model):
    return {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers if layer.weights}


# ---------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("mode", ["caffe", "torch", "tf"])
def test_preprocess_matches_keras_applications(mode):
    images = random_images(5, 7, batch=2)
    expected = keras.applications.imagenet_utils.preprocess_input(images.copy(), mode=mode)
    np.testing.assert_allclose(Preprocess(mode)(images), expected, rtol=1e-5, atol=1e-4)


def test_preprocess_config_and_bad_mode():
    layer = Preprocess("torch", name="pre")
    assert Preprocess.from_config(layer.get_config()).mode == "torch"
    with pytest.raises(ValueError, match="'bgr'.*caffe, torch, tf"):
        Preprocess("bgr")


# ---------------------------------------------------------------- architecture


def test_all_names_registered_and_unknown_name_suggests():
    assert set(APPLICATIONS) <= set(BACKBONES.names())
    with pytest.raises(UnknownNameError, match="did you mean 'resnet50'"):
        api.build_backbone("resnet5")
    with pytest.raises(ValueError, match="output_stride=4"):
        api.build_backbone("vgg16", output_stride=4)


@pytest.mark.parametrize(
    "name, documented", [("vgg16", 14_714_688), ("resnet50", 23_587_712), ("densenet121", 7_037_504)]
)
def test_parameter_count_matches_keras_documentation(name, documented):
    assert api.build_backbone(name).count_params() == documented


@pytest.mark.parametrize("name", SMALL)
def test_layer_names_and_weight_shapes_match_keras_applications(name):
    assert weighted_layers(api.build_backbone(name)) == weighted_layers(reference(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_large_backbones_match_keras_applications(name):
    constructor, preprocess_input = APPLICATIONS[name]
    ref = randomize(constructor(include_top=False, weights=None, input_shape=(None, None, 3)), seed=0)
    model = api.build_backbone(name)
    assert weighted_layers(model) == weighted_layers(ref)
    assert model.count_params() == ref.count_params()
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(ref.get_layer(layer.name).get_weights())
    images = random_images(32, 32)
    assert_close(model(images)["P5"], ref(preprocess_input(images.copy())))


@pytest.mark.parametrize("name", SMALL)
def test_features_equal_keras_applications_layers(name):
    """P5 is keras.applications' include_top=False output; P1..P4 are the documented layers of the same model."""
    _, preprocess_input = APPLICATIONS[name]
    ref = reference(name)
    ref_features = keras.Model(ref.input, [ref.get_layer(n).output for n in FEATURE_LAYERS[name]])
    images = random_images(64, 64)
    ours = backbone_like_reference(name)(images)
    expected = ref_features(preprocess_input(images.copy()))
    for level, (key, value) in enumerate(zip(common.FEATURE_KEYS, expected), start=1):
        assert ours[key].shape[1:3] == (64 // 2**level, 64 // 2**level), key
        assert_close(ours[key], value)
    assert_close(ours["P5"], ref(preprocess_input(images.copy())))


@pytest.mark.parametrize("name", SMALL)
def test_any_input_size(name):
    _, preprocess_input = APPLICATIONS[name]
    images = random_images(72, 96)
    ours = backbone_like_reference(name)(images)
    assert_close(ours["P5"], reference(name)(preprocess_input(images.copy())))


def test_preprocess_false_takes_preprocessed_input():
    images = random_images(32, 32)
    model = copy_from_reference(api.build_backbone("resnet50", preprocess=False), "resnet50")
    assert "preprocess" not in [layer.name for layer in model.layers]
    prepared = keras.applications.resnet.preprocess_input(images.copy())
    assert_close(model(prepared)["P5"], reference("resnet50")(prepared))


def test_bad_input_shape_is_named():
    with pytest.raises(ValueError, match=r"input_shape=\(64, 64\)"):
        api.build_backbone("vgg16", input_shape=(64, 64))


# ---------------------------------------------------------------- output stride


@pytest.mark.parametrize("output_stride, strides", [
    (32, {"P1": 2, "P2": 4, "P3": 8, "P4": 16, "P5": 32}),
    (16, {"P1": 2, "P2": 4, "P3": 8, "P4": 16, "P5": 16}),
    (8, {"P1": 2, "P2": 4, "P3": 8, "P4": 8, "P5": 8}),
])
def test_feature_strides(output_stride, strides):
    assert api.feature_strides("resnet50", output_stride) == strides


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("output_stride", [16, 8])
def test_output_stride_shapes_and_parameters(name, output_stride):
    model = backbone_like_reference(name, output_stride)
    assert model.count_params() == reference(name).count_params()
    features = model(random_images(64, 64))
    for key, stride in api.feature_strides(name, output_stride).items():
        assert features[key].shape[1:3] == (64 // stride, 64 // stride), key
    if output_stride == 8:
        assert features["P5"].shape[1:3] == (8, 8)


@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilated_network_reproduces_strided_one(name, output_stride):
    """A trous: subsampling the dilated features gives the strided network's features exactly."""
    images = random_images(64, 64)
    strided = backbone_like_reference(name, 32)(images)
    dilated = backbone_like_reference(name, output_stride)(images)
    for key in ("P3", "P4", "P5"):
        step = (2 ** int(key[1])) // api.feature_strides(name, output_stride)[key]
        assert_close(dilated[key][:, ::step, ::step], strided[key])


def test_vgg_front_end_removes_pools():
    """Yu & Koltun's front-end: output stride 8 has no pool4/pool5 and conv5 dilated 2."""
    model = api.build_backbone("vgg16", output_stride=8)
    names = [layer.name for layer in model.layers]
    assert "block4_pool" not in names and "block5_pool" not in names
    assert model.get_layer("block5_conv1").dilation_rate == (2, 2)
    assert model.get_layer("block4_conv3").dilation_rate == (1, 1)
    images = random_images(64, 64)
    model16 = backbone_like_reference("vgg16", 16)
    features16 = model16(images)
    np.testing.assert_array_equal(features16["P5"], features16["P4"])  # pool5 removed
    assert_close(features16["P4"], backbone_like_reference("vgg16", 32)(images)["P4"])


@pytest.mark.parametrize(
    "name", ["vgg16", "resnet50", pytest.param("densenet121", marks=pytest.mark.slow)]
)
def test_stride32_weights_load_into_dilated_backbone(name, tmp_path):
    path = str(tmp_path / f"{name}.weights.h5")
    source = backbone_like_reference(name)
    source.save_weights(path)
    dilated = api.build_backbone(name, output_stride=8, weights=path)
    for layer in source.layers:
        if not layer.weights:
            continue
        for expected, loaded in zip(layer.get_weights(), dilated.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(loaded, expected)


def test_dilated_average_pooling():
    # dilation 1 is Keras' stride-1 "same" average pooling (padding left out of the mean)
    x = random_images(5, 6, batch=2)
    expected = keras.layers.AveragePooling2D(2, strides=1, padding="same")(x)
    np.testing.assert_allclose(DilatedAveragePooling2D(1)(x), expected, rtol=1e-6)
    # dilation 2 on a 4x4 ramp, by hand: out[0, 0] = mean(x[0,0], x[0,2], x[2,0], x[2,2]) = (0+2+8+10)/4 = 5;
    # out[3, 3] has no taps inside but itself = 15; out[1, 3] = mean(x[1,3], x[3,3]) = (7 + 15) / 2 = 11
    ramp = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    out = np.asarray(DilatedAveragePooling2D(2)(ramp))[0, :, :, 0]
    assert (out[0, 0], out[3, 3], out[1, 3]) == (5.0, 15.0, 11.0)
    layer = DilatedAveragePooling2D(2)
    assert DilatedAveragePooling2D.from_config(layer.get_config()).dilation_rate == 2


def test_dilated_backbone_saves_and_loads_safely(tmp_path):
    path = str(tmp_path / "densenet121_os8.keras")
    model = backbone_like_reference("densenet121", 8)
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    images = random_images(32, 32)
    assert_close(loaded(images)["P5"], model(images)["P5"], rtol=1e-6)


# ---------------------------------------------------------------- freezing


def trainable_layer_names(model):
    return {layer.name for layer in model.layers if layer.trainable_weights}


def test_freeze_from_stage_resnet50():
    model = api.build_backbone("resnet50")
    api.freeze_backbone(model, "P3")
    expected = {n for n in weighted_layers(model) if n.split("_")[0] in ("conv3", "conv4", "conv5")}
    assert trainable_layer_names(model) == expected
    api.freeze_backbone(model, None)
    assert trainable_layer_names(model) == set(weighted_layers(model))
    assert len(model.trainable_weights) == len(reference("resnet50").trainable_weights)
    api.freeze_backbone(model, "all")
    assert model.trainable_weights == []


def test_freeze_vgg_and_densenet_stage_boundaries():
    model = api.freeze_backbone(api.build_backbone("vgg16"), "P4")
    assert trainable_layer_names(model) == {"block5_conv1", "block5_conv2", "block5_conv3"}
    model = api.freeze_backbone(api.build_backbone("densenet121"), "P5")
    expected = {n for n in weighted_layers(model) if n.startswith(("pool4_", "conv5_")) or n == "bn"}
    assert trainable_layer_names(model) == expected


def test_frozen_batch_norm_runs_in_inference_mode():
    model = copy_from_reference(api.build_backbone("resnet50"), "resnet50")
    api.freeze_backbone(model, "P3")
    frozen_bn, trained_bn = model.get_layer("conv2_block1_1_bn"), model.get_layer("conv3_block1_1_bn")
    frozen_before = np.array(frozen_bn.moving_mean)
    trained_before = np.array(trained_bn.moving_mean)
    images = random_images(32, 32)
    inference = model(images, training=False)["P2"]
    training = model(images, training=True)["P2"]
    np.testing.assert_allclose(training, inference, rtol=1e-5, atol=1e-5)  # P2 is all frozen
    np.testing.assert_array_equal(np.array(frozen_bn.moving_mean), frozen_before)
    assert not np.allclose(np.array(trained_bn.moving_mean), trained_before)


def test_freeze_rejects_unknown_stage():
    with pytest.raises(ValueError, match="'P6'.*'all'"):
        api.freeze_backbone(api.build_backbone("vgg16"), "P6")


# ---------------------------------------------------------------- weight files

NAME = "resnet50"  # quick to build and save, and has batch-norm statistics to load


def assert_weights_equal_reference(model, name=NAME):
    ref = reference(name)
    for layer in model.layers:
        if not layer.weights:
            continue
        for loaded, expected in zip(layer.get_weights(), ref.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(loaded, expected)


def test_load_weights_h5_from_keras_applications(tmp_path):
    path = str(tmp_path / "reference.weights.h5")
    reference(NAME).save_weights(path)
    assert_weights_equal_reference(api.build_backbone(NAME, weights=path))


def test_load_weights_h5_from_keras_applications_with_top(tmp_path):
    path = str(tmp_path / "with_top.weights.h5")
    with_top = keras.applications.ResNet50(include_top=True, weights=None)
    for layer in reference(NAME).layers:
        if layer.weights:
            with_top.get_layer(layer.name).set_weights(layer.get_weights())
    with_top.save_weights(path)
    assert_weights_equal_reference(api.build_backbone(NAME, weights=path))


def test_load_legacy_full_model_h5(tmp_path):
    path = str(tmp_path / "reference.h5")
    reference(NAME).save(path)  # Keras' legacy HDF5 model format
    assert_weights_equal_reference(api.build_backbone(NAME, weights=path))


def test_load_keras_model_file(tmp_path):
    path = str(tmp_path / "reference.keras")
    reference(NAME).save(path)
    assert_weights_equal_reference(api.build_backbone(NAME, weights=path))


def write_legacy_weights_h5(model, path):
    """A weights-only legacy HDF5 file, the format of keras.applications' downloads."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)


def test_imagenet_uses_keras_applications_file_and_cache(tmp_path, monkeypatch):
    """'imagenet' asks get_file for exactly what keras.applications asks for, and loads the file it returns."""
    requests = []

    class Stop(Exception):
        pass

    def record(*args, **kwargs):
        requests.append((args, kwargs))
        raise Stop

    monkeypatch.setattr(keras_file_utils, "get_file", record)
    with pytest.raises(Stop):
        keras.applications.ResNet50(include_top=False, weights="imagenet")
    (ref_args, ref_kwargs), = requests

    path = str(tmp_path / "resnet50_notop.h5")
    write_legacy_weights_h5(reference(NAME), path)
    ours = []
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: ours.append((a, k)) or path)
    model = api.build_backbone(NAME, weights="imagenet")
    (our_args, our_kwargs), = ours
    bind = lambda args, kwargs: dict(zip(("fname", "origin"), args), **kwargs)  # noqa: E731
    assert bind(our_args, our_kwargs) == bind(ref_args, ref_kwargs)
    assert_weights_equal_reference(model)


def test_imagenet_offline_error_says_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(weights.WeightsError) as caught:
        api.build_backbone("resnet50", weights="imagenet")
    message = str(caught.value)
    file_name = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + file_name in message
    assert weights.keras_cache_path(file_name) in message and "/models/" in message
    assert f"weights='/path/to/{file_name}'" in message
    assert "URL fetch failure" in message


def test_bad_weight_files_are_named(tmp_path):
    missing = str(tmp_path / "nope.weights.h5")
    with pytest.raises(weights.WeightsError, match="nope.weights.h5.*does not exist"):
        api.build_backbone("vgg16", weights=missing)
    other = str(tmp_path / "vgg.weights.h5")
    api.build_backbone("vgg16").save_weights(other)
    with pytest.raises(weights.WeightsError, match=r"vgg.weights.h5.*does not fit backbone 'resnet50'"):
        api.build_backbone(NAME, weights=other)
    text = tmp_path / "weights.npz"
    text.write_bytes(b"")
    with pytest.raises(weights.WeightsError, match=r"weights.npz.*expected a .weights.h5"):
        api.build_backbone("vgg16", weights=str(text))
    with pytest.raises(weights.WeightsError, match="imagenet"):
        api.build_backbone("vgg16", weights=3)


def test_keras3_weights_file_with_plain_h5_suffix(tmp_path):
    import shutil

    saved = str(tmp_path / "backbone.weights.h5")
    copy_from_reference(api.build_backbone(NAME), NAME).save_weights(saved)
    renamed = str(tmp_path / "backbone.h5")
    shutil.copy(saved, renamed)
    assert_weights_equal_reference(api.build_backbone(NAME, weights=renamed))
