"""The body of ``densevision sliding`` (``tools/sliding_classify.py``): a trained classifier slid over large images,
its score maps, top-k labels and heat-map overlays written per image.

The dense scoring itself is library code (:mod:`densevision.inference.sliding`); this module is the command around
it: recipe and checkpoint (through the engine), inputs, planned outputs, per-image failures. It imports TensorFlow
at its top, so :mod:`densevision.commands.sliding` imports it only after parsing (``--help`` stays fast).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Literal, Optional, Sequence

import keras
from tqdm import tqdm

from densevision.data.errors import ImageReadError
from densevision.data.io import find_inputs, read_image
from densevision.engine.checkpoints import CheckpointError, load_checkpoint
from densevision.engine.demo import load_tool_recipe
from densevision.errors import OutputError, UsageError
from densevision.files import check_writable_dir, plan_outputs, write_json, write_npz, write_png
from densevision.inference import sliding
from densevision.inference.fully_convolutional import ConversionError
from densevision.inference.sliding import resolve_class  # kept importable from here
from densevision.progress import progress_bar
from densevision.registry import DATASETS
from densevision.visualization.segmentation import side_by_side


def expand_inputs(inputs: Sequence[str], recursive: bool = True, exclude: Sequence[str] = ()) -> tuple[list, list]:
    """Image files from files, folders (walked recursively) and glob patterns, through the input walker every tool
    shares (:func:`densevision.data.io.find_inputs`): ``([(path, relative path)], [{"path", "error"}] skipped)``;
    an unusable entry (a symbolic link loop) is skipped with a warning, never the whole folder.

    Raises:
        DatasetError: no image file at all.
    """
    return find_inputs(inputs, recursive=recursive, exclude=exclude)


def load_classifier(recipe, weights: str) -> keras.Model:
    """The recipe's classifier with ``weights`` (a ``.keras`` model or a ``.weights.h5`` for the model the recipe
    builds), through the one checkpoint loader.

    Raises:
        CheckpointError: a missing, truncated or corrupt file, or one that does not fit the recipe's model.
    """
    return load_checkpoint(weights, recipe)


def recipe_class_names(recipe, num_classes: int) -> list[str]:
    """Class names from the recipe's dataset (training split); ``"0", "1", ...`` if it cannot be opened."""
    try:
        data = recipe.data
        source = DATASETS.get(data.name)(root=data.root, split=data.train_split, **data.kwargs())
        names = [str(n) for n in source.info["class_names"]]
        if len(names) == num_classes:
            return names
        print(f"note: the dataset has {len(names)} classes but the model {num_classes}; showing class indices")
    except Exception as error:  # noqa: BLE001 - any failure only costs the names
        print(f"note: class names unavailable ({type(error).__name__}: {str(error).splitlines()[0]}); "
              "showing class indices")
    return [str(i) for i in range(num_classes)]


def check_options(k: int, scales: Sequence[float], stride: Optional[int], reduce: str) -> None:
    """The tool's numeric options, checked before anything is loaded.

    Raises:
        UsageError: ``--top-k`` below 1, a scale that is not positive, a stride below 1, an unknown reduction.
    """
    if int(k) < 1:
        raise UsageError(f"--top-k {k}: expected a positive number of labels to show per image, e.g. 5")
    bad = [s for s in scales if not s > 0]
    if not len(scales) or bad:
        raise UsageError(f"--scales {' '.join(map(str, scales))}: expected positive image scales, e.g. 1.0 1.5")
    if stride is not None and int(stride) < 1:
        raise UsageError(f"--stride {stride}: expected a positive number of pixels (the network stride or a "
                         f"divisor of it)")
    if reduce not in ("mean", "max"):
        raise UsageError(f"--reduce {reduce!r}: expected 'mean' or 'max'")


