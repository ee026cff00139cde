"""Parity: an exported artefact run back and compared with the Keras model through the same serving function.

The largest difference of the raw prediction relative to its largest magnitude, ``max|a - b| / max(1, max|b|)``,
must be within :data:`PARITY_TOLERANCE` (SavedModel 1e-5, ``.keras`` exact, TFLite float 1e-4); int8 is reported
as the agreement of the integer outputs (argmax) and the mean absolute error relative to the output range.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import keras
import tensorflow as tf

from densevision.serving.base import FORMATS, ExportError, make_serving_function, raw_output_name

#: largest allowed ``max|exported - keras| / max(1, max|keras|)`` of the raw prediction, per format
PARITY_TOLERANCE = {"saved_model": 1e-5, "keras": 0.0, "tflite": 1e-4}


def _tflite_interpreter(path: Path):
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice (ai_edge_litert is not a dependency)
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    return interpreter.get_signature_runner("serving_default")


def load_exported(format: str, path: str | os.PathLike, task) -> Callable:
    """``fn(images uint8 (B, H, W, 3)) -> dict of float/int numpy outputs`` from an exported artefact.

    TFLite runs one image at a time and dequantises int8 outputs; ``.keras`` is loaded with ``safe_mode=True``
    and wrapped in the same serving function as the export.
    """
    path = Path(path)
    if format == "saved_model":
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        return lambda images: {k: v.numpy() for k, v in signature(images=tf.constant(images, tf.uint8)).items()}
    if format == "keras":
        try:
            loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as error:
            raise ExportError(f"{path} does not load back with safe_mode=True ({type(error).__name__}: {error})") \
                from None
        serve = tf.function(make_serving_function(loaded, task), autograph=False)
        return lambda images: {k: v.numpy() for k, v in serve(tf.constant(images, tf.uint8)).items()}
    if format == "tflite":
        runner = _tflite_interpreter(path)
        details = runner.get_output_details()

        def run(images):
            results: dict[str, list] = {}
            for image in images:
                for name, value in runner(images=np.asarray(image[None], np.uint8)).items():
                    scale, zero_point = details[name]["quantization"]
                    if scale:  # int8 output: back to float
                        value = (value.astype(np.float32) - zero_point) * scale
                    results.setdefault(name, []).append(value)
            return {name: np.concatenate(values) for name, values in results.items()}

        return run
    raise ExportError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")


def compare_outputs(reference: dict[str, np.ndarray], exported: dict[str, np.ndarray]) -> dict:
    """Per output: ``max_abs``, ``relative`` (``max_abs / max(1, max|reference|)``) and ``mean_abs_of_range``
    for floats, ``agreement`` (fraction equal) for integers."""
    missing = sorted(set(reference) - set(exported))
    if missing:
        raise ExportError(f"the exported model lacks outputs {missing} (it has {sorted(exported)})")
    report = {}
    for name, ref in reference.items():
        got = np.asarray(exported[name])
        if got.shape != ref.shape:
            raise ExportError(f"output {name!r}: exported shape {got.shape}, Keras {ref.shape}")
        if ref.dtype.kind in "iub":
            report[name] = {"agreement": float(np.mean(got == ref))}
        else:
            diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            span = float(ref.max() - ref.min()) if ref.size else 0.0
            report[name] = {"max_abs": float(diff.max()) if diff.size else 0.0,
                            "relative": float(diff.max() / max(1.0, float(np.abs(ref).max()))) if diff.size else 0.0,
                            "mean_abs_of_range": float(diff.mean() / span) if span else float(diff.mean())}
    return report


def check_parity(format: str, path: Path, model: keras.Model, serve_fn: Callable, images: Sequence[np.ndarray],
                 task, int8: bool = False) -> dict:
    """Run the exported artefact and the Keras model on ``images`` (arrays, possibly of several sizes).

    Returns:
        ``{"outputs": {name: compare_outputs numbers}, "tolerance": float or None (int8: report only),
        "passed": bool, "num_images": int, "sizes": [(H, W)]}``.
    """
    reference_fn = tf.function(serve_fn, autograph=False, reduce_retracing=True)
    exported_fn = load_exported(format, path, task)
    by_size: dict[tuple[int, int], list[np.ndarray]] = {}
    for image in images:
        by_size.setdefault(tuple(image.shape[:2]), []).append(image)
    merged: dict[str, dict] = {}
    raw_name = raw_output_name(task)
    for size, group in by_size.items():
        batch = np.stack(group).astype(np.uint8)
        reference = {k: v.numpy() for k, v in reference_fn(tf.constant(batch)).items()}
        for name, numbers in compare_outputs(reference, exported_fn(batch)).items():
            previous = merged.setdefault(name, {})
            for key, value in numbers.items():  # over image sizes, the worst of each number
                worse = min if key == "agreement" else max
                previous[key] = worse(previous[key], value) if key in previous else value
    tolerance = None if int8 else PARITY_TOLERANCE[format]
    raw = merged.get(raw_name, {})
    passed = tolerance is None or raw.get("relative", 0.0) <= tolerance
    return {"outputs": merged, "raw": raw_name, "tolerance": tolerance, "passed": bool(passed),
            "num_images": len(images), "sizes": sorted(by_size)}


def format_parity(parity: dict, format: str, int8: bool = False) -> str:
    """One line per output, e.g. ``logits: max |diff| 2.1e-06, relative 2.3e-07 (tolerance 1e-05) ok``."""
    kind = "tflite int8" if int8 else format
    sizes = ", ".join(f"{h}x{w}" for h, w in parity["sizes"])
    lines = [f"parity, exported {kind} against the Keras model on {parity['num_images']} images ({sizes}):"]
    for name, numbers in sorted(parity["outputs"].items(), key=lambda item: item[0] != parity["raw"]):
        if "agreement" in numbers:
            lines.append(f"  {name}: {100 * numbers['agreement']:.2f}% agree")
            continue
        text = f"  {name}: max |diff| {numbers['max_abs']:.3g}, relative {numbers['relative']:.3g}"
        if int8:
            text += f", mean |diff| {100 * numbers['mean_abs_of_range']:.2f}% of the output range"
        if name == parity["raw"] and parity["tolerance"] is not None:
            verdict = "ok" if parity["passed"] else "FAILED"
            text += f" (tolerance {parity['tolerance']:g}) {verdict}"
        lines.append(text)
    return "\n".join(lines)

