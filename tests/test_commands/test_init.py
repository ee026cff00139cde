"""The ``densevision`` command (densevision/commands/__init__.py) as a new user meets it: start-up without
TensorFlow, quiet start-up, one flag vocabulary, ``--set`` winning over ``--demo`` in every command. (Built-in
recipes by name, run folders and progress are tested with their modules: tests/test_recipes.py, tests/test_runs.py,
tests/test_progress.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from densevision import commands
from densevision.cli import EXIT_ERROR, run_tool
from densevision.commands import options
from densevision.errors import DensevisionError, UsageError
from densevision.runs import RECIPE_FILE
from image_utils import noise, write_image
from tests.test_runs import make_run

ROOT = Path(__file__).resolve().parents[2]
RECIPE_COMMANDS = ("train", "evaluate", "predict", "export", "video", "sliding", "summarize")
MODEL_COMMANDS = ("evaluate", "predict", "export", "sliding")  # a recipe and weights, or a run folder


def python(code: str, timeout: int = 120, **env) -> subprocess.CompletedProcess:
    """``python -c CODE`` with this checkout first on the path."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=environment, cwd=ROOT)


def option_strings(command: str) -> set[str]:
    return {flag for action in commands.command_module(command).build_parser()._actions
            for flag in action.option_strings}


# ----------------------------------------------------------------------------------------------- start-up


def test_help_version_and_every_command_help_answer_without_tensorflow():
    probe = python(
        "import sys, contextlib, io\n"
        "import densevision\n"
        "print('after import', 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
        "from densevision.commands import COMMANDS, main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    codes = [main(['--help']), main(['--version'])]\n"
        "    for name in COMMANDS:\n"
        "        try:\n"
        "            main([name, '--help'])\n"
        "        except SystemExit as stop:\n"
        "            codes.append(stop.code)\n"
        "print('codes', codes)\n"
        "print('after help', 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
        "print('usages', sum(line.startswith('usage: densevision ') for line in out.getvalue().splitlines()))\n")
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    assert "after import False False" in lines
    assert f"codes {[0] * (2 + len(commands.COMMANDS))}" in lines
    assert "after help False False" in lines
    assert f"usages {1 + len(commands.COMMANDS)}" in lines


def test_import_densevision_then_keras_loads_a_densevision_checkpoint(tmp_path):
    """README's promise (``import densevision``, then ``keras.saving.load_model(safe_mode=True)``) with a lazy
    package: the parts register when keras loads. Without ``import densevision`` the same file does not load."""
    path = tmp_path / "pad.keras"
    saved = python(
        "import densevision, keras, numpy as np\n"
        "from densevision.layers.padding import PadToMultiple\n"
        "model = keras.Sequential([keras.Input((5, 7, 1)), PadToMultiple(4)])\n"
        f"model.save({str(path)!r})\n")
    assert saved.returncode == 0, saved.stderr
    loaded = python(
        "import densevision, sys\n"
        "assert 'tensorflow' not in sys.modules\n"
        "import keras, numpy as np\n"
        f"model = keras.saving.load_model({str(path)!r}, safe_mode=True)\n"
        "print(tuple(model(np.ones((1, 5, 7, 1), 'float32')).shape))\n")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip().splitlines()[-1] == "(1, 8, 8, 1)"  # 5 -> 8, 7 -> 8: the next multiples of 4
    plain = python(f"import keras\nkeras.saving.load_model({str(path)!r}, safe_mode=True)\n")
    assert plain.returncode != 0 and "PadToMultiple" in plain.stderr


def test_tensorflow_start_up_notices_are_hidden_unless_debug():
    """Plain ``import tensorflow`` prints absl's and oneDNN's notices (measured with TensorFlow 2.21); the command's
    import drops those two lines only, and ``--debug`` keeps them."""
    plain = python("import tensorflow")
    assert "oneDNN custom operations" in plain.stderr and "absl::InitializeLog" in plain.stderr
    quiet = python("import sys\nfrom densevision._env import import_tensorflow_quietly\n"
                   "import_tensorflow_quietly()\nprint('still here', file=sys.stderr)")
    assert quiet.returncode == 0
    assert "oneDNN" not in quiet.stderr and "absl" not in quiet.stderr and "still here" in quiet.stderr
    debug = python("from densevision._env import import_tensorflow_quietly\nimport_tensorflow_quietly(debug=True)")
    assert "oneDNN custom operations" in debug.stderr


def test_device_flag_selects_visible_gpus(monkeypatch):
    from densevision._env import select_device

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    select_device("gpu:1")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    select_device("cpu")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    with pytest.raises(ValueError, match="expected cpu or gpu:N"):
        select_device("cuda")


