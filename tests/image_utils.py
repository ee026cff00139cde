"""Small generated image files shared by the data, sliding and prediction tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


RNG = np.random.default_rng(7)


def noise(height=24, width=32) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)
    return path


def truncate(path: Path, keep: float = 0.6) -> Path:
    """Cut a file short, keeping its header: the kind of file a full disk or a broken copy leaves."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
