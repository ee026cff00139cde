"""Run folders and atomic checkpoint writes: a kill at any moment leaves the last complete checkpoint intact."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import re
import shutil
import sys
import warnings
import zipfile
from pathlib import Path

import keras

from densevision import files
from densevision.engine.compat import check_checkpoint_matches
from densevision.errors import CheckpointError, OutputError  # CheckpointError: re-exported (its old home)
from densevision.models import build_model
from densevision.data.errors import DatasetError
from densevision.data.sources import open_source
from densevision.registry import DATASETS, TASKS, load_builtin_parts
from densevision.tasks.base import Task


def finished_run_error(run_dir: str | os.PathLike, epochs_done: int, epochs: int) -> CheckpointError:
    """The error for ``--resume`` of a run that has trained all of its ``train.epochs``: it says so and how to
    train longer (resuming with a larger ``train.epochs``)."""
    return CheckpointError(
        f"cannot resume {run_dir}: the run already finished its {epochs} epoch(s) (train.epochs is {epochs}"
        + (f", its checkpoint is at epoch {epochs_done}" if epochs_done != epochs else "")
        + f"); to train longer, resume with more epochs: densevision train --resume {run_dir} --set "
        f"train.epochs={max(epochs, epochs_done) * 2}")


def new_run_dir(output_dir: str | os.PathLike, recipe_name: str) -> Path:
    """Create ``<output_dir>/<recipe_name>/<timestamp>/`` and return it; never reuses an existing folder."""
    parent = Path(output_dir) / recipe_name
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create the output folder {parent}: {e.strerror}") from None
    for attempt in range(1000):
        run_dir = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir()  # atomic: fails if another run took the name
        except FileExistsError:
            continue
        except OSError as e:
            raise CheckpointError(f"cannot create the run folder {run_dir}: {e.strerror}") from None
        return run_dir
    raise CheckpointError(f"could not find a free run folder name under {parent}")


def _atomic_write(path: Path, write, fsync: bool = True) -> None:
    """:func:`densevision.files.atomic_write`, with write failures (full disk, read-only folder) as
    :class:`CheckpointError`; checkpoints are flushed to the disk before the rename."""
    try:
        files.atomic_write(path, write, fsync=fsync)
    except OutputError as error:
        raise CheckpointError(str(error)) from None


def save_model_atomic(model: keras.Model, path: str | os.PathLike) -> None:
    """``model.save(path)`` (``.keras``: weights, optimizer state, config) via a temporary file and a rename."""
    _atomic_write(Path(path), lambda tmp: model.save(tmp))


def copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a checkpoint atomically (``best.keras`` from ``last.keras``)."""
    _atomic_write(Path(dst), lambda tmp: shutil.copyfile(src, tmp))


# Temporary files of the atomic writer before densevision.files existed: ``.last-k3j4h5g6.keras``.
_LEGACY_TEMP = re.compile(r"^\.(last|best|history)-[a-z0-9_]{8}\.(keras|csv)$")


