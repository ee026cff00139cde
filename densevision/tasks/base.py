"""The Task interface: what a model's answer means, independent of the model and of the training loop.

A sample travels like this (see docs/ARCHITECTURE.md):

    source.load(i) -> sample dict          {"image": uint8 (H, W, 3), <targets>, "meta": {...}}
    task.preparer(transforms, training)    fn(sample, seed) -> example: augmentation + target encoding, numpy
    pipeline batches examples unchanged     nested dict of tensors, shapes from ``task.example_spec``
    model(batch["image"]) -> outputs        one tensor, or a list (one per hourglass stack: the last predicts)
    task.loss / metric_sums / collect       per-example loss, additive sums, collect-then-finalise
    task.decode(outputs, batch)             answers in the original image (evaluation, prediction, pictures)

:class:`Task` declares, with defaults, every member the engine, prediction (:mod:`densevision.inference`), export
(:mod:`densevision.serving`), the Python API and the video tool use, so none of them probes a task for a member.
Writing prediction files is not the task's job: each task has a writer in :mod:`densevision.inference.writers`.
A task imports nothing from the engine, inference, serving or video: what it needs from them (a forward pass, a
person finder) is handed to it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np
import tensorflow as tf

from densevision.registry import LOSSES

#: ``fn(sample dict, seed or None) -> sample dict``: augmentation of every target kind at once
Augment = Callable[[dict, Optional[int]], dict]


def final_output(outputs):
    """The prediction among a model's outputs: the last of a list/tuple (e.g. the last hourglass stack), the
    ``"output"`` entry of a dict, else ``outputs`` itself."""
    if isinstance(outputs, dict):
        return outputs["output"] if "output" in outputs else list(outputs.values())[-1]
    if isinstance(outputs, (list, tuple)):
        return outputs[-1]
    return outputs


def to_uint8(image) -> np.ndarray:
    """Float pixels in [0, 255] (any numeric type) -> uint8 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)


class Forward(Protocol):
    """The compiled forward pass :meth:`Task.predict_image` receives (:class:`densevision.inference.predictor.
    Forward` is the one densevision makes)."""

    def __call__(self, images: np.ndarray) -> Any:
        """``images`` float32 ``(B, H, W, 3)`` in [0, 255] -> the model's outputs (numpy, nested as the model's)."""

    def dense_scores(self, image: np.ndarray, flip: bool = False, scales: Sequence[float] = (1.0,),
                     tile: int = 512, max_pixels: int = 2048 * 2048) -> np.ndarray:
        """``(H, W, C)`` float32 per-pixel scores of one uint8 ``(H, W, 3)`` image: tiled above ``max_pixels``,
        averaged over ``scales`` and, with ``flip``, the mirrored image."""


