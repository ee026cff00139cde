#!/usr/bin/env python
"""Batch prediction throughput against the model's own compiled forward pass, as a ratio measured in one run.

    python benchmarks/predict.py [--recipe recipes/tiramisu56_camvid.yaml] [--images 24] [--repeats 2]

A folder of real photos of mixed sizes (CamVid, LSP, COCO and MPII images from ``$DENSEVISION_DATA`` or
``../shared/data``; ``--folder DIR`` for your own) is predicted by the prediction tool's code
(:func:`densevision.engine.predictor.predict_folder`: threaded decoding, compiled forward with relaxed shapes,
background writer of index PNGs). The baseline is the model's own forward pass inside ``tf.function`` with relaxed
shapes (``reduce_retracing=True``) plus the argmax, on the same images already decoded in memory, one image at a
time. Both are traced on every size first, so neither pays for tracing. Prints images/s of each and the ratio
(goal >= 0.9: decoding and writing hidden behind the model).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import densevision  # noqa: E402,F401
from densevision.data.paths import dataset_dir  # noqa: E402


def real_photos(limit: int) -> list[Path]:
    """Up to ``limit`` real photos of several sizes, taken in turn from each shared dataset."""
    pools = []
    for name, pattern in (("CamVid", "val/*.png"), ("LSP", "images/*.jpg"), ("coco_sample", "**/*.jpg"),
                          ("mpii_sample", "**/*.jpg")):
        root = dataset_dir(name)
        if root is not None:
            pools.append(sorted(root.glob(pattern)))
    chosen = []
    while len(chosen) < limit and any(pools):
        for pool in pools:
            if pool and len(chosen) < limit:
                chosen.append(pool.pop(0))
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(Path(__file__).resolve().parents[1] / "recipes/tiramisu56_camvid.yaml"))
    parser.add_argument("--folder", help="a folder of images (default: real photos from the shared datasets)")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from densevision.data.io import list_images, read_image
    from densevision.engine.checkpoints import prediction_info
    from densevision.inference.predictor import PredictOptions, predict_folder
    from densevision.models import build_model
    from densevision.recipes import load_recipe
    from densevision.registry import TASKS

    if args.folder:
        inputs = [path for path, _ in list_images([args.folder])][: args.images]
    else:
        inputs = real_photos(args.images)
    if not inputs:
        print("no images: pass --folder DIR or set DENSEVISION_DATA", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="dv_bench_predict_"))
    folder = work / "photos"
    folder.mkdir()
    for index, path in enumerate(inputs):
        shutil.copy(path, folder / f"{index:03d}_{path.name}")
    images = list_images([folder])
    decoded = [read_image(path) for path, _ in images]
    sizes = sorted({image.shape[:2] for image in decoded})

    recipe = load_recipe(args.recipe)
    task = TASKS.get(recipe.task)(recipe, prediction_info(recipe))
    model = build_model(recipe)  # seeded random weights: speed does not depend on them

    @tf.function(reduce_retracing=True)
    def forward(batch):
        return tf.argmax(model(batch, training=False), axis=-1)

    for image in decoded[: len(sizes) * 2]:  # trace (relaxed) before timing
        forward(tf.constant(image[None], tf.float32)).numpy()
    predict_folder(model, task, images, work / "warm", PredictOptions(), progress=False)

    baseline, tool = [], []
    for repeat in range(args.repeats):
        started = time.perf_counter()
        for image in decoded:
            forward(tf.constant(image[None], tf.float32)).numpy()
        baseline.append(len(decoded) / (time.perf_counter() - started))
        started = time.perf_counter()
        predict_folder(model, task, images, work / f"out{repeat}", PredictOptions(), progress=False)
        tool.append(len(decoded) / (time.perf_counter() - started))
    shutil.rmtree(work, ignore_errors=True)
    base, ours = float(np.median(baseline)), float(np.median(tool))
    print(f"{len(decoded)} real photos, {len(sizes)} sizes ({', '.join(f'{h}x{w}' for h, w in sizes[:6])}"
          f"{' ...' if len(sizes) > 6 else ''}), model {recipe.model.name}, median of {args.repeats}")
    print(f"  compiled forward pass on decoded images   {base:.2f} images/s")
    print(f"  tools/predict.py code (decode+predict+write) {ours:.2f} images/s")
    print(f"  ratio                                      {ours / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
