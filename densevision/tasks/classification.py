"""Image classification: one integer label per image, softmax cross-entropy, top-1 / top-5 accuracy.

Targets are int32 class indices ``(B,)``; models output float32 logits ``(B, K)`` (no softmax). Metrics are
counts (correct top-1, correct top-5, examples), summed exactly over replicas, workers and batches; top-5 is
top-min(5, K).
"""

from __future__ import annotations

import csv
import functools
import io
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import scipy.special
import tensorflow as tf

from densevision.data.augment import build_augmentation
from densevision.data.image_folder import DEMO_CLASSES, make_demo_image_folder
from densevision.files import write_png, write_text
from densevision.registry import LOSSES, TASKS
from densevision.sizes import resize
from densevision.tasks.base import Forward, Task, final_output, to_uint8
from densevision.visualization.segmentation import save_confusion_matrix_png


@LOSSES.register("softmax_cross_entropy", task="classification")
def softmax_cross_entropy(label_smoothing: float = 0.0) -> Callable:
    """``fn(labels (B,) int, logits (B, K)) -> (B,) float32`` softmax cross-entropy per example.

    Args:
        label_smoothing: ``e`` in [0, 1): the target puts ``1 - e`` on the true class plus ``e / K`` on every
            class (Szegedy et al. 2016), as ``keras.losses.CategoricalCrossentropy(label_smoothing=e)``.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"loss softmax_cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}")
    smoothing = float(label_smoothing)

    def loss(labels, logits):
        # float32 even when the model runs in mixed precision
        log_probabilities = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        true_class = -tf.gather(log_probabilities, labels, axis=1, batch_dims=1)
        if not smoothing:
            return true_class
        uniform = -tf.reduce_mean(log_probabilities, axis=-1)
        return (1.0 - smoothing) * true_class + smoothing * uniform

    return loss


@TASKS.register("classification")
class ClassificationTask(Task):
    """One label per image out of ``info["class_names"]``; logits ``(B, K)``, labels ``(B,)`` int32."""

    name = "classification"
    output_rank = 2  # (B, K) logits
    default_monitor = ("top1", "max")
    default_loss = "softmax_cross_entropy"

    def __init__(self, recipe, info: dict[str, Any]):
        super().__init__(recipe, info)
        self._read_class_names()
        model = getattr(recipe, "model", None) if recipe is not None else None
        declared = (model.kwargs() if model is not None else {}).get("num_classes")
        if declared is not None and int(declared) != self.num_classes:
            raise ValueError(
                f"model.num_classes is {declared} but the dataset has {self.num_classes} classes "
                f"({', '.join(self.class_names[:10])}{' ...' if self.num_classes > 10 else ''}); set "
                f"model.num_classes: {self.num_classes}"
            )

    # ---- data
    @property
    def example_spec(self) -> dict[str, tf.TensorSpec]:
        """``{"image": float32 (H, W, 3), "label": int32 ()}``."""
        return {"image": tf.TensorSpec((None, None, 3), tf.float32), "label": tf.TensorSpec((), tf.int32)}

    def augmenter(self, transforms: list, training: bool) -> Callable:
        """``fn(sample, seed) -> sample``: albumentations on the image; the label passes through."""
        return build_augmentation(transforms, target="label")

    def encode(self, sample: dict) -> dict[str, np.ndarray]:
        return {"image": sample["image"], "label": sample["label"]}

    # ---- training
    @functools.cached_property
    def loss_function(self) -> Callable:
        """The recipe's loss (default ``softmax_cross_entropy``): ``fn(labels (B,), logits (B, K)) -> (B,)``."""
        return self._configured_loss()

    def _check_logits(self, y_pred) -> None:
        classes = y_pred.shape[-1]
        if y_pred.shape.rank != 2 or (classes is not None and classes != self.num_classes):
            raise ValueError(
                f"classification task: expected logits (B, {self.num_classes}), got shape {tuple(y_pred.shape)}; "
                f"is model.num_classes the dataset's {self.num_classes}?"
            )

    def loss(self, batch: dict, outputs):
        """``(B,)`` float32 loss per example from labels ``(B,)`` and logits ``(B, K)``."""
        y_pred = tf.convert_to_tensor(final_output(outputs))
        self._check_logits(y_pred)
        return self.loss_function(batch["label"], y_pred)

    def metric_sums(self, batch: dict, outputs) -> dict:
        """``{"correct_top1", "correct_top5", "count"}``: int32 scalars for the batch."""
        y_pred = tf.cast(tf.convert_to_tensor(final_output(outputs)), tf.float32)
        self._check_logits(y_pred)
        labels = tf.cast(tf.reshape(batch["label"], [-1]), tf.int32)
        k = min(5, self.num_classes)
        # rank of the true class = number of classes with a strictly larger logit (ties count in its favour,
        # unlike tf.math.in_top_k, which is ambiguous on ties)
        true_logit = tf.gather(y_pred, labels, axis=1, batch_dims=1)
        rank = tf.reduce_sum(tf.cast(y_pred > true_logit[:, None], tf.int32), axis=-1)
        return {
            "correct_top1": tf.reduce_sum(tf.cast(rank < 1, tf.int32)),
            "correct_top5": tf.reduce_sum(tf.cast(rank < k, tf.int32)),
            "count": tf.size(labels),
        }

    def collect_tensors(self, batch: dict, outputs) -> dict:
        """``{"label": (B,) int32, "predicted": (B,) int32}``: gathered during evaluation (not training steps) for
        the confusion matrix, two integers per image."""
        y_pred = tf.convert_to_tensor(final_output(outputs))
        return {"label": tf.cast(tf.reshape(batch["label"], [-1]), tf.int32),
                "predicted": tf.argmax(y_pred, axis=-1, output_type=tf.int32)}

    def metric_results(self, sums: dict[str, np.ndarray], collected=None) -> dict[str, Any]:
        """``{"top1": float, "top5": float}`` accuracies (NaN for an empty evaluation); with ``collected`` (an
        evaluation) also ``"confusion"`` (K, K) counts (rows: true class, columns: predicted) as nested lists and
        ``"per_class_accuracy"`` ``{class: fraction of its images predicted as it}`` (NaN for a class without
        images)."""
        count = float(np.asarray(sums["count"]))
        if count == 0:
            results = {"top1": float("nan"), "top5": float("nan")}
        else:
            results = {"top1": float(np.asarray(sums["correct_top1"])) / count,
                       "top5": float(np.asarray(sums["correct_top5"])) / count}
        if collected and "label" in collected:
            confusion = confusion_from_labels(collected["label"], collected["predicted"], self.num_classes)
            totals = confusion.sum(axis=1)
            results["per_class_accuracy"] = {
                name: float(confusion[i, i] / totals[i]) if totals[i] else float("nan")
                for i, name in enumerate(self.class_names)}
            results["confusion"] = confusion.tolist()
        return results

    # ---- outputs
    def decode(self, outputs, batch: dict = None) -> list[dict[str, Any]]:
        """Per example ``{"label": int, "probabilities": (K,) float64}`` (softmax of the last output's logits)."""
        probabilities = scipy.special.softmax(np.asarray(final_output(outputs), np.float64), axis=-1)
        return [{"label": int(p.argmax()), "probabilities": p} for p in probabilities]

    def pictures(self, batch: dict, outputs) -> list[np.ndarray]:
        """Per example, uint8 RGB: the image (enlarged to >= 192 px wide) over a caption with the predicted class,
        its probability and the true class, green when right and red when wrong."""
        pictures = []
        for image, target, answer in zip(batch["image"], batch["label"], self.decode(outputs, batch)):
            probabilities = answer["probabilities"]
            predicted, truth = answer["label"], int(np.asarray(target))
            pictures.append(captioned(to_uint8(image), [
                f"pred: {self._name(predicted)} ({probabilities[predicted]:.2f})",
                f"true: {self._name(truth)}",
            ], (40, 160, 40) if predicted == truth else (200, 40, 40)))
        return pictures

    @staticmethod
    def format_results(results: dict) -> str:
        """Per-class accuracy (when evaluated), then top-1 and top-5."""
        per_class = results.get("per_class_accuracy") or {}
        width = max([len(name) for name in per_class] + [len("top-1 accuracy")])
        lines = []
        if per_class:
            lines = [f"{'class':<{width}}  accuracy", f"{'-' * width}  --------"]
            lines += [f"{name:<{width}}  " + ("     n/a" if value != value else f"{value:8.4f}")
                      for name, value in per_class.items()]
            lines.append(f"{'-' * width}  --------")
        lines += [f"{'top-1 accuracy':<{width}}  {results['top1']:8.4f}",
                  f"{'top-5 accuracy':<{width}}  {results['top5']:8.4f}"]
        return "\n".join(lines)

    def write_report(self, results: dict, sums: dict, output_dir, samples=None) -> list:
        """As segmentation's report: ``per_class_accuracy.txt`` (the table), ``confusion_matrix.csv`` (counts,
        rows: true class, columns: predicted), ``confusion_matrix.png`` (row-normalised) and
        ``overlays/<name>.png`` (captioned sample pictures)."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        written = [output_dir / "per_class_accuracy.txt"]
        write_text(written[0], self.format_results(results) + "\n")
        if "confusion" in results:
            confusion = np.asarray(results["confusion"], np.int64)
            table = io.StringIO()
            writer = csv.writer(table)
            writer.writerow(["true \\ predicted", *self.class_names])
            for name, row in zip(self.class_names, confusion):
                writer.writerow([name, *(int(v) for v in row)])
            written.append(output_dir / "confusion_matrix.csv")
            write_text(written[-1], table.getvalue())
            written.append(output_dir / "confusion_matrix.png")
            save_confusion_matrix_png(confusion, self.class_names, written[-1])
        for name, batch, outputs in samples or ():
            path = output_dir / "overlays" / f"{Path(name).as_posix().replace('/', '_')}.png"
            write_png(path, self.pictures(batch, outputs)[0])
            written.append(path)
        return written

    # ---- export
    raw_output_name = "logits"

    def serving_outputs(self, logits: tf.Tensor, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """TF graph: ``probabilities`` (B, K) and ``top_class`` int32 (B,)."""
        return {"probabilities": tf.nn.softmax(logits, axis=-1),
                "top_class": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    # ---- prediction
    def predict_image(self, forward: Forward, image: np.ndarray, options, key: str = "") -> dict[str, Any]:
        """The image resized to the model's input size (``model.input_shape`` when fixed), then the softmax:
        ``{"label": int, "probabilities": (K,) float64}``."""
        shape = (self.recipe.model.kwargs().get("input_shape") if self.recipe is not None else None) or ()
        if len(shape) >= 2 and shape[0] and shape[1] and tuple(image.shape[:2]) != (shape[0], shape[1]):
            image = resize(image, shape[:2])
        return self.decode(forward(image[None].astype(np.float32)))[0]

    def top_k(self, answer: dict[str, Any], k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` most probable classes of an answer, most probable first (ties in index order):
        ``[{"class", "index", "probability"}]``."""
        probabilities = answer["probabilities"]
        top = np.argsort(-probabilities, kind="stable")[:max(1, int(k))]
        return [{"class": self._name(int(i)), "index": int(i), "probability": float(probabilities[i])} for i in top]

    def prediction_record(self, answer, relative: str, size=None, options=None) -> dict[str, Any]:
        """``{"path": relative, "top_k": top_k(answer, options.top_k)}``, the record of ``predictions.json``
        (:class:`densevision.inference.writers.ClassificationWriter` writes it; kept here for the video tool)."""
        return {"path": relative, "top_k": self.top_k(answer, getattr(options, "top_k", 5))}

    def _name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else str(index)

    @classmethod
    def make_demo_data(cls, directory: str) -> dict[str, Any]:
        """Write the demo shapes dataset (5 classes, 64x64) in ``directory``; point the recipe at it."""
        make_demo_image_folder(directory)
        return {"data.root": str(directory), "data.name": "image_folder", "model.num_classes": len(DEMO_CLASSES)}


def confusion_from_labels(labels, predicted, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts, rows the true class and columns the predicted one, from ``(N,)`` class indices."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    predicted = np.asarray(predicted, np.int64).reshape(-1)
    return np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def captioned(image: np.ndarray, lines: list[str], colour, min_width: int = 192) -> np.ndarray:
    """``image`` (uint8 RGB ``(H, W, 3)``) enlarged to at least ``min_width`` wide, above a white caption
    strip with ``lines`` of text in ``colour`` (RGB)."""
    if image.shape[1] < min_width:
        scale = min_width / image.shape[1]
        image = cv2.resize(image, (min_width, round(image.shape[0] * scale)), interpolation=cv2.INTER_NEAREST)
    line_height = 18
    strip = np.full((line_height * len(lines) + 6, image.shape[1], 3), 255, np.uint8)
    for row, text in enumerate(lines):
        cv2.putText(strip, text, (4, line_height * (row + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    tuple(int(c) for c in colour), 1, cv2.LINE_AA)
    return np.concatenate([image, strip], axis=0)
