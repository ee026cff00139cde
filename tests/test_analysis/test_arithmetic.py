"""Convolution arithmetic against hand-worked CS231n numbers, real TensorFlow ops and brute-force index sets."""

import itertools
import random
from fractions import Fraction

import numpy as np
import pytest

import densevision  # noqa: F401  (environment before keras)
import keras
from densevision.analysis.arithmetic import (
    conv_output_size,
    effective_kernel_size,
    keras_conv_output_size,
    AxisField,
    receptive_field,
    same_padding_before,
    transposed_conv_output_size,
    transposed_receptive_field,
)


@pytest.mark.parametrize(
    "size, kernel, stride, padding, dilation, expected",
    [
        (7, 3, 1, 0, 1, 5),  # CS231n: 7x7 input, 3x3 filter, stride 1 -> 5x5
        (7, 3, 2, 0, 1, 3),  # stride 2 -> 3x3
        (32, 5, 1, 2, 1, 32),  # 32x32x3, 5x5 filters, pad 2 -> 32x32
        (227, 11, 4, 0, 1, 55),  # AlexNet conv1
        (55, 3, 2, 0, 1, 27),  # AlexNet pool1
        (224, 3, 1, 1, 1, 224),  # VGG conv, pad 1
        (7, 3, 1, 0, 2, 3),  # dilation 2: the kernel spans 5
        (7, 3, 2, "same", 1, 4),  # Keras "same": ceil(7 / 2)
        (7, 3, 1, "valid", 1, 5),
    ],
)
def test_conv_output_size_hand_worked(size, kernel, stride, padding, dilation, expected):
    assert conv_output_size(size, kernel, stride, padding, dilation) == expected


def test_stride_that_does_not_fit_raises_naming_the_numbers():
    # CS231n: 7x7 input, 3x3 filter, stride 3 -> (7 - 3) / 3 + 1 = 2.33: "doesn't fit"
    with pytest.raises(ValueError) as info:
        conv_output_size(7, 3, stride=3, padding=0)
    message = str(info.value)
    assert "2.33" in message and "input 7" in message and "kernel 3" in message and "stride 3" in message
    with pytest.raises(ValueError, match="2.33"):
        conv_output_size(7, 3, stride=3, padding="valid")
    # the 7x7 stride-2 pad-3 ResNet stem does not tile 224 either ((224 - 7 + 6) / 2 + 1 = 112.5): strict raises,
    # frameworks floor to 112
    with pytest.raises(ValueError, match="112.50"):
        conv_output_size(224, 7, stride=2, padding=3)
    assert keras_conv_output_size(224, 7, stride=2, padding=3) == 112


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="kernel does not fit"):
        conv_output_size(3, 5)
    with pytest.raises(ValueError, match="padding must be"):
        conv_output_size(7, 3, padding="full")
    with pytest.raises(ValueError, match="stride must be a positive integer, got 0"):
        conv_output_size(7, 3, stride=0)
    with pytest.raises(ValueError, match="kernel must be a positive integer, got 2.5"):
        receptive_field(1, 1, 2.5)
    assert conv_output_size(None, 3, 2) is None
    assert effective_kernel_size(3, 4) == 9


def test_keras_conv_output_size_matches_real_tensorflow_ops():
    """Keras semantics (valid floors, same is ceil(W/S)) against the shape TensorFlow actually produces."""
    for size, kernel, stride, padding in itertools.product(range(3, 12), (1, 2, 3, 5), (1, 2, 3), ("valid", "same")):
        if kernel > size:
            continue
        x = np.zeros((1, size, 1, 1), "float32")
        y = keras.ops.conv(x, np.zeros((kernel, 1, 1, 1), "float32"), strides=stride, padding=padding)
        assert keras_conv_output_size(size, kernel, stride, padding) == y.shape[1], (size, kernel, stride, padding)
        pooled = keras.ops.max_pool(x, (kernel, 1), (stride, 1), padding=padding)
        assert keras_conv_output_size(size, kernel, stride, padding) == pooled.shape[1]
    for size, kernel, dilation, padding in itertools.product(range(5, 12), (2, 3), (1, 2, 3), ("valid", "same")):
        if effective_kernel_size(kernel, dilation) > size:
            continue
        x = np.zeros((1, size, 1, 1), "float32")
        y = keras.ops.conv(x, np.zeros((kernel, 1, 1, 1), "float32"), padding=padding, dilation_rate=dilation)
        assert keras_conv_output_size(size, kernel, 1, padding, dilation) == y.shape[1]


