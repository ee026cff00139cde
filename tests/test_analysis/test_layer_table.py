"""The layer table against the CS231n lecture numbers, paper figures, hand-worked counts, real forward passes
(output shapes) and gradients (receptive fields), plus tools/summarize.py."""

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import densevision  # noqa: F401  (environment before keras)
import keras
import tensorflow as tf
from densevision.analysis.layer_table import format_table, layer_table

ROOT = Path(__file__).resolve().parents[2]
L = keras.layers

# VGG16 (configuration D): conv widths per block, 3x3 convs, 2x2 max pools, then 4096-4096-1000
VGG16_BLOCKS = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]


@pytest.fixture(scope="module")
def vgg16_table():
    model = keras.applications.VGG16(weights=None, include_top=True)
    return model, layer_table(model, input_shape=(224, 224, 3))


def _rows(table):
    return {row["name"]: row for row in table["layers"]}


def test_vgg16_matches_the_cs231n_lecture(vgg16_table):
    model, table = vgg16_table
    rows = _rows(table)
    assert table["totals"]["params"] == 138_357_544 == model.count_params()
    # receptive fields quoted in the lecture
    assert (rows["block5_conv3"]["receptive_field"], rows["block5_conv3"]["jump"]) == (196, 16)
    assert (rows["block5_pool"]["receptive_field"], rows["block5_pool"]["jump"]) == (212, 32)
    assert rows["block1_conv1"]["output_shape"] == [224, 224, 64]
    assert rows["block5_pool"]["output_shape"] == [7, 7, 512]


def test_vgg16_multiply_adds_and_activations_by_hand(vgg16_table):
    """Independent count from the VGG16 layer shapes: conv MACs = H*W*C_out*3*3*C_in, FC MACs = in*out."""
    _, table = vgg16_table
    size, c_in, macs, conv_outputs, pool_outputs = 224, 3, 0, 0, 0
    for convs, width in VGG16_BLOCKS:
        for _ in range(convs):
            macs += size * size * width * 3 * 3 * c_in
            conv_outputs += size * size * width
            c_in = width
        size //= 2
        pool_outputs += size * size * width
    fc_sizes = [7 * 7 * 512, 4096, 4096, 1000]
    macs += sum(a * b for a, b in zip(fc_sizes, fc_sizes[1:]))
    assert table["totals"]["macs"] == macs == 15_470_264_320  # the lecture's "about 15.5G"
    assert round(table["totals"]["macs"] / 1e9, 1) == 15.5

    flatten = 7 * 7 * 512
    fc_outputs = 4096 + 4096 + 1000
    assert table["totals"]["activations"] == conv_outputs + pool_outputs + flatten + fc_outputs == 15_112_168
    # The lecture's rows count the 224x224x3 input and have no Flatten row: they sum to about 15.2M values.
    lecture_rows = 224 * 224 * 3 + conv_outputs + pool_outputs + fc_outputs
    # by type, not name: Keras numbers the input layer (input_layer_3) after other models built in the process
    input_row = next(row for row in table["layers"] if row["type"] == "InputLayer")["activations"]
    assert table["totals"]["activations"] + input_row - flatten == lecture_rows
    assert round(lecture_rows / 1e6, 1) == 15.2


def test_vgg16_row_shapes_and_params_match_keras(vgg16_table):
    model, table = vgg16_table
    rows = _rows(table)
    for layer in model.layers:
        assert rows[layer.name]["output_shape"] == list(layer.output.shape[1:]), layer.name
        assert rows[layer.name]["params"] == layer.count_params(), layer.name
    assert sum(r["params"] for r in table["layers"]) == table["totals"]["params"]


def test_table_is_plain_json_with_the_documented_keys(vgg16_table):
    _, table = vgg16_table
    assert json.loads(json.dumps(table)) == table
    assert set(table) == {"layers", "totals"}
    assert set(table["totals"]) == {"params", "macs", "activations"}
    for row in table["layers"]:
        assert set(row) == {"name", "type", "output_shape", "params", "macs", "activations", "receptive_field",
                            "jump"}


def test_format_table_shows_the_figures(vgg16_table):
    _, table = vgg16_table
    text = format_table(table)
    line = next(line for line in text.splitlines() if line.startswith("block5_conv3"))
    # output shape, activations, float32 memory (100,352 * 4 bytes), params, MACs, rf, jump
    for figure in ("14x14x512", "100,352", "401.4 KB", "2,359,808", "462,422,016", "196", "16"):
        assert figure in line
    assert "138,357,544" in text and "15,470,264,320" in text and "15,112,168" in text


