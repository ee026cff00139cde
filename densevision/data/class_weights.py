"""Class weights for unbalanced segmentation datasets (median frequency balancing, as in SegNet)."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from densevision.errors import OutputError
from densevision.files import write_json


def class_pixel_statistics(source, num_classes: int, ignore_label: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: labelled pixels of that class, and labelled pixels of the images where it appears.

    Pixels with ``ignore_label`` (or any value outside ``[0, num_classes)``) count nowhere.

    Args:
        source: a segmentation source (``load_mask(i)`` if it has one, else ``load(i)["mask"]``).

    Returns:
        ``(class_pixels (K,) int64, image_pixels (K,) int64)``.
    """
    load_mask = getattr(source, "load_mask", None) or (lambda i: source.load(i)["mask"])
    class_pixels = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    for index in range(len(source)):
        mask = np.asarray(load_mask(index)).ravel()
        mask = mask[(mask >= 0) & (mask < num_classes) & (mask != ignore_label)]
        counts = np.bincount(mask, minlength=num_classes)[:num_classes]
        class_pixels += counts
        image_pixels[counts > 0] += mask.size
    return class_pixels, image_pixels


def _cache_key(source, num_classes: int, ignore_label: int) -> str:
    """Hash of the mask files (paths, sizes, mtimes) and the label settings: a changed file means a new key."""
    digest = hashlib.sha256(f"median_frequency/1 {num_classes} {ignore_label}".encode())
    for pair in getattr(source, "paths", None) or []:
        mask_path = Path(pair[1] if isinstance(pair, (tuple, list)) else pair)
        stat = mask_path.stat()
        digest.update(f"{mask_path.resolve()} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def median_frequency_weights(source, num_classes: int, ignore_label: int,
                             cache_dir: Optional[str | os.PathLike] = None) -> np.ndarray:
    """SegNet's median frequency balancing: ``w_c = median(freq) / freq_c``.

    ``freq_c`` = pixels of class ``c`` / labelled pixels of the images in which ``c`` appears (Eigen & Fergus,
    used by SegNet and FC-DenseNet on CamVid). Ignored pixels are not counted. The median is taken over the
    classes that appear; a class that never appears gets weight 0 and a warning.

    Args:
        source: a segmentation source (``len``, ``load_mask(i)`` or ``load(i)``, ``paths`` for caching).
        num_classes: ``K``.
        ignore_label: label excluded from the counts.
        cache_dir: if given, results are cached there as JSON keyed by the mask files (paths, sizes, mtimes).

    Returns:
        float32 ``(K,)`` weights.
    """
    cache_path = None
    if cache_dir is not None and getattr(source, "paths", None):
        cache_path = Path(cache_dir) / f"median_frequency_{_cache_key(source, num_classes, ignore_label)}.json"
        if cache_path.is_file():
            try:
                cached = json.loads(cache_path.read_text())
                class_pixels = np.array(cached["class_pixels"], np.int64)
                image_pixels = np.array(cached["image_pixels"], np.int64)
            except (json.JSONDecodeError, KeyError, ValueError):
                cache_path.unlink()  # a broken cache is recomputed, never trusted
                return median_frequency_weights(source, num_classes, ignore_label, cache_dir)
            return _weights_from_counts(class_pixels, image_pixels)
    class_pixels, image_pixels = class_pixel_statistics(source, num_classes, ignore_label)
    if cache_path is not None:
        try:
            write_json(cache_path, {"class_pixels": class_pixels, "image_pixels": image_pixels,
                                    "num_examples": len(source)}, indent=None)
        except OutputError as error:  # a cache that cannot be written only costs the count next time
            warnings.warn(f"median_frequency_weights: not cached ({error})", stacklevel=2)
    return _weights_from_counts(class_pixels, image_pixels)


def _weights_from_counts(class_pixels: np.ndarray, image_pixels: np.ndarray) -> np.ndarray:
    seen = class_pixels > 0
    if not seen.any():
        raise ValueError("median_frequency_weights: no labelled pixels at all; check the masks and ignore label")
    if not seen.all():
        warnings.warn(f"median_frequency_weights: classes {np.flatnonzero(~seen).tolist()} never appear; "
                      f"they get weight 0", stacklevel=3)
    frequency = np.zeros(len(class_pixels), np.float64)
    frequency[seen] = class_pixels[seen] / image_pixels[seen]
    weights = np.zeros(len(class_pixels), np.float64)
    weights[seen] = np.median(frequency[seen]) / frequency[seen]
    return weights.astype(np.float32)
