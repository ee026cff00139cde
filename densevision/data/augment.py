"""Augmentation pipelines declared in recipes, built with albumentations' own serialisation.

A recipe lists transforms by their albumentations class name, in order::

    augmentation:
      train:
        - RandomCrop: {height: 224, width: 224}
        - HorizontalFlip: {p: 0.5}
        - ColorJitter                      # a bare name uses the transform's defaults
        - OneOf: {transforms: [Blur, {GaussNoise: {p: 1.0}}], p: 0.3}

Each entry becomes the ``{"__class_fullname__": ..., **params}`` dict that ``albumentations.from_dict`` reads, so
every serialisable albumentations transform works, nested compositions included. Names and parameters are checked
before any data is touched, with a did-you-mean suggestion for misspelt names.

Two albumentations 2.0.8 behaviours are handled here so recipes need not care:

- *Mask padding*: transforms that invent pixels (``PadIfNeeded``, ``Affine``, ``Rotate``, crops with padding, ...)
  fill new mask pixels with ``fill_mask`` (default 0, a real class). For ``target="mask"`` it defaults to the
  ignore label, so padding is never trained on as class 0.
- *Seeding*: ``Compose.set_random_seed(seed)`` gives every transform its own generator seeded identically, so
  their random draws are correlated (``HorizontalFlip(p=.5)`` and ``VerticalFlip(p=.5)`` always fire together).
  We instead share one generator per call via ``set_random_state``.
"""

from __future__ import annotations

import inspect
import random
import re
import threading
import warnings
from typing import Any, Literal, Sequence, Union

import numpy as np

from densevision.data.errors import AugmentationError
from densevision.registry import did_you_mean

import albumentations as A
from albumentations.core.serialization import (
    NON_SERIALIZABLE_REGISTRY,
    SERIALIZABLE_REGISTRY,
    shorten_class_name,
)

TransformSpec = Union[str, dict[str, Any]]
Target = Literal["mask", "keypoints", "label"]
TARGETS = ("mask", "keypoints", "label")

# Abstract bases sit in albumentations' registry too; a recipe naming one would only fail later.
_ABSTRACT = {"BasicTransform", "DualTransform", "ImageOnlyTransform", "Transform3D", "BaseCompose",
             "KeypointParams", "BboxParams"}


def transform_names() -> list[str]:
    """Names of every albumentations transform a recipe may use."""
    return sorted(
        name for name, cls in SERIALIZABLE_REGISTRY.items()
        if name not in _ABSTRACT and not name.startswith("Base") and not inspect.isabstract(cls)
    )


def _unknown_name_message(name: str, where: str) -> str:
    names = transform_names()
    by_lower = {n.lower(): n for n in names}
    hint = f" (did you mean {by_lower[name.lower()]!r}?)" if name.lower() in by_lower else did_you_mean(name, names)
    if name in NON_SERIALIZABLE_REGISTRY:
        return f"{where}: {name!r} holds Python code and cannot be declared in a recipe"
    return (f"{where}: unknown albumentations transform {name!r}{hint}; "
            f"see https://albumentations.ai/docs/ for the list")


