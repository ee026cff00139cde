"""Names that moved in issue 17 (imports that tell the truth, one name per idea) still work from their old places,
and the pieces that replaced repeats behave as the code they replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

import densevision  # noqa: F401  (environment first)
import keras

from densevision.errors import CheckpointError, DensevisionError

ROOT = Path(__file__).resolve().parents[1]


def test_the_sliding_command_names_resolve_from_inference():
    from densevision.commands import sliding_run
    from densevision.inference import sliding

    for name in sliding._MOVED_TO_COMMAND:
        assert getattr(sliding, name) is getattr(sliding_run, name)
    assert sliding.dense_scores is sliding.window_scores
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        sliding.nothing_here  # noqa: B018


def test_old_names_are_the_new_objects():
    from densevision.commands import video as video_command_line
    from densevision.engine import checkpoints
    from densevision.inference import dense
    from densevision.video import cli, command, defaults

    assert dense.dense_scores is dense.pixel_scores
    assert cli.video_command is command.video_command and cli.pose_video_command is command.pose_video_command
    assert video_command_line.DEFAULT_DET_EVERY == defaults.DEFAULT_DET_EVERY == 10
    assert checkpoints.CheckpointError is CheckpointError


def test_to_probabilities_is_a_softmax():
    import numpy as np

    from densevision.inference.sliding import to_probabilities

    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1000.0]], np.float32)
    exp = np.exp([1.0, 2.0, 3.0])
    expected = np.array([exp / exp.sum(), [0.0, 0.0, 1.0]])
    probabilities = to_probabilities(logits)
    assert probabilities.dtype == np.float32 and np.allclose(probabilities, expected)
    assert np.array_equal(to_probabilities(logits, from_logits=False), logits)


def test_load_matching_checkpoint_loads_then_checks(tmp_path):
    from densevision.engine.checkpoints import load_matching_checkpoint
    from densevision.recipes import load_recipe

    path = tmp_path / "tiny.keras"
    model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5)])
    model.save(path)
    recipe = load_recipe(ROOT / "recipes" / "vgg16_sliding.yaml", ["model.input_shape=[28, 28, 3]"])
    loaded = load_matching_checkpoint(path, recipe, {"class_names": list("abcde"), "num_classes": 5})
    assert all((a == b).all() for a, b in zip(loaded.get_weights(), model.get_weights()))
    with pytest.raises(CheckpointError, match=f"checkpoint {path} predicts 5 classes, dataset 'image_folder' has 11"):
        load_matching_checkpoint(path, recipe, {"class_names": list("abcdefghijk")})


def test_video_command_raises_and_the_old_entry_point_gives_the_exit_code(tmp_path, capsys):
    """video_command no longer repeats the front door's handlers: it raises; pose_video_command (the old name)
    runs it through densevision.cli.run_tool, so it still returns 2 with one error line."""
    from densevision.commands.video import build_parser
    from densevision.video.command import pose_video_command, video_command

    missing = str(tmp_path / "missing.avi")
    args = build_parser().parse_args(["--demo", "--input", missing, "--output", str(tmp_path / "x.mp4"),
                                      "--no-progress"])
    with pytest.raises(DensevisionError, match="missing.avi"):
        video_command(args)
    assert pose_video_command(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and missing in lines[0]
