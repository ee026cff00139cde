"""Image classifiers: a densevision backbone + the classification head keras.applications puts on it.

- VGG (``head="fc"``): ``flatten -> fc1 (4096, relu) -> fc2 (4096, relu) -> predictions`` as
  ``keras.applications.VGG16(include_top=True)`` (138,357,544 parameters at 224x224 with 1000 classes);
- ResNet, DenseNet (``head="gap"``): ``avg_pool (global average) -> predictions``, as their
  ``include_top=True`` models.

Layer names are keras.applications' (the backbone's are too), so weights move between the two by name. The
model maps float32 RGB images in [0, 255] ``(B, H, W, 3)`` to float32 **logits** ``(B, num_classes)``: no
softmax, so the loss is computed from logits (stable, exact under mixed precision); apply
``keras.activations.softmax`` for probabilities. :func:`densevision.inference.fully_convolutional.to_fully_convolutional` turns
either head into a sliding-window classifier.

Transfer learning (CS231n's two recipes): ``freeze="all"`` keeps the pretrained features fixed and trains only
the new head; ``freeze="P4"`` (any of ``P1``..``P5``) fine-tunes from that stage on, freezing the earlier ones.
"""

from __future__ import annotations

import os
from typing import Literal, Optional

import h5py
import keras

from densevision.backbones.api import build_backbone, freeze_backbone
from densevision.registry import MODELS

#: head used by ``head="auto"`` per backbone family
AUTO_HEADS = {"vgg": "fc", "resnet": "gap", "densenet": "gap"}
#: width of VGG's fully connected layers fc1 and fc2
FC_UNITS = 4096


def head_for(backbone: str) -> str:
    """``"fc"`` or ``"gap"``: the head keras.applications uses for this backbone family."""
    for prefix, head in AUTO_HEADS.items():
        if backbone.startswith(prefix):
            return head
    raise ValueError(f"head='auto': no default head for backbone {backbone!r}; pass head='fc' or head='gap'")


