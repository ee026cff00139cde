"""Logs: CSV and TensorBoard always (Keras' own callbacks), Weights & Biases through wandb's Keras integration.

W&B is ``offline`` by default, so a run needs no account and no network (``wandb sync <run>/wandb/offline-run-*``
uploads it later). A W&B failure warns and training goes on; ``mode: disabled`` writes nothing.

Sample predictions (every ``train.pictures_every`` epochs and after the last) go where people look: PNG files in
``pictures/``, TensorBoard images (``tensorboard/pictures``, ``tf.summary.image``, one tag per sample) and W&B
(``samples``: the task's pictures, e.g. pose skeletons; ``masks``: for tasks with label maps, the image with the
true and predicted masks as W&B masks, which the W&B viewer toggles and filters by class). When training ends the
loss and metric curves are drawn to ``curves.png`` (:func:`densevision.engine.plots.plot_history`).
"""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from densevision.engine.plots import plot_history
from densevision.errors import OutputError
from densevision.files import write_png, write_text
from densevision.tasks.base import to_uint8

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_id.txt"
PICTURES_DIR = "pictures"
TENSORBOARD_PICTURES = "tensorboard/pictures"
CURVES_FILE = "curves.png"


def start_wandb(recipe, run_dir: Path, resume: bool = False):
    """``wandb.init`` for the run (config = the resolved recipe), or ``None`` if disabled or failing."""
    cfg = recipe.tracking.wandb
    if cfg.mode == "disabled":
        return None
    try:
        import wandb

        id_file = run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        write_text(id_file, run_id)
        os.environ.setdefault("WANDB_SILENT", "true")
        return wandb.init(
            project=cfg.project, entity=cfg.entity, tags=list(cfg.tags), config=recipe.to_dict(),
            dir=str(run_dir), mode=cfg.mode, id=run_id, resume="allow", name=f"{recipe.name}/{run_dir.name}",
            settings=wandb.Settings(console="off"),
        )
    except Exception as e:  # no network, bad API key, service start failure: keep training
        warnings.warn(f"Weights & Biases could not start ({type(e).__name__}: {e}); training continues "
                      f"with CSV and TensorBoard logs only.", stacklevel=2)
        return None


def finish_wandb(run, run_dir: Path | None, recipe) -> None:
    if run is None:
        return
    try:
        best = run_dir / "checkpoints" / "best.keras" if run_dir else None
        if recipe.tracking.wandb.log_best_model and best is not None and best.is_file():
            import wandb

            artifact = wandb.Artifact(f"{recipe.name}-best", type="model")
            artifact.add_file(str(best))
            run.log_artifact(artifact)
        run.finish()
    except Exception as e:
        warnings.warn(f"Weights & Biases could not finish cleanly ({type(e).__name__}: {e})", stacklevel=2)


def build_callbacks(recipe, run_dir: Path | None, model: keras.Model, wandb_run, append: bool, chief: bool,
                    initial_step: int = 0) -> keras.callbacks.CallbackList:
    """Keras callbacks the custom loop drives: CSVLogger, TensorBoard and WandbMetricsLogger (chief only)."""
    callbacks: list[keras.callbacks.Callback] = []
    if chief:
        callbacks.append(keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=append))
        if recipe.tracking.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"), write_graph=False,
                                                         update_freq="epoch"))
        if wandb_run is not None:
            try:
                from wandb.integration.keras import WandbMetricsLogger

                callbacks.append(WandbMetricsLogger(log_freq="epoch", initial_global_step=initial_step))
            except Exception as e:
                warnings.warn(f"wandb's Keras callback is unavailable ({e}); W&B gets no per-epoch metrics",
                              stacklevel=2)
    return keras.callbacks.CallbackList(callbacks, model=model)


def sample_outputs(model: keras.Model, task, dataset: tf.data.Dataset, count: int) -> list[tuple[dict, Any]]:
    """``[(batch of one example (numpy dict), outputs (numpy))]`` for the first ``count`` examples of a batched
    ``dataset``, one example at a time (full-resolution validation images may differ in size)."""
    samples = []
    for example in dataset.unbatch().take(count):
        batch = {key: value.numpy()[None] for key, value in example.items()}
        outputs = task.forward(model, tf.constant(batch["image"]), training=False)
        samples.append((batch, tf.nest.map_structure(np.asarray, outputs)))
    return samples


