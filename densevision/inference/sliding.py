"""Dense class scores from a fully convolutional classifier: score maps over large images at the network's
stride or finer, several scales, image-level scores, top-k labels and heat maps.

A classifier trained on ``S x S`` crops and rewritten by :func:`densevision.inference.fully_convolutional.to_fully_convolutional`
gives, in one pass over an ``H x W`` image, the scores of every ``S x S`` window at offsets that are multiples
of its total stride ``T`` (32 for VGG16: a 6x6 map for a 384x384 image and 224x224 windows). For a finer
stride ``s`` (a divisor of ``T``) the image is also forwarded shifted by ``s, 2s, ...`` pixels (CS231n: shift
by 16 for stride 16) and the passes are interleaved: 4 passes give the 11x11 stride-16 map of a 384x384 image.
Cell ``(i, j)`` of every map is the window at pixel offset ``(i * s, j * s)``.

Arrays: images float32 (or uint8) RGB in [0, 255], ``(H, W, 3)`` or ``(B, H, W, 3)``; score maps
``(B, rows, cols, K)`` in the model's output units (logits for densevision classifiers).
"""

from __future__ import annotations

import warnings
import weakref
from importlib import import_module
from typing import Literal, Optional, Sequence

import cv2
import numpy as np

import keras
import tensorflow as tf
from scipy.special import softmax

from densevision.analysis.layer_table import layer_table
from densevision.errors import UsageError
from densevision.inference.fully_convolutional import ConversionError, to_fully_convolutional
from densevision.registry import did_you_mean
from densevision.sizes import as_pair, rescale, scaled_size

_FORWARD_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_MARGIN_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
#: images with more pixels are scored in tiles (as ``densevision predict`` does), so memory follows the tile, not the
#: image: a 4000x3000 photo through VGG16 needs about 9 GB in one pass
DEFAULT_MAX_PIXELS = 1280 * 1280


def _forward(model: keras.Model):
    """A ``tf.function`` of the model in inference mode, traced once per input shape family."""
    fn = _FORWARD_CACHE.get(model)
    if fn is None:
        fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        _FORWARD_CACHE[model] = fn
    return fn


def _output_size(model: keras.Model, height: int, width: int) -> Optional[tuple[int, int]]:
    """Rows and columns of the score map for an ``height x width`` input, from shapes only (no compute)."""
    spec = keras.KerasTensor((1, height, width, model.inputs[0].shape[-1]), dtype=model.inputs[0].dtype)
    try:
        out = model.compute_output_spec(spec)
    except Exception:  # noqa: BLE001 - an input too small for the network raises from some layer
        return None
    rows, cols = out.shape[1], out.shape[2]
    return (rows, cols) if rows and cols and rows > 0 and cols > 0 else None


def network_stride(fc_model: keras.Model, window) -> tuple[int, int]:
    """The total stride ``T`` of a fully convolutional classifier, from its output sizes (no compute).

    Args:
        fc_model: the converted model.
        window: the original input size ``S`` (int or ``(rows, cols)``).

    Returns:
        ``(T_rows, T_cols)``, e.g. ``(32, 32)`` for VGG16: ``window + 1024`` pixels give ``1024 / T`` more cells.
    """
    window = as_pair(window, "window")
    base = _output_size(fc_model, *window)
    if base != (1, 1):
        raise ValueError(
            f"window={window}: the model gives a {base} map for a window-sized input, expected (1, 1); pass the "
            "input size the classifier was built for"
        )
    probe = 1024
    more = _output_size(fc_model, window[0] + probe, window[1] + probe)
    strides = []
    for axis, extra in enumerate(more):
        step = probe / (extra - 1)
        if step != int(step):
            raise ValueError(f"cannot infer the network stride: {probe} more pixels gave {extra - 1} more cells")
        strides.append(int(step))
    return strides[0], strides[1]