def clean_stale_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the temporary files a hard kill (``kill -9``) during a write left in a run folder; return them.

    Looks in ``run_dir`` and ``run_dir/checkpoints``. Call it when resuming, before anything writes there.
    """
    run_dir = Path(run_dir)
    removed = []
    for folder in (run_dir, run_dir / "checkpoints"):
        removed += files.remove_stale_temp_files(folder)
        if folder.is_dir():
            for path in sorted(folder.glob(".*")):
                if _LEGACY_TEMP.match(path.name) and path.is_file() and not path.is_symlink():
                    path.unlink(missing_ok=True)
                    removed.append(path)
    return removed


def check_keras_file(path: str | os.PathLike, what: str = "checkpoint") -> Path:
    """Check that ``path`` is an existing, complete ``.keras`` archive before Keras reads it.

    Keras answers a truncated ``.keras`` file with "File not found" (it is no zip archive any more); this names
    the real problem.

    Raises:
        CheckpointError: ``"<what> <path> does not exist"`` or ``"<what> <path> is not a valid .keras file
            (truncated or corrupt): ..."``.
    """
    path = Path(path)
    if not path.is_file():
        reason = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"{what} {path} {reason}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{what} {path} is not a valid .keras file (truncated or corrupt): it is empty (0 bytes)")
    try:
        valid = zipfile.is_zipfile(path)
    except OSError as error:
        raise CheckpointError(f"{what} {path} cannot be read: {files.describe_os_error(error)}") from None
    if not valid:
        raise CheckpointError(f"{what} {path} is not a valid .keras file (truncated or corrupt): no complete zip "
                              f"archive in its {size:,} bytes; use another checkpoint (best.keras / last.keras)")
    return path


def restore_training_state(model: keras.Model, path: str | os.PathLike) -> None:
    """Load weights *and* optimiser state from a ``.keras`` checkpoint into a model built from the same recipe.

    The optimiser must be built (its slot variables created) first; the step counter comes back with it, so the
    learning-rate schedule continues where it stopped.
    """
    path = Path(path)
    if path.suffix == ".keras":
        check_keras_file(path)
    elif not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        model.load_weights(path)
    except Exception as e:  # corrupt zip, wrong architecture, truncated file
        raise CheckpointError(f"checkpoint {path} could not be loaded ({type(e).__name__}: {e}); "
                              f"it may be corrupt or from another recipe") from None


def load_model_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """Copy model weights (not optimiser state) from a ``.keras`` or ``.weights.h5`` file into ``model``
    (``train.init_weights``)."""
    try:
        load_checkpoint(path, model=model)
    except CheckpointError as error:
        raise CheckpointError(f"train.init_weights: {error}") from None


def read_history(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of ``history.csv`` (Keras CSVLogger format), or ``[]``."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def truncate_history(path: str | os.PathLike, epochs_done: int) -> list[dict[str, str]]:
    """Keep the rows of epochs ``< epochs_done`` (a run killed after logging but before its checkpoint)."""
    all_rows = read_history(path)
    rows = [r for r in all_rows if int(r["epoch"]) < epochs_done]
    if len(rows) < len(all_rows):
        fields = list(all_rows[0].keys())

        def write(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)

        _atomic_write(Path(path), write)
    return rows


# ------------------------------------------------------------------------------------------ loading


def unsafe_parts(config) -> list[str]:
    """Paths of the parts of a serialised model config that hold Python bytecode (``Lambda`` layers, lambda
    activations), which ``keras.saving.load_model(..., safe_mode=True)`` refuses; paths read ``outer/inner/layer``.
    """
    found: list[str] = []

    def walk(node, path: tuple[str, ...]):
        if isinstance(node, dict):
            config = node.get("config") if isinstance(node.get("config"), dict) else {}
            name = config.get("name") if isinstance(config.get("name"), str) else None
            here = path + ((name,) if name and "class_name" in node else ())
            if node.get("class_name") == "Lambda":
                found.append(f"{'/'.join(here)} (Lambda layer)")
                return
            if node.get("class_name") == "__lambda__":
                found.append(f"{'/'.join(path)} (a Python lambda in its config)")
                return
            for key, value in node.items():
                if key != "class_name":
                    walk(value, here)
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item, path)

    walk(config, ())
    return found


def _saved_unsafe_parts(path: Path) -> list[str]:
    """:func:`unsafe_parts` of a ``.keras`` archive's ``config.json`` (``[]`` when it cannot be read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    return unsafe_parts(config)

CHECKPOINT_SUFFIXES = (".keras", ".weights.h5")