def _class_file_part(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", str(name)).strip("._") or "class"


def plan_sliding_outputs(files: Sequence[tuple], out_dir, class_names: Sequence[str], chosen: Optional[int],
                         overwrite: bool):
    """Every file the tool will write, checked before the first image is processed.

    Per input ``(path, relative)``: ``<out>/<relative>_scores.npz`` and ``<out>/<relative>_<class>.png`` (the
    class is ``chosen``, else the image's top-1, so every class's name is checked for an existing file), plus
    ``<out>/results.json``.

    Returns:
        ``(plan, [(path, relative, npz path, heat map path prefix)])``.

    Raises:
        OutputError: two inputs with the same relative path (from different folders), existing outputs without
            ``overwrite``, an output folder that is a file or not writable.
    """
    out_dir = Path(out_dir)
    results_path = out_dir / "results.json"
    planned = [("results", results_path)]
    rows = []
    parts = [_class_file_part(n) for n in class_names]
    for path, relative in files:
        # named by the relative path WITH its extension: a.jpg and a.png never write the same file
        base = out_dir / relative
        npz = base.with_name(base.name + "_scores.npz")
        planned.append((str(path), npz))
        if chosen is not None:
            planned.append((str(path), base.with_name(f"{base.name}_{parts[chosen]}.png")))
        rows.append((path, relative, npz, base))
    plan = plan_outputs(planned, overwrite=overwrite,
                        hint="choose another --output folder")
    if not overwrite and chosen is None:  # the class of each heat map is known only later: any class counts
        existing = []
        listings: dict = {}
        for _, _, _, base in rows:
            names = listings.setdefault(base.parent, set(os.listdir(base.parent)) if base.parent.is_dir() else set())
            existing += [base.parent / f"{base.name}_{part}.png" for part in parts
                         if f"{base.name}_{part}.png" in names]
        if existing:
            shown = ", ".join(map(str, existing[:5])) + (f" (and {len(existing) - 5} more)" if len(existing) > 5 else "")
            raise OutputError(f"{len(existing)} output file(s) already exist: {shown}; pass --overwrite to replace "
                              f"them or choose another --output folder")
    return plan, rows, results_path


def sliding_classify_command(
    recipe_path: str,
    weights: str,
    inputs: Sequence[str],
    stride: Optional[int] = None,
    scales: Sequence[float] = (1.0,),
    reduce: Literal["mean", "max"] = "mean",
    k: int = 5,
    class_choice: Optional[str] = None,
    output: str = "sliding_output",
    overrides: Sequence[str] = (),
    demo: bool = False,
    conv_bands: Optional[str] = "auto-cpu",
    progress: bool = True,
    overwrite: bool = False,
    max_pixels: Optional[int] = sliding.DEFAULT_MAX_PIXELS,
) -> int:
    """``densevision sliding``: dense class-score maps, image-level top-k and heat-map overlays.

    For each input image (files, folders walked recursively, glob patterns), named by its path relative to the
    folder it was found in *with* its extension (``sub/a.jpg``), writes ``output/sub/a.jpg_<class>.png`` (the
    image beside the heat map of the chosen class, default the image's top-1) and ``output/sub/a.jpg_scores.npz``
    (one ``(rows, cols, K)`` logit map per scale), and ``output/results.json`` for all images; prints the top-k
    classes per image.

    Images above ``max_pixels`` pixels (at a scale) are scored in tiles, bounding memory as ``densevision predict``
    does (``None``: one pass).

    Every output is planned before the first image: existing files are refused unless ``overwrite``, two inputs
    that would write the same file are refused. An image that cannot be read or is smaller than the window, and an
    input entry that cannot be used (a symbolic link loop, a broken link) are skipped with a warning and listed
    under ``"failures"`` in ``results.json``, which is always written (also when the run is interrupted:
    ``"complete": false``). Files in the output folder are never read as inputs.

    Returns:
        0, or 1 if an image was skipped.

    Raises:
        UsageError, RecipeError, DatasetError (inputs), CheckpointError, OutputError: before any image is
            processed.
    """
    check_options(k, scales, stride, reduce)
    scales = [float(s) for s in scales]
    check_writable_dir(output, what="--output folder")
    recipe = load_tool_recipe(recipe_path, list(overrides), demo=demo)
    files, skipped = expand_inputs(inputs, exclude=[output])
    model = load_classifier(recipe, weights)
    try:
        fc_model, window, net_stride = sliding.sliding_classifier(model, conv_bands=conv_bands)
    except ConversionError as error:
        raise CheckpointError(f"--weights {weights}: {error}") from None
    stride = sliding.check_stride(stride, net_stride)
    class_names = recipe_class_names(recipe, int(fc_model.outputs[0].shape[-1]))
    chosen = resolve_class(class_choice, class_names)
    out_dir = Path(output)
    plan, rows, results_path = plan_sliding_outputs(files, out_dir, class_names, chosen, overwrite)
    plan.make_folders()
    print(f"window {window[0]}x{window[1]}, network stride {net_stride[0]}, sliding stride {stride}, "
          f"scales {scales}, reduce {reduce}, {len(files)} image(s) -> {out_dir}")

    results = []
    failures = [{"image": item["path"], "relative": None, "error": item["error"]} for item in skipped]
    summary = {"recipe": str(recipe_path), "weights": str(weights), "window": list(window), "stride": stride,
               "scales": scales, "reduce": reduce, "class_names": class_names, "complete": False,
               "images": results, "failures": failures}
    try:
        for path, relative, npz_path, base in progress_bar(rows, desc="sliding", unit="image", enabled=progress,
                                                           every=10):
            try:
                image = read_image(path)
                maps = sliding.multiscale_scores(fc_model, image, window, scales, stride, net_stride,
                                                 max_pixels=max_pixels)
            except (ImageReadError, ValueError) as error:  # unreadable, or smaller than the window
                reason = error.reason if isinstance(error, ImageReadError) else str(error)
                tqdm.write(f"warning: {path}: skipped: {reason}", file=sys.stderr)
                failures.append({"image": str(path), "relative": relative, "error": reason})
                continue
            probabilities = sliding.image_scores(maps, reduce)
            best = sliding.top_k(probabilities, k, class_names)
            index = best[0][0] if chosen is None else chosen
            heat = sliding.multiscale_heatmap(maps, scales, index, image.shape[:2], window, stride)
            picture_path = base.with_name(f"{base.name}_{_class_file_part(class_names[index])}.png")
            write_png(picture_path, side_by_side([image, sliding.overlay_heatmap(image, heat)]))
            write_npz(npz_path, **{f"scale_{s:g}": m for s, m in zip(scales, maps)})
            tqdm.write(f"{path}: " + ", ".join(f"{label} {score:.3f}" for _, label, score in best))
            results.append({
                "image": str(path), "relative": relative, "size": list(image.shape[:2]),
                "maps": [list(m.shape[:2]) for m in maps],
                "top_k": [{"index": i, "class": label, "score": score} for i, label, score in best],
                "heatmap_class": class_names[index], "heatmap": str(picture_path), "scores": str(npz_path),
            })
        summary["complete"] = True
    finally:  # partial results are results too: written even when a later image or Ctrl-C stops the run
        write_json(results_path, summary)
    if failures:
        print(f"{len(failures)} of {len(rows) + len(skipped)} input(s) skipped (listed under 'failures' in "
              f"{results_path})", file=sys.stderr)
    return 1 if failures else 0
