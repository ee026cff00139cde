"""Moved: deployment lives in :mod:`densevision.serving` (``base``: the serving function and writers,
``inputs``: input size and calibration images, ``parity``: the check, ``export``: :func:`export_model` and the
command). This module re-exports every name it had, so older imports keep working."""

from densevision.serving import *  # noqa: F401,F403
from densevision.serving import __all__  # noqa: F401
from densevision.serving.base import _split_outputs, prepare_output as _prepare_output  # noqa: F401
from densevision.serving.inputs import _transform_size  # noqa: F401
from densevision.serving.parity import _tflite_interpreter  # noqa: F401
