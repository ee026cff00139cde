"""Tiled inference: dense scores for images too large for one forward pass, blended across overlapping tiles.

The image is cut into ``tile``-sized pieces that overlap by ``overlap`` pixels; the last tile of each row and
column is placed flush with the image border, and an image smaller than a tile is padded (bottom/right) and its
scores cropped back. Each tile's scores are multiplied by a separable window, added into an ``(H, W, C)``
buffer, and the buffer is divided by the summed windows.

The window along one axis of a tile:

- on a side that lies on the image border it is flat (1): those pixels see the same border in the whole image;
- on an interior side, the ``margin`` pixels nearest the tile edge get a negligible weight (``MARGIN_WEIGHT``):
  their scores saw zero padding instead of the neighbouring image content. Past the margin the weight ramps up
  over the rest of the overlap (``"linear"`` or half-``"cosine"``), or is flat (``"uniform"``);
- it is positive everywhere, so every pixel is covered whatever the tile geometry.

With a margin at least the model's receptive-field radius (and tile starts aligned to the model's downsampling
grid), the blended scores equal a whole-image forward pass up to float32 rounding: inside the margin the
weights are 1e-8 of the others, and past it every tile sees exactly the image content the whole-image pass sees.
Models with larger receptive fields still give seamless maps, but not the whole-image numbers.

Memory: the forward pass only ever sees ``batch_size`` tiles, so the model's memory is bounded by the tile size
and the batch, whatever the image size. Only the two accumulators scale with the image: the ``(H, W, C)`` float32
score buffer and the ``(H, W)`` float32 weight sum (for ``output_stride`` s, ``H / s x W / s``). A 4000x3000
image with 11 classes needs 528 MB + 48 MB for them; the input image is read tile by tile, never copied whole.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Optional, Sequence, Union

import numpy as np

from densevision.sizes import IntPair, as_pair

BLENDS = ("linear", "cosine", "uniform")
#: weight of the margin pixels at interior tile edges: small enough to vanish in float32 next to any ramp weight,
#: positive so a pixel only a margin covers still gets a value
MARGIN_WEIGHT = 1e-8


def _overlap_pixels(overlap, tile: tuple[int, int]) -> tuple[int, int]:
    """``overlap`` as pixels per axis: ints as given, floats in ``[0, 1)`` as a fraction of the tile."""
    pair = tuple(overlap) if isinstance(overlap, (list, tuple)) else (overlap, overlap)
    if len(pair) != 2:
        raise ValueError(f"predict_tiled: overlap must be a number or a pair (rows, cols), got {overlap!r}")
    pixels = []
    for value, size in zip(pair, tile):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"predict_tiled: overlap must be ints (pixels) or fractions in [0, 1), got {overlap!r}")
        if isinstance(value, (float, np.floating)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"predict_tiled: a fractional overlap must be in [0, 1), got {value}")
            value = int(round(value * size))
        pixels.append(int(value))
    return pixels[0], pixels[1]


def tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` every ``step`` pixels, the last one flush
    with the end (``length - tile``). ``length <= tile`` gives ``[0]``."""
    if length <= tile:
        return [0]
    return list(range(0, length - tile, step)) + [length - tile]


def axis_window(length: int, ramp: int, margin: int, at_start: bool, at_end: bool, blend: str) -> np.ndarray:
    """Weights ``(length,)`` float64 of one tile axis (see the module docstring).

    Args:
        length: tile size along the axis (in output cells).
        ramp: cells over which the weight rises from near 0 to 1, past the margin.
        margin: cells at each interior edge that get ``MARGIN_WEIGHT``.
        at_start, at_end: whether that side lies on the image border (flat window there).
        blend: ``"linear"``, ``"cosine"`` or ``"uniform"``.
    """
    index = np.arange(length, dtype=np.float64)
    far = np.full(length, np.inf)
    distance = np.minimum(far if at_start else index, far if at_end else length - 1 - index)
    if blend == "uniform":
        weight = np.ones(length)
    else:
        rise = np.clip((distance - margin + 0.5) / max(ramp, 1), 0.0, 1.0)  # pixel centres: never exactly 0
        weight = rise if blend == "linear" else 0.5 - 0.5 * np.cos(np.pi * rise)
    weight = np.where(distance < margin, 0.0, weight)
    return np.maximum(weight, MARGIN_WEIGHT)