def sliding_classifier(model: keras.Model, conv_bands: Optional[dict[str, int] | str] = "auto-cpu"
                       ) -> tuple[keras.Model, tuple[int, int], tuple[int, int]]:
    """A trained classifier made ready to slide: ``(fc_model, window, net_stride)``.

    Args:
        model: a classifier with a fixed input size ``(B, S_h, S_w, 3)`` (``model.input_shape`` set).
        conv_bands: as :func:`~densevision.inference.fully_convolutional.to_fully_convolutional`; ``"auto-cpu"``:
            ``"auto"`` when TensorFlow sees no GPU (row strips help oneDNN on CPU only), else ``None``.

    Returns:
        the fully convolutional model, the window ``(S_h, S_w)`` and the network stride ``(T_h, T_w)``.

    Raises:
        ConversionError: the model has no fixed input size, or a layer has no convolutional form.
    """
    window = tuple(model.inputs[0].shape[1:3]) if getattr(model, "inputs", None) else (None, None)
    if None in window or len(window) != 2:
        raise ConversionError(f"model {model.name!r} takes inputs of size {window}; sliding needs the fixed size it "
                              f"was trained at (a classifier with input_shape set)")
    if conv_bands == "auto-cpu":
        conv_bands = None if tf.config.list_physical_devices("GPU") else "auto"
    fc_model = to_fully_convolutional(model, conv_bands=conv_bands)
    return fc_model, (int(window[0]), int(window[1])), network_stride(fc_model, window)


def check_stride(stride: Optional[int], net_stride) -> int:
    """``--stride``: ``None`` -> the network stride ``T`` (rows); else ``stride`` if it divides ``T``.

    Raises:
        UsageError: a stride below 1 or one that does not divide the network stride (the valid ones listed).
    """
    net_stride = as_pair(net_stride, "net_stride")
    if stride is None:
        return net_stride[0]
    stride = int(stride)
    if stride < 1 or net_stride[0] % stride or net_stride[1] % stride:
        common = [d for d in range(min(net_stride), 0, -1) if net_stride[0] % d == 0 and net_stride[1] % d == 0]
        raise UsageError(f"--stride {stride}: must divide the network stride {net_stride[0]} (valid: "
                         f"{', '.join(map(str, common))})")
    return stride


def resolve_class(choice: Optional[str], class_names: Sequence[str]) -> Optional[int]:
    """``--class``: a class name or an index -> index; ``None`` stays ``None`` (each image's top-1).

    Raises:
        UsageError: neither a class name nor an index in range (with a did-you-mean suggestion).
    """
    if choice is None:
        return None
    if choice in class_names:
        return list(class_names).index(choice)
    if str(choice).lstrip("-").isdigit() and 0 <= int(choice) < len(class_names):
        return int(choice)
    shown = ", ".join(map(str, class_names[:20])) + (" ..." if len(class_names) > 20 else "")
    raise UsageError(f"--class {choice!r}: not a class name or index 0..{len(class_names) - 1}"
                     f"{did_you_mean(choice, class_names)}; the classes: {shown}")


def map_size(image_size, window, stride) -> tuple[int, int]:
    """Cells of the score map at ``stride`` for an image of ``image_size`` ``(H, W)``: ``(H - S) // s + 1`` each."""
    (height, width), (win_h, win_w), (s_h, s_w) = image_size, as_pair(window, "window"), as_pair(stride, "stride")
    return (height - win_h) // s_h + 1, (width - win_w) // s_w + 1