def test_alexnet_conv1_and_padded_5x5_conv():
    # CS231n: 227x227x3 input, 96 11x11 filters at stride 4 -> 55x55x96, (11*11*3 + 1) * 96 = 34,944 parameters
    inputs = keras.Input((227, 227, 3))
    model = keras.Model(inputs, L.Conv2D(96, 11, strides=4, name="conv1")(inputs))
    conv1 = _rows(layer_table(model))["conv1"]
    assert conv1["output_shape"] == [55, 55, 96]
    assert conv1["params"] == 34_944
    assert conv1["macs"] == 55 * 55 * 96 * 11 * 11 * 3 == 105_415_200
    assert (conv1["receptive_field"], conv1["jump"]) == (11, 4)

    # CS231n: 32x32x3 input, 10 5x5 filters, stride 1, pad 2 -> 32x32x10, (5*5*3 + 1) * 10 = 760 parameters
    inputs = keras.Input((32, 32, 3))
    padded = L.ZeroPadding2D(2, name="pad")(inputs)
    model = keras.Model(inputs, L.Conv2D(10, 5, name="conv")(padded))
    rows = _rows(layer_table(model))
    assert rows["pad"]["output_shape"] == [36, 36, 3]
    assert rows["conv"]["output_shape"] == [32, 32, 10]
    assert rows["conv"]["params"] == 760
    assert rows["conv"]["receptive_field"] == 5


def test_keras_valid_padding_floors_where_the_formula_would_not_fit():
    # 7x7 input, 3x3 filter, stride 3 does not fit ((7 - 3) / 3 + 1 = 2.33); Keras "valid" drops the last column
    inputs = keras.Input((7, 7, 1))
    model = keras.Model(inputs, L.Conv2D(1, 3, strides=3, name="conv")(inputs))
    assert _rows(layer_table(model))["conv"]["output_shape"] == [2, 2, 1]


def test_mobilenet_and_resnet50_match_their_papers():
    # MobileNet paper, Table 8: 1.0 MobileNet-224 has 569M mult-adds and 4.2M parameters
    mobilenet = keras.applications.MobileNet(weights=None)
    totals = layer_table(mobilenet)["totals"]
    assert round(totals["macs"] / 1e6) == 569
    assert 4.2e6 <= totals["params"] < 4.3e6 and totals["params"] == mobilenet.count_params()
    del mobilenet
    # ResNet paper, Table 1: ResNet-50 has 3.8e9 FLOPs (multiply-adds); receptive field of its last stage 483
    # (Araujo et al., "Computing receptive fields of convolutional neural networks", Distill 2019)
    resnet = keras.applications.ResNet50(weights=None)
    table = layer_table(resnet)
    assert round(table["totals"]["macs"] / 1e9, 1) == 3.9  # 3.86e9: the paper rounds down to 3.8
    assert 3.8e9 < table["totals"]["macs"] < 3.9e9
    assert table["totals"]["params"] == resnet.count_params() == 25_636_712
    assert _rows(table)["conv5_block3_out"]["receptive_field"] == 483


def test_grouped_transposed_separable_and_dense_layers_by_hand():
    inputs = keras.Input((10, 10, 4))
    x = L.Conv2D(8, 3, groups=2, name="grouped")(inputs)
    x = L.Conv2DTranspose(2, 3, strides=2, name="transposed")(x)
    x = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(x)
    x = L.Dense(7, name="dense4d")(x)
    x = L.SeparableConv2D(3, 3, depth_multiplier=2, name="separable")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.GlobalMaxPooling2D(name="gmp")(x)
    model = keras.Model(inputs, L.Dense(5, name="head")(x))
    table = layer_table(model)
    rows = _rows(table)

    # output shapes of a real forward pass
    probe = keras.Model(inputs, [layer.output for layer in model.layers[1:]])
    outputs = probe(np.zeros((1, 10, 10, 4), "float32"))
    for layer, output in zip(model.layers[1:], outputs):
        assert rows[layer.name]["output_shape"] == list(output.shape[1:]), layer.name

    # each output of a grouped conv reads 3*3*(4/2) inputs: 8*8 positions * 8 filters * 18
    assert rows["grouped"]["macs"] == 8 * 8 * 8 * 18 == 9216
    # a transposed conv scatters each of its 8*8*8 inputs through a 3x3x2 kernel
    assert rows["transposed"]["macs"] == 8 * 8 * 8 * 3 * 3 * 2 == 9216
    # Dense on a 4-D map: one 2 -> 7 product per position of the 18x18 map
    assert rows["dense4d"]["macs"] == 18 * 18 * 2 * 7
    # separable: depthwise (16*16 positions, 7*2 channels, 3x3) then pointwise (14 -> 3)
    assert rows["separable"]["macs"] == 16 * 16 * 14 * 9 + 16 * 16 * 14 * 3
    assert rows["bn"]["macs"] == 0 and rows["bn"]["params"] == 12
    assert rows["head"]["macs"] == 15
    assert table["totals"]["params"] == model.count_params()
    assert table["totals"]["macs"] == sum(r["macs"] for r in table["layers"])


