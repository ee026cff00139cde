"""The generic serving base every task shares: the uint8 serving function around a model and its task's
``serving_outputs``, the ``tf.Module`` that holds it, the ``.keras`` safety scan, and the writers of each format.

The task supplies only what its answer means (:class:`densevision.tasks.base.Task`: ``serving_outputs``,
``raw_output_name``, ``serving_input_size``); everything here is the same for every task, as TF Model Garden's
``official/vision/serving/export_base.py`` is under its small per-task modules. See :mod:`densevision.serving` for
the formats and their outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

import keras
import tensorflow as tf

from densevision.engine.checkpoints import unsafe_parts
from densevision.errors import UsageError
from densevision.files import atomic_write, atomic_write_dir, check_writable_dir, write_bytes
from densevision.tasks.base import Task

FORMATS = ("saved_model", "keras", "tflite")
METADATA_FILE = "assets.extra/densevision.json"


class ExportError(UsageError):
    """An export that cannot be done as asked: the message names the file, layer or option and what was expected."""


def check_format(format: str, int8: bool = False) -> None:
    """The one check of a format and its int8 option (the API, the command and :func:`export_model` share it).

    Raises:
        ExportError: an unknown format, or int8 asked for another format than tflite.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if int8 and format != "tflite":
        raise ExportError(f"int8 quantisation (--int8) is for the tflite format, not {format!r}")


def prepare_output(path: Path, format: str, overwrite: bool) -> None:
    """Check the output path for ``format`` (``.keras`` suffix; not already there unless ``overwrite``; its folder
    writable, created if needed)."""
    path = Path(path)
    if format == "keras" and path.suffix != ".keras":
        raise ExportError(f"output {path}: a keras export must end in .keras")
    if path.exists() and not overwrite:
        raise ExportError(f"output {path} already exists; pass --overwrite to replace it")
    check_writable_dir(path.parent, what=f"output {path}: its folder", create=True)


# ------------------------------------------------------------------------------------------ serving outputs


def serving_decoder(task: Task) -> Callable[[tf.Tensor, tf.Tensor], dict[str, tf.Tensor]]:
    """``fn(prediction float32, images uint8) -> dict of decoded tensors``: the task's ``serving_outputs``.

    Raises:
        ExportError: the task keeps the base class's ``serving_outputs`` (it declares none of its own).
    """
    if type(task).serving_outputs is Task.serving_outputs:
        raise ExportError(f"task {task.name!r}: no serving outputs; the task must define "
                          f"serving_outputs(prediction, images) -> dict of tf.Tensor")
    return lambda prediction, images: dict(task.serving_outputs(prediction, images))


def raw_output_name(task: Task) -> str:
    """Name of the raw prediction in the exported outputs: ``task.raw_output_name`` (``"logits"`` by default)."""
    return str(task.raw_output_name)


def _split_outputs(outputs, raw_name: str) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """``(raw outputs by name, prediction)``: a list's last entry is the prediction (``raw_name``), the others
    ``raw_name_0`` ...; a dict's entries keep their keys and its last one is the prediction."""
    if isinstance(outputs, dict):
        if not outputs:
            raise ExportError("the model returned an empty dict of outputs")
        raw = {str(key): value for key, value in outputs.items()}
        return raw, raw[list(raw)[-1]]
    if isinstance(outputs, (list, tuple)):
        if not outputs:
            raise ExportError("the model returned an empty list of outputs")
        raw = {f"{raw_name}_{index}": value for index, value in enumerate(outputs[:-1])}
        raw[raw_name] = outputs[-1]
        return raw, outputs[-1]
    return {raw_name: outputs}, outputs


def make_serving_function(model: keras.Model, task) -> Callable:
    """``serve(images uint8 (B, H, W, 3)) -> dict[str, tf.Tensor]``: raw outputs (float32) and decoded outputs.

    Plain Python (trace it with ``tf.function``); the model runs in inference mode on ``float32`` pixels in
    [0, 255], the input every densevision model takes.
    """
    decode = serving_decoder(task)
    raw_name = raw_output_name(task)

    def serve(images):
        outputs = model(tf.cast(images, tf.float32), training=False)
        raw, prediction = _split_outputs(outputs, raw_name)
        raw = {name: tf.cast(value, tf.float32) for name, value in raw.items()}
        decoded = decode(tf.cast(prediction, tf.float32), images)
        clashes = sorted(set(raw) & set(decoded))
        if clashes:
            raise ExportError(f"decoded outputs {clashes} have the names of raw outputs; rename them")
        return {**raw, **decoded}

    return serve


