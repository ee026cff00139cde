"""Pretrained backbone weights: ImageNet files from Keras' own store, or a local file.

Backbones use keras.applications' layer names and weight shapes, so any of these loads:

- ``"imagenet"``: the ``*_notop.h5`` file keras.applications uses, fetched with ``keras.utils.get_file`` into
  Keras' cache (``~/.keras/models/<file>``, or ``$KERAS_HOME/models``) and checked against the same hash;
- a legacy ``.h5`` / ``.hdf5`` (weights or full model, e.g. those files, or ``model.save("x.h5")``): by layer name;
- a ``.weights.h5`` (``model.save_weights``) from a densevision backbone or from a keras.applications model
  (with or without top): loaded into the matching architecture, then copied by layer name;
- a ``.keras`` model (a densevision backbone, a keras.applications model, or a model containing one): its
  layers are copied by name.

Every layer with weights in the backbone must be found, with the same shapes, or a :class:`WeightsError` says
which ones are missing; nothing is loaded partially without saying so.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import h5py
import numpy as np
import keras

from densevision.errors import DensevisionError

_KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"

#: backbone name -> (URL folder, file name, md5 hash) of keras.applications' ``include_top=False`` weights
IMAGENET_WEIGHTS = {
    "vgg16": ("vgg16/", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "6d6bbae143d832006294945121d1f1fc"),
    "vgg19": ("vgg19/", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "253f8cb515780f3b799900260a226db6"),
    "resnet50": (
        "resnet/", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "4d473c1dd8becc155b73f8504c6f6626"
    ),
    "resnet101": (
        "resnet/", "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5", "88cf7a10940856eca736dc7b7e228a21"
    ),
    "resnet152": (
        "resnet/", "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5", "ee4c566cf9a93f14d82f913c2dc6dd0c"
    ),
    "densenet121": (
        "densenet/", "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", "30ee3e1110167f948a6b9946edeeb738"
    ),
    "densenet169": (
        "densenet/", "densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5", "b8c4d4c20dd625c148057b9ff1c1176b"
    ),
    "densenet201": (
        "densenet/", "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5", "c13680b51ded0fb44dff2d8f86ac8bb1"
    ),
}

#: backbone name -> keras.applications constructor with the same layer names
REFERENCE_APPLICATIONS = {
    "vgg16": "VGG16", "vgg19": "VGG19",
    "resnet50": "ResNet50", "resnet101": "ResNet101", "resnet152": "ResNet152",
    "densenet121": "DenseNet121", "densenet169": "DenseNet169", "densenet201": "DenseNet201",
}


class WeightsError(DensevisionError, RuntimeError):
    """Weights that cannot be fetched or do not fit the backbone; the message says what to do."""


def imagenet_weights_url(name: str) -> tuple[str, str, str]:
    """``(url, file_name, md5)`` of keras.applications' no-top ImageNet weights for backbone ``name``."""
    if name not in IMAGENET_WEIGHTS:
        raise WeightsError(
            f"no ImageNet weights known for backbone {name!r}; known: {', '.join(sorted(IMAGENET_WEIGHTS))}"
        )
    folder, file_name, file_hash = IMAGENET_WEIGHTS[name]
    return _KERAS_APPLICATIONS_URL + folder + file_name, file_name, file_hash


def keras_cache_path(file_name: str) -> str:
    """Where ``keras.utils.get_file(file_name, cache_subdir="models")`` keeps ``file_name``."""
    home = os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))
    if not os.access(home, os.W_OK):  # get_file's own fallback for a read-only home
        home = os.path.join(tempfile.gettempdir(), ".keras")
    return os.path.join(home, "models", file_name)


