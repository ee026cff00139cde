"""Process-wide environment set before Keras or albumentations are imported.

Keras picks its backend once, on first import, from ``KERAS_BACKEND``; densevision is built on the TensorFlow
backend (tf.data pipelines, tf.distribute strategies), so it insists on it here with a clear message.
"""

import os

SUPPORTED_BACKEND = "tensorflow"


class BackendError(RuntimeError):
    """Keras is (or would be) running on a backend other than TensorFlow."""


def configure_environment() -> None:
    """Select the TensorFlow backend and silence network/log noise; call before importing keras."""
    # albumentations checks PyPI for a newer version on import: never phone home.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    requested = os.environ.get("KERAS_BACKEND")
    if requested and requested != SUPPORTED_BACKEND:
        raise BackendError(
            f"densevision runs on Keras' TensorFlow backend, but KERAS_BACKEND={requested!r}. "
            f"Unset it or run with KERAS_BACKEND=tensorflow."
        )
    os.environ["KERAS_BACKEND"] = SUPPORTED_BACKEND


def check_loaded_backend() -> None:
    """Fail clearly if keras was imported earlier with another backend."""
    import keras

    if keras.backend.backend() != SUPPORTED_BACKEND:
        raise BackendError(
            f"Keras was already imported with the {keras.backend.backend()!r} backend; densevision needs "
            f"'tensorflow'. Import densevision before keras, or set KERAS_BACKEND=tensorflow."
        )