def model_input_size(model: keras.Model) -> Optional[tuple[int, int]]:
    """``(H, W)`` if the model was built for one fixed size, else ``None``."""
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
    if shape is None or len(shape) != 4 or shape[1] is None or shape[2] is None:
        return None
    return int(shape[1]), int(shape[2])


def image_spec(model: keras.Model, input_size: Optional[Sequence[int]] = None, batch: Optional[int] = None):
    """``tf.TensorSpec`` of the uint8 image input: ``(batch, H, W, 3)``, sizes ``None`` unless fixed."""
    size = tuple(input_size) if input_size is not None else model_input_size(model) or (None, None)
    return tf.TensorSpec([batch, size[0], size[1], 3], tf.uint8, name="images")


class ServingModule(tf.Module):
    """A ``tf.Module`` holding the model's variables and ``serve``, the uint8 serving function.

    The variables are tracked as plain ``tf.Variable`` s (not Keras variable wrappers): that lets the TFLite
    converter fold them into constants (with the wrappers, batch-norm statistics stayed variables and the
    converted model read uninitialised memory).
    """

    def __init__(self, model: keras.Model, serve_fn: Callable, input_size: Optional[Sequence[int]] = None):
        super().__init__(name="densevision_serving")
        self.model_variables = [getattr(v, "value", v) for v in model.variables]
        self.serve = tf.function(serve_fn, input_signature=[image_spec(model, input_size)], autograph=False)


# ------------------------------------------------------------------------------------------- .keras safety


def find_lambda_layers(model: keras.Model) -> list[str]:
    """Paths of the parts of ``model``'s config that hold Python bytecode (``Lambda`` layers, lambda activations).

    ``keras.saving.load_model(..., safe_mode=True)`` refuses those; the paths read ``outer/inner/layer``.
    """
    try:
        config = keras.saving.serialize_keras_object(model)
    except Exception as error:  # e.g. a Python lambda as an activation: Keras cannot serialise it at all
        raise ExportError(f"model {model.name!r} cannot be serialised for a .keras file "
                          f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    return unsafe_parts(config)


def check_keras_safe(model: keras.Model) -> None:
    """Raise :class:`ExportError` naming every Lambda layer (``.keras`` must load with ``safe_mode=True``)."""
    unsafe = find_lambda_layers(model)
    if unsafe:
        raise ExportError(
            f"model {model.name!r} cannot be saved as a safe .keras file: {', '.join(unsafe)} holds Python bytecode "
            f"that keras.saving.load_model(safe_mode=True) refuses; replace it with a registered layer "
            f"(@keras.saving.register_keras_serializable) or export to saved_model/tflite"
        )


# ------------------------------------------------------------------------------------------------ writing


def write_saved_model(module: ServingModule, path: Path, metadata: dict[str, Any]) -> None:
    """``tf.saved_model.save`` with ``serving_default`` = ``module.serve``, plus ``assets.extra/densevision.json``,
    written through :func:`densevision.files.atomic_write_dir` (an existing folder is replaced only when complete)."""

    def write(tmp: str) -> None:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve.get_concrete_function()})
        (Path(tmp) / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (Path(tmp) / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")

    atomic_write_dir(path, write)


def write_keras(model: keras.Model, path: Path) -> None:
    """``model.save`` (weights and config, no optimizer state for a model loaded without compiling) through
    :func:`densevision.files.atomic_write`; refuses Lambda layers first."""
    check_keras_safe(model)
    atomic_write(path, model.save)


def convert_tflite(
    model: keras.Model,
    serve_fn: Callable,
    input_size: Sequence[int],
    calibration_images: Optional[np.ndarray] = None,
) -> bytes:
    """The serving function at a fixed ``(1, H, W, 3)`` uint8 input as a TFLite flatbuffer.

    With ``calibration_images`` (uint8 ``(N, H, W, 3)``): full-integer int8 quantisation calibrated on them
    (int8 kernels only; float outputs become int8).
    """
    module = ServingModule(model, serve_fn, input_size)
    fixed = tf.function(serve_fn, input_signature=[image_spec(model, input_size, batch=1)], autograph=False)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fixed.get_concrete_function()], module)
    if calibration_images is not None:
        def representative_dataset():
            for image in calibration_images:
                yield [image[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as error:  # unsupported op, failed quantisation
        mode = "int8" if calibration_images is not None else "float32"
        raise ExportError(f"TFLite {mode} conversion of {model.name!r} failed: {type(error).__name__}: "
                          f"{str(error).strip().splitlines()[-1] if str(error).strip() else ''}") from None


def write_tflite(content: bytes, path: Path) -> None:
    """The TFLite flatbuffer through :func:`densevision.files.write_bytes` (atomic)."""
    write_bytes(path, content)
