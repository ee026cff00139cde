"""Export a model and check it: :func:`export_model` (the library call) and :func:`export_command` (what
``densevision export`` runs). See :mod:`densevision.serving` for the formats."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

import keras

from densevision.engine.demo import load_tool_recipe
from densevision.engine.checkpoints import load_for_prediction
from densevision.serving.base import (ExportError, ServingModule, check_format, check_keras_safe, convert_tflite,
                                      image_spec, make_serving_function, model_input_size, prepare_output,
                                      raw_output_name, write_keras, write_saved_model, write_tflite)
from densevision.serving.inputs import (calibration_paths, load_calibration_images, read_resized_array,
                                        resolve_input_size, synthetic_images)
from densevision.serving.parity import check_parity, format_parity

#: exit status of an export whose parity check failed (the artefact is kept for inspection)
EXIT_PARITY_FAILED = 1
#: exit status of a usage error, given by :func:`densevision.cli.run_tool` (kept for older callers)
EXIT_USAGE_ERROR = 2


def export_model(
    model: keras.Model,
    output: str | os.PathLike,
    format: str,
    task,
    input_size: Optional[Sequence[int]] = None,
    calibration_images: Optional[np.ndarray] = None,
    parity_images: Optional[Sequence[np.ndarray]] = None,
    overwrite: bool = False,
    metadata: Optional[dict[str, Any]] = None,
) -> dict:
    """Export ``model`` in ``format`` to ``output`` and check it against the Keras model.

    Args:
        model: images float32 ``(B, H, W, 3)`` in [0, 255] -> the task's output (or a list: one per stack).
        output: a folder (``saved_model``), a ``.keras`` file or a ``.tflite`` file.
        format: ``"saved_model"``, ``"keras"`` or ``"tflite"``.
        task: the recipe's task: its ``serving_outputs(prediction, images)`` gives the decoded outputs.
        input_size: ``(H, W)`` for TFLite (required there); also the parity images' size.
        calibration_images: uint8 ``(N, H, W, 3)``: quantise the TFLite model to int8 with them.
        parity_images: uint8 images for the parity check (default: synthetic ones, two sizes when the model takes
            any size).
        overwrite: replace an existing ``output``.
        metadata: extra JSON-able fields for the SavedModel's ``assets.extra/densevision.json``.

    Returns:
        The parity report of :func:`check_parity` plus ``"path"``, ``"format"``, ``"int8"`` and ``"input_size"``
        (the ``(H, W)`` the artefact takes, ``None`` for any size).

    Raises:
        ExportError: a bad option, an existing output, a Lambda layer in a ``.keras`` export, a failed conversion.
    """
    int8 = calibration_images is not None
    check_format(format, int8)
    # A task may serve one size only (pose: heatmap decoding maps cells to crop pixels of its input size).
    fixed = model_input_size(model) or (tuple(int(v) for v in task.serving_input_size)
                                        if task.serving_input_size else None)
    if input_size is not None:
        input_size = (int(input_size[0]), int(input_size[1]))
        if fixed and input_size != fixed:
            raise ExportError(f"input size {input_size} differs from the {fixed} model {model.name!r} was built for")
    if format == "tflite" and input_size is None and fixed is None:
        raise ExportError("a TFLite export needs a fixed input size: pass --input-size H W (input_size=(H, W))")
    if format == "keras":
        check_keras_safe(model)  # before anything is written
    path = Path(output)
    prepare_output(path, format, overwrite)

    serve_fn = make_serving_function(model, task)
    size = input_size or fixed
    if format == "saved_model":
        module = ServingModule(model, serve_fn, input_size=fixed)
        outputs = module.serve.get_concrete_function().structured_outputs
        info = {"format": "densevision serving v1", "task": task.name, "raw_output": raw_output_name(task),
                "input": {"name": "images", "dtype": "uint8", "shape": list(image_spec(model, fixed).shape.as_list()),
                          "range": [0, 255], "channels": "RGB"},
                "outputs": {name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
                            for name, spec in outputs.items()},
                **(metadata or {})}
        write_saved_model(module, path, info)
    elif format == "keras":
        write_keras(model, path)
    else:
        write_tflite(convert_tflite(model, serve_fn, size, calibration_images), path)

    if parity_images is None:
        if int8:
            parity_images = list(calibration_images[:4])
        elif size is not None:
            parity_images = list(synthetic_images(3, size))
        else:  # any size: two sizes, one not a multiple of the usual network strides
            parity_images = list(synthetic_images(2, (64, 96))) + list(synthetic_images(2, (45, 70), seed=1))
    elif format == "tflite":
        parity_images = [read_resized_array(image, size) for image in parity_images]
    parity = check_parity(format, path, model, serve_fn, parity_images, task, int8=int8)
    served_size = size if format == "tflite" else fixed  # what the artefact accepts (None: any size)
    return {**parity, "path": str(path), "format": format, "int8": int8, "input_size": served_size}


def export_command(
    recipe_path: str,
    weights: str,
    format: str,
    output: str,
    overrides: Sequence[str] = (),
    input_size: Optional[Sequence[int]] = None,
    int8: bool = False,
    calibration: Optional[str] = None,
    overwrite: bool = False,
    calibration_limit: int = 100,
    demo: bool = False,
) -> int:
    """What ``densevision export`` does; returns the exit code.

    0: exported and within the format's parity tolerance; 1: exported but the parity check failed (the file is
    kept for inspection). Recipe, checkpoint, option and calibration-folder problems raise
    :class:`~densevision.errors.DensevisionError` subclasses before anything is written, which the command's
    :func:`densevision.cli.run_tool` turns into one ``error: ...`` line and exit 2.
    """
    check_format(format, int8)
    if int8 and not calibration:
        raise ExportError("--int8 needs --calibration DIR: a folder of representative images")
    if calibration and not int8:
        raise ExportError("--calibration is only used with --int8")
    # read once before the model loads: an unreadable file is skipped, too few readable ones refused
    calibration_files = calibration_paths(calibration, calibration_limit, exclude=[output]) if calibration else None
    prepare_output(Path(output), format, overwrite)
    recipe = load_tool_recipe(recipe_path, list(overrides), demo=demo)
    model, task = load_for_prediction(recipe, weights)
    size = resolve_input_size(recipe, model, format, input_size)
    calibration_images = load_calibration_images(calibration, size, paths=calibration_files) if int8 else None
    report = export_model(model, output, format, task, input_size=size, calibration_images=calibration_images,
                          overwrite=overwrite, metadata={"recipe": recipe.name, "checkpoint": str(weights)})
    size_text = f"{report['input_size'][0]}x{report['input_size'][1]}" if report["input_size"] else "any size"
    kind = "tflite int8" if report["int8"] else format
    print(f"exported {recipe.name} ({recipe.task}) as {kind} to {output}: input uint8 images, {size_text}")
    print(format_parity(report, format, report["int8"]))
    if not report["passed"]:
        print(f"error: parity check failed: the exported model differs from the Keras model by more than "
              f"{report['tolerance']:g} (relative); the export is kept at {output} for inspection", file=sys.stderr)
        return EXIT_PARITY_FAILED
    return 0
