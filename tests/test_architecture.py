"""The architecture as the tree and imports state it: the engine never names a task, tools stay thin, nothing in
the library imports tools/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "densevision"
TASK_MODULES = {"densevision.tasks.segmentation", "densevision.tasks.classification", "densevision.tasks.pose"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (``import a.b`` -> ``a.b``; ``from a.b import c`` -> ``a.b`` and ``a.b.c``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_engine_module_imports_a_task_module_by_name():
    offenders = {path.name: sorted(imported_modules(path) & TASK_MODULES)
                 for path in (PACKAGE / "engine").glob("*.py")}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_check_would_see_a_task_import(tmp_path):
    """The walker itself finds both import forms (so the test above can fail)."""
    probe = tmp_path / "probe.py"
    probe.write_text("import densevision.tasks.pose\nfrom densevision.tasks import segmentation\n")
    assert {"densevision.tasks.pose", "densevision.tasks.segmentation"} <= imported_modules(probe)


def test_nothing_in_the_library_imports_tools():
    offenders = [str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py")
                 if any(name == "tools" or name.startswith("tools.") for name in imported_modules(path))]
    assert offenders == []


def test_data_never_imports_models_and_models_never_import_tasks():
    for package, forbidden in (("data", "densevision.models"), ("models", "densevision.tasks"),
                               ("backbones", "densevision.tasks"), ("layers", "densevision.tasks")):
        offenders = [str(path.relative_to(ROOT)) for path in (PACKAGE / package).rglob("*.py")
                     if any(name.startswith(forbidden) for name in imported_modules(path))]
        assert offenders == [], f"densevision/{package} imports {forbidden}"


def test_environment_is_configured_once():
    """``densevision/__init__`` configures the backend before any submodule; no module repeats it."""
    repeats = [str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py")
               if path.name not in ("__init__.py", "_env.py") and "configure_environment()" in path.read_text()]
    assert repeats == []
