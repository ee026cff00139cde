"""Task-agnostic evaluation: the one loop that validation inside training and ``densevision evaluate`` share.

The evaluator names no task: per batch it calls ``task.metric_sums`` (additive statistics, reduced over replicas and
summed in numpy as int64 / float64, so long evaluations stay exact) and ``task.collect_tensors`` (per-example
answers gathered from every replica for metrics that cannot be summed, such as COCO AP), then asks the task for
the numbers (``metric_results``), a printable table (``format_results``) and report files (``write_report``).

Under any strategy the results equal a single-device run's: every worker reads the whole stream and keeps its
replicas' share of each global batch (same number of steps everywhere), and a share left smaller or empty by a last
batch counts exactly its own examples (:func:`forward_at_least_one`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

import keras
import tensorflow as tf

from densevision.data.pipeline import build_dataset, sample_seed
from densevision.data.sources import open_source, resolve_split  # noqa: F401  (re-exported)
from densevision.engine.checkpoints import load_checkpoint, load_matching_checkpoint  # noqa: F401  (re-exported)
from densevision.engine.demo import load_tool_recipe
from densevision.files import check_writable_dir, check_writable_file
from densevision.files import to_json_compatible, write_json  # noqa: F401  (re-exported)
from densevision.progress import progress_bar
from densevision.registry import TASKS

# ------------------------------------------------------------------------------------------------ evaluate

#: Every worker reads the whole evaluation stream and keeps its replicas' share of each global batch (DATA
#: sharding): every example is evaluated once and every worker runs the same number of steps, even when the last
#: batch leaves a worker nothing (FILE sharding could give workers different counts, and the one with more
#: batches would wait forever in the next collective).
EVAL_OPTIONS = tf.data.Options()
EVAL_OPTIONS.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA


def _accumulate(totals: dict[str, np.ndarray], batch: dict[str, Any]) -> None:
    """Add one batch's statistics to ``totals``, widening to int64 / float64 so sums never overflow."""
    for key, value in batch.items():
        value = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        value = value.astype(np.int64 if value.dtype.kind in "iub" else np.float64)
        totals[key] = totals[key] + value if key in totals else value


def forward_at_least_one(task, model, images: tf.Tensor):
    """``task.forward`` in inference mode on ``images`` (B, H, W, 3), B >= 0, returning outputs with B rows.

    Under a distribution strategy, a last batch smaller than the number of replicas leaves some replicas (or a
    whole worker) an empty (0, H, W, 3) share, and convolution + batch norm fail on it ("Incompatible shapes:
    [C] vs. [0, H, W, 3]"). An empty share is run as one zero image and the outputs are cut back to zero rows, so
    the task's loss, sums and collected tensors only ever see real examples. Inference-mode batch norm uses its
    moving statistics, so the padding changes nothing else.
    """
    count = tf.shape(images)[0]
    one_image = tf.concat([[1], tf.shape(images)[1:]], axis=0)
    images = tf.cond(count > 0, lambda: images, lambda: tf.zeros(one_image, images.dtype))
    outputs = task.forward(model, images, training=False)
    return tf.nest.map_structure(lambda output: output[:count], outputs)


def make_eval_step(model: keras.Model, task, strategy: Optional[tf.distribute.Strategy] = None,
                   with_loss: bool = False):
    """``step(batch) -> (sums, collected)``: one evaluation step under ``strategy`` (default: the current one).

    ``sums`` are the task's additive statistics summed over replicas (plus ``_loss_sum`` and ``_count`` with
    ``with_loss``); ``collected`` the task's per-example tensors gathered from every replica (and worker) for
    collect-then-finalise metrics, in the batch's order. Shapes are relaxed, so full-resolution images of many
    sizes share one trace. A replica whose share of the batch is smaller or empty contributes exactly its own
    examples (see :func:`forward_at_least_one`), so the results equal a single-device run's.
    """
    strategy = strategy or tf.distribute.get_strategy()

    def replica_step(batch):
        outputs = forward_at_least_one(task, model, batch["image"])
        sums = dict(task.metric_sums(batch, outputs))
        if with_loss:
            per_example = task.loss(batch, outputs)
            sums["_loss_sum"] = tf.reduce_sum(tf.cast(per_example, tf.float64))
            sums["_count"] = tf.cast(tf.shape(per_example)[0], tf.float64)
        return sums, dict(task.collect_tensors(batch, outputs))

    @tf.function(reduce_retracing=True)
    def step(batch):
        sums, collected = strategy.run(replica_step, args=(batch,))
        sums = tf.nest.map_structure(lambda t: strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None), sums)
        collected = tf.nest.map_structure(lambda t: strategy.gather(t, axis=0), collected)
        return sums, collected

    return step