def test_bad_device_is_one_error_line(capsys):
    assert commands.main(["summarize", "vgg16", "--device", "tpu"]) == EXIT_ERROR
    assert capsys.readouterr().err.strip() == "error: --device 'tpu': expected cpu or gpu:N (N a GPU index, e.g. gpu:0)"


def test_unknown_command_suggests_the_closest(capsys):
    assert commands.main(["evalute"]) == EXIT_ERROR
    assert "did you mean 'evaluate'?" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- vocabulary


def test_every_tool_speaks_the_same_flags():
    for name in RECIPE_COMMANDS:
        assert {"--set", "--demo", "--debug"} <= option_strings(name), name
    for name in ("train", "evaluate", "predict", "sliding", "video"):  # the commands that show a progress bar
        assert "--no-progress" in option_strings(name), name
    for name in (*MODEL_COMMANDS, "video", "train"):
        assert "--device" in option_strings(name), name
    for name in ("evaluate", "predict", "video"):
        assert {"--flip-test", "--flip"} <= option_strings(name), name
    for name in ("evaluate", "predict", "export", "sliding", "video", "plot"):
        assert "--overwrite" in option_strings(name), name
    assert {"--kpt-thr", "--bbox-thr", "--draw-bbox", "--radius", "--thickness"} <= option_strings("video")
    assert "--heatmap" not in option_strings("video")  # it was accepted and did nothing
    for name in ("predict", "sliding", "video"):
        assert "--input" in option_strings(name), name


def test_flip_and_input_aliases_mean_the_same_as_the_new_spelling():
    parser = commands.command_module("predict").build_parser()
    a = parser.parse_intermixed_args(["run", "x.png", "--output", "o", "--flip"])
    b = parser.parse_intermixed_args(["run", "--input", "x.png", "--output", "o", "--flip-test"])
    assert a.flip_test and b.flip_test
    assert options.all_inputs(a) == options.all_inputs(b) == ["x.png"]
    sliding = commands.command_module("sliding").build_parser().parse_intermixed_args(
        ["run", "--input", "a.jpg", "b/", "--top-k", "3", "c.jpg"])
    assert options.all_inputs(sliding) == ["c.jpg", "a.jpg", "b/"]
    with pytest.raises(UsageError, match="no input given"):
        options.all_inputs(parser.parse_intermixed_args(["run", "--output", "o"]))


def test_evaluate_json_is_not_overwritten_silently(tmp_path, capsys):
    run = make_run(tmp_path, "best")
    existing = tmp_path / "m.json"
    existing.write_text('{"keep": 1}')
    assert commands.main(["evaluate", str(run), "--json", str(existing)]) == EXIT_ERROR
    assert "m.json already exists; pass --overwrite" in capsys.readouterr().err
    assert json.loads(existing.read_text()) == {"keep": 1}
    report = tmp_path / "report"
    report.mkdir()
    (report / "old.png").write_bytes(b"x")
    assert commands.main(["evaluate", str(run), "--output", str(report)]) == EXIT_ERROR
    assert "already holds files; pass --overwrite" in capsys.readouterr().err


def test_export_formats_match_the_exporter():
    from densevision.engine.export import FORMATS

    assert commands.command_module("export").FORMATS == FORMATS