@MODELS.register("classifier")
def build_classifier(
    backbone: str = "vgg16",
    num_classes: int = 1000,
    weights: Optional[str] = None,
    input_shape: tuple[Optional[int], Optional[int], int] = (224, 224, 3),
    head: Literal["auto", "fc", "gap"] = "auto",
    dropout: float = 0.0,
    freeze: Optional[Literal["all", "P1", "P2", "P3", "P4", "P5"]] = None,
    top_weights: Optional[str] = None,
) -> keras.Model:
    """Build an image classifier ``(B, H, W, 3)`` float32 RGB [0, 255] -> ``(B, num_classes)`` float32 logits.

    Args:
        backbone: a registered backbone name (``vgg16``, ``resnet50``, ``densenet121``, ...).
        num_classes: number of classes ``K`` of the ``predictions`` layer.
        weights: backbone weights: ``None`` (random), ``"imagenet"`` or a file (see ``build_backbone``).
        input_shape: ``(H, W, 3)``. The ``fc`` head needs a fixed size (its Dense layer sees the whole
            ``H/32 x W/32`` map); ``gap`` accepts ``(None, None, 3)``.
        head: ``"fc"`` (flatten, fc1, fc2, predictions), ``"gap"`` (avg_pool, predictions) or ``"auto"``
            (``fc`` for VGG, ``gap`` for ResNet and DenseNet, as keras.applications).
        dropout: if > 0, a ``Dropout`` after fc1 and fc2 (``fc``) or after avg_pool (``gap``); VGG's paper uses
            0.5; keras.applications has none (0.0).
        freeze: ``None`` (train everything), ``"all"`` (frozen features, train only the head) or ``"P1"``..
            ``"P5"`` (fine-tune from that stage on).
        top_weights: a file holding this head's weights (``.keras`` or ``.weights.h5`` of a classifier with
            the same head, or a keras.applications ``.h5`` with top, such as
            ``vgg16_weights_tf_dim_ordering_tf_kernels.h5``), copied by layer name and shape-checked.

    Returns:
        ``keras.Model`` named ``<backbone>_classifier`` with the backbone's layers inline (keras.applications
        names, ``preprocess`` first) and the head's layers.
    """
    input_shape = tuple(input_shape)
    if num_classes < 1:
        raise ValueError(f"build_classifier: num_classes must be >= 1, got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"build_classifier: dropout must be in [0, 1), got {dropout}")
    head = head_for(backbone) if head == "auto" else head
    if head not in ("fc", "gap"):
        raise ValueError(f"build_classifier: head={head!r}; expected 'auto', 'fc' or 'gap'")
    if head == "fc" and (len(input_shape) != 3 or None in input_shape[:2]):
        raise ValueError(
            f"build_classifier: head='fc' needs a fixed input_shape (H, W, 3), got {input_shape}: its first Dense "
            "layer reads the whole H/32 x W/32 feature map (use to_fully_convolutional to slide it over larger images)"
        )

    features = build_backbone(backbone, weights=weights, input_shape=input_shape)
    if freeze is not None:
        freeze_backbone(features, freeze)
    x = features.output["P5"]
    if head == "fc":
        x = keras.layers.Flatten(name="flatten")(x)
        for name in ("fc1", "fc2"):
            x = keras.layers.Dense(FC_UNITS, activation="relu", name=name)(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="avg_pool_dropout")(x)
    # float32 even under a mixed-precision policy: logits and the loss stay exact
    logits = keras.layers.Dense(num_classes, name="predictions", dtype="float32")(x)
    model = keras.Model(features.input, logits, name=f"{backbone}_classifier")
    if top_weights is not None:
        load_head_weights(model, top_weights)
    return model


def head_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers with weights after the backbone's P5 (``fc1``, ``fc2``, ``predictions``)."""
    names = ("fc1", "fc2", "predictions")
    return [layer for layer in model.layers if layer.name in names and layer.weights]


def load_head_weights(model: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Copy the head layers' weights (by layer name, shapes checked) from ``path`` into ``model``; returns it.

    ``path``: a ``.keras`` model (layers found by name, nested models searched), a Keras 3 ``.weights.h5``
    saved from a model of the same architecture, or a legacy Keras ``.h5`` weights file (keras.applications'
    files with top, ``model.save("x.h5")``), read by layer name.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"top_weights: file not found: {path}")
    targets = head_layers(model)
    if path.endswith(".keras"):
        source = keras.saving.load_model(path, safe_mode=True, compile=False)
        by_name = {layer.name: layer.get_weights() for layer in _walk_layers(source)}
    elif path.endswith(".weights.h5"):
        # Keras 3 weight files are keyed by position in the model, not by layer name: load into a twin
        twin = keras.models.clone_model(model)
        try:
            twin.load_weights(path)
        except ValueError as error:
            raise ValueError(
                f"top_weights: {path}: a .weights.h5 file loads only into the same architecture as the model that "
                f"saved it (backbone, head, input_shape, num_classes); here {model.name!r} with "
                f"{model.outputs[0].shape[-1]} classes: {str(error).splitlines()[0]}"
            ) from None
        by_name = {layer.name: layer.get_weights() for layer in twin.layers}
    elif path.endswith(".h5"):
        by_name = _read_legacy_h5_weights(path, [layer.name for layer in targets])
    else:
        raise ValueError(f"top_weights: {path}: expected a .keras, .weights.h5 or .h5 file")
    for layer in targets:
        found = by_name.get(layer.name)
        expected = [tuple(w.shape) for w in layer.weights]
        if not found:
            raise ValueError(f"top_weights: {path} has no weights for layer {layer.name!r}")
        shapes = [tuple(w.shape) for w in found]
        if shapes != expected:
            raise ValueError(
                f"top_weights: {path}: layer {layer.name!r} has weights of shapes {shapes}, the model expects "
                f"{expected} (different num_classes or input_shape?)"
            )
        layer.set_weights(found)
    return model


def _walk_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _walk_layers(layer)


def _read_legacy_h5_weights(path: str, names: list[str]) -> dict[str, list]:
    """``layer name -> [arrays]`` from a legacy Keras ``.h5`` file (weights only, or a whole model)."""
    found: dict[str, list] = {}
    with h5py.File(path, "r") as file:
        root = file["model_weights"] if "model_weights" in file else file
        if "layer_names" not in root.attrs:
            raise ValueError(f"top_weights: {path}: not a Keras .h5 weights file (no 'layer_names')")
        for name in names:
            if name in root:
                group = root[name]
                weight_names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
                found[name] = [group[n][()] for n in weight_names]
    return found
