"""Export a trained model for serving: TensorFlow SavedModel, ``.keras`` and TFLite (float32 or int8), each checked
against the Keras model before the command returns.

Every format takes **uint8 RGB images** ``(B, H, W, 3)`` in [0, 255] (the model's own preprocessing and padding are
inside it) and returns a dict of the model's raw outputs and the task's decoded outputs:

==================  ==================================  ===============================================
task                raw                                 decoded
==================  ==================================  ===============================================
segmentation        ``logits`` (B, H, W, K)             ``labels`` int32 (B, H, W): argmax at the input
                                                        size (logits at another size are resized first)
classification      ``logits`` (B, K)                   ``probabilities`` (B, K), ``top_class`` int32 (B,)
pose                ``heatmaps`` (B, h, w, J)           ``keypoints`` (B, J, 2) in input pixels, ``scores``
                                                        (B, J), from the task's codec
==================  ==================================  ===============================================

A model returning several outputs (one per hourglass stack) is exported with all of them: the last, the
prediction, under the raw name (``heatmaps``) and the others as ``heatmaps_0``, ``heatmaps_1``, ...; the decoded
outputs come from the last.

**The serving seam.** A task may define ``serving_outputs(outputs) -> dict[str, tf.Tensor]``: TF graph ops
(traceable, no numpy) turning the prediction tensor (the last output, float32) into its decoded outputs, and
optionally ``raw_output_name`` (default ``"logits"``; ``"heatmaps"`` for pose). Tasks without it use the
fallbacks here (segmentation, classification; pose through ``task.codec.decode_tf``).

Formats:

- ``saved_model``: a ``tf.Module`` whose ``serving_default`` signature takes ``images`` uint8
  ``(None, None, None, 3)`` (any batch and size; a model built for one fixed size takes that size), plus
  ``assets.extra/densevision.json`` describing inputs and outputs.
- ``keras``: the model alone (raw outputs), loadable with ``keras.saving.load_model(path, safe_mode=True)``;
  refused, naming the layer, if it holds a ``Lambda`` (Python bytecode that safe mode will not load).
- ``tflite``: the serving function at a fixed ``(1, H, W, 3)`` uint8 input. ``int8``: full-integer quantisation
  calibrated on images of a folder; the input stays raw uint8 pixels, float outputs become int8 (dequantise with
  the output's ``quantization`` scale and zero point), integer outputs (``labels``) stay int32.

Parity (the exported artefact against the Keras model through the same serving function, on a few images): the
largest difference of the raw prediction relative to its largest magnitude, ``max|a - b| / max(1, max|b|)``,
must be within ``PARITY_TOLERANCE`` (SavedModel 1e-5, ``.keras`` exact, TFLite float 1e-4); int8 is reported
as the agreement of the integer outputs (argmax) and the mean absolute error relative to the output range.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

import cv2
import keras
import tensorflow as tf

from densevision.engine.checkpoints import unsafe_parts
from densevision.errors import DensevisionError, UsageError

FORMATS = ("saved_model", "keras", "tflite")
#: largest allowed ``max|exported - keras| / max(1, max|keras|)`` of the raw prediction, per format
PARITY_TOLERANCE = {"saved_model": 1e-5, "keras": 0.0, "tflite": 1e-4}
METADATA_FILE = "assets.extra/densevision.json"
EXIT_USAGE_ERROR = 2
EXIT_PARITY_FAILED = 1
#: fewest readable calibration images an int8 export accepts: the parity check compares 4 of them, and quantisation
#: ranges from fewer would be guesses
MIN_CALIBRATION_IMAGES = 4


class ExportError(UsageError):
    """An export that cannot be done as asked: the message names the file, layer or option and what was expected."""


# ------------------------------------------------------------------------------------------ serving outputs


def serving_decoder(task) -> Callable[[tf.Tensor, tf.Tensor], dict[str, tf.Tensor]]:
    """``fn(prediction float32, images uint8) -> dict of decoded tensors``: the task's ``serving_outputs``.

    Raises:
        ExportError: the task has no serving outputs.
    """
    if not callable(getattr(task, "serving_outputs", None)):
        raise ExportError(f"task {getattr(task, 'name', task)!r}: no serving outputs; the task must define "
                          f"serving_outputs(prediction, images) -> dict of tf.Tensor")
    return lambda prediction, images: dict(task.serving_outputs(prediction, images))


def raw_output_name(task) -> str:
    """Name of the raw prediction in the exported outputs: ``task.raw_output_name`` (``"logits"`` by default)."""
    return str(getattr(task, "raw_output_name", None) or "logits")


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


# -------------------------------------------------------------------------------------------------- images


def list_images(directory: str | os.PathLike, what: str = "calibration", exclude: Sequence[str | os.PathLike] = ()
                ) -> list[Path]:
    """Image files directly in ``directory`` (never in ``exclude``: the export's own output), sorted;
    :class:`ExportError` if it is missing or has none."""
    from densevision.data.io import IMAGE_EXTENSIONS, list_images as find_images

    directory = Path(directory)
    if not directory.is_dir():
        raise ExportError(f"{what} folder {directory} does not exist (or is not a folder)")
    images = [path for path, _ in find_images([directory], recursive=False, problems=[], exclude=exclude)]
    if not images:
        raise ExportError(f"{what} folder {directory} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return images


def read_resized(path: Path, size: Optional[Sequence[int]] = None) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` through the one image reader, resized to ``size = (H, W)`` if given."""
    from densevision.data.io import read_image

    image = read_image(path)
    return image if size is None else read_resized_array(image, size)


def read_resized_array(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """A uint8 ``(H, W, 3)`` array resized to ``size = (H, W)`` (unchanged if it already has that size)."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    shrink = size[0] * size[1] < image.shape[0] * image.shape[1]
    return cv2.resize(image, (int(size[1]), int(size[0])),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def calibration_paths(directory: str | os.PathLike, limit: int = 100, exclude: Sequence[str | os.PathLike] = ()
                      ) -> list[Path]:
    """Up to ``limit`` images of ``directory`` that decode (each read once, in name order): a file that does not is
    skipped with a warning naming it; checked before the model loads.

    Raises:
        ExportError: the folder is missing or has no image file, or fewer than :data:`MIN_CALIBRATION_IMAGES`
            images decode (the message says how many are needed and which files were skipped).
    """
    from densevision.data.errors import ImageReadError
    from densevision.data.io import read_image

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


# ------------------------------------------------------------------------------------------------ writing


def _prepare_output(path: Path, format: str, overwrite: bool) -> None:
    """Check the output path for ``format`` (``.keras`` suffix; not already there unless ``overwrite``)."""
    if format == "keras" and path.suffix != ".keras":
        raise ExportError(f"output {path}: a keras export must end in .keras")
    if path.exists() and not overwrite:
        raise ExportError(f"output {path} already exists; pass --overwrite to replace it")
    from densevision.files import check_writable_dir

    check_writable_dir(path.parent, what=f"output {path}: its folder", create=True)


def _replace(tmp: Path, path: Path) -> None:
    """Move ``tmp`` (file or folder) to ``path``, replacing what is there only once the new one is complete."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def write_saved_model(module: ServingModule, path: Path, metadata: dict[str, Any]) -> None:
    """``tf.saved_model.save`` with ``serving_default`` = ``module.serve``, plus ``assets.extra/densevision.json``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serve.get_concrete_function()})
        (tmp / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        _replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_keras(model: keras.Model, path: Path) -> None:
    """``model.save`` (weights and config, no optimizer state for a model loaded without compiling) via a temporary
    file; refuses Lambda layers first."""
    check_keras_safe(model)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        _replace(Path(tmp), path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tflite", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        _replace(Path(tmp), path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ------------------------------------------------------------------------------------------------- parity


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
        from densevision.engine.checkpoints import register_custom_objects

        register_custom_objects()
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


# --------------------------------------------------------------------------------------------------- export


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
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    int8 = calibration_images is not None
    if int8 and format != "tflite":
        raise ExportError(f"int8 quantisation is for the tflite format, not {format!r}")
    # A task may serve one size only (pose: heatmap decoding maps cells to crop pixels of its input size).
    fixed = model_input_size(model) or (tuple(int(v) for v in task.serving_input_size)
                                        if getattr(task, "serving_input_size", None) else None)
    if input_size is not None:
        input_size = (int(input_size[0]), int(input_size[1]))
        if fixed and input_size != fixed:
            raise ExportError(f"input size {input_size} differs from the {fixed} model {model.name!r} was built for")
    if format == "tflite" and input_size is None and fixed is None:
        raise ExportError("a TFLite export needs a fixed input size: pass --input-size H W (input_size=(H, W))")
    if format == "keras":
        check_keras_safe(model)  # before anything is written
    path = Path(output)
    _prepare_output(path, format, overwrite)

    serve_fn = make_serving_function(model, task)
    size = input_size or fixed
    if format == "saved_model":
        module = ServingModule(model, serve_fn, input_size=fixed)
        outputs = module.serve.get_concrete_function().structured_outputs
        info = {"format": "densevision serving v1", "task": getattr(task, "name", "?"), "raw_output": raw_output_name(task),
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


def _build_task(recipe):
    """The recipe's task, built from its dataset's info (described without data where the source can)."""
    from densevision.engine.predictor import prediction_info
    from densevision.registry import TASKS

    return TASKS.get(recipe.task)(recipe, prediction_info(recipe))


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
    """What ``tools/export.py`` does; returns the exit code.

    0: exported and within the format's parity tolerance; 1: exported but the parity check failed (the file is
    kept for inspection); 2: one ``error: ...`` line on stderr (recipe, checkpoint, options, calibration folder).
    """
    from densevision.engine.checkpoints import load_checkpoint
    from densevision.engine.demo import load_tool_recipe

    try:
        if format not in FORMATS:
            raise ExportError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
        if int8 and format != "tflite":
            raise ExportError("--int8 is for --format tflite")
        if int8 and not calibration:
            raise ExportError("--int8 needs --calibration DIR: a folder of representative images")
        if calibration and not int8:
            raise ExportError("--calibration is only used with --int8")
        # read once before the model loads: an unreadable file is skipped, too few readable ones refused
        calibration_files = calibration_paths(calibration, calibration_limit, exclude=[output]) if calibration else None
        _prepare_output(Path(output), format, overwrite)
        recipe = load_tool_recipe(recipe_path, list(overrides), demo=demo)
        model = load_checkpoint(weights, recipe)
        size = resolve_input_size(recipe, model, format, input_size)
        task = _build_task(recipe)
        from densevision.engine.compat import check_checkpoint_matches

        check_checkpoint_matches(model, recipe, task.info, weights, task=task)
        calibration_images = (load_calibration_images(calibration, size, paths=calibration_files) if int8
                              else None)
        report = export_model(model, output, format, task, input_size=size,
                              calibration_images=calibration_images, overwrite=overwrite,
                              metadata={"recipe": recipe.name, "checkpoint": str(weights)})
    except DensevisionError as error:  # recipe, checkpoint, output, option: one line, exit 2
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    size_text = f"{report['input_size'][0]}x{report['input_size'][1]}" if report["input_size"] else "any size"
    kind = "tflite int8" if report["int8"] else format
    print(f"exported {recipe.name} ({recipe.task}) as {kind} to {output}: input uint8 images, {size_text}")
    print(format_parity(report, format, report["int8"]))
    if not report["passed"]:
        print(f"error: parity check failed: the exported model differs from the Keras model by more than "
              f"{report['tolerance']:g} (relative); the export is kept at {output} for inspection", file=sys.stderr)
        return EXIT_PARITY_FAILED
    return 0
