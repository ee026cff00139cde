"""Semantic segmentation: per-pixel class labels, confusion-matrix metrics (IoU, accuracies) and colour pictures.

Metric conventions (the ones of the CamVid / Cityscapes literature):

- the confusion matrix ``C`` is ``(K, K)``, rows the true class, columns the predicted class (argmax of the
  logits); pixels labelled ``ignore_label`` (void) are left out entirely, and so are labels outside ``[0, K)``;
- IoU of class ``c`` is ``C[c, c] / (row_c + column_c - C[c, c])``; it is undefined (NaN, ``null`` in JSON) when
  the class is neither present nor predicted;
- **mIoU is the mean over the classes whose union is non-zero** (classes never seen nor predicted in the whole
  evaluated set are skipped, not counted as 0 or 1);
- global accuracy is ``trace(C) / sum(C)``; mean class accuracy is the mean of ``C[c, c] / row_c`` over the
  classes present in the labels;
- if the ignore label is itself one of the ``K`` output classes, that class is excluded from every mean.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

import keras
import tensorflow as tf

from densevision.data.augment import build_augmentation
from densevision.data import class_weights
from densevision.data.demo_streets import make_demo_camvid
from densevision.files import cache_root, write_text
from densevision.registry import DATASETS, LOSSES, TASKS
from densevision.tasks import losses as _losses  # importing registers the losses
from densevision.tasks.base import Forward, Task, final_output, to_uint8
from densevision.visualization import segmentation as visualize

# ------------------------------------------------------------------------------------------ confusion matrix


def confusion_counts(y_true, y_pred, num_classes: int, ignore_label: Optional[int] = None) -> tf.Tensor:
    """Exact confusion-matrix counts of one batch.

    Args:
        y_true: ``(B, H, W)`` integer labels.
        y_pred: ``(B, H, W, K)`` logits/scores (argmax is taken) or ``(B, H, W)`` integer predictions.
        num_classes: ``K``.
        ignore_label: label whose pixels are left out (``None``: none).

    Returns:
        ``(K, K)`` int32, rows = true class, columns = predicted class. Exact while one batch has fewer than
        2**31 pixels; accumulate batches in int64 (numpy) or float64.
    """
    y_true = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
    y_pred = tf.convert_to_tensor(y_pred)
    if y_pred.shape.rank is not None and y_pred.shape.rank == 4:
        y_pred = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
    y_pred = tf.cast(tf.reshape(y_pred, [-1]), tf.int32)
    valid = (y_true >= 0) & (y_true < num_classes)
    if ignore_label is not None:
        valid &= tf.not_equal(y_true, ignore_label)
    # Invalid pixels go to one extra bin that is dropped: static shapes, no boolean_mask (XLA- and GPU-friendly).
    trash_bin = num_classes * num_classes
    cells = tf.where(valid, y_true * num_classes + y_pred, trash_bin)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(cells), cells, trash_bin + 1)
    return tf.reshape(counts[:trash_bin], (num_classes, num_classes))


def scored_classes(num_classes: int, ignore_label: Optional[int]) -> np.ndarray:
    """Boolean ``(K,)``: the classes that enter the means (all but the ignore label, if it is a class)."""
    keep = np.ones(num_classes, bool)
    if ignore_label is not None and 0 <= ignore_label < num_classes:
        keep[ignore_label] = False
    return keep


def confusion_metrics(confusion: np.ndarray, ignore_label: Optional[int] = None) -> dict[str, Any]:
    """IoU and accuracies from a summed ``(K, K)`` confusion matrix (rows: truth, columns: prediction).

    Returns:
        ``{"iou": (K,) float64 with NaN for classes with an empty union, "miou", "global_accuracy",
        "mean_class_accuracy"}`` following the conventions in this module's docstring (NaN when undefined).
    """
    confusion = np.asarray(confusion, np.float64)
    keep = scored_classes(confusion.shape[0], ignore_label)
    confusion = np.where(keep[:, None], confusion, 0.0)  # void rows never count (they are empty anyway)
    true_positives = np.diag(confusion)
    per_true_class = confusion.sum(axis=1)
    per_predicted_class = confusion.sum(axis=0)
    union = per_true_class + per_predicted_class - true_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positives / union, np.nan)
        class_accuracy = np.where(per_true_class > 0, true_positives / per_true_class, np.nan)
    iou[~keep] = np.nan
    scored_iou = iou[keep & (union > 0)]
    scored_accuracy = class_accuracy[keep & (per_true_class > 0)]
    total = confusion.sum()
    return {
        "iou": iou,
        "miou": float(scored_iou.mean()) if scored_iou.size else math.nan,
        "global_accuracy": float(true_positives.sum() / total) if total > 0 else math.nan,
        "mean_class_accuracy": float(scored_accuracy.mean()) if scored_accuracy.size else math.nan,
    }


@keras.saving.register_keras_serializable(package="densevision")
class ConfusionMatrixIoU(keras.metrics.Metric):
    """Streaming mean IoU for ``model.fit``/``evaluate`` with the same counts and conventions as the task.

    ``update_state(y_true (B, H, W) int, y_pred (B, H, W, K) logits)``; ``result()`` is the mIoU over classes
    with a non-zero union (0.0 before any pixel is seen). The matrix is kept in float64: exact to 2**53 pixels.

    Args:
        num_classes: ``K``.
        ignore_label: label left out of the counts (``None``: none).
    """

    def __init__(self, num_classes: int, ignore_label: Optional[int] = None, name: str = "miou", dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.num_classes = int(num_classes)
        self.ignore_label = None if ignore_label is None else int(ignore_label)
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes), initializer="zeros", dtype="float64", name="confusion"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("ConfusionMatrixIoU counts pixels exactly; sample_weight is not supported")
        counts = confusion_counts(y_true, y_pred, self.num_classes, self.ignore_label)
        self.confusion.assign_add(tf.cast(counts, tf.float64))

    def result(self):
        confusion = tf.convert_to_tensor(self.confusion)
        keep = tf.constant(scored_classes(self.num_classes, self.ignore_label))
        true_positives = tf.linalg.diag_part(confusion)
        union = tf.reduce_sum(confusion, 0) + tf.reduce_sum(confusion, 1) - true_positives
        scored = keep & (union > 0)
        iou = tf.math.divide_no_nan(true_positives, union)
        count = tf.reduce_sum(tf.cast(scored, tf.float64))
        miou = tf.math.divide_no_nan(tf.reduce_sum(tf.where(scored, iou, tf.zeros_like(iou))), count)
        return tf.cast(miou, self.dtype)

    def reset_state(self):
        self.confusion.assign(tf.zeros_like(self.confusion))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_label": self.ignore_label}


# ------------------------------------------------------------------------------------------------------ task


@TASKS.register("segmentation")
class SegmentationTask(Task):
    """Per-pixel classification into ``info["class_names"]``; ``info["ignore_label"]`` pixels are void.

    Targets are ``(H, W)`` int32 label maps, model outputs ``(B, H, W, K)`` float32 logits. See the module
    docstring for the metric conventions.
    """

    name = "segmentation"
    output_rank = 4  # (B, H, W, K) logits
    output_stride = 1
    default_monitor = ("miou", "max")
    default_loss = "cross_entropy"

    def __init__(self, recipe, info: dict[str, Any]):
        super().__init__(recipe, info)
        self._read_class_names()
        ignore = info.get("ignore_label")
        # Sources always name a void label; 255 (the usual one) keeps padding from augmentation out of the counts.
        self.ignore_label: int = 255 if ignore is None else int(ignore)
        palette = info.get("palette")
        self.palette = (
            np.asarray(palette, np.uint8) if palette is not None else visualize.default_palette(self.num_classes)
        )
        if self.palette.shape != (self.num_classes, 3):
            raise ValueError(
                f"segmentation task: palette has shape {self.palette.shape}, expected ({self.num_classes}, 3)"
            )

    # ---- data
    @property
    def example_spec(self) -> dict[str, tf.TensorSpec]:
        """``{"image": float32 (H, W, 3), "mask": int32 (H, W)}``."""
        return {"image": tf.TensorSpec((None, None, 3), tf.float32), "mask": tf.TensorSpec((None, None), tf.int32)}

    def augmenter(self, transforms: list, training: bool) -> Callable:
        """``fn(sample, seed) -> sample`` moving image and mask together; padding fills the mask with the ignore
        label so padded pixels never count."""
        return build_augmentation(transforms, target="mask", ignore_label=self.ignore_label)

    def encode(self, sample: dict) -> dict[str, np.ndarray]:
        """The mask is its own target: ``{"image", "mask"}``."""
        return {"image": sample["image"], "mask": sample["mask"]}

    # ---- training
    @functools.cached_property
    def loss_function(self) -> Callable:
        """The configured loss ``fn(y_true, logits, ignore_label) -> (B,)``, class weights resolved (once)."""
        section = getattr(self.recipe, "loss", None) if self.recipe is not None else None
        name = section.name if section is not None else self.default_loss
        options = dict(section.kwargs()) if section is not None else {}
        if options.get("class_weights") == _losses.MEDIAN_FREQUENCY:
            options["class_weights"] = [float(w) for w in self.median_frequency_weights()]
        weights = options.get("class_weights")
        if weights is not None and not isinstance(weights, str) and len(weights) != self.num_classes:
            raise ValueError(
                f"loss.class_weights: expected {self.num_classes} weights (one per class: "
                f"{', '.join(self.class_names)}), got {len(weights)}"
            )
        return LOSSES.get(name)(**options)

    def median_frequency_weights(self) -> np.ndarray:
        """``(K,)`` median-frequency class weights of the recipe's training split (cached on disk)."""
        data = self.recipe.data
        source = DATASETS.get(data.name)(root=data.root, split=data.train_split, **data.kwargs())
        cache_dir = str(cache_root() / "class_weights")
        weights = class_weights.median_frequency_weights(source, self.num_classes, self.ignore_label,
                                                         cache_dir=cache_dir)
        return np.asarray(weights, np.float32)

    def loss(self, batch: dict, outputs):
        """``(B,)`` float32: the recipe's loss (default cross-entropy) per example, void pixels excluded."""
        return self.loss_function(batch["mask"], final_output(outputs), self.ignore_label)

    def metric_sums(self, batch: dict, outputs) -> dict:
        """``{"confusion": (K, K) int32}`` of the batch (rows: truth, columns: argmax of the logits)."""
        return {"confusion": confusion_counts(batch["mask"], final_output(outputs), self.num_classes,
                                              self.ignore_label)}

    def metric_results(self, sums: dict[str, np.ndarray], collected=None) -> dict[str, Any]:
        """``{"miou", "global_accuracy", "mean_class_accuracy": float, "per_class_iou": {name: float}}``.

        NaN marks an undefined value (a class neither present nor predicted). ``per_class_iou`` is a nested dict:
        flatten it (``densevision.engine.evaluator.flatten_results``) before logging scalars.
        """
        metrics = confusion_metrics(sums["confusion"], self.ignore_label)
        keep = scored_classes(self.num_classes, self.ignore_label)
        return {
            "miou": metrics["miou"],
            "global_accuracy": metrics["global_accuracy"],
            "mean_class_accuracy": metrics["mean_class_accuracy"],
            "per_class_iou": {
                name: float(value) for name, value, kept in zip(self.class_names, metrics["iou"], keep) if kept
            },
        }

    # ---- outputs
    def predict_labels(self, predictions: np.ndarray) -> np.ndarray:
        """Logits ``(..., H, W, K)`` -> labels ``(..., H, W)`` int32; integer label maps pass through."""
        predictions = np.asarray(predictions)
        if predictions.ndim >= 3 and predictions.shape[-1] == self.num_classes and predictions.dtype.kind == "f":
            return predictions.argmax(axis=-1).astype(np.int32)
        return predictions.astype(np.int32)

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """``(H, W)`` labels -> ``(H, W, 3)`` uint8 in the dataset's palette (void black)."""
        return visualize.colorize_mask(mask, self.palette, self.ignore_label)

    def decode(self, outputs, batch: dict = None) -> list[np.ndarray]:
        """Per example, the ``(H, W)`` int32 label map (argmax of the last output's logits)."""
        return list(self.predict_labels(np.asarray(final_output(outputs))))

    def pictures(self, batch: dict, outputs) -> list[np.ndarray]:
        """One uint8 picture per example: image | ground truth | prediction, in the palette.

        Args:
            batch: ``{"image": (B, H, W, 3) in [0, 255] (any numeric type), "mask": (B, H, W) labels}``.
            outputs: ``(B, H, W, K)`` logits or ``(B, H, W)`` labels.
        """
        return [visualize.side_by_side([to_uint8(image), self.colorize(np.asarray(target)), self.colorize(label)])
                for image, target, label in zip(batch["image"], batch["mask"], self.decode(outputs, batch))]

    def picture_masks(self, batch: dict, outputs) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Per example, the image and its ``"ground_truth"`` and ``"prediction"`` label maps ``(H, W)`` int32."""
        return [(to_uint8(image), {"ground_truth": np.asarray(target, np.int32), "prediction": label})
                for image, target, label in zip(batch["image"], batch["mask"], self.decode(outputs, batch))]

    # ---- export
    raw_output_name = "logits"

    def serving_outputs(self, logits: tf.Tensor, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """TF graph: ``labels`` int32 ``(B, H, W)`` at the input size. Logits at another size (a strided head)
        are resized bilinearly first; densevision's models pad and crop back themselves."""
        logits_size, image_size = logits.shape[1:3], images.shape[1:3]
        if None not in logits_size and None not in image_size:
            if tuple(logits_size) != tuple(image_size):
                logits = tf.image.resize(logits, tuple(image_size), method="bilinear")
        else:
            size = tf.shape(images)[1:3]
            same = tf.reduce_all(tf.equal(tf.shape(logits)[1:3], size))
            logits = tf.cond(same, lambda: logits, lambda: tf.image.resize(logits, size, method="bilinear"))
        return {"labels": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    # ---- prediction
    def predict_image(self, forward: Forward, image: np.ndarray, options, key: str = "") -> np.ndarray:
        """``(H, W)`` int32 labels: argmax of the (tiled, flip/scale-averaged) logits at the image's size."""
        scores = forward.dense_scores(image, flip=getattr(options, "flip", False),
                                      scales=getattr(options, "scales", (1.0,)), tile=getattr(options, "tile", 512),
                                      max_pixels=getattr(options, "max_pixels", 2048 * 2048))
        return scores.argmax(axis=-1).astype(np.int32)

    @classmethod
    def make_demo_data(cls, directory: str) -> dict[str, Any]:
        """Generate the synthetic street-scene dataset (CamVid layout) in ``directory``; point the recipe at it."""
        make_demo_camvid(directory)
        return {"data.root": str(directory), "data.name": "camvid"}

    # ---- evaluation reports (called by densevision.engine.evaluator)
    @staticmethod
    def format_results(results: dict[str, Any]) -> str:
        """A plain-text table of :meth:`metric_results`: per-class IoU, then mIoU and the accuracies."""
        width = max([len(name) for name in results["per_class_iou"]] + [len("mean class accuracy")])
        lines = [f"{'class':<{width}}  IoU", f"{'-' * width}  ------"]
        for name, value in results["per_class_iou"].items():
            lines.append(f"{name:<{width}}  {_format_number(value)}")
        lines.append(f"{'-' * width}  ------")
        lines.append(f"{'mIoU':<{width}}  {_format_number(results['miou'])}")
        lines.append(f"{'global accuracy':<{width}}  {_format_number(results['global_accuracy'])}")
        lines.append(f"{'mean class accuracy':<{width}}  {_format_number(results['mean_class_accuracy'])}")
        return "\n".join(lines)

    def write_report(
        self,
        results: dict[str, Any],
        sums: dict[str, np.ndarray],
        output_dir: str | os.PathLike,
        samples: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = (),
    ) -> list[Path]:
        """Write ``per_class_iou.txt``, ``confusion_matrix.png`` (row-normalised) and ``overlays/<name>.png``.

        Args:
            samples: ``(name, batch of one example {"image", "mask"}, outputs (1, H, W, K) logits)``.

        Returns:
            The files written.
        """
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        written = []
        table = output_dir / "per_class_iou.txt"
        write_text(table, self.format_results(results) + "\n")
        written.append(table)
        keep = scored_classes(self.num_classes, self.ignore_label)
        confusion = np.asarray(sums["confusion"])[np.ix_(keep, keep)]
        names = [name for name, kept in zip(self.class_names, keep) if kept]
        matrix_png = output_dir / "confusion_matrix.png"
        visualize.save_confusion_matrix_png(confusion, names, matrix_png)
        written.append(matrix_png)
        if samples:
            overlay_dir = output_dir / "overlays"
            overlay_dir.mkdir(exist_ok=True)
            for name, batch, outputs in samples:
                image, target, label = to_uint8(batch["image"][0]), batch["mask"][0], self.decode(outputs)[0]
                picture = visualize.side_by_side(
                    [
                        visualize.overlay(image, target, self.palette, ignore_label=self.ignore_label),
                        visualize.overlay(image, label, self.palette),
                    ]
                )
                path = overlay_dir / f"{name}.png"
                visualize.write_png(path, picture)
                written.append(path)
        return written


def _format_number(value: float) -> str:
    return "   n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
