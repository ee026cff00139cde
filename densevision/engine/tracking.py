"""Logs: CSV and TensorBoard always (Keras' own callbacks), Weights & Biases through wandb's Keras integration.

W&B is ``offline`` by default, so a run needs no account and no network (``wandb sync <run>/wandb/offline-run-*``
uploads it later). A W&B failure warns and training goes on; ``mode: disabled`` writes nothing.
"""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from pathlib import Path

import cv2
import keras
import numpy as np

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_id.txt"


def start_wandb(recipe, run_dir: Path, resume: bool = False):
    """``wandb.init`` for the run (config = the resolved recipe), or ``None`` if disabled or failing."""
    cfg = recipe.tracking.wandb
    if cfg.mode == "disabled":
        return None
    try:
        import wandb

        id_file = run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
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


def save_pictures(pictures: list[np.ndarray], folder: Path, epoch: int, wandb_run=None) -> None:
    """Write sample pictures as PNG (always) and to W&B (when on)."""
    if not pictures:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for i, picture in enumerate(pictures):
        cv2.imwrite(str(folder / f"epoch{epoch + 1:03d}_{i}.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    if wandb_run is not None:
        try:
            import wandb

            wandb_run.log({"samples": [wandb.Image(p) for p in pictures], "epoch/epoch": epoch})
        except Exception as e:
            warnings.warn(f"could not log pictures to W&B ({e})", stacklevel=2)
