"""Do the recipe, the dataset and a checkpoint fit together? Checked when they meet, before any step runs.

A model with fewer outputs than the dataset has labels fails only after the first training step (or evaluates
nonsense); a checkpoint trained for another dataset loads without complaint when only its last layer differs.
These checks name both sides instead:

- :func:`check_model_matches_data` — the recipe's ``model.num_classes`` / ``model.num_joints`` against the
  dataset ``info`` (call it once the sources are open, before building the model);
- :func:`check_checkpoint_matches` — a loaded model's outputs and input against the recipe and the dataset.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Optional

from densevision.errors import CheckpointError
from densevision.recipes import RecipeError
from densevision.registry import MODELS, TASKS, UnknownNameError, load_builtin_parts

#: (model option, info key, noun) for each kind of output count a dataset defines
_OUTPUT_COUNTS = (("num_classes", "num_classes", "classes"), ("num_joints", "num_joints", "joints"))


def _builder_default(recipe, option: str) -> Optional[int]:
    """The model builder's default for ``option`` when the recipe does not set it."""
    try:
        builder = MODELS.get(recipe.model.name)
    except UnknownNameError:
        return None
    target = builder.__init__ if inspect.isclass(builder) else builder
    try:
        parameter = inspect.signature(target).parameters.get(option)
    except (TypeError, ValueError):
        return None
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default


def _data_count(info: dict[str, Any], key: str) -> Optional[int]:
    if info.get(key) is not None:
        return int(info[key])
    names = {"num_classes": "class_names", "num_joints": "joint_names"}[key]
    return len(info[names]) if info.get(names) is not None else None


def _where(recipe) -> str:
    return getattr(recipe, "source", None) or getattr(recipe, "name", None) or "<recipe>"


def _dataset_name(recipe) -> str:
    data = getattr(recipe, "data", None)
    return f"dataset {data.name!r}" if data is not None else "the dataset"


def check_model_matches_data(recipe, info: dict[str, Any]) -> None:
    """The recipe's model predicts as many classes (or joints) as the dataset defines.

    Compares ``model.num_classes`` / ``model.num_joints`` (the recipe's value, else the builder's default) with
    ``info["num_classes"]`` / ``info["num_joints"]`` (or the length of ``class_names`` / ``joint_names``).

    Raises:
        RecipeError: ``"model.num_classes is 5 but dataset 'camvid' has 11 classes (labels 0..10); set
            model.num_classes: 11"``; fewer outputs than labels would fail after the first step, more would
            predict classes that never occur.
    """
    kwargs = recipe.model.kwargs()
    for option, key, noun in _OUTPUT_COUNTS:
        in_data = _data_count(info, key)
        if in_data is None:
            continue
        declared = kwargs.get(option, _builder_default(recipe, option))
        if declared is None or int(declared) == in_data:
            continue
        declared = int(declared)
        names = info.get("class_names" if key == "num_classes" else "joint_names") or []
        shown = f": {', '.join(map(str, names[:8]))}{' ...' if len(names) > 8 else ''}" if names else ""
        if declared < in_data:
            consequence = (f"labels {declared}..{in_data - 1} would have no output" if key == "num_classes"
                           else f"joints {declared}..{in_data - 1} would have no heatmap")
        else:
            consequence = f"the model would predict {declared - in_data} {noun} the dataset never has"
        raise RecipeError(f"{_where(recipe)}: model.{option} is {declared} but {_dataset_name(recipe)} has "
                          f"{in_data} {noun}{shown} ({consequence}); set model.{option}: {in_data}")


def checkpoint_summary(model) -> dict[str, Any]:
    """What a loaded model takes and gives, for comparing with a recipe and a dataset.

    Returns:
        ``{"input_shape": [H|None, W|None, C], "output_channels": K (last axis of the last output),
        "output_rank": rank of that output including the batch (2: one answer per image, 4: per pixel or per
        heatmap cell), "num_outputs": n}``. With a list of outputs (one per hourglass stack) the last is used.
    """
    inputs = model.inputs
    outputs = model.outputs
    last = outputs[-1]
    input_shape = list(inputs[0].shape[1:]) if inputs else None
    return {
        "input_shape": [None if d is None else int(d) for d in input_shape] if input_shape is not None else None,
        "output_channels": None if last.shape[-1] is None else int(last.shape[-1]),
        "output_rank": len(last.shape),
        "num_outputs": len(outputs),
    }


#: the input side used to measure the output stride of a model that takes any size (a multiple of 64: every
#: densevision model's downsampling divides it)
_STRIDE_PROBE = 256


