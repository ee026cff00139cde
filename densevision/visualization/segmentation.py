"""Pictures of segmentation results: colour masks, overlays, side-by-side panels and confusion-matrix PNGs.

Everything works on numpy arrays: images are uint8 RGB ``(H, W, 3)``, masks integer ``(H, W)`` label maps,
palettes uint8 ``(K, 3)`` (row ``c`` is the RGB colour of class ``c``).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from densevision.files import atomic_write, write_png  # write_png: re-exported (pictures are PNGs)

#: colour of ignore (void) pixels and of labels the palette does not cover
VOID_COLOUR = (0, 0, 0)


def voc_palette(num_colors: int) -> np.ndarray:
    """The PASCAL VOC colour map, ``(N, 3)`` uint8: index ``i``'s bits interleaved into R, G, B from the top bit
    down (index 0 is black). The colours VOC-style colour masks are stored in."""
    palette = np.zeros((num_colors, 3), np.uint8)
    for index in range(num_colors):
        value, shift = index, 7
        while value:
            for channel in range(3):
                palette[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return palette


def default_palette(num_classes: int) -> np.ndarray:
    """The drawing palette when a dataset names none, ``(K, 3)`` uint8: the VOC colours of indices 1..K, so class
    0 is not black (black is void)."""
    return voc_palette(num_classes + 1)[1:]


def colorize_mask(mask: np.ndarray, palette: np.ndarray, ignore_label: Optional[int] = None) -> np.ndarray:
    """Label map ``(H, W)`` int -> colour image ``(H, W, 3)`` uint8.

    Pixels labelled ``ignore_label``, or with a label outside the palette, are :data:`VOID_COLOUR`.
    """
    mask = np.asarray(mask)
    palette = np.asarray(palette, np.uint8)
    if mask.ndim != 2:
        raise ValueError(f"colorize_mask: expected a (H, W) label map, got shape {mask.shape}")
    if palette.ndim != 2 or palette.shape[1] != 3:
        raise ValueError(f"colorize_mask: expected a (K, 3) palette, got shape {palette.shape}")
    lookup = np.concatenate([palette, np.array([VOID_COLOUR], np.uint8)])  # last row: void
    indices = mask.astype(np.int64)
    outside = (indices < 0) | (indices >= len(palette))
    if ignore_label is not None:
        outside |= indices == ignore_label
    indices = np.where(outside, len(palette), indices)
    return lookup[indices]


def overlay(
    image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5, ignore_label: Optional[int] = None
) -> np.ndarray:
    """Blend a label map's colours over an image: ``(H, W, 3)`` uint8. Ignore pixels keep the image as is."""
    image = np.asarray(image, np.uint8)
    colours = colorize_mask(mask, palette, ignore_label).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    if ignore_label is not None:
        keep = (np.asarray(mask) == ignore_label)[..., None]
        blended = np.where(keep, image, blended)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def side_by_side(panels: Sequence[np.ndarray], gap: int = 4, gap_value: int = 255) -> np.ndarray:
    """Concatenate same-height uint8 ``(H, W_i, 3)`` panels horizontally with a ``gap``-pixel separator."""
    heights = {p.shape[0] for p in panels}
    if len(heights) != 1:
        raise ValueError(f"side_by_side: panels must share their height, got heights {sorted(heights)}")
    separator = np.full((panels[0].shape[0], gap, 3), gap_value, np.uint8)
    pieces = []
    for index, panel in enumerate(panels):
        if index:
            pieces.append(separator)
        pieces.append(np.asarray(panel, np.uint8))
    return np.concatenate(pieces, axis=1)


def save_confusion_matrix_png(
    confusion: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    normalize: bool = True,
    title: str = "Confusion matrix (rows: truth, columns: prediction)",
) -> None:
    """Draw a ``(K, K)`` confusion matrix (rows: true class, columns: predicted) to a PNG with matplotlib.

    With ``normalize`` each row is divided by its total (the fraction of each true class predicted as each
    class); rows without pixels stay 0.
    """
    # A bare Figure (no pyplot) draws with Agg and leaves no global state or open windows behind; matplotlib loads
    # here, when a matrix is drawn, not with every task.
    from matplotlib.figure import Figure

    confusion = np.asarray(confusion, np.float64)
    values = confusion
    if normalize:
        totals = confusion.sum(axis=1, keepdims=True)
        values = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)
    size = max(4.0, 0.5 * len(class_names) + 2.0)
    figure = Figure(figsize=(size + 1.0, size))
    axes = figure.subplots()
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=list(class_names), rotation=60, ha="right")
    axes.set_yticks(ticks, labels=list(class_names))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    if len(class_names) <= 25:  # numbers become unreadable beyond that
        threshold = 0.5 * (values.max() if values.size else 0.0)
        for row in range(values.shape[0]):
            for column in range(values.shape[1]):
                text = f"{values[row, column]:.2f}" if normalize else f"{int(confusion[row, column])}"
                colour = "white" if values[row, column] > threshold else "black"
                axes.text(column, row, text, ha="center", va="center", fontsize=7, color=colour)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=100, format="png"))
