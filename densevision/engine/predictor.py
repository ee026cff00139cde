"""Moved: batch prediction lives in :mod:`densevision.inference.predictor` (the per-task file writers in
:mod:`densevision.inference.writers`). This module re-exports every name it had, so older imports keep working."""

from densevision.inference.predictor import (DEFAULT_MAX_PIXELS, PROGRESS_EVERY, REPORT, Forward,  # noqa: F401
                                             PredictionError, PredictOptions, load_for_prediction, make_forward,
                                             merge_report, plan_jobs, predict_command, predict_folder,
                                             prediction_info, read_json, summary, validate_options)
