"""Task-agnostic evaluation: run a model over a dataset, sum the task's additive statistics, report.

The evaluator knows nothing about segmentation: it calls ``task.metric_sums`` per batch, sums the statistics
in numpy (int64 / float64, so long evaluations stay exact), and asks the task for the numbers
(``metric_results``) and, optionally, a printable table (``format_results``) and report files
(``write_report``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

import keras
import tensorflow as tf

from densevision.engine.checkpoints import CheckpointError
from densevision.registry import DATASETS, TASKS

CHECKPOINT_SUFFIXES = (".keras", ".weights.h5")


# ------------------------------------------------------------------------------------------------ evaluate


def _accumulate(totals: dict[str, np.ndarray], batch: dict[str, Any]) -> None:
    """Add one batch's statistics to ``totals``, widening to int64 / float64 so sums never overflow."""
    for key, value in batch.items():
        value = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        value = value.astype(np.int64 if value.dtype.kind in "iub" else np.float64)
        totals[key] = totals[key] + value if key in totals else value


def evaluate(model: keras.Model, task, dataset: tf.data.Dataset, steps: Optional[int] = None, progress: bool = True):
    """Run ``model`` over ``dataset`` and compute the task's metrics.

    Args:
        model: maps images ``(B, H, W, 3)`` float32 in [0, 255] to the task's output (e.g. logits
            ``(B, H, W, K)``).
        task: a :class:`~densevision.tasks.base.Task`.
        dataset: yields ``(images, targets)`` batches.
        steps: stop after this many batches (default: the whole dataset).
        progress: show a tqdm progress bar.

    Returns:
        ``(results, sums)``: ``task.metric_results(sums)`` and the summed statistics (numpy int64 / float64).
    """
    from tqdm.auto import tqdm

    # Full-resolution images may differ in size: relax shapes instead of retracing for each new one.
    @tf.function(reduce_retracing=True)
    def predict_step(images, targets):
        outputs = model(images, training=False)
        return task.metric_sums(targets, outputs)

    if steps is not None:
        dataset = dataset.take(steps)
    total = steps
    if total is None:
        cardinality = int(dataset.cardinality())
        total = cardinality if cardinality >= 0 else None
    totals: dict[str, np.ndarray] = {}
    for images, targets in tqdm(dataset, total=total, desc="evaluate", unit="batch", disable=not progress):
        _accumulate(totals, predict_step(images, targets))
    if not totals:
        raise ValueError("evaluate: the dataset yielded no batch; nothing to evaluate")
    return task.metric_results(totals), totals


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


def to_json_compatible(value: Any) -> Any:
    """Numpy scalars/arrays -> Python; NaN/inf -> ``None`` (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): to_json_compatible(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_compatible(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json_compatible(value.tolist())
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write strict JSON atomically (a temporary file then a rename), creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(to_json_compatible(data), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- checkpoints


def register_custom_objects() -> None:
    """Import the modules whose layers a saved model may use, so ``load_model(safe_mode=True)`` finds them."""
    for module in ("densevision.models", "densevision.layers", "densevision.heads", "densevision.backbones",
                   "densevision.tasks.segmentation"):
        try:
            __import__(module)
        except ModuleNotFoundError as error:
            if error.name != module:  # a missing dependency inside an existing module is a real problem
                raise


def load_checkpoint(path: str | os.PathLike, recipe=None) -> keras.Model:
    """Load a model for inference.

    Args:
        path: ``.keras`` (a whole saved model: loaded with ``safe_mode=True``, no compile) or ``.weights.h5``
            (weights only: the model is built from ``recipe`` first).
        recipe: the validated recipe; required for ``.weights.h5``.

    Raises:
        CheckpointError: naming the file when it is missing, of an unknown kind, corrupt or does not fit.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(CHECKPOINT_SUFFIXES):
        raise CheckpointError(
            f"checkpoint {path}: expected a .keras model or a .weights.h5 file (got suffix {path.suffix!r})"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    register_custom_objects()
    if name.endswith(".keras"):
        try:
            return _load_strictly(lambda: keras.saving.load_model(path, safe_mode=True, compile=False))
        except Exception as error:  # corrupt zip, unknown layer, truncated file
            raise CheckpointError(
                f"checkpoint {path} could not be loaded ({type(error).__name__}: {error}); "
                f"it may be corrupt or need a newer densevision"
            ) from None
    if recipe is None:
        raise CheckpointError(f"checkpoint {path}: a .weights.h5 file needs the recipe to build the model first")
    from densevision.models import build_model

    model = build_model(recipe)
    try:
        _load_strictly(lambda: model.load_weights(path))
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model of recipe {recipe.name!r} "
            f"({type(error).__name__}: {error}); is it from another recipe or corrupt?"
        ) from None
    return model


