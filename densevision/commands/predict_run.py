"""The body of ``densevision predict`` (``tools/predict.py``): a recipe and checkpoint run over image files and folders,
every answer written by the task's writer, a report of what failed.

Batch prediction itself is library code (:mod:`densevision.inference.predictor`); this module is the command around
it: the recipe (``--demo``, ``--set``), the checkpoint (through the engine), the inputs, the summary. It imports
TensorFlow at its top, so :mod:`densevision.commands.predict` imports it only after parsing (``--help`` stays fast).
"""

from __future__ import annotations

from typing import Optional, Sequence

from densevision.data.io import find_inputs
from densevision.engine.checkpoints import load_for_prediction
from densevision.engine.demo import load_tool_recipe
from densevision.files import check_writable_dir
from densevision.inference.predictor import PredictOptions, predict_folder, summary, validate_options  # noqa: F401


def predict_command(recipe_path: str, weights: str, inputs: Sequence[str], output_dir: str, *,
                    overwrite: bool = False, resume: bool = False, demo: bool = False,
                    overrides: Sequence[str] = (), progress: bool = True, recursive: bool = True,
                    options: Optional[PredictOptions] = None) -> int:
    """What ``densevision predict`` does; returns the exit code (0 all predicted, 1 some inputs failed). Usage errors
    (recipe, checkpoint, no input, output clashes) raise :class:`densevision.errors.DensevisionError` subclasses,
    which the tool turns into one ``error:`` line and exit 2."""
    options = options or PredictOptions()
    recipe = load_tool_recipe(recipe_path, list(overrides), demo=demo)
    check_writable_dir(output_dir, create=False)
    images, skipped = find_inputs(inputs, recursive=recursive, exclude=[output_dir])
    # --flip: pose flips inside the forward pass (joints swapped); segmentation through options.flip
    model, task = load_for_prediction(recipe, weights, flip_test=options.flip)
    result = predict_folder(model, task, images, output_dir, options, overwrite=overwrite, resume=resume,
                            progress=progress, skipped=skipped)
    print(summary(result, output_dir))
    return 1 if result["failed"] else 0
