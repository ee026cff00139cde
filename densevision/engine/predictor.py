"""Moved: batch prediction lives in :mod:`densevision.inference.predictor` (the per-task file writers in
:mod:`densevision.inference.writers`), loading a trained model for it in :mod:`densevision.engine.checkpoints`
(:func:`~densevision.engine.checkpoints.load_for_prediction`), the command in :mod:`densevision.commands.predict_run`.
This module re-exports every name it had, so older imports keep working."""

from importlib import import_module

from densevision.engine.checkpoints import load_for_prediction, prediction_info  # noqa: F401
from densevision.inference.predictor import (DEFAULT_MAX_PIXELS, PROGRESS_EVERY, REPORT, Forward,  # noqa: F401
                                             PredictionError, PredictOptions, make_forward, merge_report, plan_jobs,
                                             predict_folder, read_json, summary, validate_options)


def __getattr__(name: str):
    # old-name alias: the library never imports the commands, so the command's body is looked up on first use
    if name == "predict_command":
        return import_module("densevision.commands.predict_run").predict_command
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