def _as_batch(images, dtype=np.float32) -> np.ndarray:
    """``(B, H, W, 3)`` of ``dtype`` (``None``: as given, e.g. uint8 kept until a tile is cut)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected RGB images (H, W, 3) or (B, H, W, 3), got shape {images.shape}")
    return images if dtype is None else images.astype(dtype, copy=False)


def window_scores(
    fc_model: keras.Model,
    images,
    window,
    stride=None,
    net_stride=None,
    max_pixels: Optional[int] = None,
) -> np.ndarray:
    """Scores of every window of ``images`` at ``stride``, from shifted passes of ``fc_model``.

    Args:
        fc_model: a fully convolutional classifier (:func:`densevision.inference.fully_convolutional.to_fully_convolutional`).
        images: ``(H, W, 3)`` or ``(B, H, W, 3)`` RGB in [0, 255], ``H, W >= window``.
        window: the classifier's original input size ``S`` (int or ``(rows, cols)``).
        stride: offset between neighbouring windows, a divisor of the network stride ``T``; default ``T``
            (one pass). ``T / 2`` takes 4 passes, ``T / 4`` 16.
        net_stride: ``T``; inferred with :func:`network_stride` when ``None``.
        max_pixels: above this many pixels per image, the map is computed tile by tile (:func:`tiled_scores`:
            memory bounded by the tile); ``None``: one pass whatever the size.

    Returns:
        ``(B, rows, cols, K)`` with ``rows = (H - S) // stride + 1``; cell ``(i, j)`` scores the window with
        top-left pixel ``(i * stride, j * stride)``.
    """
    images = _as_batch(images, dtype=None)  # converted to float32 per pass (or per tile), not whole
    window = as_pair(window, "window")
    net_stride = network_stride(fc_model, window) if net_stride is None else as_pair(net_stride, "net_stride")
    stride = net_stride if stride is None else as_pair(stride, "stride")
    for s, t in zip(stride, net_stride):
        if t % s:
            raise ValueError(f"stride={stride}: must divide the network stride {net_stride} (e.g. {t}, {t // 2})")
    height, width = images.shape[1:3]
    if height < window[0] or width < window[1]:
        raise ValueError(f"image of {height}x{width} pixels is smaller than the {window[0]}x{window[1]} window")
    if max_pixels is not None and height * width > max_pixels:
        return tiled_scores(fc_model, images, window, stride, net_stride, max_pixels)
    rows, cols = map_size((height, width), window, stride)
    steps = (net_stride[0] // stride[0], net_stride[1] // stride[1])  # passes per axis
    forward = _forward(fc_model)
    result = None
    for first_row in range(steps[0]):
        for first_col in range(steps[1]):
            want_rows = len(range(first_row, rows, steps[0]))
            want_cols = len(range(first_col, cols, steps[1]))
            if not want_rows or not want_cols:
                continue
            shifted = images[:, first_row * stride[0] :, first_col * stride[1] :].astype(np.float32, copy=False)
            scores = np.asarray(forward(tf.constant(shifted)))
            if scores.ndim != 4:
                raise ValueError(f"expected a (B, rows, cols, K) score map from the model, got shape {scores.shape}")
            if scores.shape[1] < want_rows or scores.shape[2] < want_cols:
                raise ValueError(
                    f"the model gave a {scores.shape[1:3]} map for a {shifted.shape[1:3]} input, expected at least "
                    f"({want_rows}, {want_cols}) cells: is window={window} / net_stride={net_stride} right?"
                )
            if result is None:
                result = np.empty((len(images), rows, cols, scores.shape[-1]), scores.dtype)
            result[:, first_row :: steps[0], first_col :: steps[1]] = scores[:, :want_rows, :want_cols]
    return result


def _tile_ranges(cells: int, core: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``(first, stop)`` cells each tile computes (its core widened by ``halo`` cells of context on each side, within
    the map) and the ``(start, stop)`` of the core it keeps, covering ``range(cells)``."""
    return [(max(0, start - halo), min(cells, start + core + halo), start, min(cells, start + core))
            for start in range(0, cells, core)]


