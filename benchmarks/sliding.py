"""Sliding classification on CPU: one pass of the fully convolutional VGG16 over a 384x384 image against the
original VGG16 on the 36 crops (224x224, stride 32) batched, same weights, measured in one run.

Prints the time ratio (crops / converted) for the plain conversion and for the row-strip variant
(``conv_bands="auto"``), the FLOP ratio that bounds it, fc6 as ``WindowDense`` against a plain 7x7 ``Conv2D``,
and the checks that the outputs agree:

- converted vs the original head on the 36 windows of the trunk's feature map (must be ~1e-6: the rewrite);
- converted vs the original model on the 36 image crops (differs by VGG's zero padding at crop borders).

Usage:  python benchmarks/sliding.py [--repeats 3] [--size 384]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import densevision  # noqa: F401  (environment first)
import keras
import tensorflow as tf

from densevision.inference.fully_convolutional import to_fully_convolutional

WINDOW, STRIDE = 224, 32


def conv_and_fc_macs(model) -> tuple[int, int]:
    """Multiply-accumulates of one 224x224 forward pass: (conv trunk, dense head)."""
    conv = fc = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, _ = layer.output.shape
            conv += int(np.prod(layer.kernel.shape)) * height * width
        elif isinstance(layer, keras.layers.Dense):
            fc += int(np.prod(layer.kernel.shape))
    return conv, fc


def timed(fn, x, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per model (median reported)")
    parser.add_argument("--size", type=int, default=384, help="image side (a multiple of 32, >= 224)")
    args = parser.parse_args()
    if args.size < WINDOW or args.size % STRIDE:
        parser.error(f"--size must be a multiple of {STRIDE} and >= {WINDOW}, got {args.size}")

    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(include_top=True, weights=None, classifier_activation=None)
    converted = to_fully_convolutional(model)
    banded = to_fully_convolutional(model, conv_bands="auto")

    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, args.size, args.size, 3)).astype("float32")
    cells = (args.size - WINDOW) // STRIDE + 1
    offsets = [(r * STRIDE, c * STRIDE) for r in range(cells) for c in range(cells)]
    crops = np.stack([image[0, r : r + WINDOW, c : c + WINDOW] for r, c in offsets])

    run_original = tf.function(lambda x: model(x, training=False))
    run_converted = tf.function(lambda x: converted(x, training=False))
    run_banded = tf.function(lambda x: banded(x, training=False))

    # ---- correctness (also the warm-up/tracing pass of each function)
    crop_logits = run_original(tf.constant(crops)).numpy()
    dense_logits = run_converted(tf.constant(image)).numpy()[0].reshape(cells * cells, -1)
    banded_logits = run_banded(tf.constant(image)).numpy()[0].reshape(cells * cells, -1)
    # the original trunk with a free input size, same weights
    trunk = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    trunk.set_weights([w for layer in model.layers[: len(trunk.layers)] for w in layer.get_weights()])
    features = trunk(tf.constant(image), training=False).numpy()[0]
    windows = np.stack([features[r // STRIDE : r // STRIDE + 7, c // STRIDE : c // STRIDE + 7] for r, c in offsets])
    head = windows
    for name in ("flatten", "fc1", "fc2", "predictions"):
        head = model.get_layer(name)(head)
    head = np.asarray(head)
    scale = np.abs(head).max()
    print(f"image {args.size}x{args.size}: {len(offsets)} crops of {WINDOW} at stride {STRIDE}; logits up to {scale:.3g}")
    print(f"  converted vs original head on feature windows: max |diff| {np.abs(dense_logits - head).max():.2e}")
    print(f"  row-strip converted vs plain converted:        max |diff| {np.abs(banded_logits - dense_logits).max():.2e}")
    print(f"  converted vs original on image crops:          max |diff| {np.abs(dense_logits - crop_logits).max():.2e}"
          " (zero padding at crop borders)")

    # ---- timing: interleaved so load changes on the shared machine hit every variant alike
    samples = {"crops": [], "converted": [], "row-strip": []}
    for _ in range(args.repeats):
        samples["crops"] += timed(run_original, tf.constant(crops), 1)
        samples["converted"] += timed(run_converted, tf.constant(image), 1)
        samples["row-strip"] += timed(run_banded, tf.constant(image), 1)
    median = {k: statistics.median(v) for k, v in samples.items()}

    # fc6 alone, on the 12x12x512 map: WindowDense (patches + one matmul) against a plain 7x7 Conv2D
    pool5 = tf.constant(features[None])
    window_dense = converted.get_layer("fc1")
    kernel, bias = model.get_layer("fc1").get_weights()
    conv7 = keras.layers.Conv2D(kernel.shape[1], 7, activation="relu", kernel_initializer="zeros")
    conv7(pool5)
    conv7.set_weights([kernel.reshape(7, 7, -1, kernel.shape[1]), bias])
    run_window = tf.function(lambda x: window_dense(x))
    run_conv7 = tf.function(lambda x: conv7(x))
    fc6_diff = np.abs(run_window(pool5).numpy() - run_conv7(pool5).numpy()).max()
    fc6 = {"WindowDense": [], "Conv2D 7x7": []}
    for _ in range(args.repeats):
        fc6["WindowDense"] += timed(run_window, pool5, 1)
        fc6["Conv2D 7x7"] += timed(run_conv7, pool5, 1)
    fc6 = {k: statistics.median(v) for k, v in fc6.items()}
    print(f"fc6 on the {features.shape[0]}x{features.shape[1]}x{features.shape[2]} map: WindowDense "
          f"{fc6['WindowDense']:.3f} s, Conv2D 7x7 {fc6['Conv2D 7x7']:.3f} s "
          f"({fc6['Conv2D 7x7'] / fc6['WindowDense']:.2f}x), max |diff| {fc6_diff:.1e}")

    conv_macs, fc_macs = conv_and_fc_macs(model)
    area = (args.size / WINDOW) ** 2
    flop_ratio = len(offsets) * (conv_macs + fc_macs) / (area * conv_macs + len(offsets) * fc_macs)
    print(f"median of {args.repeats}: crops batched {median['crops']:.3f} s, converted {median['converted']:.3f} s,"
          f" row-strip converted {median['row-strip']:.3f} s")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (shared machine)")
    print(f"speed-up converted: {median['crops'] / median['converted']:.2f}x, row-strip converted: "
          f"{median['crops'] / median['row-strip']:.2f}x; FLOP ratio bound {flop_ratio:.2f} "
          f"(conv {len(offsets) / area:.2f}, dense layers equal)")


if __name__ == "__main__":
    main()