def output_stride(model) -> Optional[int]:
    """Input size / output size of the model's (last) rank-4 output: 1 for a map at the input's size (segmentation),
    4 for heatmaps at a quarter of it (pose); ``None`` for other outputs or when it cannot be told.

    A model that takes any size is measured on a ``(1, 256, 256, C)`` input from shapes only (no compute).
    """
    import keras

    last = model.outputs[-1]
    if len(last.shape) != 4 or not model.inputs:
        return None
    height = model.inputs[0].shape[1]
    rows = last.shape[1]
    if height is None or rows is None:
        height = height or _STRIDE_PROBE
        probe = keras.KerasTensor((1, height, model.inputs[0].shape[2] or _STRIDE_PROBE, model.inputs[0].shape[-1]),
                                  dtype=model.inputs[0].dtype)
        try:
            spec = model.compute_output_spec(probe)
        except Exception:  # noqa: BLE001 - a model that cannot take the probe size: the stride stays unknown
            return None
        spec = spec[-1] if isinstance(spec, (list, tuple)) else spec
        rows = spec.shape[1]
    return round(height / rows) if rows else None


def _output_kind(rank: Optional[int], stride: Optional[int]) -> str:
    if rank == 2:
        return "one answer per image"
    if rank == 4 and stride == 1:
        return "a map at the input's size"
    if rank == 4 and stride:
        return f"maps at 1/{stride} of the input"
    return f"rank-{rank} outputs"


def _task_of(rank: Optional[int], stride: Optional[int]) -> Optional[str]:
    """The name of the registered task whose models give outputs of this rank and stride (``None``: no one task)."""
    load_builtin_parts()
    classes = {TASKS.get(name): name for name in TASKS.names()}  # one entry per class (aliases share one)
    names = [cls.name for cls in classes if cls.output_rank == rank and cls.output_stride in (None, stride)]
    return names[0] if len(names) == 1 else None


def _task_problem(model, summary: dict, task) -> Optional[str]:
    """Why the checkpoint is a model of another task than ``task`` (its output rank or stride differ), or None."""
    if task is None or task.output_rank is None:
        return None
    rank, want_rank, want_stride = summary["output_rank"], task.output_rank, task.output_stride
    stride = output_stride(model) if rank == 4 and want_stride is not None else None
    if rank == want_rank and (stride is None or want_stride is None or stride == want_stride):
        return None
    task_name = task.name
    other = _task_of(rank, stride)
    if other == "classification":
        other = "classifier"
    what = f"a {other} model" if other and other != task_name else "a model of another task"
    return (f"is {what} ({_output_kind(rank, stride)}), but the recipe's task is {task_name} "
            f"({_output_kind(want_rank, want_stride)}): use a checkpoint trained with a {task_name} recipe, or "
            f"the recipe this checkpoint was trained with")


def check_checkpoint_matches(model, recipe, info: Optional[dict[str, Any]], path: str | os.PathLike,
                             task=None) -> dict:
    """A loaded checkpoint fits the recipe and the dataset: as many output channels as classes (or joints), an
    input of 3 channels, and (when the recipe fixes one, as classifiers do) the recipe's input size.

    Args:
        model: the loaded ``keras.Model``.
        recipe: the validated recipe.
        info: the dataset source's ``info`` (``None`` when the dataset is not available: the recipe's own
            ``model.num_classes`` / ``num_joints`` is used).
        path: the checkpoint file, for the message.
        task: the recipe's task; its ``output_rank`` (2: one answer per image, 4: per pixel / heatmap cell) must
            be the checkpoint's, so a classifier is never evaluated as a segmenter.

    Returns:
        :func:`checkpoint_summary` of the model.

    Raises:
        CheckpointError: ``"checkpoint X predicts 12 classes, the dataset 'camvid' has 11"`` and likewise for
            joints, input channels and input size.
    """
    summary = checkpoint_summary(model)
    wrong_task = _task_problem(model, summary, task)
    if wrong_task:  # its channels count something else (joints, not classes): comparing them would mislead
        raise CheckpointError(f"checkpoint {path} {wrong_task}")
    channels = summary["output_channels"]
    kwargs = recipe.model.kwargs()
    problems = []
    for option, key, noun in _OUTPUT_COUNTS:
        expected, source = None, None
        if info is not None and _data_count(info, key) is not None:
            expected, source = _data_count(info, key), _dataset_name(recipe)
        elif kwargs.get(option) is not None:
            expected, source = int(kwargs[option]), f"the recipe (model.{option})"
        if expected is None:
            continue
        if channels is not None and channels != expected:
            problems.append(f"predicts {channels} {noun}, {source} has {expected}")
        break
    input_shape = summary["input_shape"]
    if input_shape is not None and input_shape[-1] not in (None, 3):
        problems.append(f"takes {input_shape[-1]}-channel images, densevision feeds RGB (3 channels)")
    wanted = kwargs.get("input_shape")
    if wanted is not None and input_shape is not None and len(wanted) == len(input_shape):
        differ = [(got, want) for got, want in zip(input_shape[:2], list(wanted)[:2])
                  if got is not None and want is not None and int(got) != int(want)]
        if differ:
            shown = "x".join("?" if d is None else str(d) for d in input_shape)
            problems.append(f"takes {shown} inputs, the recipe's model.input_shape is "
                            f"{'x'.join(str(d) for d in wanted)}")
    if problems:
        raise CheckpointError(f"checkpoint {path} {'; it '.join(problems)}: it was trained for another recipe "
                              f"or dataset; use a checkpoint of this recipe or fix the recipe")
    return summary