def fetch_imagenet_weights(name: str) -> str:
    """Local path of backbone ``name``'s ImageNet weights, downloaded into Keras' cache if needed.

    Raises:
        WeightsError: the file could not be fetched (offline, blocked, bad hash); the message gives the URL,
            the cache path to put the file at, and how to point the recipe at a local copy instead.
    """
    url, file_name, file_hash = imagenet_weights_url(name)
    try:
        return keras.utils.get_file(file_name, url, cache_subdir="models", file_hash=file_hash)
    except Exception as error:  # get_file raises URLError, HTTPError, OSError, ValueError (hash) ... alike
        raise WeightsError(
            f"could not get the ImageNet weights of backbone {name!r} ({type(error).__name__}: {error}).\n"
            f"  Download {url}\n"
            f"  and put it at {keras_cache_path(file_name)} (Keras' cache, where weights='imagenet' looks),\n"
            f"  or pass weights='/path/to/{file_name}' instead of 'imagenet' "
            f"(in a recipe: model.weights, e.g. --set model.weights=/path/to/{file_name})."
        ) from error


def load_backbone_weights(model: keras.Model, name: str, weights) -> keras.Model:
    """Load ``weights`` (``None``, ``"imagenet"`` or a file path) into backbone ``model`` of family ``name``.

    Returns ``model``. Raises :class:`WeightsError` naming the file and the problem.
    """
    if weights is None:
        return model
    if not isinstance(weights, (str, os.PathLike)):
        raise WeightsError(
            f"backbone {name!r}: weights={weights!r}; expected None, 'imagenet' or a path to a "
            f".weights.h5, .h5 or .keras file"
        )
    if str(weights) == "imagenet":
        path = fetch_imagenet_weights(name)
        _load_legacy_h5_by_name(model, path)
        return model
    path = str(weights)
    if not os.path.isfile(path):
        raise WeightsError(
            f"backbone {name!r}: weights file {path!r} does not exist; expected None, 'imagenet' or a path to "
            f"a .weights.h5, .h5 or .keras file"
        )
    if path.endswith(".keras"):
        source = keras.saving.load_model(path, compile=False, safe_mode=True)
        copy_weights_by_name(source, model, source_description=path)
    elif path.endswith(".weights.h5"):
        _load_keras3_weights(model, name, path)
    elif path.endswith((".h5", ".hdf5")):
        if _is_legacy_h5(path):
            _load_legacy_h5_by_name(model, path)
        else:  # a Keras 3 weights file without the ".weights.h5" suffix Keras dispatches on
            with tempfile.TemporaryDirectory() as folder:
                alias = os.path.join(folder, "alias.weights.h5")
                os.symlink(os.path.abspath(path), alias)
                _load_keras3_weights(model, name, alias, shown_path=path)
    else:
        raise WeightsError(
            f"backbone {name!r}: cannot read weights file {path!r}; expected a .weights.h5, .h5, .hdf5 or "
            f".keras file"
        )
    return model


def copy_weights_by_name(source: keras.Model, target: keras.Model, source_description: str | None = None) -> int:
    """Copy every weighted layer of ``target`` from the layer of the same name in ``source`` (searched through
    nested models). Returns the number of layers copied.

    Raises:
        WeightsError: a layer of ``target`` is missing in ``source`` or its weight shapes differ.
    """
    described = source_description or f"model {source.name!r}"
    by_name = {layer.name: layer for layer in flat_layers(source) if layer.weights}
    wanted = [layer for layer in flat_layers(target) if layer.weights]
    missing = [layer.name for layer in wanted if layer.name not in by_name]
    if missing:
        raise WeightsError(
            f"{described} has no weights for {len(missing)} of the {len(wanted)} weighted layers of "
            f"{target.name!r}, e.g. {missing[:5]}; it has layers like {sorted(by_name)[:5]}. "
            f"Is it a different architecture?"
        )
    pairs = []
    for layer in wanted:
        values = by_name[layer.name].get_weights()
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(v.shape) for v in values]
        if expected != found:
            raise WeightsError(
                f"{described}: layer {layer.name!r} has weight shapes {found}, {target.name!r} expects {expected}"
            )
        pairs.append((layer, values))
    for layer, values in pairs:  # only after every layer checked: never a half-loaded model
        layer.set_weights(values)
    return len(pairs)


