"""The tests mirror the package (MMPose's ``tests/test_codecs/test_msra_heatmap.py``): the test of a module is found
from its path, ``densevision/serving/export.py`` -> ``tests/test_serving/test_export.py``.

Every ``tests/test_PKG/`` folder is a densevision package (or one of the project folders below), every
``tests/test_PKG/test_MOD.py`` tests ``densevision/PKG/MOD.py`` (``test_init.py``: the package's ``__init__.py``), and
every top-level ``tests/test_MOD.py`` tests ``densevision/MOD.py`` or the whole project. The folders are packages
(an ``__init__.py`` each) because module names repeat across packages.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PACKAGE = ROOT / "densevision"
#: test folders that mirror a project folder other than densevision/ (tests/test_benchmarks/ -> benchmarks/)
PROJECT_FOLDERS = {"benchmarks"}
#: whole-program runs (install into a fresh environment, every tool end to end, every recipe trains): no one module
WHOLE_PROGRAM = "e2e"
#: top-level tests of the project as a whole rather than of one module (moved_names: old import paths in every package)
WHOLE_PROJECT = {"architecture", "layout", "moved_names"}


def module_of(test_file: Path) -> Path | None:
    """The file ``tests/test_PKG/test_MOD.py`` or ``tests/test_MOD.py`` tests, or None when it mirrors nothing."""
    relative = test_file.relative_to(TESTS)
    name = relative.stem.removeprefix("test_")
    if len(relative.parts) == 1:
        return PACKAGE / f"{name}.py"
    folder = relative.parts[0].removeprefix("test_")
    base = ROOT / folder if folder in PROJECT_FOLDERS else PACKAGE / folder
    return base / ("__init__.py" if name == "init" else f"{name}.py")


def test_every_test_folder_mirrors_a_package():
    folders = sorted(p for p in TESTS.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders, "no test folders found"
    stray = [f.name for f in folders if not f.name.startswith("test_")
             or not (f.name.removeprefix("test_") in PROJECT_FOLDERS | {WHOLE_PROGRAM}
                     or (PACKAGE / f.name.removeprefix("test_") / "__init__.py").is_file())]
    assert stray == [], f"test folders that mirror no densevision package: {stray}"
    no_init = [f.name for f in [TESTS, *folders] if not (f / "__init__.py").is_file()]
    assert no_init == [], f"test folders without __init__.py (their module names repeat across folders): {no_init}"
    nested = [str(p.relative_to(TESTS)) for f in folders for p in f.iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert nested == [], f"nested test folders: {nested}"


def test_every_test_file_mirrors_a_module():
    stray = []
    for test_file in sorted(TESTS.rglob("test_*.py")):
        relative = test_file.relative_to(TESTS)
        if relative.parts[0] == f"test_{WHOLE_PROGRAM}" or (
                len(relative.parts) == 1 and relative.stem.removeprefix("test_") in WHOLE_PROJECT):
            continue
        module = module_of(test_file)
        if not module.is_file():
            stray.append(f"{relative} (no {module.relative_to(ROOT)})")
    assert stray == [], "test files whose module does not exist (rename the test with its module):\n" + "\n".join(stray)


def test_the_mirror_rule_by_hand():
    assert module_of(TESTS / "test_serving" / "test_export.py") == PACKAGE / "serving" / "export.py"
    assert module_of(TESTS / "test_commands" / "test_init.py") == PACKAGE / "commands" / "__init__.py"
    assert module_of(TESTS / "test_files.py") == PACKAGE / "files.py"
    calibrate = module_of(TESTS / "test_benchmarks" / "test_camvid_calibrate.py")
    assert calibrate == ROOT / "benchmarks" / "camvid_calibrate.py"
    assert not module_of(TESTS / "test_convert.py").exists(), "the old flat names mirror nothing"