def test_tools_scripts_are_aliases_of_the_command():
    for script, command in (("predict", "predict"), ("sliding_classify", "sliding"), ("plot_history", "plot")):
        done = subprocess.run([sys.executable, str(ROOT / "tools" / f"{script}.py"), "--help"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: densevision {command} "), done.stderr


def test_former_runtime_errors_are_expected_errors(capsys):
    """ImageNet weights offline, a layer that cannot be converted, no person detector: one line and exit 2."""
    from densevision.backbones.weights import WeightsError
    from densevision.inference.fully_convolutional import ConversionError
    from densevision.video.detect import DetectorUnavailableError

    for error in (WeightsError, ConversionError, DetectorUnavailableError):
        assert issubclass(error, DensevisionError)

        def fail(argv, error=error):
            raise error("URL fetch failure")

        assert run_tool(fail, [], tool="x") == EXIT_ERROR
        assert capsys.readouterr().err == "error: URL fetch failure\n"


# --------------------------------------------------------------------------------------------- progress


def test_video_command_takes_the_input_positionally(tmp_path, capsys):
    from tests.test_video.test_pipeline import WIDTH, HEIGHT, write_clip

    clip = write_clip(tmp_path / "clip.avi", 6)
    output, results = tmp_path / "out.mp4", tmp_path / "out.json"
    assert commands.main(["video", "--demo", "--single", str(clip), "--output", str(output), "--json", str(results),
                          "--draw-bbox", "--bbox-thr", "0.5", "--no-progress"]) == 0
    assert "wrote 6 frame(s)" in capsys.readouterr().out
    record = json.loads(results.read_text())["frames"][0]["people"][0]
    assert record["box"] == [0, 0, WIDTH, HEIGHT]
    assert commands.main(["video", "--demo", "--single", str(clip), str(clip), "--output", str(tmp_path / "b.mp4")]) \
        == EXIT_ERROR
    # two paths are RECIPE INPUT: a video where the recipe goes is named as such (not an unexpected decode error)
    assert "clip.avi: not a recipe" in capsys.readouterr().err


def test_train_takes_a_run_folders_recipe_and_no_progress(tmp_path, monkeypatch):
    import densevision.engine.launch as launch

    seen = {}
    monkeypatch.setattr(launch, "run_training", lambda recipe, overrides, **kw: seen.update(recipe=recipe, **kw) or 0)
    run = make_run(tmp_path, "best")
    assert commands.main(["train", str(run), "--no-progress"]) == 0
    assert seen["recipe"] == str(run / RECIPE_FILE) and seen["progress"] is False
    assert commands.main(["train", "tiramisu56_camvid"]) == 0
    assert seen["recipe"] == "tiramisu56_camvid" and seen["progress"] is True


class _Stop(Exception):
    """Raised by a stand-in for the first step after a tool has its recipe."""


@pytest.mark.usefixtures("private_cache")
def test_every_set_value_wins_over_demo_in_every_tool(tmp_path, monkeypatch):
    """``evaluate.py --demo --set data.root=OTHER`` scored the demo data: the demo data location was applied after
    the --set values. Each tool is stopped right after it has its recipe, which is captured."""
    import densevision.engine.evaluator as evaluator
    import densevision.engine.trainer as trainer
    import densevision.commands.sliding_run as sliding
    import densevision.commands.predict_run as predictor
    import densevision.serving.export as serving_export
    from densevision.engine.export import export_command
    from densevision.engine.launch import run_training

    seen = {}

    def capture(name):
        def stand_in(*args, **kwargs):
            seen[name] = next(value for value in (*args, *kwargs.values()) if hasattr(value, "data"))
            raise _Stop
        return stand_in

    other = tmp_path / "my_data"
    pose, sliding_recipe = ROOT / "recipes" / "hourglass_lsp.yaml", ROOT / "recipes" / "vgg16_sliding.yaml"
    override = [f"data.root={other}", "train.epochs=3"]
    image = write_image(tmp_path / "in" / "a.png", noise(64, 64))
    monkeypatch.setattr(trainer, "train", capture("train"))
    monkeypatch.setattr(evaluator, "run_evaluation", capture("evaluate"))
    monkeypatch.setattr(predictor, "load_for_prediction", capture("predict"))
    monkeypatch.setattr(serving_export, "load_for_prediction", capture("export"))
    monkeypatch.setattr(sliding, "load_classifier", capture("sliding_classify"))
    runs = {
        "train": lambda: run_training(str(pose), override, output=str(tmp_path / "runs"), demo=True),
        "evaluate": lambda: evaluator.evaluate_command(str(pose), "w.keras", overrides=override, demo=True),
        "predict": lambda: predictor.predict_command(str(pose), "w.keras", [str(image.parent)], str(tmp_path / "p"),
                                                     demo=True, overrides=override, progress=False),
        "export": lambda: export_command(str(pose), "w.keras", "keras", str(tmp_path / "e.keras"),
                                         overrides=override, demo=True),
        "sliding_classify": lambda: sliding.sliding_classify_command(
            str(sliding_recipe), "w.keras", [str(image)], output=str(tmp_path / "s"), overrides=override, demo=True,
            progress=False),
    }
    for tool, run in runs.items():
        with pytest.raises(_Stop):
            run()
        recipe = seen[tool]
        assert recipe.data.root == str(other), f"{tool}: --set data.root lost to --demo ({recipe.data.root})"
        assert recipe.train.epochs == 3, tool  # a --set of a key the demo section sets
    # the rest of --demo still applies: its generated data's dataset and joints, its small crops
    assert seen["predict"].data.name == "coco_keypoints" and seen["predict"].model.kwargs()["num_joints"] == 17
    assert seen["train"].data.kwargs()["input_size"] == [64, 64]