def evaluate(model: keras.Model, task, dataset: tf.data.Dataset, steps: Optional[int] = None, progress: bool = True,
             strategy: Optional[tf.distribute.Strategy] = None, with_loss: bool = False, step_fn=None):
    """Run ``model`` over ``dataset`` and compute the task's metrics: the one evaluation loop (validation inside
    training and ``densevision evaluate`` both use it).

    Args:
        model: maps images ``(B, H, W, 3)`` float32 in [0, 255] to the task's output(s).
        task: a :class:`~densevision.tasks.base.Task`.
        dataset: yields example dicts (``task.example_spec`` with a batch axis).
        steps: stop after this many batches (default: the whole dataset).
        progress: show a tqdm progress bar.
        strategy: distribute the batches over this strategy's replicas (default: the current strategy).
        with_loss: also average the task's loss (``results["loss"]``).
        step_fn: a ready :func:`make_eval_step` (reused across epochs to keep its trace).

    Returns:
        ``(results, sums)``: ``task.metric_results(sums, collected)`` and the summed statistics (numpy int64 /
        float64).
    """
    strategy = strategy or tf.distribute.get_strategy()
    step = step_fn or make_eval_step(model, task, strategy, with_loss)
    if steps is not None:
        dataset = dataset.take(steps)
    dataset = dataset.with_options(EVAL_OPTIONS)
    total = steps
    if total is None:
        cardinality = int(dataset.cardinality())
        total = cardinality if cardinality >= 0 else None
    totals: dict[str, np.ndarray] = {}
    collected: dict[str, list[np.ndarray]] = {}
    batches = strategy.experimental_distribute_dataset(dataset)
    for batch in progress_bar(batches, total=total, desc="evaluate", unit="batch", enabled=progress, every=50,
                              leave=False):
        sums, gathered = step(batch)
        _accumulate(totals, sums)
        for key, value in gathered.items():
            collected.setdefault(key, []).append(np.asarray(value))
    if not totals:
        raise ValueError("evaluate: the dataset yielded no batch; nothing to evaluate")
    count = totals.pop("_count", None)
    loss_sum = totals.pop("_loss_sum", None)
    results = task.metric_results(totals, {key: np.concatenate(parts) for key, parts in collected.items()})
    if with_loss:
        results = {"loss": float(loss_sum / max(float(count), 1.0)), **results}
    return results, totals


def flatten_results(results: dict[str, Any], separator: str = "/") -> dict[str, float]:
    """``{"miou": .6, "per_class_iou": {"sky": .9}}`` -> ``{"miou": .6, "per_class_iou/sky": .9}`` (for loggers)."""
    flat: dict[str, float] = {}
    for key, value in results.items():
        if isinstance(value, dict):
            for inner_key, inner_value in flatten_results(value, separator).items():
                flat[f"{key}{separator}{inner_key}"] = inner_value
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            flat[key] = float(value)
    return flat


# ----------------------------------------------------------------------------------------- full evaluation


def predict_samples(model: keras.Model, task, source, transforms: list, count: int) -> list[tuple[str, dict, Any]]:
    """The first ``count`` examples of ``source``, prepared exactly as the evaluation pipeline prepares them (same
    transforms, same per-index seeds), with the model's outputs: ``[(name, batch of one example (numpy dict),
    outputs (numpy, or a list of arrays))]``, for report pictures."""
    prepare = task.preparer(transforms, training=False)
    samples = []
    for index in range(min(count, len(source))):
        example = prepare(source.load(index), sample_seed(0, 0, index))
        batch = {key: np.asarray(example[key], spec.dtype.as_numpy_dtype)[None]
                 for key, spec in task.example_spec.items()}
        outputs = task.forward(model, tf.constant(batch["image"]), training=False)
        samples.append((str(source.names[index]), batch, tf.nest.map_structure(np.asarray, outputs)))
    return samples