def _all_ones(model):
    for layer in model.layers:
        layer.set_weights([np.ones_like(w) for w in layer.get_weights()])


def _support(model, size, units):
    """Input rows and columns each output unit ``(u, u)`` depends on, from gradients of an all-ones network."""
    image = tf.Variable(tf.ones((1, size, size, 1)))
    spans = {}
    for unit in units:
        with tf.GradientTape() as tape:
            value = model(image)[0, unit, unit, 0]
        grad = tape.gradient(value, image).numpy()[0, :, :, 0]
        rows, cols = np.nonzero(grad > 0)
        assert rows.min() > 0 and cols.min() > 0 and rows.max() < size - 1 and cols.max() < size - 1, (
            "field touches the image border: choose more central units")
        spans[unit] = ((rows.min(), rows.max()), (cols.min(), cols.max()))
    return spans


def _empirical_field(spans, axis):
    rf = max(high - low + 1 for low, high in (s[axis] for s in spans.values()))
    first, last = min(spans), max(spans)
    jump = (spans[last][axis][0] - spans[first][axis][0]) / (last - first)
    return int(rf), jump


def test_receptive_fields_match_gradients_downsampling():
    """Dilated, strided, pooled, depthwise and non-square kernels with Keras' real "same" padding offsets."""
    inputs = keras.Input((None, None, 1))
    x = L.Conv2D(1, 3, dilation_rate=2, padding="same")(inputs)
    x = L.Conv2D(1, 3, strides=2)(x)
    x = L.AveragePooling2D(2)(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    model = keras.Model(inputs, L.Conv2D(1, (3, 5), name="last")(x))
    _all_ones(model)
    row = _rows(layer_table(model, (96, 96, 1)))["last"]
    spans = _support(model, 96, range(6, 13))
    assert row["receptive_field"] == [_empirical_field(spans, 0)[0], _empirical_field(spans, 1)[0]] == [25, 33]
    assert row["jump"] == _empirical_field(spans, 0)[1] == 4


def test_receptive_fields_match_gradients_upsampling():
    """After upsampling, neighbouring units share inputs unevenly: the table's field is the largest one."""
    inputs = keras.Input((None, None, 1))
    x = L.Conv2D(1, 3, strides=2, padding="same")(inputs)
    x = L.Conv2D(1, 3, strides=2, padding="same")(x)
    x = L.Conv2DTranspose(1, 3, strides=2, padding="same")(x)
    x = L.UpSampling2D(2, interpolation="bilinear")(x)
    x = L.Conv2D(1, 2, name="after_up")(x)
    model = keras.Model(inputs, L.UpSampling2D(2, name="nearest")(x))
    _all_ones(model)
    rows = _rows(layer_table(model, (64, 64, 1)))
    spans = _support(model, 64, range(20, 45))
    rf, jump = _empirical_field(spans, 0)
    assert rows["nearest"]["receptive_field"] == rf
    assert rows["nearest"]["jump"] == jump == 0.5
    inner = keras.Model(inputs, model.get_layer("after_up").output)
    rf, _ = _empirical_field(_support(inner, 64, range(10, 22)), 0)
    assert rows["after_up"]["receptive_field"] == rf


def test_nested_models_merges_and_shared_layers():
    stem_in = keras.Input((None, None, 3))
    stem_x = L.Conv2D(4, 3, padding="same", name="conv")(stem_in)
    stem_x = L.BatchNormalization(name="bn")(stem_x)
    stem = keras.Model(stem_in, L.ReLU(name="relu")(stem_x), name="stem")

    inputs = keras.Input((None, None, 3))
    features = stem(L.Rescaling(1 / 255, name="scale")(inputs))
    branch = L.Conv2D(4, 1, name="branch")(features)
    pooled = L.MaxPooling2D(3, strides=1, padding="same", name="pool")(features)
    summed = L.Add(name="add")([branch, pooled])
    shared = L.Conv2D(4, 3, padding="same", name="shared")
    joined = L.Concatenate(name="concat")([shared(shared(summed)), features])
    x = L.GlobalAveragePooling2D(name="gap")(L.Dropout(0.5, name="drop")(joined))
    model = keras.Model(inputs, L.Dense(5, name="head")(x))

    table = layer_table(model, input_shape=(32, 40, 3))
    rows = _rows(table)
    assert rows["stem/conv"]["output_shape"] == [32, 40, 4] and rows["stem/conv"]["receptive_field"] == 3
    assert rows["add"]["receptive_field"] == 5  # the larger of the 1x1 branch (3) and the 3x3 pool (5)
    shared_rows = [r for r in table["layers"] if r["name"] == "shared"]
    assert [r["receptive_field"] for r in shared_rows] == [7, 9]
    assert [r["params"] for r in shared_rows] == [4 * 3 * 3 * 4 + 4, 0]  # counted once
    assert rows["concat"]["receptive_field"] == 9
    assert rows["gap"]["receptive_field"] == [9 + 31, 9 + 39]  # the whole 32x40 map, one pixel apart
    assert table["totals"]["params"] == model.count_params()
    # stem 3x3x3 -> 4, branch 1x1 4 -> 4, shared 3x3x4 -> 4 twice, head 8 -> 5; the rest 0
    position_macs = 3 * 3 * 3 * 4 + 4 * 4 + 2 * 3 * 3 * 4 * 4
    assert table["totals"]["macs"] == 32 * 40 * position_macs + 8 * 5 == 527_400
    # the same model at the default size
    assert _rows(layer_table(model))["stem/conv"]["output_shape"] == [224, 224, 4]


def test_sequential_dense_after_flatten_sees_the_whole_image():
    model = keras.Sequential(
        [keras.Input((32, 32, 3)), L.Conv2D(4, 3, name="conv"), L.Flatten(), L.Dense(2, name="fc")]
    )
    rows = _rows(layer_table(model))
    assert rows["conv"]["output_shape"] == [30, 30, 4]
    assert rows["fc"]["receptive_field"] == 32 and rows["fc"]["macs"] == 30 * 30 * 4 * 2


def test_bad_models_and_shapes_raise_clear_errors():
    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed"):
        layer_table(Subclassed(name="sub"))

    inputs = keras.Input((64, 64, 3))
    fixed = keras.Model(inputs, L.Conv2D(2, 3)(inputs), name="fixed")
    with pytest.raises(ValueError, match=r"disagrees with input 0 of model 'fixed', which fixes \(64, 64, 3\)"):
        layer_table(fixed, input_shape=(224, 224, 3))
    with pytest.raises(ValueError, match="expected 3 positive integers"):
        layer_table(fixed, input_shape=(64, 64))
    assert layer_table(fixed)["layers"][1]["output_shape"] == [62, 62, 2]  # None: the model's own shape


def test_unknown_layer_with_weights_warns_and_counts_zero():
    class Scale(L.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.scale

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, Scale(name="scale")(inputs))
    with pytest.warns(UserWarning, match=r"multiply-adds of layer 'scale' \(Scale, 3 parameters\) are not known"):
        table = layer_table(model)
    assert _rows(table)["scale"]["macs"] == 0 and table["totals"]["params"] == 3


# ------------------------------------------------------------------------------------------- tools/summarize.py


def _summarize_main():
    """tools/summarize.py's ``main`` (tools/ is not a package), to run it in this process."""
    spec = importlib.util.spec_from_file_location("summarize_tool", ROOT / "tools" / "summarize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _importable(module):
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def test_tool_rejects_a_missing_recipe_and_a_bad_input_shape(tmp_path, capsys):
    main = _summarize_main()
    assert main([str(tmp_path / "nope.yaml")]) == 2
    assert "recipe file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["vgg16", "--input", "224x224"])
    assert info.value.code == 2 and "expected HxWxC" in capsys.readouterr().err


@pytest.mark.skipif(not _importable("densevision.backbones.api"), reason="densevision.backbones.api not importable")
def test_tool_suggests_backbone_names(capsys):
    assert _summarize_main()(["vgg_16"]) == 2
    assert "did you mean 'vgg16'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not _importable("densevision.backbones.api"), reason="densevision.backbones.api not importable")
def test_tool_command_line_tabulates_a_backbone_as_json():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "summarize.py"), "vgg16", "--input", "32x32x3", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    assert table["totals"]["params"] == reference.count_params() == 14_714_688
    assert _rows(table)["block5_pool"]["output_shape"] == [1, 1, 512]
    assert _rows(table)["block5_pool"]["receptive_field"] == 212


@pytest.mark.slow
@pytest.mark.skipif(not _importable("densevision.models.classifier"), reason="densevision.models.classifier not written")
def test_tool_include_top_gives_the_imagenet_vgg16(capsys):
    assert _summarize_main()(["vgg16", "--include-top", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["totals"]["params"] == 138_357_544
    assert table["totals"]["macs"] == 15_470_264_320
