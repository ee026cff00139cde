"""Process-wide environment set before Keras or albumentations are imported, and the start-up hooks that keep
``import densevision`` cheap.

Keras picks its backend once, on first import, from ``KERAS_BACKEND``; densevision is built on the TensorFlow
backend (tf.data pipelines, tf.distribute strategies), so it insists on it here with a clear message.

Start-up cost (see docs/ARCHITECTURE.md, "Start-up"): ``import densevision`` does not import TensorFlow, so the
``densevision`` command parses its arguments and answers ``--help`` in a fraction of ``import tensorflow``'s time.
Registration of the built-in parts (layers a ``.keras`` checkpoint names) is guaranteed two ways:

- every densevision path that reads a recipe or a checkpoint registers first (``validate_recipe``,
  ``load_checkpoint``), and so does any public name of the package (``densevision.build_model``);
- :func:`register_when_keras_loads`: once ``keras`` finishes importing, the parts are registered, so
  ``import densevision`` then ``keras.saving.load_model(path, safe_mode=True)`` keeps working as README documents.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile

from densevision.errors import DensevisionError
from densevision.registry import load_builtin_parts  # light: the parts themselves load on the first call

SUPPORTED_BACKEND = "tensorflow"

# Start-up notices TensorFlow's C++ runtime prints on every import whatever TF_CPP_MIN_LOG_LEVEL says (measured with
# TensorFlow 2.21 at levels 2 and 3): absl's "before InitializeLog" banner and oneDNN's "custom operations are on".
# Only these exact lines are dropped; any other output of the import passes through.
_STARTUP_NOTICES = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|^I\d{4} [\d:.]+\s+\d+ port\.cc:\d+\] oneDNN custom operations are on\."
)


class BackendError(DensevisionError, RuntimeError):
    """Keras is (or would be) running on a backend other than TensorFlow."""


def configure_environment() -> None:
    """Select the TensorFlow backend and silence network/log noise; call before importing keras."""
    # albumentations checks PyPI for a newer version on import: never phone home.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    requested = os.environ.get("KERAS_BACKEND")
    if requested and requested != SUPPORTED_BACKEND:
        raise BackendError(
            f"densevision runs on Keras' TensorFlow backend, but KERAS_BACKEND={requested!r}. "
            f"Unset it or run with KERAS_BACKEND=tensorflow."
        )
    os.environ["KERAS_BACKEND"] = SUPPORTED_BACKEND


def check_loaded_backend() -> None:
    """Fail clearly if keras was imported earlier with another backend."""
    import keras  # only called once keras is in sys.modules (no import cost here)

    if keras.backend.backend() != SUPPORTED_BACKEND:
        raise BackendError(
            f"Keras was already imported with the {keras.backend.backend()!r} backend; densevision needs "
            f"'tensorflow'. Import densevision before keras, or set KERAS_BACKEND=tensorflow."
        )


def _densevision_initialising() -> bool:
    """A densevision module is half-imported: registering now would re-enter it (a circular import)."""
    return any(name.startswith("densevision.") and getattr(getattr(module, "__spec__", None), "_initializing", False)
               for name, module in list(sys.modules.items()))


class _AfterKerasImport:
    """A one-shot import hook: when ``keras`` has finished importing, check its backend and register the parts.

    When keras is imported by a densevision module (half-imported at that moment), registration is left to the
    densevision entry points, which all register before they read a recipe or load a checkpoint.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # one shot; the search below must not find this hook again
        from importlib.util import find_spec

        spec = find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            check_loaded_backend()
            if not _densevision_initialising():
                load_builtin_parts()  # the parts import keras: only once it is loaded

        spec.loader.exec_module = exec_module  # this loader instance serves keras/__init__.py only
        return spec


def register_when_keras_loads() -> None:
    """Register the built-in parts now if keras is loaded, else as soon as it is (see the module docstring)."""
    if "keras" in sys.modules:
        check_loaded_backend()
        load_builtin_parts()
    elif not any(isinstance(finder, _AfterKerasImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasImport())


def select_device(device: str | None) -> None:
    """``--device cpu`` hides every GPU, ``gpu:N`` shows only GPU N; must run before TensorFlow is imported.

    Raises:
        ValueError: another spelling (the caller reports it as a usage error).
    """
    if device is None:
        return
    match = re.fullmatch(r"cpu|gpu:(\d+)", device.strip().lower())
    if match is None:
        raise ValueError(f"--device {device!r}: expected cpu or gpu:N (N a GPU index, e.g. gpu:0)")
    os.environ["CUDA_VISIBLE_DEVICES"] = "" if match.group(1) is None else match.group(1)


def import_tensorflow_quietly(debug: bool = False) -> None:
    """Import TensorFlow with its two start-up notices (absl, oneDNN) removed from stderr; ``debug`` keeps all.

    The notices are written by C++ straight to file descriptor 2, so the descriptor is pointed at a temporary file
    for the import and every other line is copied back to stderr afterwards (warnings and errors stay visible).
    """
    if debug:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    if debug or "tensorflow" in sys.modules:
        importlib.import_module("tensorflow")
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            importlib.import_module("tensorflow")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not _STARTUP_NOTICES.match(line.rstrip("\n"))]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
