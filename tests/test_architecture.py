"""The architecture as the tree and imports state it: the engine never names a task, tools stay thin, nothing in
the library imports tools/."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

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


def imports_under(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """``{file: [imported modules starting with one of forbidden]}`` over ``densevision/<package>``."""
    offenders = {}
    for path in sorted((PACKAGE / package).rglob("*.py")):
        found = sorted(name for name in imported_modules(path)
                       if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden))
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    return offenders


def test_tasks_import_nothing_from_engine_inference_serving_or_video():
    """A task says what an answer means; what it needs from prediction (a forward pass, a person finder) is handed
    to it, never imported (tasks -> video and tasks -> inference were hidden in function-local imports)."""
    forbidden = ("densevision.engine", "densevision.inference", "densevision.serving", "densevision.video")
    assert imports_under("tasks", forbidden) == {}


def test_serving_and_inference_never_import_the_trainer():
    forbidden = ("densevision.engine.trainer", "densevision.engine.launch")
    assert imports_under("serving", forbidden) == {}
    assert imports_under("inference", forbidden) == {}


def test_the_engine_keeps_only_shims_of_export_and_prediction():
    """Deployment lives in serving/, prediction in inference/: the old engine modules only re-export."""
    for name, home in (("export", "densevision.serving"), ("predictor", "densevision.inference.predictor")):
        tree = ast.parse((PACKAGE / "engine" / f"{name}.py").read_text())
        # imports, the docstring, and at most a module __getattr__ that looks up an old name's new home
        code = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr))
                and not (isinstance(node, ast.FunctionDef) and node.name == "__getattr__")]
        assert code == [], f"engine/{name}.py defines code; it should only re-export {home}"
        assert any(module == home or module.startswith(home + ".") for module in
                   imported_modules(PACKAGE / "engine" / f"{name}.py"))


def test_no_module_probes_a_task_for_a_member():
    """The Task base declares every member the rest uses, so nothing asks ``getattr(task, ...)``."""
    import re

    probe = re.compile(r"\b(getattr|hasattr)\(\s*[\w.]*task\b", re.IGNORECASE)
    offenders = [f"{path.relative_to(ROOT)}:{number}" for path in sorted(PACKAGE.rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1) if probe.search(line)]
    assert offenders == []


def test_the_task_base_declares_what_the_engine_prediction_export_and_video_use():
    from densevision.tasks.base import Task

    used = ["serving_outputs", "raw_output_name", "serving_input_size", "flip_test", "output_rank", "output_stride",
            "class_names", "num_classes", "ignore_label", "format_results", "predict_image", "forward", "decode",
            "pictures", "picture_masks", "write_report", "make_demo_data", "name", "info"]
    task = Task(None, {})
    assert [name for name in used if not hasattr(task, name)] == []
    assert (task.flip_test, task.raw_output_name, task.serving_input_size, task.class_names) == (
        False, "logits", None, None)
def test_inference_imports_nothing_from_engine_or_recipes():
    """Inference runs a model it is given: loading checkpoints and recipes is the engine's and the commands' job
    (the arrow inference -> engine/recipes pointed the wrong way)."""
    forbidden = ("densevision.engine", "densevision.recipes")
    offenders = {str(path.relative_to(ROOT)): sorted(name for name in imported_modules(path)
                                                     if name.startswith(forbidden))
                 for path in (PACKAGE / "inference").rglob("*.py")}
    assert {path: found for path, found in offenders.items() if found} == {}


def test_nothing_in_the_library_imports_the_commands():
    """Commands import the library, never the reverse (``densevision/video`` once took a default from them)."""
    commands = PACKAGE / "commands"
    offenders = {str(path.relative_to(ROOT)): sorted(name for name in imported_modules(path)
                                                     if name == "densevision.commands"
                                                     or name.startswith("densevision.commands."))
                 for path in PACKAGE.rglob("*.py")
                 if commands not in path.parents and path != PACKAGE / "__main__.py"}
    assert {path: found for path, found in offenders.items() if found} == {}


def local_densevision_imports(path: Path) -> list[tuple[int, bool]]:
    """``(line, commented)`` of every ``import densevision...``/``from densevision... import`` (or relative import)
    inside a function of ``path``; ``commented``: a ``#`` comment on the import's lines or on a line of its own
    just above it."""
    source = path.read_text()
    comments = {token.start[0]: token.line.strip().startswith("#")
                for token in tokenize.generate_tokens(io.StringIO(source).readline)
                if token.type == tokenize.COMMENT}
    found = {}
    for function in ast.walk(ast.parse(source, str(path))):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." if node.level else node.module or ""]
            else:
                continue
            if any(name == "." or name == "densevision" or name.startswith("densevision.") for name in names):
                own_lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
                commented = any(line in comments for line in own_lines) or comments.get(node.lineno - 1, False)
                found[node.lineno] = commented  # keyed by line: a nested function's import is counted once
    return sorted(found.items())


def test_the_local_import_counter_sees_every_form(tmp_path):
    """The counter below finds both import forms inside functions and methods, and reads the comment rule."""
    probe = tmp_path / "probe.py"
    probe.write_text("import densevision\n\n\ndef f():\n    import densevision.files  # why\n\n\nclass C:\n"
                     "    def g(self):\n        # why, on its own line\n        from densevision import files\n"
                     "        from . import sibling\n        import numpy\n")
    assert local_densevision_imports(probe) == [(5, True), (11, True), (12, False)]


def test_few_function_local_imports_and_each_says_why():
    """Imports sit at the top of a module; at most 10 function-local ``densevision`` imports remain in the whole
    package (a command's heavy body after parsing, a numpy-free front door), each with a comment saying why."""
    found = {f"{path.relative_to(ROOT)}:{line}": commented
             for path in sorted(PACKAGE.rglob("*.py")) for line, commented in local_densevision_imports(path)}
    assert [where for where, commented in found.items() if not commented] == []
    assert len(found) <= 10, sorted(found)