def _read_tile(image: np.ndarray, top: int, left: int, size: tuple[int, int], pad_value: float) -> np.ndarray:
    """``image[top:top+h, left:left+w]`` as float32, padded bottom/right with ``pad_value`` past the image."""
    patch = np.asarray(image[top : top + size[0], left : left + size[1]], dtype=np.float32)
    missing_rows, missing_cols = size[0] - patch.shape[0], size[1] - patch.shape[1]
    if missing_rows or missing_cols:
        patch = np.pad(patch, ((0, missing_rows), (0, missing_cols), (0, 0)), constant_values=pad_value)
    return patch


def _as_scores(output) -> np.ndarray:
    """A forward output (numpy, tensor, or a list whose last entry is the prediction) as a float32 array."""
    if isinstance(output, (list, tuple)):
        output = output[-1]
    if hasattr(output, "numpy"):
        output = output.numpy()
    return np.asarray(output, dtype=np.float32)


def predict_tiled(
    forward: Callable,
    image: np.ndarray,
    tile: IntPair = (512, 512),
    overlap: Union[int, float, Sequence[Union[int, float]]] = 0.25,
    batch_size: int = 4,
    output_stride: int = 1,
    blend: Literal["linear", "cosine", "uniform"] = "linear",
    margin: Optional[IntPair] = None,
    pad_value: float = 0.0,
) -> np.ndarray:
    """Dense scores of a large image from overlapping tiles, blended by separable windows.

    Args:
        forward: ``fn(images float32 (B, th, tw, 3)) -> scores (B, th / s, tw / s, C)`` (numpy or tensor; a list
            of outputs uses the last). A Keras model works as is; ``B <= batch_size`` (the last batch may be
            smaller).
        image: ``(H, W, 3)`` uint8 or float RGB, any size (read tile by tile, never copied whole).
        tile: ``(th, tw)`` or an int; multiples of ``output_stride`` (and of the model's own downsampling
            factor when its padding matters).
        overlap: pixels ``(oh, ow)`` / an int, or fractions of the tile in ``[0, 1)`` (``0.25``: a quarter);
            multiples of ``output_stride``.
        batch_size: tiles per forward call.
        output_stride: ``s``, the forward's output is at ``1 / s`` of its input resolution.
        blend: ``"linear"`` ramp, half-``"cosine"`` ramp, or ``"uniform"`` (a plain average) past the margin.
        margin: pixels at each interior tile edge whose scores are (almost) ignored, ``(mh, mw)`` or an int;
            default ``overlap // 4``; must be less than half the overlap. Set it to at least the model's
            receptive-field radius for results equal to a whole-image pass.
        pad_value: fill value where a tile reaches past the bottom/right border (the models' own padding is 0).

    Returns:
        ``(ceil(H / s), ceil(W / s), C)`` float32 scores; ``(H, W, C)`` for ``output_stride=1``.

    Raises:
        ValueError: bad tile/overlap/margin/stride values, or a forward output of the wrong shape.
    """
    image = np.asarray(image) if not hasattr(image, "shape") else image
    if len(image.shape) != 3:
        raise ValueError(f"predict_tiled: image must be (H, W, C), got shape {tuple(image.shape)}")
    if blend not in BLENDS:
        raise ValueError(f"predict_tiled: blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"predict_tiled: batch_size must be a positive int, got {batch_size!r}")
    stride = int(output_stride)
    if stride < 1:
        raise ValueError(f"predict_tiled: output_stride must be a positive int, got {output_stride!r}")
    tile = as_pair(tile, "predict_tiled: tile", minimum=None)
    overlap = _overlap_pixels(overlap, tile)
    margin = (tuple(o // 4 for o in overlap) if margin is None
              else as_pair(margin, "predict_tiled: margin", minimum=None))
    for axis, name in enumerate(("rows", "cols")):
        if tile[axis] < 1 or tile[axis] % stride:
            raise ValueError(f"predict_tiled: tile {name} = {tile[axis]} must be a positive multiple of "
                             f"output_stride={stride}")
        if not 0 <= overlap[axis] < tile[axis] or overlap[axis] % stride:
            raise ValueError(f"predict_tiled: overlap {name} = {overlap[axis]} must be in [0, tile={tile[axis]}) "
                             f"and a multiple of output_stride={stride}")
        if margin[axis] < 0 or (margin[axis] and 2 * margin[axis] >= overlap[axis]):
            raise ValueError(f"predict_tiled: margin {name} = {margin[axis]} must be less than half the overlap "
                             f"({overlap[axis]}), or every overlap pixel could fall in some tile's margin")

    height, width = int(image.shape[0]), int(image.shape[1])
    # Extent the tiles cover: at least one tile, and a multiple of the stride so every tile start is on the grid.
    extent = [max(tile[0], -(-height // stride) * stride), max(tile[1], -(-width // stride) * stride)]
    starts = [tile_starts(extent[a], tile[a], tile[a] - overlap[a]) for a in range(2)]
    cells = [tile[a] // stride for a in range(2)]
    margin_cells = [-(-margin[a] // stride) for a in range(2)]
    ramp_cells = [max(1, overlap[a] // stride - 2 * margin_cells[a]) for a in range(2)]

    windows: dict[tuple[int, bool, bool], np.ndarray] = {}

    def window(axis: int, start: int) -> np.ndarray:
        key = (axis, start == 0, start + tile[axis] == extent[axis])
        if key not in windows:
            windows[key] = axis_window(cells[axis], ramp_cells[axis], margin_cells[axis], key[1], key[2], blend)
        return windows[key]

    out_rows, out_cols = extent[0] // stride, extent[1] // stride
    weight_sum = np.zeros((out_rows, out_cols), np.float32)
    scores: Optional[np.ndarray] = None  # allocated once the number of channels is known
    positions = [(top, left) for top in starts[0] for left in starts[1]]
    for first in range(0, len(positions), int(batch_size)):
        chunk = positions[first : first + int(batch_size)]
        batch = np.stack([_read_tile(image, top, left, tile, pad_value) for top, left in chunk])
        output = _as_scores(forward(batch))
        expected = (len(chunk), cells[0], cells[1])
        if output.ndim != 4 or output.shape[:3] != expected:
            raise ValueError(
                f"predict_tiled: forward returned shape {output.shape} for tiles {batch.shape}; expected "
                f"({expected[0]}, {expected[1]}, {expected[2]}, C) with output_stride={stride}"
            )
        if scores is None:
            scores = np.zeros((out_rows, out_cols, output.shape[-1]), np.float32)
        elif output.shape[-1] != scores.shape[-1]:
            raise ValueError(f"predict_tiled: forward returned {output.shape[-1]} channels, earlier tiles "
                             f"{scores.shape[-1]}")
        for (top, left), tile_scores in zip(chunk, output):
            weights = np.outer(window(0, top), window(1, left)).astype(np.float32)
            rows = slice(top // stride, top // stride + cells[0])
            cols = slice(left // stride, left // stride + cells[1])
            scores[rows, cols] += tile_scores * weights[..., None]
            weight_sum[rows, cols] += weights
    keep_rows, keep_cols = -(-height // stride), -(-width // stride)
    result = scores[:keep_rows, :keep_cols]
    result /= weight_sum[:keep_rows, :keep_cols, None]
    return result


def needs_tiling(image_shape: Sequence[int], max_pixels: int) -> bool:
    """Whether an image of shape ``(H, W[, C])`` has more than ``max_pixels`` pixels (``H * W``), i.e. should go
    through :func:`predict_tiled` rather than one forward pass."""
    if len(image_shape) < 2:
        raise ValueError(f"needs_tiling: image_shape must be (H, W[, C]), got {tuple(image_shape)}")
    if max_pixels < 1:
        raise ValueError(f"needs_tiling: max_pixels must be positive, got {max_pixels}")
    return int(image_shape[0]) * int(image_shape[1]) > int(max_pixels)


def tile_count(image_shape: Sequence[int], tile: IntPair = (512, 512), overlap=0.25) -> int:
    """How many tiles :func:`predict_tiled` runs for an ``(H, W[, C])`` image (output stride 1)."""
    tile = as_pair(tile, "predict_tiled: tile", minimum=None)
    overlap = _overlap_pixels(overlap, tile)
    counts = [len(tile_starts(max(int(image_shape[a]), tile[a]), tile[a], tile[a] - overlap[a])) for a in range(2)]
    return math.prod(counts)