def run_evaluation(
    recipe,
    weights: str | os.PathLike,
    split: str = "val",
    output_dir: str | os.PathLike | None = None,
    json_path: str | os.PathLike | None = None,
    num_samples: int = 4,
    steps: Optional[int] = None,
    progress: bool = True,
    model: Optional[keras.Model] = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on one split of the recipe's dataset, prepared as validation inside training is
    (``augmentation.val``: empty for segmentation recipes, so metrics are at the images' full resolution).

    Args:
        recipe: the validated recipe (dataset, task, ``data.eval_batch_size``).
        weights: a ``.keras`` or ``.weights.h5`` checkpoint (see :func:`load_checkpoint`).
        split: ``"train"``, ``"val"``, ``"test"`` (mapped through the recipe's split names) or a split name.
        output_dir: if given, the task's report goes there (segmentation: ``per_class_iou.txt``,
            ``confusion_matrix.png``, ``overlays/``) along with ``metrics.json``.
        json_path: if given, the results are written there as strict JSON (NaN -> null).
        num_samples: how many pictures the report draws.
        steps: evaluate only this many batches (for quick checks).
        model: an already loaded model (``weights`` is then only reported).

    Returns:
        The task's results plus ``split``, ``checkpoint`` and ``num_images``.
    """
    split_name = resolve_split(recipe, split)
    source = open_source(recipe, split_name)
    task = TASKS.get(recipe.task)(recipe, source.info)
    if model is None:
        # Another class count would put labels in the wrong confusion-matrix cells without a word: refuse it.
        model = load_matching_checkpoint(weights, recipe, source.info, task=task)
    transforms = recipe.augmentation.val
    dataset = build_dataset(source, task.preparer(transforms, training=False), task.example_spec,
                            recipe.data.eval_batch_size, training=False,
                            num_parallel_calls=recipe.data.num_parallel_calls)
    results, sums = evaluate(model, task, dataset, steps=steps, progress=progress)
    evaluated = len(source) if steps is None else min(len(source), steps * recipe.data.eval_batch_size)
    results = {**results, "split": split_name, "checkpoint": str(weights), "num_images": evaluated}
    record = {**results, "sums": {key: value for key, value in sums.items()}}
    if json_path is not None:
        write_json(json_path, record)
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json(output_dir / "metrics.json", record)
        samples = predict_samples(model, task, source, transforms, num_samples) if num_samples else []
        task.write_report(results, sums, output_dir, samples)
    return results


def format_results(recipe, results: dict[str, Any]) -> str:
    """A printable table of ``results``: the task class's ``format_results(results)`` (:class:`~densevision.tasks.
    base.Task` declares one for every task)."""
    return TASKS.get(recipe.task).format_results(results)


# ------------------------------------------------------------------------------------------ command line



def evaluate_command(
    recipe_path: str,
    weights: str,
    split: str = "val",
    overrides: Sequence[str] = (),
    demo: bool = False,
    json_path: str | None = None,
    output_dir: str | None = None,
    progress: bool = True,
    flip_test: bool = False,
) -> int:
    """What ``densevision evaluate`` does; returns 0. Recipe, dataset, checkpoint and output problems raise
    :class:`~densevision.errors.DensevisionError` subclasses (the tool prints one ``error:`` line, exit 2), all
    before the evaluation starts, so a finished evaluation is never thrown away for an unwritable ``--json``."""
    if json_path:
        check_writable_file(json_path, what="--json")
    if output_dir:
        check_writable_dir(output_dir, what="--output folder")
    overrides = list(overrides) + (["test.flip_test=true"] if flip_test else [])
    recipe = load_tool_recipe(recipe_path, overrides, demo=demo)
    results = run_evaluation(recipe, weights, split=split, output_dir=output_dir, json_path=json_path,
                             progress=progress)
    print(f"{recipe.name}: {results['split']} split, {results['num_images']} images, checkpoint {weights}")
    print(format_results(recipe, results))
    if json_path:
        print(f"results written to {json_path}")
    if output_dir:
        print(f"report written to {output_dir}")
    return 0
