"""The Task interface: what a model's answer means, independent of the model and of the training loop."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


class Task:
    """One kind of problem (segmentation, classification, pose).

    The engine calls only these methods, so it trains and evaluates any task the same way. Metrics are
    *additive sums* (a confusion matrix, counts of correct answers): the replica step returns them, the strategy
    sums them over replicas and workers, the engine sums them over batches, and :meth:`metric_results` turns the
    totals into numbers. That keeps every metric exact under any tf.distribute strategy.

    Args:
        recipe: the validated :class:`~densevision.recipes.Recipe`.
        info: the dataset source's ``info`` dict (class names, ignore label, palette, ...).
    """

    name: str = "task"
    #: the metric the engine monitors by default (``val_`` + this)
    default_monitor: tuple[str, str] = ("loss", "min")

    def __init__(self, recipe, info: dict[str, Any]):
        self.recipe = recipe
        self.info = info

    def _read_class_names(self) -> None:
        """Set ``class_names`` and ``num_classes`` from the dataset info, checking they agree."""
        if "class_names" not in self.info:
            raise ValueError(f"{self.name} task: the dataset info has no 'class_names' (keys: {sorted(self.info)})")
        self.class_names: list[str] = [str(name) for name in self.info["class_names"]]
        self.num_classes: int = int(self.info.get("num_classes") or len(self.class_names))
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name} task: the dataset info has {len(self.class_names)} class names but "
                             f"num_classes={self.num_classes}")

    # ---- data
    @property
    def target_spec(self):
        """``tf.TensorSpec`` of one example's target, e.g. ``TensorSpec((None, None), tf.int32)``."""
        raise NotImplementedError

    def augmenter(self, transforms: list, training: bool) -> Callable:
        """``fn(image uint8 (H, W, 3), target, seed: int) -> (image, target)`` from the recipe's transform list."""
        raise NotImplementedError

    # ---- training
    def loss(self, y_true, y_pred):
        """Per-example loss, shape ``(B,)`` float32 (the engine averages over the global batch)."""
        raise NotImplementedError

    def metric_sums(self, y_true, y_pred) -> dict:
        """Additive statistics of one batch as tensors, e.g. ``{"confusion": (K, K) int}``."""
        raise NotImplementedError

    def metric_results(self, sums: dict[str, np.ndarray]) -> dict[str, float]:
        """Numbers from summed statistics, e.g. ``{"miou": 0.61, "global_accuracy": 0.9}``."""
        raise NotImplementedError

    # ---- outputs
    def write_report(self, results: dict, sums: dict, output_dir: str, samples=None) -> None:
        """Optional task-specific evaluation files (tables, confusion-matrix pictures, sample overlays)."""

    @staticmethod
    def format_results(results: dict) -> str:
        """Human-readable results table (default: one ``key: value`` line per number)."""
        return "\n".join(f"{k}: {v:.4f}" for k, v in results.items() if isinstance(v, (int, float)))

    def pictures(self, images: np.ndarray, targets: np.ndarray, predictions: np.ndarray) -> list[np.ndarray]:
        """Sample pictures (uint8 ``(H, W, 3)``) showing predictions against targets, for tracking."""
        return []

    @classmethod
    def make_demo_data(cls, directory: str) -> dict[str, Any]:
        """Write the task's generated demo dataset under ``directory``; return recipe overrides
        (dotted keys -> values) that point the recipe at it, e.g. ``{"data.root": directory}``."""
        raise NotImplementedError