def _init_parameters(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """The constructor's named parameters and whether it also takes ``**kwargs``."""
    params = inspect.signature(cls.__init__).parameters
    named = {k: p for k, p in params.items() if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return named, any(p.kind == p.VAR_KEYWORD for p in params.values())


def _split_entry(item: Any, where: str) -> tuple[str, dict[str, Any]]:
    """``"Name"`` / ``{"Name": {...}}`` / ``{"__class_fullname__": "Name", ...}`` -> (name, params)."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and "__class_fullname__" in item:
        params = {k: v for k, v in item.items() if k != "__class_fullname__"}
        return shorten_class_name(str(item["__class_fullname__"])), params
    if isinstance(item, dict) and len(item) == 1:
        (name, params), = item.items()
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise AugmentationError(
                f"{where}: parameters of {name!r} must be a mapping like {{p: 0.5}}, got {params!r}")
        return str(name), dict(params)
    raise AugmentationError(
        f"{where}: expected a transform name or a one-key mapping like {{RandomCrop: {{height: 224, width: 224}}}}, "
        f"got {item!r}")


def _to_albumentations_dict(item: Any, where: str, target: str, ignore_label: int) -> dict[str, Any]:
    """One recipe entry -> albumentations' serialised form, with names and parameter names checked."""
    name, params = _split_entry(item, where)
    where = f"{where} {name}"
    if name not in SERIALIZABLE_REGISTRY or name in _ABSTRACT:
        raise AugmentationError(_unknown_name_message(name, where))
    cls = SERIALIZABLE_REGISTRY[name]
    named, takes_kwargs = _init_parameters(cls)
    if not takes_kwargs:
        for key in params:
            if key not in named:
                raise AugmentationError(
                    f"{where}: unknown parameter {key!r}{did_you_mean(key, named)}; "
                    f"{name} takes: {', '.join(named)}")
    missing = [k for k, p in named.items() if p.default is inspect.Parameter.empty and k not in params]
    if missing:
        raise AugmentationError(f"{where}: missing required parameter(s) {', '.join(missing)}")
    if "transforms" in params:  # nested composition (OneOf, SomeOf, Sequential, ...)
        children = params["transforms"]
        if not isinstance(children, (list, tuple)):
            raise AugmentationError(f"{where}: 'transforms' must be a list of transforms, got {children!r}")
        params["transforms"] = [
            _to_albumentations_dict(child, f"{where}.transforms[{i}]", target, ignore_label)
            for i, child in enumerate(children)
        ]
    # albumentations.from_dict assumes p=0.5 when p is absent; the class's own default is what a bare name means.
    if "p" in named and "p" not in params and named["p"].default is not inspect.Parameter.empty:
        params["p"] = named["p"].default
    # Pixels invented by padding/warping must not become class 0 (see the module docstring). Dropout
    # transforms default fill_mask to None, meaning "leave the mask alone": keep that.
    if target == "mask" and "fill_mask" in named and "fill_mask" not in params and named["fill_mask"].default is not None:
        params["fill_mask"] = ignore_label
    return {"__class_fullname__": name, **params}


def _instantiate(config: dict[str, Any], where: str):
    """Build one transform from its serialised dict, turning albumentations' errors into AugmentationError."""
    name = config["__class_fullname__"]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            transform = A.from_dict({"transform": config})
    except (ValueError, TypeError, KeyError) as e:
        detail = " ".join(str(e).split())  # pydantic messages span lines
        detail = re.sub(r"\d+ validation errors? for \w+ |\s*For further information visit \S+", "", detail)
        raise AugmentationError(f"{where} {name}: bad parameter: {detail}") from None
    invalid = getattr(transform, "invalid_args", None)
    if invalid:  # transforms taking **kwargs only warn about unknown arguments
        raise AugmentationError(f"{where} {name}: unknown parameter(s) {', '.join(invalid)}")
    for warning in caught:  # deprecations etc. stay visible, once, attributed to the recipe
        warnings.warn(f"{where} {name}: {warning.message}", stacklevel=3)
    return transform


def validate_transforms(transforms: Sequence[TransformSpec] | None, target: Target = "mask",
                        ignore_label: int = 255, where: str = "augmentation") -> list[dict[str, Any]]:
    """Check a recipe's transform list and return it in albumentations' serialised form.

    Every name, parameter name and parameter value is checked (the transforms are built once), so a bad
    recipe fails before training starts.

    Args:
        transforms: entries like ``"HorizontalFlip"`` or ``{"RandomCrop": {"height": 224, "width": 224}}``.
        target: what travels with the image: ``"mask"`` (segmentation), ``"keypoints"`` or ``"label"``.
        ignore_label: mask value for pixels invented by padding or warping (``target="mask"``).
        where: prefix for error messages, e.g. ``"augmentation.train"``.

    Returns:
        One ``{"__class_fullname__": name, **params}`` dict per entry.

    Raises:
        AugmentationError: naming the entry, the transform and the parameter at fault.
    """
    if target not in TARGETS:
        raise AugmentationError(f"{where}: target must be one of {', '.join(TARGETS)}, got {target!r}")
    if transforms is None:
        return []
    if isinstance(transforms, (str, dict)) or not isinstance(transforms, Sequence):
        raise AugmentationError(f"{where}: expected a list of transforms, got {transforms!r}")
    configs = [
        _to_albumentations_dict(item, f"{where}[{i}]", target, ignore_label) for i, item in enumerate(transforms)
    ]
    for i, config in enumerate(configs):
        _instantiate(config, f"{where}[{i}]")
    return configs


class Augmenter:
    """``fn(sample, seed) -> sample``: a seeded albumentations pipeline over the image and every target kind.

    A sample is a dict (see :mod:`densevision.data.pipeline`); what travels with ``"image"``:

    - ``"mask"``: int ``(H, W)`` labels (nearest-neighbour; pixels invented by padding/warping get the ignore label);
    - ``"keypoints"``: float ``(J, 2+)`` x, y (then visibility, ...), albumentations' ``KeypointParams`` with
      ``remove_invisible=False`` so every joint keeps its slot and its flag; a point that leaves the image gets
      visibility 0 (with 3+ columns);
    - ``"boxes"``: float ``(N, 4)`` ``[x, y, w, h]`` (COCO format), with ``"box_labels"`` ``(N,)`` if present; boxes
      that leave the image are dropped together with their labels;
    - anything else (``"label"``, ``"meta"``, ``"center"``, ...) passes through unchanged.

    Mirroring: albumentations 2.0.8 moves keypoints under a flip but keeps their order (``KeypointParams`` has no
    label swapping), so a mirrored person's left wrist would stay in the left-wrist slot while showing a right
    wrist. With ``flip_pairs``, the augmenter detects *any* mirroring (HorizontalFlip, VerticalFlip, Transpose,
    D4, ...: an odd number of reflections) from the sign of the determinant of the transformed frame of three
    probe points, and then swaps each ``(left, right)`` pair of keypoint rows. ``sample["meta"]["mirrored"]`` tells
    the task what happened.

    tf.data calls this from several threads at once; an albumentations ``Compose`` keeps its random generator
    and per-call parameters on the instance, so each thread builds its own copy from the serialised dict.
    The result depends only on the inputs and ``seed``, whichever thread runs it.

    Args:
        configs: transforms in albumentations' serialised form (from :func:`validate_transforms`).
        target: ``"mask"``, ``"keypoints"`` or ``"label"`` (see :func:`build_augmentation`).
        ignore_label: the mask's ignore value (only used to pick a dtype albumentations can warp).
        flip_pairs: ``[(left, right), ...]`` keypoint rows swapped when the image was mirrored.
    """

    def __init__(self, configs: list[dict[str, Any]], target: Target = "mask", ignore_label: int = 255,
                 flip_pairs: Sequence[Sequence[int]] = ()):
        self.configs = configs
        self.target = target
        self.ignore_label = int(ignore_label)
        self.flip_pairs = [(int(a), int(b)) for a, b in flip_pairs]
        self._local = threading.local()

    def _compose(self) -> A.Compose:
        compose = getattr(self._local, "compose", None)
        if compose is None:
            transforms = [_instantiate(dict(config), "augmentation") for config in self.configs]
            with warnings.catch_warnings():
                # Every target kind is declared up front; pixel-only pipelines need none of them, which is fine.
                warnings.filterwarnings("ignore", message="Got processor for")
                compose = A.Compose(transforms,
                                    keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
                                    bbox_params=A.BboxParams(format="coco", label_fields=["box_labels"]))
            self._local.compose = compose
        return compose

    def to_dict(self) -> dict[str, Any]:
        """The whole pipeline as albumentations serialises it (for logging next to a run)."""
        return A.to_dict(self._compose())

    def __call__(self, sample: dict[str, Any], seed: int | None) -> dict[str, Any]:
        """Augment one sample; the same ``seed`` gives the same result (``None`` draws fresh randomness).

        Returns:
            A new dict: ``"image"`` uint8 ``(H', W', 3)``, ``"mask"`` int32 ``(H', W')``, ``"keypoints"`` float32
            with the same rows and columns, ``"boxes"`` float32 ``(N', 4)``, everything else unchanged.
        """
        if not self.configs:
            return {**sample, "meta": {**sample.get("meta", {}), "mirrored": False}} if self.flip_pairs else sample
        compose = self._compose()
        seed = None if seed is None else int(seed) % (1 << 64)
        # One shared stream for all transforms (set_random_seed would correlate them, see module docstring).
        compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        image = sample["image"]
        height, width = image.shape[:2]
        inputs: dict[str, Any] = {"image": image}
        if "mask" in sample:
            mask = np.asarray(sample["mask"])
            inputs["mask"] = mask.astype(_warpable_dtype(mask, self.ignore_label), copy=False)
        points = None
        if "keypoints" in sample:
            points = np.asarray(sample["keypoints"], dtype=np.float32)
            if points.ndim != 2 or points.shape[1] < 2:
                raise AugmentationError(f"keypoints must be an (N, 2+) array of x, y[, ...], got shape {points.shape}")
        probes = _mirror_probes(height, width) if self.flip_pairs else np.zeros((0, 2), np.float32)
        xy = np.concatenate([points[:, :2] if points is not None else np.zeros((0, 2), np.float32), probes])
        inputs["keypoints"] = xy
        boxes = np.asarray(sample.get("boxes", np.zeros((0, 4))), np.float32).reshape(-1, 4)
        box_labels = np.asarray(sample.get("box_labels", np.arange(len(boxes))))
        inputs["bboxes"], inputs["box_labels"] = boxes, box_labels

        out = compose(**inputs)
        result = dict(sample)
        result["image"] = out["image"]
        if "mask" in sample:
            result["mask"] = np.asarray(out["mask"]).astype(np.int32, copy=False)
        moved = np.asarray(out["keypoints"], dtype=np.float32).reshape(-1, 2)
        mirrored = False
        if len(probes):
            origin, right, down = moved[-3:]
            mirrored = bool(_cross_2d(right - origin, down - origin) * _cross_2d(probes[1] - probes[0],
                                                                                 probes[2] - probes[0]) < 0)
            moved = moved[:-3]
        if points is not None:
            keypoints = points.copy()
            keypoints[:, :2] = moved
            if keypoints.shape[1] >= 3:
                new_height, new_width = out["image"].shape[:2]
                # Pixel centres at integers: the image covers [-0.5, W - 0.5) x [-0.5, H - 0.5).
                outside = ((keypoints[:, 0] < -0.5) | (keypoints[:, 1] < -0.5) | (keypoints[:, 0] >= new_width - 0.5)
                           | (keypoints[:, 1] >= new_height - 0.5))
                keypoints[outside, 2] = 0
            if mirrored:
                keypoints = swap_pairs(keypoints, self.flip_pairs)
            result["keypoints"] = keypoints
        if "boxes" in sample:
            result["boxes"] = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
            if "box_labels" in sample:
                result["box_labels"] = np.asarray(out["box_labels"])
        if self.flip_pairs:
            result["meta"] = {**sample.get("meta", {}), "mirrored": mirrored}
        return result


def _cross_2d(a: np.ndarray, b: np.ndarray) -> float:
    """The z component of the cross product of two 2-vectors (its sign tells the turning direction); written out
    because ``np.cross`` of 2-vectors is deprecated since NumPy 2.0."""
    return float(a[0] * b[1] - a[1] * b[0])


def _mirror_probes(height: int, width: int) -> np.ndarray:
    """Three points spanning a right-handed frame inside the image: their images tell whether it was mirrored."""
    cx, cy, step = (width - 1) / 2, (height - 1) / 2, max(1.0, min(height, width) / 4)
    return np.array([[cx, cy], [cx + step, cy], [cx, cy + step]], np.float32)


def swap_pairs(rows: np.ndarray, flip_pairs: Sequence[Sequence[int]], axis: int = 0) -> np.ndarray:
    """``rows`` with each ``(left, right)`` pair exchanged along ``axis`` (joints in keypoints or heatmap channels)."""
    order = np.arange(rows.shape[axis])
    for left, right in flip_pairs:
        order[left], order[right] = right, left
    return np.take(rows, order, axis=axis)


def _warpable_dtype(mask: np.ndarray, ignore_label: int) -> np.dtype:
    """The smallest dtype OpenCV warps exactly that holds every label (cv2 cannot remap int32)."""
    low = min(int(mask.min(initial=0)), ignore_label)
    high = max(int(mask.max(initial=0)), ignore_label)
    for dtype in (np.uint8, np.uint16, np.int16):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.float32)  # exact for |labels| < 2**24


def build_augmentation(transforms: Sequence[TransformSpec] | None, target: Target = "mask",
                       ignore_label: int = 255, flip_pairs: Sequence[Sequence[int]] = ()) -> Augmenter:
    """Build ``fn(sample, seed) -> sample`` from a recipe's transform list.

    Args:
        transforms: e.g. ``[{"RandomCrop": {"height": 224, "width": 224}}, {"HorizontalFlip": {"p": 0.5}}]``;
            empty or ``None`` gives the identity.
        target: the task's main target, which sets recipe defaults: ``"mask"``: pixels invented by padding or
            warping get ``ignore_label`` in the mask; ``"keypoints"``, ``"label"``: no mask defaults. Every
            target kind present in a sample moves with the image regardless (see :class:`Augmenter`).
        ignore_label: see ``target="mask"``.
        flip_pairs: left/right keypoint pairs swapped when a transform mirrors the image.

    Returns:
        An :class:`Augmenter`; the same ``seed`` gives the same output, from any thread.

    Raises:
        AugmentationError: unknown transform or bad parameter (with a did-you-mean suggestion).
    """
    configs = validate_transforms(transforms, target=target, ignore_label=ignore_label)
    return Augmenter(configs, target=target, ignore_label=ignore_label, flip_pairs=flip_pairs)