def load_checkpoint(path: str | os.PathLike, recipe=None, model: keras.Model | None = None) -> keras.Model:
    """Load a checkpoint: the one loader of every tool (evaluation, prediction, export, ``train.init_weights``).

    Args:
        path: ``.keras`` (a whole saved model: loaded with ``safe_mode=True``, no compile) or ``.weights.h5``
            (weights only: the model is built from ``recipe`` first).
        recipe: the validated recipe; needed for ``.weights.h5`` unless ``model`` is given.
        model: copy the weights into this model (same architecture) instead of returning the saved one.

    Returns:
        The loaded model (``model`` itself when given).

    Raises:
        CheckpointError: naming the file when it is missing, of an unknown kind, corrupt or does not fit.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(CHECKPOINT_SUFFIXES):
        raise CheckpointError(
            f"checkpoint {path}: expected a .keras model or a .weights.h5 file (got suffix {path.suffix!r})"
        )
    if name.endswith(".keras"):
        check_keras_file(path)
    elif not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    load_builtin_parts()  # the layers a saved model may name
    if name.endswith(".keras"):
        try:
            saved = _load_strictly(lambda: keras.saving.load_model(path, safe_mode=True, compile=False))
        except Exception as error:  # unknown layer, damaged member inside a complete zip
            unsafe = _saved_unsafe_parts(path)
            if unsafe:  # Keras' own message does not say which layer
                raise CheckpointError(
                    f"checkpoint {path} holds Python bytecode in {', '.join(unsafe)}, which densevision refuses to "
                    f"load (keras.saving.load_model(safe_mode=True)): it can run any code; rebuild the model with a "
                    f"registered layer (@keras.saving.register_keras_serializable) instead") from None
            raise CheckpointError(f"checkpoint {path} could not be loaded ({type(error).__name__}: {error}); "
                                  f"it may be corrupt or need a newer densevision") from None
        if model is None:
            return saved
        try:
            model.set_weights(saved.get_weights())
        except ValueError as error:
            raise CheckpointError(f"checkpoint {path} does not fit the model {model.name!r} ({error})") from None
        return model
    if model is None:
        if recipe is None:
            raise CheckpointError(f"checkpoint {path}: a .weights.h5 file needs the recipe to build the model first")
        model = build_model(recipe)
    try:
        _load_strictly(lambda: model.load_weights(path))
    except Exception as error:
        what = f"recipe {recipe.name!r}" if recipe is not None else f"model {model.name!r}"
        raise CheckpointError(
            f"checkpoint {path} does not fit the model of {what} "
            f"({type(error).__name__}: {error}); is it from another recipe or corrupt?"
        ) from None
    return model


def load_matching_checkpoint(path: str | os.PathLike, recipe, info, task=None) -> keras.Model:
    """:func:`load_checkpoint`, then the check that it fits the recipe and the dataset
    (:func:`densevision.engine.compat.check_checkpoint_matches`): what every tool that runs a trained model does.

    Args:
        path: ``.keras`` or ``.weights.h5`` checkpoint.
        recipe: the validated recipe.
        info: the dataset's ``info`` (class names, joints), or ``None`` when the dataset is not available.
        task: the recipe's task, whose output rank the checkpoint must have (a classifier is never run as a
            segmenter).

    Raises:
        CheckpointError: the file cannot be loaded, or its classes, joints, input channels, input size or output
            kind do not match.
    """
    model = load_checkpoint(path, recipe)
    check_checkpoint_matches(model, recipe, info, path, task=task)
    return model


def prediction_info(recipe) -> dict:
    """The dataset ``info`` the task needs to answer (class names, palette; joints, skeleton, flip pairs).

    Opened from the recipe's dataset when it is on this machine; otherwise from what the source can say without
    data (its ``describe(**options)``), so prediction works where only the checkpoint and recipe are.
    """
    describe = getattr(DATASETS.get(recipe.data.name), "describe", None)  # a source without data may offer one
    if describe is not None:
        return describe(**recipe.data.kwargs())
    try:
        return open_source(recipe, recipe.data.val_split).info
    except DatasetError as error:
        classes = recipe.model.kwargs().get("num_classes")
        if classes is None:
            raise
        print(f"note: the recipe's dataset is not available here ({str(error).splitlines()[0]}); classes are "
              f"named class_0 .. class_{int(classes) - 1}", file=sys.stderr)
        return {"class_names": [f"class_{index}" for index in range(int(classes))], "num_classes": int(classes)}


def load_for_prediction(recipe, weights, flip_test: bool = False) -> tuple[keras.Model, Task]:
    """``(model, task)`` of a recipe and a checkpoint: the task built from :func:`prediction_info`, the checkpoint
    loaded and checked against the recipe and the dataset: the one loading step of prediction, export, the API
    and the video tool.

    Args:
        recipe: the validated recipe.
        weights: the checkpoint (``.keras`` or ``.weights.h5``).
        flip_test: switch the task's test-time flip on (it is read when the forward pass is traced).

    Raises:
        CheckpointError: the checkpoint is missing, damaged or does not fit the recipe (the message names it).
    """
    task = TASKS.get(recipe.task)(recipe, prediction_info(recipe))
    task.flip_test = task.flip_test or bool(flip_test)
    return load_matching_checkpoint(weights, recipe, task.info, task=task), task


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
