"""densevision.models.classifier: VGG16 / ResNet50 classifiers equal keras.applications, freeze stages, copy top weights
and convert to fully convolutional."""

from __future__ import annotations

import numpy as np
import pytest

import densevision  # noqa: F401  (environment first)
import densevision.models.classifier as classifier
import keras


def copy_by_name(source: keras.Model, target: keras.Model) -> int:
    """Copy weights of same-named layers; returns how many layers with weights were copied."""
    copied = 0
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
            copied += 1
    return copied


def test_vgg16_classifier_matches_keras_applications_small_input():
    """At 64x64 with 5 classes: same layer names, parameter count and logits as keras.applications' VGG16."""
    keras.utils.set_random_seed(0)
    ours = classifier.build_classifier("vgg16", num_classes=5, input_shape=(64, 64, 3))
    reference = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5,
                                         classifier_activation=None)
    # hand count: trunk 14,714,688; fc1 2*2*512*4096 + 4096; fc2 4096*4096 + 4096; predictions 4096*5 + 5
    expected = 14_714_688 + (2048 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 5 + 5)
    assert ours.count_params() == reference.count_params() == expected
    assert [l.name for l in ours.layers[-4:]] == ["flatten", "fc1", "fc2", "predictions"]
    assert copy_by_name(reference, ours) == 16
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected_logits = reference.predict(keras.applications.vgg16.preprocess_input(images.copy()), verbose=0)
    logits = ours.predict(images, verbose=0)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("backbone, application", [
    ("vgg16", "VGG16"), ("resnet50", "ResNet50"), ("densenet121", "DenseNet121"),
])
def test_parameter_counts_equal_keras_applications_include_top(backbone, application):
    ours = classifier.build_classifier(backbone=backbone, num_classes=1000, input_shape=(224, 224, 3))
    reference = getattr(keras.applications, application)(include_top=True, weights=None)
    assert ours.count_params() == reference.count_params()
    if backbone == "vgg16":
        assert ours.count_params() == 138_357_544
    head = [l.name for l in reference.layers if l.weights][-3:]
    assert [tuple(w.shape) for name in head for w in ours.get_layer(name).weights] == \
           [tuple(w.shape) for name in head for w in reference.get_layer(name).weights]


def test_gap_classifier_equals_keras_resnet50_given_same_weights():
    keras.utils.set_random_seed(1)
    ours = classifier.build_classifier("resnet50", num_classes=3, input_shape=(64, 64, 3))
    reference = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=3,
                                            classifier_activation=None)
    assert ours.count_params() == reference.count_params()
    copy_by_name(reference, ours)
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = reference.predict(keras.applications.resnet.preprocess_input(images.copy()), verbose=0)
    np.testing.assert_allclose(ours.predict(images, verbose=0), expected, atol=1e-4)


def test_freeze_all_trains_only_the_head_and_p4_fine_tunes_from_conv5():
    frozen = classifier.build_classifier("vgg16", num_classes=4, input_shape=(32, 32, 3), freeze="all", dropout=0.5)
    trainable = {w.path.split("/")[0] for w in frozen.trainable_weights}
    assert trainable == {"fc1", "fc2", "predictions"}
    assert "fc1_dropout" in [l.name for l in frozen.layers]

    fine_tune = classifier.build_classifier("vgg16", num_classes=4, input_shape=(32, 32, 3), freeze="P4")
    trainable = {w.path.split("/")[0] for w in fine_tune.trainable_weights}
    # P4 of VGG16 is block5_conv3's output: stage P4 = block5_conv1..3 (see backbones/vgg.py)
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3", "fc1", "fc2", "predictions"}

    gap = classifier.build_classifier("resnet50", num_classes=4, input_shape=(32, 32, 3), freeze="all")
    assert {w.path.split("/")[0] for w in gap.trainable_weights} == {"predictions"}


def test_bad_classifier_arguments_are_explained():
    with pytest.raises(ValueError, match="fixed input_shape"):
        classifier.build_classifier("vgg16", input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="head='auto'.*'mobilenet'"):
        classifier.head_for("mobilenet")


def test_top_weights_copy_the_head_and_check_shapes(tmp_path):
    source = classifier.build_classifier("resnet50", num_classes=3, input_shape=(32, 32, 3))
    path = tmp_path / "source.weights.h5"
    source.save_weights(path)
    target = classifier.build_classifier("resnet50", num_classes=3, input_shape=(32, 32, 3), top_weights=str(path))
    for got, want in zip(target.get_layer("predictions").get_weights(), source.get_layer("predictions").get_weights()):
        np.testing.assert_array_equal(got, want)
    # a legacy (Keras 2 style) .h5 with the keras.applications layer names loads too
    legacy = tmp_path / "legacy.h5"
    source.save(legacy)
    again = classifier.build_classifier("resnet50", num_classes=3, input_shape=(32, 32, 3), top_weights=str(legacy))
    np.testing.assert_array_equal(again.get_layer("predictions").get_weights()[0],
                                  source.get_layer("predictions").get_weights()[0])
    with pytest.raises(ValueError, match="same architecture.*5 classes"):
        classifier.build_classifier("resnet50", num_classes=5, input_shape=(32, 32, 3), top_weights=str(path))
    with pytest.raises(ValueError, match="'predictions'.*num_classes"):
        classifier.build_classifier("resnet50", num_classes=5, input_shape=(32, 32, 3), top_weights=str(legacy))


def test_classifier_converts_to_fully_convolutional():
    from densevision.inference.fully_convolutional import to_fully_convolutional

    model = classifier.build_classifier("vgg16", num_classes=3, input_shape=(64, 64, 3))
    converted = to_fully_convolutional(model)
    big = np.random.default_rng(2).uniform(0, 255, (1, 96, 128, 3)).astype("float32")
    scores = converted.predict(big, verbose=0)
    assert scores.shape == (1, 2, 3, 3)
    # at the window size the converted model is the model (larger images: tests/test_inference/
    # test_fully_convolutional.py)
    np.testing.assert_allclose(converted.predict(big[:, :64, :64], verbose=0)[0, 0, 0],
                               model.predict(big[:, :64, :64], verbose=0)[0], atol=1e-4)
