"""Deployment: export a trained model for serving: TensorFlow SavedModel, ``.keras`` and TFLite (float32 or
int8), each checked against the Keras model before the command returns.

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

**The serving seam.** The task (:class:`densevision.tasks.base.Task`) declares ``serving_outputs(prediction,
images) -> dict[str, tf.Tensor]``: TF graph ops (traceable, no numpy) turning the prediction tensor (the last
output, float32) and the uint8 input images into its decoded outputs; ``raw_output_name`` (default ``"logits"``;
``"heatmaps"`` for pose); and ``serving_input_size`` (``None``: any size; pose: its crop size). A task that does
not override ``serving_outputs`` cannot be exported (:class:`ExportError`); there is no fallback.

The package: :mod:`~densevision.serving.base` (the generic serving function, ``tf.Module``, ``.keras`` safety scan
and writers, all through :mod:`densevision.files`' atomic writers), :mod:`~densevision.serving.inputs` (input
size, calibration and synthetic images), :mod:`~densevision.serving.parity` (the check) and
:mod:`~densevision.serving.export` (:func:`export_model` and the ``densevision export`` command logic).

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

from densevision.serving.base import (FORMATS, METADATA_FILE, ExportError, ServingModule, check_format,
                                      check_keras_safe, convert_tflite, find_lambda_layers, image_spec,
                                      make_serving_function, model_input_size, prepare_output, raw_output_name,
                                      serving_decoder, write_keras, write_saved_model, write_tflite)
from densevision.serving.export import EXIT_PARITY_FAILED, EXIT_USAGE_ERROR, export_command, export_model
from densevision.serving.inputs import (MIN_CALIBRATION_IMAGES, calibration_paths, list_images,
                                        load_calibration_images, read_resized, read_resized_array, recipe_input_size,
                                        resolve_input_size, synthetic_images)
from densevision.serving.parity import PARITY_TOLERANCE, check_parity, compare_outputs, format_parity, load_exported

__all__ = [
    "EXIT_PARITY_FAILED", "EXIT_USAGE_ERROR", "FORMATS", "METADATA_FILE", "MIN_CALIBRATION_IMAGES", "PARITY_TOLERANCE",
    "ExportError", "ServingModule", "calibration_paths", "check_format", "check_keras_safe", "check_parity",
    "compare_outputs", "convert_tflite", "export_command", "export_model", "find_lambda_layers", "format_parity",
    "image_spec", "list_images", "load_calibration_images", "load_exported", "make_serving_function",
    "model_input_size", "prepare_output", "raw_output_name", "read_resized", "read_resized_array",
    "recipe_input_size", "resolve_input_size", "serving_decoder", "synthetic_images", "write_keras",
    "write_saved_model", "write_tflite",
]
