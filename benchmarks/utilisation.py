#!/usr/bin/env python
"""Model-FLOPs utilisation of a training step: layer-table multiply-adds against a large matmul, in one run.

    python benchmarks/utilisation.py                      # FC-DenseNet56, FC-DenseNet103, 2-stack hourglass
    python benchmarks/utilisation.py --memory-efficient   # also the FC-DenseNets with model.memory_efficient

The machine's float32 peak is taken as the throughput of a 2048x2048 matmul inside ``tf.function`` (median of a few
repeats, 2 n^3 FLOP each), measured in the same run. A training step (forward, backward, RMSprop update; random data)
is counted as 3x the forward multiply-adds of :func:`densevision.layer_table`, 2 FLOP each: utilisation =
``6 x MACs x batch / step time / matmul FLOP/s``. A memory-efficient step does more work (the recomputation), but is
credited with the same useful FLOPs. Each model runs one warm-up step (tracing), then ``--steps`` timed steps. Both
the matmul and the steps take the best of their repeats (other jobs on a shared machine only slow things down), and
the matmul is measured just before and just after each model's steps, the higher figure used for that model: the
load of a shared machine moves the matmul's own throughput by 2-3x within minutes.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import densevision  # noqa: E402
from densevision.registry import MODELS  # noqa: E402

#: (label, registered model, options, (H, W), batch, loss): the sizes of the project's recipes
MODELS_MEASURED = [
    ("FC-DenseNet56", "fc_densenet56", {"num_classes": 11}, (224, 224), 3, "segmentation"),
    ("FC-DenseNet103", "fc_densenet103", {"num_classes": 11}, (224, 224), 3, "segmentation"),
    ("hourglass, 2 stacks", "stacked_hourglass", {"num_stacks": 2, "num_joints": 14}, (128, 128), 6, "heatmaps"),
]


def matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    """Best FLOP/s of an ``n x n`` float32 matmul inside ``tf.function`` (``2 n^3`` FLOP each) over ``repeats``."""
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    matmul(a, b).numpy()  # trace
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - started)
    return 2 * n**3 / min(times)


def step_time(model: keras.Model, size, batch: int, loss: str, steps: int) -> float:
    """Best seconds of a training step on random data over ``steps``, after one warm-up step."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, *size, 3)).astype("float32")
    outputs = model(images[:1], training=False)
    if loss == "segmentation":
        targets = rng.integers(0, outputs.shape[-1], (batch, *size)).astype("int32")
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:  # one heatmap target per stack output
        targets = keras.tree.map_structure(
            lambda out: rng.uniform(0, 1, (batch, *out.shape[1:])).astype("float32"), outputs)
        loss_fn = "mse"
    model.compile(optimizer=keras.optimizers.RMSprop(2.5e-4), loss=loss_fn)
    model.train_on_batch(images, targets)  # warm-up: traces the step
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        model.train_on_batch(images, targets)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3,
                        help="timed steps per model (the best taken), after one warm-up step")
    parser.add_argument("--memory-efficient", action="store_true",
                        help="also time the FC-DenseNets with model.memory_efficient")
    parser.add_argument("--only", nargs="+", help="labels (or registered names) to measure, default all")
    args = parser.parse_args()

    rows = []
    for label, name, options, size, batch, loss in MODELS_MEASURED:
        if args.only and label not in args.only and name not in args.only:
            continue
        variants = [False, True] if args.memory_efficient and name.startswith("fc_densenet") else [False]
        for memory_efficient in variants:
            keras.utils.set_random_seed(0)
            extra = {"memory_efficient": True} if memory_efficient else {}
            model = MODELS.get(name)(**options, **extra)
            macs = densevision.layer_table(model, (*size, 3))["totals"]["macs"]
            before = matmul_flops()
            seconds = step_time(model, size, batch, loss, args.steps)
            peak = max(before, matmul_flops())
            achieved = 6 * macs * batch / seconds
            rows.append({"model": label + (", memory-efficient" if memory_efficient else ""), "size": list(size),
                         "batch": batch, "forward_gmacs_per_image": round(macs / 1e9, 2), "step_s": round(seconds, 2),
                         "train_gflop_per_s": round(achieved / 1e9, 1), "matmul_gflop_per_s": round(peak / 1e9, 1),
                         "utilisation": round(achieved / peak, 3)})
            print(json.dumps(rows[-1]), flush=True)
            keras.backend.clear_session()
    print("| model | input, batch | forward GMACs/image | step | training GFLOP/s | matmul GFLOP/s | utilisation |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['size'][0]}x{row['size'][1]}, {row['batch']} | "
              f"{row['forward_gmacs_per_image']} | {row['step_s']:.2f} s | {row['train_gflop_per_s']} | "
              f"{row['matmul_gflop_per_s']} | {row['utilisation']:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