def context_margin(fc_model: keras.Model, window, net_stride) -> tuple[int, int]:
    """Pixels of context a tile keeps on each side of its windows: half the receptive field of the network's
    features, rounded up to whole network strides (VGG16: a 212-pixel field -> 128 pixels), so every feature a
    kept window uses sees what it sees in one pass; the window's size when the field cannot be measured."""
    window, net_stride = as_pair(window, "window"), as_pair(net_stride, "net_stride")
    margin = _MARGIN_CACHE.get(fc_model)
    if margin is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # multiply-adds of converted layers are unknown: not needed here
                field = layer_table(fc_model, (*window, fc_model.inputs[0].shape[-1]))["layers"][-1]["receptive_field"]
            field = as_pair(field, "receptive field")
        except Exception:  # noqa: BLE001 - a layer the table cannot follow: a whole window of context is safe
            field = (2 * window[0] + 1, 2 * window[1] + 1)
        margin = tuple(-(-(f - 1) // (2 * t)) * t for f, t in zip(field, net_stride))
        _MARGIN_CACHE[fc_model] = margin
    return margin


def tiled_scores(fc_model: keras.Model, images, window, stride, net_stride, max_pixels: int) -> np.ndarray:
    """:func:`window_scores` in tiles of at most about ``max_pixels`` pixels: the same ``(B, rows, cols, K)`` map.

    Each tile is an image crop holding whole windows: a core of cells plus :func:`context_margin` pixels on each
    side, so the features of every kept window see what they see in one pass. Crops start at multiples of the
    stride, so each window falls on the same pooling grid as in one pass.
    """
    images = _as_batch(images, dtype=None)
    window, stride, net_stride = as_pair(window, "window"), as_pair(stride, "stride"), as_pair(net_stride, "net_stride")
    rows, cols = map_size(images.shape[1:3], window, stride)
    steps = [t // s for s, t in zip(stride, net_stride)]
    side = max(1, int(max_pixels ** 0.5))
    ranges = []
    margins = context_margin(fc_model, window, net_stride)
    for axis, cells in enumerate((rows, cols)):
        halo_pixels = margins[axis]
        halo = halo_pixels // stride[axis]
        core = (side - window[axis] - 2 * halo_pixels) // stride[axis] + 1
        core = max(steps[axis], core // steps[axis] * steps[axis])  # whole passes: a tile is never under a window
        ranges.append(_tile_ranges(cells, core, halo))
    result = None
    height, width = images.shape[1:3]
    for row_first, row_stop, row_start, row_end in ranges[0]:
        for col_first, col_stop, col_start, col_end in ranges[1]:
            # a last tile keeps the image's few pixels past its last window: one pass sees them too
            bottom = height if row_stop == rows else (row_stop - 1) * stride[0] + window[0]
            right = width if col_stop == cols else (col_stop - 1) * stride[1] + window[1]
            crop = images[:, row_first * stride[0]: bottom, col_first * stride[1]: right]
            scores = window_scores(fc_model, crop, window, stride, net_stride)
            if result is None:
                result = np.empty((len(images), rows, cols, scores.shape[-1]), scores.dtype)
            result[:, row_start:row_end, col_start:col_end] = scores[
                :, row_start - row_first: row_end - row_first, col_start - col_first: col_end - col_first]
    return result


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """``(H, W, 3)`` -> ``(round(H * scale), round(W * scale), 3)`` (area averaging down, bilinear up)."""
    return rescale(np.asarray(image, np.float32), scale)


def multiscale_scores(
    fc_model: keras.Model, image, window, scales: Sequence[float] = (1.0,), stride=None, net_stride=None,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
) -> list[np.ndarray]:
    """Score maps of one image resized by each of ``scales``: a list of ``(rows_k, cols_k, K)`` arrays; an image
    (at a scale) above ``max_pixels`` pixels is scored in tiles (see :func:`tiled_scores`).

    Raises ``ValueError`` naming the scale if a resized image is smaller than the window.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"multiscale_scores: expected one (H, W, 3) image, got shape {image.shape}")
    window = as_pair(window, "window")
    net_stride = network_stride(fc_model, window) if net_stride is None else net_stride
    maps = []
    for scale in scales:
        if scale <= 0:
            raise ValueError(f"scales: {scale} is not positive")
        resized = image if scale == 1 else resize_image(image, scale)
        if resized.shape[0] < window[0] or resized.shape[1] < window[1]:
            raise ValueError(
                f"scale {scale}: the {image.shape[0]}x{image.shape[1]} image becomes {resized.shape[0]}x"
                f"{resized.shape[1]}, smaller than the {window[0]}x{window[1]} window"
            )
        maps.append(window_scores(fc_model, resized, window, stride, net_stride, max_pixels=max_pixels)[0])
    return maps


def to_probabilities(scores: np.ndarray, from_logits: bool = True) -> np.ndarray:
    """Softmax over the last (class) axis if ``from_logits``, else ``scores`` as float32."""
    scores = np.asarray(scores, np.float32)
    return softmax(scores, axis=-1).astype(np.float32, copy=False) if from_logits else scores


def image_scores(
    score_maps: Sequence[np.ndarray], reduce: Literal["mean", "max"] = "mean", from_logits: bool = True
) -> np.ndarray:
    """Image-level class probabilities ``(K,)`` from score maps ``(rows, cols, K)`` (one per scale).

    Each map's windows are turned into probabilities and reduced (``mean``: average over windows; ``max``: the
    best window per class), then the scales are reduced the same way, so each scale counts once.
    """
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce={reduce!r}: expected 'mean' or 'max'")
    if not len(score_maps):
        raise ValueError("image_scores: no score maps")
    combine = np.mean if reduce == "mean" else np.max
    per_scale = [combine(to_probabilities(m, from_logits).reshape(-1, m.shape[-1]), axis=0) for m in score_maps]
    return combine(np.stack(per_scale), axis=0)


def top_k(scores: np.ndarray, k: int = 5, class_names: Optional[Sequence[str]] = None) -> list[tuple[int, str, float]]:
    """The ``k`` best classes of ``scores`` ``(K,)``: ``[(index, name, score), ...]``, best first."""
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable")[: max(0, int(k))]
    names = class_names if class_names is not None else [str(i) for i in range(len(scores))]
    return [(int(i), str(names[i]), float(scores[i])) for i in order]


def class_heatmap(score_map: np.ndarray, class_index: int, image_size, window, stride) -> np.ndarray:
    """Per-pixel score of one class: the mean over the windows covering each pixel, ``(H, W)`` float32.

    ``score_map``: ``(rows, cols, K)`` (probabilities for a [0, 1] map); the last row/column of windows is
    stretched to the image border so that every pixel is covered.
    """
    (height, width), (win_h, win_w), (s_h, s_w) = image_size, as_pair(window, "window"), as_pair(stride, "stride")
    rows, cols, classes = score_map.shape
    if not 0 <= class_index < classes:
        raise ValueError(f"class index {class_index} is out of range for {classes} classes")
    total = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.float64)
    values = score_map[..., class_index]
    for i in range(rows):
        y1 = height if i == rows - 1 else i * s_h + win_h
        for j in range(cols):
            x1 = width if j == cols - 1 else j * s_w + win_w
            total[i * s_h : y1, j * s_w : x1] += values[i, j]
            count[i * s_h : y1, j * s_w : x1] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def multiscale_heatmap(score_maps, scales, class_index: int, image_size, window, stride, from_logits=True):
    """:func:`class_heatmap` of each scale's probabilities, resized to ``image_size`` and averaged: ``(H, W)``."""
    height, width = image_size
    heats = []
    for scores, scale in zip(score_maps, scales):
        heat = class_heatmap(to_probabilities(scores, from_logits), class_index, scaled_size(image_size, scale),
                             window, stride)
        heats.append(cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR))
    return np.mean(heats, axis=0)


def overlay_heatmap(
    image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, vmax: Optional[float] = None
) -> np.ndarray:
    """Blend a JET colour map of ``heat`` ``(H, W)`` (scaled by ``vmax``, default its maximum) over an RGB
    uint8 image ``(H, W, 3)``; returns RGB uint8 ``(H, W, 3)``."""
    vmax = float(heat.max()) if vmax is None else float(vmax)
    scaled = np.clip(heat / vmax if vmax > 0 else heat * 0, 0, 1)
    colours = cv2.applyColorMap(np.uint8(np.rint(scaled * 255)), cv2.COLORMAP_JET)[..., ::-1]  # BGR -> RGB
    blended = (1 - alpha) * np.asarray(image, np.float32) + alpha * colours.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


dense_scores = window_scores
"""The old name of :func:`window_scores` (kept; :func:`densevision.inference.dense.pixel_scores` is the other idea
that was called ``dense_scores``)."""

# The command around these functions moved to densevision.commands.sliding_run (commands import the library, never
# the reverse). Its names still resolve here, on first use, for code that imported them from this module.
_MOVED_TO_COMMAND = ("expand_inputs", "load_classifier", "recipe_class_names", "check_options",
                     "plan_sliding_outputs", "sliding_classify_command")


def __getattr__(name: str):
    if name in _MOVED_TO_COMMAND:
        return getattr(import_module("densevision.commands.sliding_run"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