def test_strict_and_keras_agree_whenever_the_stride_fits():
    for size, kernel, stride in itertools.product(range(3, 20), (1, 3, 5), (1, 2, 3, 4)):
        if kernel > size:
            continue
        if (size - kernel) % stride == 0:
            assert conv_output_size(size, kernel, stride) == keras_conv_output_size(size, kernel, stride)
        else:
            with pytest.raises(ValueError):
                conv_output_size(size, kernel, stride)


def test_transposed_conv_output_size_matches_real_tensorflow_ops():
    for size, kernel, stride, padding, output_padding in itertools.product(
        (1, 3, 4, 7), (1, 2, 3, 4), (1, 2, 3), ("valid", "same"), (None, 0, 1)
    ):
        if output_padding is not None and output_padding >= stride:
            continue  # Keras requires output_padding < stride
        keras_output_padding = None if output_padding is None else (output_padding, 0)
        if padding == "same" and kernel % 2 == 0 and output_padding is not None:
            # TensorFlow's oneDNN kernel rejects these shapes; compare with the Keras layer's declared shape
            layer = keras.layers.Conv2DTranspose(
                1, (kernel, 1), (stride, 1), padding, output_padding=keras_output_padding
            )
            expected = layer.compute_output_shape((1, size, 1, 1))[1]
        else:
            x = np.zeros((1, size, 1, 1), "float32")
            kernel_values = np.zeros((kernel, 1, 1, 1), "float32")
            y = keras.ops.conv_transpose(x, kernel_values, stride, padding, output_padding=keras_output_padding)
            expected = y.shape[1]
        case = (size, kernel, stride, padding, output_padding)
        if expected < 1:  # TensorFlow returns an empty tensor; the arithmetic refuses it
            with pytest.raises(ValueError, match="output size"):
                transposed_conv_output_size(*case)
        else:
            assert transposed_conv_output_size(*case) == expected, case
    # an explicit padding P: (W - 1) * S + F - 2P (the convention of frameworks with integer padding)
    assert transposed_conv_output_size(4, 4, 2, padding=1) == 8


def test_three_stacked_3x3_convs_see_7x7():
    # CS231n: three 3x3 stride-1 conv layers have the effective receptive field of one 7x7 layer
    rf, jump = 1, 1
    for _ in range(3):
        rf, jump = receptive_field(rf, jump, 3)
    assert (rf, jump) == (7, 1)


def _brute_force_field(layers):
    """Receptive field and jump of the last layer's units, from the input index sets on an unbounded line.

    ``layers``: (kernel, stride, dilation, padding, transposed). A convolution's output o reads inputs
    o*S - P + k*D; a transposed convolution's output o is reached by inputs i with i*S + k*D - P == o.
    """

    def inputs_of(units, kernel, stride, dilation, padding, transposed):
        if not transposed:
            return {o * stride - padding + k * dilation for o in units for k in range(kernel)}
        return {
            (o + padding - k * dilation) // stride
            for o in units
            for k in range(kernel)
            if (o + padding - k * dilation) % stride == 0
        }

    def field(unit):
        units = {unit}
        for layer in reversed(layers):
            units = inputs_of(units, *layer)
        return (min(units), max(units)) if units else None  # a transposed kernel smaller than its stride leaves holes

    spans = {unit: field(unit) for unit in range(100, 200)}
    if not any(spans.values()):
        return 0, None  # strides that sample only the holes of an upsampling: no unit sees any input
    rf = max(high - low + 1 for low, high in filter(None, spans.values()))
    # units one period apart (36: a multiple of every upsampling factor used) start 36 jumps apart
    unit = next(u for u, span in spans.items() if span is not None and spans[u + 36] is not None)
    jump = Fraction(spans[unit + 36][0] - spans[unit][0], 36)
    return rf, jump


def test_receptive_field_matches_brute_force_on_random_chains():
    rng = random.Random(0)
    for _ in range(60):
        layers = [
            (rng.choice([1, 2, 3, 5]), rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2]), rng.choice([0, 1, 2]), False)
            for _ in range(rng.randint(1, 5))
        ]
        rf, jump = 1, 1
        for kernel, stride, dilation, _, _ in layers:
            rf, jump = receptive_field(rf, jump, kernel, stride, dilation)
        assert (rf, jump) == _brute_force_field(layers), layers


