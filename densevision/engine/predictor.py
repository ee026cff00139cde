"""Batch prediction over image files: index-PNG masks (and optional colour overlays), never clobbering outputs.

For each input image ``<stem>.<ext>`` the predictor writes ``<output>/<stem>.png``, the per-pixel class index
(uint8, or uint16 beyond 256 classes), and with ``overlay=True`` ``<output>/overlays/<stem>.png``, the class
colours blended over the image. Every input is checked and every output path planned *before* the model runs,
so a bad file or an existing output fails in seconds, not after an hour, and nothing is half-overwritten.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

import cv2
import keras
import tensorflow as tf

from densevision.visualization import segmentation as visualize

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
OVERLAY_FOLDER = "overlays"


class PredictionError(ValueError):
    """Inputs or outputs the predictor cannot use; the message names the files."""


def _summarize(paths: Sequence[object], show: int = 5) -> str:
    listed = ", ".join(str(p) for p in paths[:show])
    return listed + (f" (and {len(paths) - show} more)" if len(paths) > show else "")


def collect_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files from files and folders (a folder contributes its image files, sorted, not recursively).

    Raises:
        PredictionError: an input that does not exist, a file without an image extension, or no image at all.
    """
    images: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise PredictionError(
                    f"input {path}: not an image file name (expected one of {', '.join(IMAGE_EXTENSIONS)})"
                )
            images.append(path)
        else:
            raise PredictionError(f"input {path} does not exist")
    if not images:
        raise PredictionError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found in: {_summarize(list(inputs))}")
    return images


def plan_outputs(images: Sequence[Path], output_dir: str | os.PathLike, overlay: bool, overwrite: bool):
    """``[(image, mask_path, overlay_path or None)]``; refuses name clashes and (unless ``overwrite``) existing files.

    Raises:
        PredictionError: two inputs with the same stem, or outputs that already exist.
    """
    output_dir = Path(output_dir)
    by_stem: dict[str, Path] = {}
    plan = []
    for image in images:
        if image.stem in by_stem:
            raise PredictionError(
                f"inputs {by_stem[image.stem]} and {image} would both write {output_dir / (image.stem + '.png')}; "
                f"rename one or predict them into separate output folders"
            )
        by_stem[image.stem] = image
        overlay_path = output_dir / OVERLAY_FOLDER / f"{image.stem}.png" if overlay else None
        plan.append((image, output_dir / f"{image.stem}.png", overlay_path))
    if not overwrite:
        existing = [p for _, mask, over in plan for p in (mask, over) if p is not None and p.exists()]
        if existing:
            raise PredictionError(
                f"{len(existing)} output file(s) already exist: {_summarize(existing)}; "
                f"pass --overwrite (overwrite=True) to replace them or choose another output folder"
            )
    return plan


def read_rgb(path: Path) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB; :class:`PredictionError` naming the file if it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PredictionError(f"{path}: cannot be read as an image (truncated, corrupt or not an image file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def predict_images(
    model: keras.Model,
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    palette: Optional[np.ndarray] = None,
    overlay: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Predict a label map for every image and write it as an index PNG (and a colour overlay).

    Args:
        model: images ``(1, H, W, 3)`` float32 in [0, 255] -> logits ``(1, H, W, K)``; any ``H, W``.
        inputs: image files and/or folders of images.
        output_dir: created if needed.
        palette: ``(K, 3)`` uint8 colours for overlays (default :func:`densevision.visualization.segmentation.default_palette`).
        overlay: also write ``overlays/<stem>.png``.
        overwrite: replace existing outputs instead of refusing.
        progress: show a tqdm progress bar.

    Returns:
        The files written, in input order.

    Raises:
        PredictionError: missing/unreadable inputs, clashing names or existing outputs (checked before predicting).
    """
    from tqdm.auto import tqdm

    images = collect_images(inputs)
    unreadable = [p for p in images if not cv2.haveImageReader(str(p))]
    if unreadable:
        raise PredictionError(f"{len(unreadable)} input(s) cannot be decoded as images: {_summarize(unreadable)}")
    plan = plan_outputs(images, output_dir, overlay, overwrite)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    if overlay:
        (Path(output_dir) / OVERLAY_FOLDER).mkdir(exist_ok=True)

    @tf.function(reduce_retracing=True)  # images of many sizes: one relaxed trace instead of one per size
    def predict_labels(image):
        logits = model(image, training=False)
        return tf.argmax(logits, axis=-1, output_type=tf.int32)[0], tf.shape(logits)[-1]

    written: list[Path] = []
    for image_path, mask_path, overlay_path in tqdm(plan, desc="predict", unit="image", disable=not progress):
        image = read_rgb(image_path)
        labels, num_classes = predict_labels(tf.constant(image[None], tf.float32))
        labels, num_classes = labels.numpy(), int(num_classes)
        visualize.write_png(mask_path, labels.astype(np.uint8 if num_classes <= 256 else np.uint16))
        written.append(mask_path)
        if overlay_path is not None:
            colours = palette if palette is not None else visualize.default_palette(num_classes)
            visualize.write_png(overlay_path, visualize.overlay(image, labels, colours))
            written.append(overlay_path)
    return written


def recipe_palette(recipe) -> Optional[np.ndarray]:
    """The palette of the recipe's dataset (its validation split), or ``None`` if that cannot be opened."""
    from densevision.engine.evaluator import open_source

    try:
        palette = open_source(recipe, recipe.data.val_split).info.get("palette")
    except Exception as error:  # no dataset on this machine: overlays fall back to the default palette
        print(f"note: dataset not available ({error}); overlays use the default palette", file=sys.stderr)
        return None
    return None if palette is None else np.asarray(palette, np.uint8)


def predict_command(
    recipe_path: str,
    weights: str,
    inputs: Sequence[str],
    output_dir: str,
    overlay: bool = False,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> int:
    """What ``tools/predict.py`` does; returns the exit code (2 with one ``error:`` line for bad input)."""
    from densevision.engine.checkpoints import CheckpointError
    from densevision.engine.evaluator import load_checkpoint
    from densevision.recipes import RecipeError, load_recipe

    try:
        recipe = load_recipe(recipe_path, list(overrides))
        images = collect_images(inputs)  # fail on bad inputs before loading the model
        plan_outputs(images, output_dir, overlay, overwrite)
        model = load_checkpoint(weights, recipe)
        palette = recipe_palette(recipe) if overlay else None
        written = predict_images(model, inputs, output_dir, palette=palette, overlay=overlay, overwrite=overwrite,
                                 progress=progress)
    except (RecipeError, CheckpointError, PredictionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} file(s) for {len(images)} image(s) to {output_dir}")
    return 0
