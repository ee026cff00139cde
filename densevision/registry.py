"""Name -> builder registries: a new backbone, head, dataset or task is one ``@REGISTRY.register`` away."""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Iterator

from densevision.errors import DensevisionError


class UnknownNameError(DensevisionError, KeyError):
    """A name that no registered builder answers to; the message lists the choices."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def did_you_mean(name: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry:
    """A mapping from recipe names to builders (functions or classes).

    Example:
        >>> BACKBONES = Registry("backbone")
        >>> @BACKBONES.register("vgg16")
        ... def vgg16(**kwargs): ...
        >>> BACKBONES.get("vgg16")
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable] = {}
        self._attributes: dict[str, dict] = {}

    def register(self, name: str | None = None, *, aliases: tuple[str, ...] = (), **attributes):
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__``) and any aliases.

        ``attributes`` are facts about the part the recipe checks use, e.g. ``task="segmentation"`` for a loss.
        """

        def decorator(obj):
            for key in (name or obj.__name__, *aliases):
                if key in self._items and self._items[key] is not obj:
                    raise ValueError(f"{self.kind} {key!r} is already registered to {self._items[key]!r}")
                self._items[key] = obj
                self._attributes[key] = dict(attributes)
            return obj

        return decorator

    def get(self, name: str) -> Callable:
        load_builtin_parts()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}; "
                f"choose one of: {', '.join(sorted(self._items))}"
            ) from None

    def names(self, **attributes) -> list[str]:
        """Registered names, optionally only those whose attributes match, e.g. ``names(task="pose")``."""
        load_builtin_parts()
        return sorted(key for key in self._items
                      if all(self._attributes[key].get(k) == v for k, v in attributes.items()))

    def attributes(self, name: str) -> dict:
        """The attributes ``name`` was registered with (``{}`` if none)."""
        self.get(name)
        return dict(self._attributes[name])

    def __contains__(self, name: str) -> bool:
        load_builtin_parts()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        load_builtin_parts()
        return iter(sorted(self._items))


BACKBONES = Registry("backbone")
"""``name -> fn(weights=None, output_stride=32, input_shape=(None, None, 3)) -> keras.Model`` (dict P1..P5)."""

MODELS = Registry("model")
"""``name -> fn(**model_section) -> keras.Model``; the recipe's ``model`` keys are the builder's keyword args."""

DATASETS = Registry("dataset")
"""``name -> Source class(root, split, **data_options)``: indexable samples for one task."""

TASKS = Registry("task")
"""``name -> Task class``: targets, loss, metrics, decoding and pictures of one kind of problem."""

LOSSES = Registry("loss")
"""``name -> fn(**options) -> callable -> per-example loss``, registered with ``task=`` (the task whose targets it
takes: a recipe pairing a loss with another task is refused)."""

CODECS = Registry("codec")
"""``name -> Codec class(input_size, **options)``: targets from annotations (encode) and answers from outputs (decode)."""


# ------------------------------------------------------------------------------------------ built-in parts
# Importing these modules registers their layers, backbones, models, sources, tasks and losses, so recipes can name
# any built-in part and .keras checkpoints load in safe mode. A plug-in registers itself the same way: import it
# before loading the recipe.

BUILTIN_MODULES = (
    "densevision.layers.preprocessing",
    "densevision.layers.padding",
    "densevision.layers.dense",
    "densevision.layers.context",
    "densevision.backbones.vgg",
    "densevision.backbones.resnet",
    "densevision.backbones.densenet",
    "densevision.models.tiramisu",
    "densevision.models.dilation",
    "densevision.models.classifier",
    "densevision.models.hourglass",
    "densevision.data.camvid",
    "densevision.data.mask_folder",
    "densevision.data.image_folder",
    "densevision.data.coco_keypoints",
    "densevision.data.mpii",
    "densevision.data.lsp",
    "densevision.tasks.losses",
    "densevision.tasks.segmentation",
    "densevision.tasks.classification",
    "densevision.tasks.pose_losses",
    "densevision.tasks.pose",
    "densevision.codecs.heatmap",
    "densevision.engine.optim",
)


_builtins_loaded = False


def load_builtin_parts() -> None:
    """Import every built-in module (once), registering its parts.

    Every lookup by name (``get``, ``names``, ``in``, iteration) calls it first, so a name resolves whatever was
    imported before: ``import densevision`` itself imports none of this (it would import TensorFlow; see
    densevision/_env.py).
    """
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True  # before the imports: a module that looks a name up while loading must not recurse
    try:
        for name in BUILTIN_MODULES:
            importlib.import_module(name)
    except BaseException:
        _builtins_loaded = False  # a failed import (a missing optional library) is retried and reported next time
        raise