class Task:
    """One kind of problem (segmentation, classification, pose).

    Metrics have two paths:

    - *additive sums* (:meth:`metric_sums`: a confusion matrix, counts of correct joints): computed in the
      replica step, summed over replicas, workers and batches, exact under any tf.distribute strategy;
    - *collect-then-finalise* (:meth:`collect_tensors` then :meth:`metric_results`' ``collected``): per-example
      tensors gathered to the host over the whole evaluation, then turned into numbers once (COCO OKS AP via
      pycocotools cannot be summed).

    Args:
        recipe: the validated :class:`~densevision.recipes.Recipe` (``None`` in unit tests: defaults apply).
        info: the dataset source's ``info`` dict (class names, ignore label, palette; joints, flip pairs, ...).
    """

    name: str = "task"
    #: the metric the engine monitors by default (``val_`` + this)
    default_monitor: tuple[str, str] = ("loss", "min")
    #: the loss used when a recipe names none (must be registered for this task in ``LOSSES``)
    default_loss: str = ""
    #: rank of the model's (last) output including the batch axis, checked against checkpoints
    output_rank: Optional[int] = None
    #: input size / output size of a rank-4 output (1: a map at the input's size, 4: heatmaps at a quarter of it);
    #: with ``output_rank`` it tells a checkpoint of another task (a pose model in a segmentation recipe)
    output_stride: Optional[int] = None
    #: the classes of a task with classes (set from the dataset info by :meth:`_read_class_names`), else ``None``
    class_names: Optional[list[str]] = None
    num_classes: Optional[int] = None
    #: the label of void pixels left out of losses and metrics (segmentation), else ``None``
    ignore_label: Optional[int] = None
    #: test-time flip inside :meth:`forward` (pose: the mirrored crop, joints swapped; read when the forward pass is
    #: traced); tasks that flip elsewhere (segmentation: ``Forward.dense_scores(flip=...)``) leave it unused
    flip_test: bool = False
    #: export: the name of the raw prediction among the exported outputs (``"heatmaps"`` for pose)
    raw_output_name: str = "logits"
    #: export: ``(H, W)`` an exported model must take (pose: its crop size), ``None``: any size
    serving_input_size: Optional[tuple[int, int]] = None

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

    def _configured_loss(self, **extra) -> Callable:
        """The recipe's ``loss`` section (default :attr:`default_loss`) built from ``LOSSES``."""
        section = getattr(self.recipe, "loss", None) if self.recipe is not None else None
        name = section.name if section is not None else self.default_loss
        options = dict(section.kwargs()) if section is not None else {}
        options.update(extra)
        return LOSSES.get(name)(**options)

    # ---- data
    @property
    def example_spec(self) -> dict[str, tf.TensorSpec]:
        """Nested ``tf.TensorSpec`` of one prepared example: ``"image"`` float32 ``(H, W, 3)`` plus what the
        loss, metrics and decoding need (``"mask"``; ``"label"``; ``"heatmaps"``, ``"target_weight"``, ...)."""
        raise NotImplementedError

    def augmenter(self, transforms: list, training: bool) -> Augment:
        """``fn(sample, seed) -> sample`` from a recipe transform list: the image and every target kind move
        together (masks, keypoints with their flip pairs, boxes)."""
        raise NotImplementedError

    def encode(self, sample: dict) -> dict[str, np.ndarray]:
        """An augmented sample -> one example matching :attr:`example_spec` (numpy)."""
        raise NotImplementedError

    def preparer(self, transforms: list, training: bool) -> Callable[[dict, Optional[int]], dict]:
        """``fn(sample, seed) -> example``: augmentation then encoding. Training and validation inside training and
        ``tools/evaluate.py`` all call this (with ``augmentation.train`` / ``augmentation.val``)."""
        augment = self.augmenter(transforms, training)

        def prepare(sample: dict, seed: Optional[int]) -> dict:
            return self.encode(augment(sample, seed))

        return prepare

    # ---- inference
    def forward(self, model, images, training: bool = False):
        """The model's outputs for a batch of images (a task may add test-time augmentation here)."""
        return model(images, training=training)

    # ---- training
    def loss(self, batch: dict, outputs):
        """Per-example loss, shape ``(B,)`` float32 (the engine averages over the global batch)."""
        raise NotImplementedError

    def metric_sums(self, batch: dict, outputs) -> dict:
        """Additive statistics of one batch as tensors, e.g. ``{"confusion": (K, K) int}``."""
        raise NotImplementedError

    def collect_tensors(self, batch: dict, outputs) -> dict:
        """Per-example tensors (first axis = batch) gathered on the host for collect-then-finalise metrics; ``{}``
        when every metric is additive."""
        return {}

    def metric_results(self, sums: dict[str, np.ndarray], collected: Optional[dict[str, np.ndarray]] = None
                       ) -> dict[str, Any]:
        """Numbers from summed statistics and, for collect-then-finalise metrics, the concatenated collected
        arrays, e.g. ``{"miou": 0.61, "global_accuracy": 0.9}``."""
        raise NotImplementedError

    # ---- answers
    def decode(self, outputs, batch: dict) -> list[Any]:
        """Per-example answers in the original image from a batch's outputs (numpy): a label map, a class with its
        probabilities, keypoints with scores."""
        raise NotImplementedError

    def pictures(self, batch: dict, outputs) -> list[np.ndarray]:
        """Sample pictures (uint8 ``(H, W, 3)``) showing predictions against targets, for tracking and reports."""
        return []

    def picture_masks(self, batch: dict, outputs) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Per example, the image (uint8 ``(H, W, 3)``) and named label maps ``(H, W)`` (``"ground_truth"``,
        ``"prediction"``) for trackers that draw masks themselves (W&B masks); ``[]`` for tasks without them."""
        return []

    def write_report(self, results: dict, sums: dict, output_dir: str, samples=None) -> list:
        """Optional task-specific evaluation files (tables, confusion-matrix pictures, sample overlays).

        ``samples``: a list of ``(name, batch of one example (numpy dict), outputs (numpy))``."""
        return []

    # ---- prediction (densevision.inference.predictor, the Python API, the video tool)
    def predict_image(self, forward: Forward, image: np.ndarray, options, key: str = "") -> Any:
        """The answer for one uint8 ``(H, W, 3)`` image, using ``forward`` (:class:`Forward`); ``options`` are the
        prediction options (``PredictOptions``: flip, scales, tiles, top-k); ``key`` is the input's relative path
        (how side data such as person boxes names it). The files it becomes are its writer's
        (:mod:`densevision.inference.writers`)."""
        raise NotImplementedError(f"the {self.name} task does not support prediction")

    # ---- export (densevision.serving)
    def serving_outputs(self, prediction: tf.Tensor, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """TF graph ops (traceable, no numpy): the prediction tensor (the last output, float32) and the uint8 input
        images ``(B, H, W, 3)`` -> the decoded outputs of an exported model, by name. A task that does not define
        it cannot be exported."""
        raise NotImplementedError(f"the {self.name} task has no serving outputs")

    @staticmethod
    def format_results(results: dict) -> str:
        """Human-readable results table (default: one ``key: value`` line per number)."""
        return "\n".join(f"{k}: {v:.4f}" for k, v in results.items() if isinstance(v, (int, float)))

    @classmethod
    def make_demo_data(cls, directory: str) -> dict[str, Any]:
        """Write the task's generated demo dataset under ``directory``; return recipe overrides
        (dotted keys -> values) that point the recipe at it, e.g. ``{"data.root": directory}``."""
        raise NotImplementedError
