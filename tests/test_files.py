"""densevision.files: the atomic folder writer and the removal of what a hard kill leaves behind."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from densevision import files
from densevision.engine import checkpoints
from densevision.engine.checkpoints import CheckpointError
from densevision.errors import OutputError


def listing(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): path.read_text() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_atomic_write_dir_replaces_a_folder_only_once_the_new_one_is_complete(tmp_path):
    target = tmp_path / "exported"
    files.atomic_write_dir(target, lambda tmp: (Path(tmp, "a.txt").write_text("one"), Path(tmp, "sub").mkdir(),
                                                Path(tmp, "sub", "b.txt").write_text("two")))
    assert listing(target) == {"a.txt": "one", "sub/b.txt": "two"}
    assert oct(target.stat().st_mode & 0o777) == oct(0o777 & ~files._UMASK)  # not mkdtemp's private 0700

    def fails_half_way(tmp):
        Path(tmp, "a.txt").write_text("half")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        files.atomic_write_dir(target, fails_half_way)
    assert listing(target) == {"a.txt": "one", "sub/b.txt": "two"}  # the old folder, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no temporary folder left

    files.atomic_write_dir(target, lambda tmp: Path(tmp, "c.txt").write_text("three"))
    assert listing(target) == {"c.txt": "three"}  # replaced whole, nothing of the old one kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


def test_atomic_write_dir_names_the_path_when_its_parent_is_a_file(tmp_path):
    (tmp_path / "blocker").write_text("a file")
    with pytest.raises(OutputError, match=r"cannot write .*blocker/out: .*blocker is a file, not a folder"):
        files.atomic_write_dir(tmp_path / "blocker" / "out", lambda tmp: None)


def test_a_hard_killed_folder_write_is_found_and_removed(tmp_path):
    """A ``kill -9`` during a SavedModel write leaves its temporary folder: named so that
    ``remove_stale_temp_files`` recognises it (the export's own ``mkdtemp`` names escaped it before)."""
    script = (f"import os, pathlib, densevision.files as f\n"
              f"def write(tmp):\n"
              f"    pathlib.Path(tmp, 'variables').mkdir()\n"
              f"    os.kill(os.getpid(), 9)\n"
              f"f.atomic_write_dir({str(tmp_path / 'model')!r}, write)\n")
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == -9
    [left] = list(tmp_path.iterdir())
    assert files.is_temp_file(left) and left.is_dir() and left.name.startswith(".model.tmp-")
    (tmp_path / "kept.txt").write_text("an output")
    assert files.remove_stale_temp_files(tmp_path) == [left]
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


@pytest.mark.usefixtures("private_cache")
def test_atomic_write_leaves_nothing_behind_on_any_exception(tmp_path):
    target = tmp_path / "out" / "results.json"
    files.write_json(target, {"old": True})

    def fails_half_way(exception):
        def write(tmp):
            Path(tmp).write_text('{"half": ')
            raise exception
        return write

    for exception in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exception)):
            files.atomic_write(target, fails_half_way(exception))
        assert json.loads(target.read_text()) == {"old": True}
        assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]


@pytest.mark.usefixtures("private_cache")
def test_full_disk_names_the_file_and_leaves_no_temp(tmp_path):
    def disk_full(tmp):
        Path(tmp).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=r"scores\.npz: the disk is full"):
        files.atomic_write(tmp_path / "scores.npz", disk_full)
    assert list(tmp_path.iterdir()) == []
    # the checkpoint writer says the same through CheckpointError
    with pytest.raises(CheckpointError, match=r"last\.keras: the disk is full"):
        checkpoints._atomic_write(tmp_path / "checkpoints" / "last.keras", disk_full)
    assert list((tmp_path / "checkpoints").iterdir()) == []


@pytest.mark.usefixtures("private_cache")
def test_temporary_names_keep_the_suffix_writers_need(tmp_path):
    seen = []
    files.atomic_write(tmp_path / "last.weights.h5", lambda tmp: (seen.append(tmp), Path(tmp).write_bytes(b"x")))
    files.write_npz(tmp_path / "a.jpg_scores.npz", scale_1=np.zeros(3))
    assert seen[0].endswith(".weights.h5") and files.is_temp_file(seen[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg_scores.npz", "last.weights.h5"]
    np.testing.assert_array_equal(np.load(tmp_path / "a.jpg_scores.npz")["scale_1"], np.zeros(3))
    assert oct(os.stat(tmp_path / "last.weights.h5").st_mode & 0o777) != oct(0o600), "not mkstemp's private mode"


@pytest.mark.usefixtures("private_cache")
def test_write_json_is_strict(tmp_path):
    files.write_json(tmp_path / "m.json", {"miou": np.float32("nan"), "iou": np.array([0.5, np.inf]),
                                           "n": np.int64(3), "where": tmp_path})
    assert json.loads((tmp_path / "m.json").read_text()) == {"miou": None, "iou": [0.5, None], "n": 3,
                                                              "where": str(tmp_path)}


@pytest.mark.usefixtures("private_cache")
def test_unwritable_outputs_are_refused_with_the_path(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="output folder .*a_file is a file, not a folder"):
        files.check_writable_dir(blocker)
    with pytest.raises(OutputError, match="cannot be created: .*a_file is a file"):
        files.check_writable_dir(blocker / "sub")
    with pytest.raises(OutputError, match="a_file is a file, not a folder"):
        files.write_text(blocker / "sub" / "x.json", "{}")
    with pytest.raises(OutputError, match="is a folder"):
        files.check_writable_file(tmp_path, what="--json")
    # a read-only folder (root ignores permission bits, so the probe is made to fail as it would)
    monkeypatch.setattr(files.tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied")))
    with pytest.raises(OutputError, match=r"--json .*out\.json.* is not writable.*permission denied"):
        files.check_writable_file(tmp_path / "out.json", what="--json")


@pytest.mark.usefixtures("private_cache")
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_for_real(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            files.check_writable_dir(locked)
    finally:
        locked.chmod(0o700)


@pytest.mark.usefixtures("private_cache")
def test_plan_outputs_refuses_clashes_and_existing_files(tmp_path):
    with pytest.raises(OutputError, match="a.jpg and b/a.jpg would both write .*a_scores.npz"):
        files.plan_outputs([("a.jpg", tmp_path / "a_scores.npz"), ("b/a.jpg", tmp_path / "a_scores.npz")])
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(OutputError, match="1 output file.* already exist: .*results.json; pass --overwrite"):
        files.plan_outputs({tmp_path / "results.json": "results"})
    plan = files.plan_outputs({tmp_path / "results.json": "results", tmp_path / "new" / "x.png": "x"},
                              overwrite=True)
    plan.make_folders()
    assert (tmp_path / "new").is_dir() and plan.paths == [tmp_path / "results.json", tmp_path / "new" / "x.png"]


@pytest.mark.usefixtures("private_cache")
@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_proc_as_output_folder_says_no_file_can_be_created_there():
    from densevision.errors import OutputError
    from densevision.files import check_writable_dir

    with pytest.raises(OutputError) as caught:
        check_writable_dir("/proc", what="--output folder")
    message = str(caught.value)
    assert message.startswith("--output folder /proc is not writable: no file can be created there"), message
    assert "no such file or directory" not in message
