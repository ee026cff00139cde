"""densevision.serving.inputs: calibration folders for int8 export skip what is not an image and refuse too few."""

from __future__ import annotations

import pytest

import densevision  # noqa: F401  (backend and environment)

from image_utils import noise, write_image


@pytest.mark.usefixtures("private_cache")
def test_int8_export_skips_a_non_image_in_the_calibration_folder(tmp_path, segmenter, capsys):
    """One non-image in ``--calibration DIR`` stopped the export (after the model had loaded)."""
    from densevision.cli import run_tool
    from densevision.engine.export import export_command

    recipe, weights = segmenter
    folder = tmp_path / "calibration"
    for index in range(5):
        write_image(folder / f"{index}.png", noise(32, 32))
    (folder / "notes.png").write_text("a text file named like an image")
    output = tmp_path / "model.tflite"
    code = run_tool(lambda argv: export_command(str(recipe), str(weights), "tflite", str(output), input_size=(32, 32),
                                                int8=True, calibration=str(folder)), [])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"warning: skipped calibration image {folder / 'notes.png'}: not an image" in err, err
    assert "calibrating on 5 image(s); 1 unreadable file(s) skipped" in err
    assert output.is_file()


@pytest.mark.usefixtures("private_cache")
def test_too_few_readable_calibration_images_are_refused_saying_how_many_are_needed(tmp_path, capsys):
    from densevision.cli import run_tool
    from densevision.engine.export import ExportError, MIN_CALIBRATION_IMAGES, calibration_paths, export_command

    folder = tmp_path / "calibration"
    for index in range(2):
        write_image(folder / f"{index}.png", noise(32, 32))
    for index in range(3):
        (folder / f"bad{index}.jpg").write_bytes(b"")
    with pytest.raises(ExportError) as caught:
        calibration_paths(folder)
    message = str(caught.value)
    assert f"2 readable image(s), int8 calibration needs at least {MIN_CALIBRATION_IMAGES}" in message
    assert "bad0.jpg (empty file" in message
    # refused before the recipe is read or a model loaded
    code = run_tool(lambda argv: export_command("unused.yaml", "unused.keras", "tflite", str(tmp_path / "x.tflite"),
                                                int8=True, calibration=str(folder)), [])
    assert code == 2 and "needs at least 4" in capsys.readouterr().err
    # --calibration-limit 2 asks for only 2: enough
    assert calibration_paths(folder, limit=2) == [folder / "0.png", folder / "1.png"]