def flat_layers(model: keras.Model):
    """Layers of ``model`` with nested models expanded in place (a generator of the leaf layers, in order)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from flat_layers(layer)
        else:
            yield layer


def _legacy_h5_root(handle: h5py.File):
    """The group holding ``layer_names`` in a legacy Keras h5 file (weights-only or full model), or None."""
    if "layer_names" in handle.attrs:
        return handle
    if "model_weights" in handle and "layer_names" in handle["model_weights"].attrs:
        return handle["model_weights"]
    return None


def _is_legacy_h5(path: str) -> bool:
    with h5py.File(path, "r") as handle:
        return _legacy_h5_root(handle) is not None


def _load_legacy_h5_by_name(model: keras.Model, path: str) -> None:
    """Load a legacy Keras h5 by layer name, after checking it covers every weighted layer of ``model``."""
    try:
        with h5py.File(path, "r") as handle:
            root = _legacy_h5_root(handle)
            if root is None:
                raise WeightsError(f"{path!r} is not a legacy Keras .h5 weights file (no 'layer_names')")
            in_file = {
                (n.decode() if isinstance(n, bytes) else str(n))
                for n in root.attrs["layer_names"]
            }
    except OSError as error:
        raise WeightsError(f"cannot read weights file {path!r} as HDF5: {error}") from error
    wanted = [layer.name for layer in model.layers if layer.weights]
    missing = [n for n in wanted if n not in in_file]
    if missing:
        raise WeightsError(
            f"{path!r} has no weights for {len(missing)} of the {len(wanted)} weighted layers of "
            f"{model.name!r}, e.g. {missing[:5]}. Is it a different architecture?"
        )
    try:
        model.load_weights(path, by_name=True)
    except ValueError as error:
        raise WeightsError(f"{path!r} does not fit backbone {model.name!r}: {error}") from error


def _load_keras3_weights(model: keras.Model, name: str, path: str, shown_path: str | None = None) -> None:
    """Load a Keras 3 ``.weights.h5`` (structural, not by name): into ``model`` itself if it was saved from
    this architecture, else into the keras.applications model it came from, then copied by name."""
    shown_path = shown_path or path
    errors = []
    try:
        _load_structurally(model, path)
        return
    except (ValueError, KeyError) as error:
        errors.append(f"as a densevision {name!r} backbone: {error}")
    constructor = getattr(keras.applications, REFERENCE_APPLICATIONS.get(name, ""), None)
    if constructor is not None:
        include_top = _has_dense_layers(path)  # a classifier's file: the donor needs its top too
        reference = constructor(
            include_top=include_top, weights=None, input_shape=None if include_top else (None, None, 3)
        )
        try:
            _load_structurally(reference, path)
        except (ValueError, KeyError) as error:
            errors.append(f"as keras.applications.{constructor.__name__}(include_top={include_top}): {error}")
        else:
            copy_weights_by_name(reference, model, source_description=shown_path)
            return
    details = "\n  ".join(line.splitlines()[0] for line in errors)
    raise WeightsError(f"weights file {shown_path!r} does not fit backbone {name!r}; tried loading it\n  {details}")


def _load_structurally(model: keras.Model, path: str) -> None:
    """``model.load_weights(path)`` for a Keras 3 weights file, failing unless it set every weight.

    Keras matches these files by layer order and type, not name, and for some mismatches only warns and keeps
    the fresh weights; so every weight starts as NaN and any NaN left means the file did not fit.
    """
    originals = [variable.numpy() for variable in model.weights]
    for variable in model.weights:
        variable.assign(np.full(variable.shape, np.nan, dtype=variable.dtype))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # our error below says it better
            model.load_weights(path)
        not_loaded = [variable.path for variable in model.weights if np.isnan(variable.numpy()).any()]
        if not_loaded:
            raise ValueError(f"{len(not_loaded)} weights were not in the file, e.g. {not_loaded[:3]}")
    except Exception:
        for variable, value in zip(model.weights, originals):
            variable.assign(value)
        raise


def _has_dense_layers(path: str) -> bool:
    """Whether a Keras 3 weights file holds Dense layers (a classifier top)."""
    with h5py.File(path, "r") as handle:
        return "layers" in handle and any(key.startswith("dense") for key in handle["layers"])
