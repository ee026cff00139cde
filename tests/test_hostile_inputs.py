"""Hostile inputs, part 2 (issue 15): each case here failed before its fix.

Outputs never read back as inputs, resumed runs that keep every earlier record, ``--set`` winning over ``--demo`` in
every tool, calibration folders with a stray file, one input walker for every tool, bounded memory for sliding
windows, and messages that say what is wrong. Data is generated in pytest's temporary folders.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import densevision  # noqa: F401  (environment first)
import keras

from densevision.data.augment import build_augmentation

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(15)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Demo data, verification verdicts and error logs of these tests go to a fresh folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DENSEVISION_CACHE", str(cache))
    monkeypatch.delenv("DENSEVISION_DEBUG", raising=False)
    return cache


def noise(height=24, width=32) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


# ------------------------------------------------------------------------------------------- augmentation


def test_mirror_detection_raises_no_numpy_deprecation_and_swaps_joints():
    """The mirror check used ``np.cross`` of 2-vectors, deprecated in NumPy 2 (a warning on every pose sample)."""
    image = np.zeros((20, 30, 3), np.uint8)
    sample = {"image": image, "keypoints": np.array([[3, 4, 2], [25, 10, 1]], np.float32)}
    for transforms, mirrored in (([{"HorizontalFlip": {"p": 1.0}}], True), ([{"Transpose": {"p": 1.0}}], True),
                                 ([{"Rotate": {"limit": [90, 90], "p": 1.0}}], False)):
        augment = build_augmentation(transforms, target="keypoints", flip_pairs=[(0, 1)])
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            out = augment(sample, 0)
        assert out["meta"]["mirrored"] is mirrored, transforms
    # a horizontal flip by hand: x -> W - 1 - x, and the two joints trade slots
    flipped = build_augmentation([{"HorizontalFlip": {"p": 1.0}}], target="keypoints", flip_pairs=[(0, 1)])(sample, 0)
    np.testing.assert_allclose(flipped["keypoints"], [[30 - 1 - 25, 10, 1], [30 - 1 - 3, 4, 2]])
