"""densevision.files: the atomic folder writer and the removal of what a hard kill leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from densevision import files
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