def log_pictures(task, samples: list[tuple[dict, Any]], run_dir: Path, epoch: int, wandb_run=None,
                 tensorboard: bool = True) -> list[np.ndarray]:
    """Draw the task's pictures of ``samples`` (see :func:`sample_outputs`) and send them everywhere: PNG files
    (always), TensorBoard (``tensorboard``) and W&B (when on). Returns the pictures (uint8 ``(H, W, 3)``)."""
    pictures = [picture for batch, outputs in samples for picture in task.pictures(batch, outputs)]
    save_pictures(pictures, Path(run_dir) / PICTURES_DIR, epoch, wandb_run)
    if tensorboard and pictures:
        write_tensorboard_pictures(pictures, Path(run_dir) / TENSORBOARD_PICTURES, epoch)
    if wandb_run is not None:
        masked = [item for batch, outputs in samples for item in task.picture_masks(batch, outputs)]
        if masked:
            log_wandb_masks(wandb_run, masked, task, epoch)
    return pictures


def save_pictures(pictures: list[np.ndarray], folder: Path, epoch: int, wandb_run=None) -> None:
    """Write sample pictures as PNG (always) and to W&B (when on)."""
    if not pictures:
        return
    try:
        for i, picture in enumerate(pictures):
            write_png(folder / f"epoch{epoch + 1:03d}_{i}.png", picture)
    except OutputError as error:  # a full disk must not stop training (cv2.imwrite failed silently before)
        warnings.warn(f"could not write sample pictures: {error}", stacklevel=2)
    if wandb_run is not None:
        try:
            import wandb

            wandb_run.log({"samples": [wandb.Image(p) for p in pictures], "epoch/epoch": epoch})
        except Exception as e:
            warnings.warn(f"could not log pictures to W&B ({e})", stacklevel=2)


def write_tensorboard_pictures(pictures: list[np.ndarray], log_dir: Path, epoch: int) -> None:
    """``tf.summary.image`` of each picture (tag ``samples/<i>``: sizes may differ) at step ``epoch``, the step of
    the Keras TensorBoard callback's epoch scalars."""
    try:
        writer = tf.summary.create_file_writer(str(log_dir))
        with writer.as_default():
            for i, picture in enumerate(pictures):
                tf.summary.image(f"samples/{i}", picture[None], step=epoch)
        writer.close()
    except Exception as e:  # a full disk or an odd picture must not stop training
        warnings.warn(f"could not write pictures to TensorBoard ({type(e).__name__}: {e})", stacklevel=2)


def log_wandb_masks(wandb_run, masked: list[tuple[np.ndarray, dict[str, np.ndarray]]], task, epoch: int) -> None:
    """W&B images with label maps as W&B masks (``{"ground_truth", "prediction"}``), classes named."""
    try:
        import wandb

        labels = {index: name for index, name in enumerate(task.class_names or [])}
        ignore = task.ignore_label
        if ignore is not None and ignore not in labels:
            labels[int(ignore)] = "void"
        images = [wandb.Image(to_uint8(image), masks={name: {"mask_data": np.asarray(mask, np.int32),
                                                             "class_labels": labels}
                                                      for name, mask in masks.items()})
                  for image, masks in masked]
        wandb_run.log({"masks": images, "epoch/epoch": epoch})
    except Exception as e:
        warnings.warn(f"could not log masks to W&B ({e})", stacklevel=2)


def plot_curves(run_dir: Path) -> Path | None:
    """Draw the run's loss and metric curves to ``curves.png`` (replaced at every end of training); a failure
    warns and returns ``None``."""
    try:
        return plot_history(run_dir, Path(run_dir) / CURVES_FILE, overwrite=True)
    except Exception as e:  # no rows yet, matplotlib missing, a full disk: the run itself is fine
        warnings.warn(f"could not draw the loss and metric curves ({type(e).__name__}: {e})", stacklevel=2)
        return None
