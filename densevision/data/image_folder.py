"""Classification datasets laid out one folder per class, checked when opened, and a generated demo set.

Layout (``image_folder`` in recipes)::

    root/<split>/<class name>/<any name>.jpg|png|...

Class ``k`` is the ``k``-th class name in sorted order, taken over the class folders of *every* split folder
under ``root`` (so a validation split missing a class keeps the same label numbers), unless the recipe lists
``class_names`` itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from densevision.data.errors import DatasetError, not_a_folder, summarize_items
from densevision.data.generated import is_complete, mark_complete
from densevision.data.io import IMAGE_EXTENSIONS, read_image, scan_folder, verify_images
from densevision.registry import DATASETS
from densevision.sizes import resize

def _class_folders(folder: Path, problems: Optional[list[str]] = None) -> list[str]:
    _, folders, bad = scan_folder(folder)
    if problems is not None:
        problems.extend(bad)
    return [path.name for path in folders]


def _image_files(folder: Path, problems: list[str]) -> list[Path]:
    files, _, bad = scan_folder(folder, IMAGE_EXTENSIONS)
    problems.extend(bad)
    return files


@DATASETS.register("image_folder")
class ImageFolder:
    """Images in one sub-folder per class: ``load(i) -> (image uint8 (H, W, 3) RGB, label int)``.

    Args:
        root: dataset folder holding one folder per split.
        split: split folder name (``train``, ``val``, ...).
        image_size: ``[height, width]`` to resize every image to (so batches stack); ``None`` keeps sizes.
        class_names: the classes in label order; default: the sorted union of class folder names over all
            split folders of ``root``.

    Attributes:
        names: ``"<class>/<file stem>"`` per example; ``paths``; ``labels`` (int per example);
        info: ``{"class_names": [...], "num_classes": K}``.

    Raises:
        DatasetError: missing root or split, no class folders, empty class folders, unknown class folders
        (with ``class_names``), unreadable images: one message listing every problem.
    """

    def __init__(self, root: str, split: str = "train", image_size: Optional[list[int]] = None,
                 class_names: Optional[list[str]] = None):
        self.root = Path(root)
        self.split = split
        where = f"image_folder {split!r} at {self.root}"
        if image_size is not None:
            if len(image_size) != 2 or any(int(v) < 1 for v in image_size):
                raise DatasetError(f"{where}: image_size={image_size!r}; expected [height, width], positive")
            image_size = [int(v) for v in image_size]
        self.image_size = image_size
        if not self.root.is_dir():
            raise DatasetError(f"{where}: {not_a_folder(self.root, 'root folder')}; "
                               f"expected root/<split>/<class>/<image files>")
        split_dir = self.root / split
        if not split_dir.is_dir():
            splits = _class_folders(self.root)
            raise DatasetError(f"{where}: split folder {split_dir} not found; folders in root: {splits or 'none'}")

        unresolved: list[str] = []  # entries that cannot be resolved (symlink loops, broken links)
        present = _class_folders(split_dir, unresolved)
        if class_names is None:
            union = set()
            for other in _class_folders(self.root):
                union.update(_class_folders(self.root / other))
            class_names = sorted(union)
        class_names = [str(name) for name in class_names]
        problems: list[str] = []
        if not present:
            raise DatasetError(f"{where}: no class folders in {split_dir}; expected {split_dir}/<class>/<images>")
        unknown = [name for name in present if name not in class_names]
        if unknown:
            problems.append(f"class folders not in class_names {class_names}: {', '.join(unknown)}")

        self.paths: list[Path] = []
        self.labels: list[int] = []
        empty = []
        for name in present:
            if name in unknown:
                continue
            files = _image_files(split_dir / name, unresolved)
            if not files:
                empty.append(split_dir / name)
            self.paths += files
            self.labels += [class_names.index(name)] * len(files)
        if empty:
            shown = ", ".join(map(str, empty[:5])) + (f" (and {len(empty) - 5} more)" if len(empty) > 5 else "")
            problems.append(f"{len(empty)} empty class folder(s), no {'/'.join(IMAGE_EXTENSIONS)} images: {shown}")
        if unresolved:
            problems.append(summarize_items(unresolved, "that cannot be resolved"))
        unreadable = verify_images(self.paths, desc=f"checking {where}")
        if unreadable:
            problems.append(summarize_items([f"{path} ({reason})" for path, reason in unreadable.items()],
                                            "that cannot be read completely (truncated, corrupt, empty or not images)"))
        if problems:
            raise DatasetError(f"{where}: the dataset cannot be used as it is:\n  - " + "\n  - ".join(problems))
        self.names = [f"{path.parent.name}/{path.stem}" for path in self.paths]
        self.info = {"class_names": class_names, "num_classes": len(class_names)}

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFolder(root={str(self.root)!r}, split={self.split!r}, examples={len(self)})"

    def load(self, index: int) -> dict:
        """``{"image": uint8 (H, W, 3) RGB, "label": int, "meta": {"name", "index"}}``; resized to ``image_size``
        if set."""
        image = read_image(self.paths[index])
        if self.image_size is not None and image.shape[:2] != tuple(self.image_size):
            image = resize(image, self.image_size)
        return {"image": image, "label": int(self.labels[index]),
                "meta": {"name": str(self.names[index]), "index": index}}


# ------------------------------------------------------------------------------------------------ demo data

#: demo classes: a shape drawn in a random colour over a textured background, or the texture alone
#: ("background": without it, windows of a large image that hold no shape would have no right answer)
DEMO_CLASSES = ("background", "circle", "cross", "square", "triangle")
MARKER = ".densevision_demo_shapes.json"


def _textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(40, 200, 3)
    noise = rng.normal(0, 18, (size // 8 + 1, size // 8 + 1, 3))
    noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + noise + rng.normal(0, 6, (size, size, 3)), 0, 255)


def draw_shape(canvas: np.ndarray, shape: str, center, radius: float, colour) -> None:
    """Draw one demo class's shape (filled) on an RGB float canvas, in place."""
    x, y = (int(round(v)) for v in center)
    r = int(round(radius))
    colour = tuple(float(c) for c in colour)
    if shape == "circle":
        cv2.circle(canvas, (x, y), r, colour, -1, cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(canvas, (x - r, y - r), (x + r, y + r), colour, -1)
    elif shape == "triangle":
        points = np.array([[x, y - r], [x - r, y + r], [x + r, y + r]], np.int32)
        cv2.fillPoly(canvas, [points], colour, cv2.LINE_AA)
    elif shape == "cross":
        width = max(2, r // 3)
        cv2.rectangle(canvas, (x - r, y - width), (x + r, y + width), colour, -1)
        cv2.rectangle(canvas, (x - width, y - r), (x + width, y + r), colour, -1)
    else:
        raise ValueError(f"unknown demo shape {shape!r}; expected one of {DEMO_CLASSES}")


def render_shape_image(rng: np.random.Generator, shape: str, size: int = 64) -> np.ndarray:
    """A ``size x size`` uint8 RGB image: one ``shape`` at a random place, size and colour on a texture
    (``"background"``: the texture alone)."""
    canvas = _textured_background(rng, size)
    if shape == "background":
        return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    radius = rng.uniform(0.22, 0.36) * size
    center = rng.uniform(radius, size - radius, 2)
    background = canvas.mean(axis=(0, 1))
    colour = np.where(background > 127, rng.uniform(0, 90, 3), rng.uniform(165, 255, 3))  # contrasting
    draw_shape(canvas, shape, center, radius, colour)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, shapes, size: int = 192, tile: int = 64) -> np.ndarray:
    """A larger ``size x size`` image with one ``tile``-sized shape per listed class, for sliding classification."""
    canvas = _textured_background(rng, size)
    background = canvas.mean(axis=(0, 1))
    for shape in shapes:
        radius = rng.uniform(0.22, 0.36) * tile
        center = rng.uniform(radius, size - radius, 2)
        colour = np.where(background > 127, rng.uniform(0, 90, 3), rng.uniform(165, 255, 3))
        draw_shape(canvas, shape, center, radius, colour)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def make_demo_image_folder(directory: str | os.PathLike, per_class: dict[str, int] | None = None, size: int = 64,
                           num_scenes: int = 4, seed: int = 0) -> Path:
    """Write the demo shapes dataset: ``directory/<split>/<class>/NNNN.png`` plus ``directory/scenes/*.png``.

    Five classes (:data:`DEMO_CLASSES`: four shapes and plain background), ``size x size`` images;
    ``scenes`` holds larger images with two shapes each, for ``densevision sliding``. Deterministic for a
    seed; a second call with the same arguments returns at once (a marker written last records a complete
    dataset).

    Args:
        directory: output folder (created).
        per_class: images per class for each split, default ``{"train": 20, "val": 6, "test": 6}``.
        size: image side in pixels.
        num_scenes: larger multi-shape images to write.
        seed: the dataset's seed.

    Returns:
        ``directory`` as a Path, ready for ``ImageFolder(directory, split)``.
    """
    directory = Path(directory)
    per_class = dict(per_class or {"train": 20, "val": 6, "test": 6})
    settings = {"generator": "demo_shapes/2", "per_class": per_class, "size": size, "num_scenes": num_scenes,
                "seed": seed, "classes": list(DEMO_CLASSES)}
    marker = directory / MARKER
    if is_complete(marker, settings):
        return directory
    for split_id, (split, count) in enumerate(per_class.items()):
        for class_id, shape in enumerate(DEMO_CLASSES):
            folder = directory / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*.png"):
                old.unlink()
            for index in range(count):
                image = render_shape_image(np.random.default_rng([seed, split_id, class_id, index]), shape, size)
                cv2.imwrite(str(folder / f"{index:04d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    scenes = directory / "scenes"
    scenes.mkdir(parents=True, exist_ok=True)
    for index in range(num_scenes):
        rng = np.random.default_rng([seed, 1000, index])
        shapes = list(rng.choice(DEMO_CLASSES[1:], size=2, replace=False))
        image = render_scene(rng, shapes, size=3 * size, tile=size)
        cv2.imwrite(str(scenes / f"scene_{index:02d}_{'_'.join(shapes)}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    mark_complete(marker, settings)
    return directory