# Keras only *warns* when parts of a model find no weights in the file and keep their random initial values;
# evaluating such a model would report numbers for a model that was never trained, so that is an error here.
_PARTIAL_LOAD_WARNINGS = ("freshly-initialized", "could not be loaded")


def _load_strictly(load):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = load()
    for warning in caught:
        if any(text in str(warning.message) for text in _PARTIAL_LOAD_WARNINGS):
            raise ValueError(f"some weights were not in the file: {str(warning.message).splitlines()[0]}")
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return result


# ----------------------------------------------------------------------------------------- full evaluation


def resolve_split(recipe, split: str) -> str:
    """``"train"``/``"val"``/``"test"`` -> the recipe's split names (``data.val_split`` ...); others unchanged."""
    aliases = {"train": recipe.data.train_split, "val": recipe.data.val_split, "test": recipe.data.test_split}
    return aliases.get(split, split)


def open_source(recipe, split: str):
    """The recipe's dataset source for ``split`` (raises the source's ``DatasetError`` if it is unusable)."""
    return DATASETS.get(recipe.data.name)(root=recipe.data.root, split=split, **recipe.data.kwargs())


def predict_samples(model: keras.Model, source, count: int) -> list[tuple[str, np.ndarray, Any, np.ndarray]]:
    """The first ``count`` examples of ``source`` with the model's output:
    ``[(name, image (H, W, 3) uint8, target, output (H, W, K))]``."""
    samples = []
    for index in range(min(count, len(source))):
        image, target = source.load(index)
        output = model(np.asarray(image, np.float32)[None], training=False)
        samples.append((str(source.names[index]), image, target, keras.ops.convert_to_numpy(output)[0]))
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
) -> dict[str, Any]:
    """Evaluate a checkpoint on one split of the recipe's dataset at full resolution, without augmentation.

    Args:
        recipe: the validated recipe (dataset, task, ``data.eval_batch_size``).
        weights: a ``.keras`` or ``.weights.h5`` checkpoint (see :func:`load_checkpoint`).
        split: ``"train"``, ``"val"``, ``"test"`` (mapped through the recipe's split names) or a split name.
        output_dir: if given, the task's report goes there (segmentation: ``per_class_iou.txt``,
            ``confusion_matrix.png``, ``overlays/``) along with ``metrics.json``.
        json_path: if given, the results are written there as strict JSON (NaN -> null).
        num_samples: how many pictures the report draws.
        steps: evaluate only this many batches (for quick checks).

    Returns:
        The task's results plus ``split``, ``checkpoint`` and ``num_images``.
    """
    from densevision.data.pipeline import build_dataset

    split_name = resolve_split(recipe, split)
    source = open_source(recipe, split_name)
    task = TASKS.get(recipe.task)(recipe, source.info)
    model = load_checkpoint(weights, recipe)
    dataset = build_dataset(
        source,
        None,  # no augmentation at all, so metrics are at the images' full resolution
        task.target_spec,
        recipe.data.eval_batch_size,
        training=False,
        num_parallel_calls=recipe.data.num_parallel_calls,
    )
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
        if hasattr(task, "write_report"):
            samples = predict_samples(model, source, num_samples) if num_samples else []
            task.write_report(results, sums, output_dir, samples)
    return results


def format_results(recipe, results: dict[str, Any]) -> str:
    """A printable table of ``results``: the task class's ``format_results(results)`` if it has one, else JSON."""
    formatter = getattr(TASKS.get(recipe.task), "format_results", None)
    if formatter is None:
        return json.dumps(to_json_compatible(results), indent=2)
    return formatter(results)


# ------------------------------------------------------------------------------------------ command line

EXIT_USAGE_ERROR = 2


def evaluate_command(
    recipe_path: str,
    weights: str,
    split: str = "val",
    overrides: Sequence[str] = (),
    demo: bool = False,
    json_path: str | None = None,
    output_dir: str | None = None,
    progress: bool = True,
) -> int:
    """What ``tools/evaluate.py`` does; returns the exit code.

    Recipe, dataset and checkpoint errors print one ``error: ...`` line on stderr and return 2.
    """
    from densevision.data.errors import DatasetError
    from densevision.recipes import RecipeError, load_recipe

    try:
        recipe = load_recipe(recipe_path, list(overrides), demo=demo)
        if demo:
            from densevision.engine.demo import apply_demo

            recipe = apply_demo(recipe)
        results = run_evaluation(recipe, weights, split=split, output_dir=output_dir, json_path=json_path,
                                 progress=progress)
    except (RecipeError, DatasetError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    print(f"{recipe.name}: {results['split']} split, {results['num_images']} images, checkpoint {weights}")
    print(format_results(recipe, results))
    if json_path:
        print(f"results written to {json_path}")
    if output_dir:
        print(f"report written to {output_dir}")
    return 0
