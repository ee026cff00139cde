"""What an exported model is fed: the input size a recipe implies, calibration images read from a folder, and
synthetic images for the parity check when no folder is given."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

import cv2
import keras

from densevision.data.errors import ImageReadError
from densevision.data.io import IMAGE_EXTENSIONS, list_images as find_images, read_image
from densevision.serving.base import ExportError, model_input_size
from densevision.sizes import resize

#: fewest readable calibration images an int8 export accepts: the parity check compares 4 of them, and quantisation
#: ranges from fewer would be guesses
MIN_CALIBRATION_IMAGES = 4


def list_images(directory: str | os.PathLike, what: str = "calibration", exclude: Sequence[str | os.PathLike] = ()
                ) -> list[Path]:
    """Image files directly in ``directory`` (never in ``exclude``: the export's own output), sorted;
    :class:`ExportError` if it is missing or has none."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ExportError(f"{what} folder {directory} does not exist (or is not a folder)")
    images = [path for path, _ in find_images([directory], recursive=False, problems=[], exclude=exclude)]
    if not images:
        raise ExportError(f"{what} folder {directory} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return images


def read_resized(path: Path, size: Optional[Sequence[int]] = None) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` through the one image reader, resized to ``size = (H, W)`` if given."""
    image = read_image(path)
    return image if size is None else read_resized_array(image, size)


def read_resized_array(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """A uint8 ``(H, W, 3)`` array resized to ``size = (H, W)`` (unchanged if it already has that size)."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    return resize(image, size)


def calibration_paths(directory: str | os.PathLike, limit: int = 100, exclude: Sequence[str | os.PathLike] = ()
                      ) -> list[Path]:
    """Up to ``limit`` images of ``directory`` that decode (each read once, in name order): a file that does not is
    skipped with a warning naming it; checked before the model loads.

    Raises:
        ExportError: the folder is missing or has no image file, or fewer than :data:`MIN_CALIBRATION_IMAGES`
            images decode (the message says how many are needed and which files were skipped).
    """
    candidates = list_images(directory, exclude=exclude)
    limit = max(1, int(limit))
    good: list[Path] = []
    skipped: list[str] = []
    for path in candidates:
        if len(good) == limit:
            break
        try:
            read_image(path)
        except ImageReadError as error:
            print(f"warning: skipped calibration image {path}: {error.reason}", file=sys.stderr)
            skipped.append(f"{path.name} ({error.reason})")
            continue
        good.append(path)
    needed = min(MIN_CALIBRATION_IMAGES, limit)
    if len(good) < needed:
        listed = f"; skipped {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}" if skipped else ""
        raise ExportError(f"calibration folder {directory}: {len(good)} readable image(s), int8 calibration needs at "
                          f"least {needed}{listed}; add representative images")
    if skipped:
        print(f"note: calibrating on {len(good)} image(s); {len(skipped)} unreadable file(s) skipped", file=sys.stderr)
    return good


def load_calibration_images(directory: str | os.PathLike, input_size: Sequence[int], limit: int = 100,
                            paths: Optional[Sequence[Path]] = None) -> np.ndarray:
    """Up to ``limit`` readable images of ``directory`` (or the given ``paths``, from :func:`calibration_paths`)
    resized to ``input_size``: uint8 ``(N, H, W, 3)``."""
    paths = calibration_paths(directory, limit) if paths is None else paths
    return np.stack([read_resized(path, input_size) for path in paths])


def synthetic_images(count: int, size: Sequence[int], seed: int = 0) -> np.ndarray:
    """``count`` uint8 ``(H, W, 3)`` images of smooth colour blobs plus noise (for parity when no folder is given)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
        smooth = cv2.resize(coarse, (int(size[1]), int(size[0])), interpolation=cv2.INTER_CUBIC)
        noisy = smooth + rng.normal(0, 20, smooth.shape)
        images.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return np.stack(images)


# -------------------------------------------------------------------------------------------- input size


def _transform_size(transform) -> Optional[tuple[int, int]]:
    """The output ``(H, W)`` an albumentations entry from a recipe sets (crops, resizes), or ``None``."""
    if not isinstance(transform, dict) or len(transform) != 1:
        return None
    params = next(iter(transform.values())) or {}
    if not isinstance(params, dict):
        return None
    if isinstance(params.get("height"), int) and isinstance(params.get("width"), int):
        return params["height"], params["width"]
    size = params.get("size")
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return int(size[0]), int(size[1])
    return None


def recipe_input_size(recipe, model: Optional[keras.Model] = None) -> Optional[tuple[int, int]]:
    """The fixed input size ``(H, W)`` a recipe implies, or ``None``.

    In order: the model's own fixed input, ``data.input_size`` (pose crops), the last size-setting transform of
    ``augmentation.val`` then ``augmentation.train`` (segmentation crops), ``data.image_size``.
    """
    if model is not None and model_input_size(model):
        return model_input_size(model)
    data = recipe.data.kwargs() if hasattr(recipe.data, "kwargs") else {}
    value = data.get("input_size")
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    augmentation = getattr(recipe, "augmentation", None)
    for split in ("val", "train"):
        sizes = [_transform_size(t) for t in (getattr(augmentation, split, None) or [])]
        sizes = [s for s in sizes if s]
        if sizes:
            return sizes[-1]
    value = data.get("image_size")
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None



def resolve_input_size(recipe, model: keras.Model, format: str, input_size: Optional[Sequence[int]] = None
                       ) -> Optional[tuple[int, int]]:
    """``input_size`` as ``(H, W)``; for TFLite without one, the size the recipe implies (:func:`recipe_input_size`).

    Raises:
        ExportError: a TFLite export of a recipe that implies no size.
    """
    size = tuple(int(v) for v in input_size) if input_size else None
    if format == "tflite" and size is None:
        size = recipe_input_size(recipe, model)
        if size is None:
            raise ExportError(
                f"recipe {recipe.name!r} implies no input size (no fixed model input, data.input_size or crop "
                f"in its augmentation): pass --input-size H W"
            )
    return size

