"""Fixtures shared by the engine's test files."""

from __future__ import annotations

import pytest

import densevision  # noqa: F401  (environment first)
import keras


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.keras"
    model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    model.save(path)
    return path, model