def _random_chain(rng, transposed_layers):
    down = [(rng.choice([1, 2, 3]), rng.choice([1, 2]), rng.choice([1, 2]), rng.choice([0, 1]), False)
            for _ in range(rng.randint(1, 3))]
    up = [(rng.choice([1, 2, 3, 4, 5]), rng.choice([1, 2, 3]), rng.choice([1, 2, 3]), rng.choice([0, 1, 2]), True)
          for _ in range(transposed_layers)]
    return down, up


def test_transposed_receptive_field_formula_is_exact_for_one_upsampling():
    rng = random.Random(1)
    for _ in range(80):
        down, up = _random_chain(rng, 1)
        rf, jump = 1, 1
        for kernel, stride, dilation, _, transposed in down + up:
            step = transposed_receptive_field if transposed else receptive_field
            rf, jump = step(rf, jump, kernel, stride, dilation)
        assert (rf, Fraction(jump)) == _brute_force_field(down + up), (down, up)
    # a jump the stride does not divide becomes a fraction
    assert transposed_receptive_field(1, 1, 2, 2) == (1, Fraction(1, 2))


def test_axis_field_matches_brute_force_on_mixed_chains():
    """Layers after an upsampling see unevenly shared inputs: the exact per-phase field still matches."""
    rng = random.Random(2)
    for _ in range(80):
        down, up = _random_chain(rng, 2)
        tail = [(rng.choice([1, 2, 3]), rng.choice([1, 2]), 1, rng.choice([0, 1]), False)]
        chain = down + up + tail
        field = AxisField()
        for kernel, stride, dilation, padding, transposed in chain:
            step = field.transposed if transposed else field.conv
            field = step(kernel, stride, dilation, pad_before=padding)
        brute_rf, brute_jump = _brute_force_field(chain)
        assert field.rf == brute_rf, chain
        if brute_rf:
            assert Fraction(field.jump) == brute_jump, chain


def test_axis_field_reduces_to_the_formula_without_upsampling():
    rng = random.Random(3)
    for _ in range(40):
        field, rf, jump = AxisField(), 1, 1
        for _ in range(rng.randint(1, 6)):
            kernel, stride, dilation = rng.choice([1, 2, 3, 7]), rng.choice([1, 2, 3]), rng.choice([1, 2])
            field = field.conv(kernel, stride, dilation, pad_before=rng.choice([0, 1, 3]))
            rf, jump = receptive_field(rf, jump, kernel, stride, dilation)
            assert (field.period, field.rf, field.jump) == (1, rf, jump)


def test_axis_field_union_and_resize():
    three = AxisField().conv(3)
    five = AxisField().conv(5, pad_before=1)
    assert three.union(five).rf == 5  # units read the same place of both maps: the larger field (5 covers 3)
    with pytest.raises(ValueError, match="jumps 2 and 1"):
        AxisField().conv(2, 2).union(three)
    # nearest-neighbour upsampling by 2 is a 2x2 stride-2 transposed convolution
    down = AxisField().conv(3, 2)
    assert down.resize(10, 20, taps=1) == down.transposed(2, 2)
    # bilinear reads two neighbours: one more jump of field; jump halves
    assert (down.resize(10, 20, taps=2).rf, down.resize(10, 20, taps=2).jump) == (5, 1)


def test_same_padding_before_matches_tensorflow():
    """Keras "same" puts the odd padding row after the input: find the offset from a real convolution."""
    for size, kernel, stride in itertools.product((5, 6, 7, 8), (1, 2, 3, 4), (1, 2, 3)):
        x = np.arange(size, dtype="float32").reshape(1, size, 1, 1) + 1
        # a kernel reading only its first tap returns the input unit the first window starts on (0 = padding)
        first_tap = np.zeros((kernel, 1, 1, 1), "float32")
        first_tap[0] = 1
        y = np.asarray(keras.ops.conv(x, first_tap, strides=stride, padding="same"))[0, :, 0, 0]
        start = int(y[1]) - 1 - stride if len(y) > 1 else (int(y[0]) - 1 if y[0] else None)
        if start is not None:
            assert -start == same_padding_before(size, kernel, stride), (size, kernel, stride)
