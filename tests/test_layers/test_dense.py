"""``model.memory_efficient``: recomputed dense layers give the plain graph's outputs, gradients, batch-norm updates
and checkpoints."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from densevision.engine.checkpoints import load_checkpoint
from densevision.layers.dense import MemoryEfficientModel
from densevision.models import build_model
from densevision.models.tiramisu import fc_densenet, tiramisu
from densevision.recipes import RecipeError, load_recipe

NUM_CLASSES = 5


def small_fc_densenet(memory_efficient: bool, dropout: float = 0.0) -> keras.Model:
    """2 blocks of 2 layers down and up, bottleneck 2, growth 4: 10 dense layers and 2 transitions down."""
    keras.utils.set_random_seed(1)  # same weights and dropout seeds for both variants
    return fc_densenet(NUM_CLASSES, [2, 2], 2, 4, first_filters=8, dropout=dropout, memory_efficient=memory_efficient)


def batch(size=32, n=2):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, (n, size, size)).astype("int32")
    return images, labels


def outputs_and_gradients(model, images, labels):
    """Training-mode logits and the gradient of the mean cross-entropy, in one traced step as ``fit`` runs it."""

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        return logits, tape.gradient(loss, model.trainable_variables)

    logits, grads = step()
    return logits.numpy(), [g.numpy() for g in grads]


def assert_same_gradients(reference, other):
    assert len(reference) == len(other)
    scale = max(float(np.abs(g).max()) for g in reference)
    for ref, got in zip(reference, other):
        # absolute floor relative to the largest gradient: a conv bias feeding a batch norm has a true gradient of 0
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale)


def test_gradients_match_plain_graph_with_dropout():
    plain, lean = small_fc_densenet(False, dropout=0.2), small_fc_densenet(True, dropout=0.2)
    assert isinstance(lean, MemoryEfficientModel) and not isinstance(plain, MemoryEfficientModel)
    # every dense layer and transition down is recomputed: 2+2 down, 2 bottleneck, 2+2 up, 2 transitions
    assert len(lean._find_segments()) == 12
    images, labels = batch()
    plain_logits, plain_grads = outputs_and_gradients(plain, images, labels)
    lean_logits, lean_grads = outputs_and_gradients(lean, images, labels)
    # dropout is on (training) and draws the same masks: it runs once, outside the recomputed segment
    assert not np.allclose(plain_logits, plain.predict(images, verbose=0), atol=1e-3)
    np.testing.assert_allclose(lean_logits, plain_logits, rtol=1e-5, atol=1e-5)
    assert_same_gradients(plain_grads, lean_grads)
    # inference runs the plain graph
    np.testing.assert_allclose(lean.predict(images, verbose=0), plain.predict(images, verbose=0), atol=1e-5)


def test_one_training_step_updates_batch_norm_statistics_once():
    plain, lean = small_fc_densenet(False), small_fc_densenet(True)
    images, labels = batch()
    for model in (plain, lean):
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.train_on_batch(images, labels)
    assert [w.path for w in lean.weights] == [w.path for w in plain.weights]
    assert len(lean.layers) == len(plain.layers)
    for ref, got in zip(plain.weights, lean.weights):
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6, err_msg=ref.path)
    # by hand: the first batch norm sees first_conv's output; momentum 0.9 from a zero start, updated once
    fresh = small_fc_densenet(False)  # the weights before the step
    batch_mean = keras.Model(fresh.inputs, fresh.get_layer("first_conv").output).predict(images, verbose=0)
    batch_mean = batch_mean.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(lean.get_layer("down1_layer1_bn").moving_mean.numpy(), 0.1 * batch_mean,
                               rtol=1e-4, atol=1e-5)


def test_checkpoints_load_either_way(tmp_path):
    plain, lean = small_fc_densenet(False), small_fc_densenet(True)
    keras.utils.set_random_seed(7)
    trained = fc_densenet(NUM_CLASSES, [2, 2], 2, 4, first_filters=8, dropout=0.0, memory_efficient=True)
    images, _ = batch()
    expected = trained.predict(images, verbose=0)

    trained.save(tmp_path / "lean.keras")
    trained.save_weights(tmp_path / "lean.weights.h5")
    plain.load_weights(tmp_path / "lean.keras")  # by layer path, as resuming does
    np.testing.assert_allclose(plain.predict(images, verbose=0), expected, atol=1e-5)
    plain2 = small_fc_densenet(False)
    load_checkpoint(tmp_path / "lean.weights.h5", model=plain2)
    np.testing.assert_allclose(plain2.predict(images, verbose=0), expected, atol=1e-5)

    plain.save(tmp_path / "plain.keras")
    load_checkpoint(tmp_path / "plain.keras", model=lean)  # train.init_weights
    np.testing.assert_allclose(lean.predict(images, verbose=0), expected, atol=1e-5)


def test_flag_saves_and_loads_through_keras_file_in_safe_mode(tmp_path):
    lean = small_fc_densenet(True)
    lean.save(tmp_path / "lean.keras")
    loaded = keras.saving.load_model(tmp_path / "lean.keras", safe_mode=True, compile=False)
    assert isinstance(loaded, MemoryEfficientModel)
    assert len(loaded._find_segments()) == 12
    images, labels = batch()
    _, reference = outputs_and_gradients(small_fc_densenet(False), images, labels)
    _, got = outputs_and_gradients(loaded, images, labels)
    assert_same_gradients(reference, got)
    plain_loaded = keras.saving.load_model(
        _saved(small_fc_densenet(False), tmp_path / "plain.keras"), safe_mode=True, compile=False)
    assert not isinstance(plain_loaded, MemoryEfficientModel)


def _saved(model, path):
    model.save(path)
    return path


def test_recipe_key_builds_memory_efficient_model():
    recipe = load_recipe("recipes/tiramisu56_camvid.yaml", ["model.memory_efficient=true"])
    assert isinstance(build_model(recipe), MemoryEfficientModel)
    assert not isinstance(build_model(load_recipe("recipes/tiramisu56_camvid.yaml")), MemoryEfficientModel)
    with pytest.raises(RecipeError, match="memory_efficient"):
        load_recipe("recipes/tiramisu56_camvid.yaml", ["model.memory_efficient=[1, 2]"])


@pytest.mark.slow
def test_dense_decoder_gradients_match_plain_graph():
    def build(memory_efficient):
        keras.utils.set_random_seed(3)
        return tiramisu(NUM_CLASSES, "densenet121", decoder_blocks=[1, 1, 1, 1, 2], growth_rate=4, dropout=0.0,
                        memory_efficient=memory_efficient)

    plain, lean = build(False), build(True)
    # the decoder's 6 dense layers are recomputed; the backbone (a nested model) runs as usual
    assert len(lean._find_segments()) == 6
    images, labels = batch(size=64, n=1)
    plain_logits, plain_grads = outputs_and_gradients(plain, images, labels)
    lean_logits, lean_grads = outputs_and_gradients(lean, images, labels)
    np.testing.assert_allclose(lean_logits, plain_logits, rtol=1e-5, atol=1e-5)
    assert_same_gradients(plain_grads, lean_grads)


def test_classifier_init_zeros_starts_at_uniform_probabilities_and_learns():
    keras.utils.set_random_seed(0)
    zero = fc_densenet(NUM_CLASSES, [2, 2], 2, 4, first_filters=8, dropout=0.0, classifier_init="zeros")
    keras.utils.set_random_seed(0)
    default = fc_densenet(NUM_CLASSES, [2, 2], 2, 4, first_filters=8, dropout=0.0)
    images, labels = batch()
    assert not np.any(zero.get_layer("logits").kernel.numpy())
    np.testing.assert_array_equal(zero.predict(images, verbose=0), 0.0)  # softmax: 1/K for every class
    assert np.abs(default.get_layer("logits").kernel.numpy()).max() > 0.01
    zero.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    zero.train_on_batch(images, labels)
    assert np.abs(zero.get_layer("logits").kernel.numpy()).max() > 0  # the kernel gets a gradient at once
    # the recipe key reaches the builder
    recipe = load_recipe("recipes/tiramisu56_camvid.yaml", ["model.classifier_init=zeros"])
    assert not np.any(build_model(recipe).get_layer("logits").kernel.numpy())
    with pytest.raises(RecipeError, match="classifier_init"):
        load_recipe("recipes/tiramisu56_camvid.yaml", ["model.classifier_init=ones"])
