"""The Python API: ``densevision.load(source)`` -> an object that predicts, evaluates and exports.

    import densevision

    model = densevision.load("runs/tiramisu_camvid/20261204-101500")   # a run folder (best.keras)
    answers = model.predict(["street.png", image_array])              # one answer per image
    answers[0]["mask"]                                                 # (H, W) int32 class ids
    model.evaluate("test")                                             # the numbers tools/evaluate.py prints
    model.export("saved_model", "exported/")                           # a checked SavedModel

Everything here sits over the machinery the tools use, so the API and the tools give the same answers: recipe
loading (:func:`densevision.recipes.load_recipe`, ``--demo`` and ``--set`` through
:func:`densevision.engine.demo.load_tool_recipe`), checkpoint loading and matching
(:func:`~densevision.inference.predictor.load_for_prediction`), the tasks' per-image prediction (tiling of large
images, flip and scale averaging, people finding) as :mod:`densevision.inference.predictor` runs it, evaluation
(:func:`densevision.engine.evaluator.run_evaluation`) and export (:func:`densevision.serving.export_model`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from densevision import serving
from densevision.data.errors import ImageReadError
from densevision.data.io import as_rgb_uint8, read_image
from densevision.engine.checkpoints import load_for_prediction
from densevision.engine.demo import load_tool_recipe
from densevision.engine.evaluator import run_evaluation
from densevision.errors import UsageError
from densevision.inference.predictor import (DEFAULT_MAX_PIXELS, PredictOptions, make_forward,
                                             validate_options)
from densevision.inference.writers import configure_task
from densevision.recipes import Recipe
from densevision.runs import ModelSource, resolve_model_source

ImageInput = Union[str, os.PathLike, np.ndarray]


class InputError(UsageError):
    """An input ``predict`` cannot use: the message names the item (its position or path) and what was expected."""


# ------------------------------------------------------------------------------------------------ resolving


def resolve_source(source: Union[str, os.PathLike], weights: Union[str, os.PathLike, None] = None) -> ModelSource:
    """``source`` (a run folder, a recipe file or a built-in recipe name) and ``weights`` -> recipe and checkpoint,
    by the rule every command follows (:func:`densevision.runs.resolve_model_source`).

    Raises:
        UsageError: naming ``source`` / ``weights`` and what was expected.
    """
    return resolve_model_source(os.fspath(source), None if weights is None else os.fspath(weights))


def load(source: Union[str, os.PathLike], weights: Union[str, os.PathLike, None] = None,
         overrides: Sequence[str] = (), demo: bool = False) -> "Inferencer":
    """Load a trained model for prediction, evaluation and export.

    Args:
        source: a run folder made by training (``recipe.yaml`` + ``checkpoints/``), a recipe YAML file, or the
            name of a built-in recipe (``"tiramisu56_camvid"``: ``recipes/<name>.yaml``).
        weights: for a run folder ``"best"`` (default), ``"last"`` or a checkpoint path; for a recipe, the
            checkpoint path (``.keras`` or ``.weights.h5``).
        overrides: ``KEY=VALUE`` recipe overrides, as ``--set`` (``["data.root=/data/camvid"]``).
        demo: apply the recipe's demo settings and point it at the task's generated demo data (as ``--demo``);
            a run folder's recipe is already resolved, demo included.

    Returns:
        An :class:`Inferencer`.

    Raises:
        DensevisionError: a source, recipe or checkpoint that cannot be used (the message names it).
    """
    resolved = resolve_source(source, weights)
    recipe = load_tool_recipe(resolved.recipe, list(overrides), demo=demo)
    model, task = load_for_prediction(recipe, resolved.weights)
    return Inferencer(recipe, model, task, resolved.weights, run_dir=resolved.run_dir)


# ------------------------------------------------------------------------------------------------ inputs


def to_image(item: ImageInput, where: str = "input") -> np.ndarray:
    """One input as uint8 ``(H, W, 3)`` RGB: a file read by :func:`densevision.data.io.read_image`, or an array
    converted as that reader converts decoded pixels (grey ``(H, W)`` / ``(H, W, 1)`` repeated, RGBA's alpha
    dropped, 16-bit reduced to the high byte).

    Raises:
        InputError: naming ``where`` (the item's position) and what was expected.
    """
    if isinstance(item, (str, os.PathLike)):
        try:
            return read_image(item)
        except ImageReadError as error:
            raise InputError(f"{where}: {error}") from None
    if isinstance(item, np.ndarray):
        if item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (1, 3, 4)) or min(item.shape[:2]) < 1:
            raise InputError(f"{where}: an array of shape {item.shape}; expected an image (H, W, 3) RGB, (H, W) "
                             f"grey or (H, W, 4) RGBA")
        if item.dtype not in (np.uint8, np.uint16):
            # other integer types are ambiguous (0..255 or 0..65535?) and floats have no fixed range: refuse them
            raise InputError(f"{where}: {item.dtype} pixels; expected uint8 (or uint16, reduced to its high byte "
                             f"as the image reader does): convert with image.astype(np.uint8)")
        return as_rgb_uint8(item)
    raise InputError(f"{where}: a {type(item).__name__}; expected a path or a numpy array (H, W, 3) uint8")


# ------------------------------------------------------------------------------------------------ the model


class Inferencer:
    """A loaded model with its recipe and task: :meth:`predict`, :meth:`evaluate`, :meth:`export`.

    Attributes:
        recipe: the resolved :class:`~densevision.recipes.Recipe`.
        model: the ``keras.Model`` (images float32 ``(B, H, W, 3)`` in [0, 255] -> the task's outputs).
        task: the recipe's task (it answers, evaluates and serves).
        weights: the checkpoint file loaded.
        run_dir: the run folder, when loaded from one.
    """

    def __init__(self, recipe: Recipe, model, task, weights: Union[str, os.PathLike], run_dir: Optional[Path] = None):
        self.recipe, self.model, self.task = recipe, model, task
        self.weights, self.run_dir = Path(weights), run_dir
        self._forwards: dict[bool, Any] = {}

    def __repr__(self) -> str:
        return f"<densevision {self.recipe.task} model {self.recipe.name!r} from {self.weights}>"

    @property
    def class_names(self) -> Optional[list[str]]:
        """The classes (segmentation, classification), or ``None``."""
        return self.task.class_names

    def _forward(self, flip: bool):
        """The compiled forward pass, one per flip setting (pose flips inside the traced forward)."""
        if flip not in self._forwards:
            task = copy.copy(self.task)  # the flag is read when the forward pass is traced
            task.flip_test = flip or task.flip_test
            self._forwards[flip] = (make_forward(self.model, task), task)
        return self._forwards[flip]

    def predict(self, inputs: Union[ImageInput, Sequence[ImageInput]], *, top_k: int = 5, flip: bool = False,
                scales: Sequence[float] = (1.0,), tile: int = 512, max_pixels: int = DEFAULT_MAX_PIXELS,
                single: bool = False, boxes=None, batch_size: int = 8):
        """Answers for one image or a list of images, as ``tools/predict.py`` computes them.

        Args:
            inputs: a path, a uint8 array ``(H, W, 3)`` RGB (also ``(H, W)`` grey or ``(H, W, 4)`` RGBA), or a
                list mixing them.
            top_k: classification: how many classes each answer lists.
            flip: test-time flip (segmentation: mirrored image averaged in; pose: mirrored crops, joints swapped).
            scales: segmentation: average the scores over these image scales.
            tile, max_pixels: segmentation: images above ``max_pixels`` are predicted in ``tile``-pixel tiles.
            single: pose: the whole image is one person (instead of OpenCV's HOG people detector).
            boxes: pose: person boxes ``(N, 4)`` ``[x, y, w, h]`` (or ``(N, 5)`` with a score) for one image, or
                a list of them, one per image (instead of the detector).
            batch_size: pose: person crops per forward pass.

        Returns:
            For one input, its answer; for a list, a list of answers. Per task:

            - segmentation: ``{"mask": (H, W) int32}`` class ids at the input's size;
            - classification: ``{"top_k": [(class name, probability), ...], "probabilities": (K,) float64}``;
            - pose: ``{"people": [{"box": [x, y, w, h], "score": float, "keypoints": (J, 3) x, y, score}]}`` in
              image pixels.

        Raises:
            InputError: an input that is not an image (naming it), or ``boxes`` not matching the inputs.
            UsageError: an option out of range.
        """
        single_input = not isinstance(inputs, (list, tuple))
        items = [inputs] if single_input else list(inputs)
        if boxes is not None and single_input:
            boxes = [boxes]
        if boxes is not None and len(boxes) != len(items):
            raise InputError(f"boxes: {len(boxes)} entries for {len(items)} images; give one (N, 4) array per image")
        options = validate_options(PredictOptions(top_k=top_k, flip=flip, scales=tuple(scales), tile=tile,
                                                  max_pixels=max_pixels, single=single, batch_size=batch_size))
        forward, task = self._forward(flip)
        configure_task(task, options)  # pose: the person finder of these options
        answers = []
        for index, item in enumerate(items):
            where = f"input {index}" + (f" ({item})" if isinstance(item, (str, os.PathLike)) else "")
            image = to_image(item, where)
            if boxes is not None:
                answers.append(self._people_in_boxes(forward, image, boxes[index], where, batch_size))
            else:
                answers.append(self._answer(task.predict_image(forward, image, options), options))
        return answers[0] if single_input else answers

    def _answer(self, answer, options: PredictOptions) -> dict[str, Any]:
        """The task's answer in the API's form (see :meth:`predict`)."""
        if self.recipe.task == "segmentation":
            return {"mask": answer}
        if self.recipe.task == "classification":
            top = self.task.top_k(answer, options.top_k)  # as predictions.json ranks them
            return {"top_k": [(entry["class"], entry["probability"]) for entry in top],
                    "probabilities": answer["probabilities"]}
        return answer

    def _people_in_boxes(self, forward, image: np.ndarray, boxes, where: str, batch_size: int) -> dict[str, Any]:
        table = np.asarray(boxes, np.float32)
        if table.size == 0:
            table = table.reshape(0, 4)
        if table.ndim != 2 or table.shape[1] not in (4, 5) or (len(table) and table[:, 2:4].min() <= 0):
            raise InputError(f"boxes of {where}: shape {np.shape(boxes)}; expected (N, 4) [x, y, w, h] or (N, 5) "
                             f"with a score, positive widths and heights")
        scores = table[:, 4] if table.shape[1] == 5 else np.ones(len(table), np.float32)
        keypoints = self.task.estimate_people(forward, image, table[:, :4], batch_size)
        return {"people": [{"box": [float(v) for v in box], "score": float(score), "keypoints": points}
                           for box, score, points in zip(table[:, :4], scores, keypoints)]}

    def evaluate(self, split: str = "val", *, output_dir: Union[str, os.PathLike, None] = None,
                 steps: Optional[int] = None, progress: bool = False) -> dict[str, Any]:
        """The metrics of one split of the recipe's dataset, as ``tools/evaluate.py`` computes them.

        Args:
            split: ``"train"``, ``"val"``, ``"test"`` (the recipe's split names) or a split's own name.
            output_dir: also write the task's report there (tables, confusion matrix, sample pictures).
            steps: evaluate only this many batches.

        Returns:
            The task's results (segmentation ``miou``, ``per_class_iou``...; classification ``top1``, ``top5``;
            pose ``pck``, ``ap``...) plus ``split``, ``checkpoint`` and ``num_images``.
        """
        # test.flip_test is read when the evaluation step is traced, as tools/evaluate.py's --flip-test sets it.
        return run_evaluation(self.recipe, self.weights, split=split, output_dir=output_dir, steps=steps,
                              progress=progress, model=self.model)

    def export(self, format: str, path: Union[str, os.PathLike], *, input_size: Optional[Sequence[int]] = None,
               calibration: Union[str, os.PathLike, None] = None, overwrite: bool = False) -> dict[str, Any]:
        """Export for serving (``"saved_model"``, ``"keras"`` or ``"tflite"``), checked against this model.

        Args:
            format: see :mod:`densevision.serving`.
            path: a folder (``saved_model``), a ``.keras`` file or a ``.tflite`` file.
            input_size: ``(H, W)``; TFLite needs one (default: what the recipe implies).
            calibration: a folder of images: quantise the TFLite model to int8 with them.
            overwrite: replace an existing ``path``.

        Returns:
            The parity report (``passed``, the largest difference ...) with ``path``, ``format`` and
            ``input_size``.

        Raises:
            ExportError: a bad option, an existing output, a failed conversion. A failed parity check is not
                raised: see ``report["passed"]``.
        """
        serving.check_format(format, int8=calibration is not None)
        size = serving.resolve_input_size(self.recipe, self.model, format, input_size)
        images = (serving.load_calibration_images(calibration, size) if calibration is not None else None)
        return serving.export_model(self.model, path, format, self.task, input_size=size,
                                       calibration_images=images, overwrite=overwrite,
                                       metadata={"recipe": self.recipe.name, "checkpoint": str(self.weights)})


__all__ = ["Inferencer", "InputError", "load", "resolve_source", "to_image"]
