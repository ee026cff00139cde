#!/usr/bin/env python
"""Peak memory and step time of one training step with and without ``model.memory_efficient``, in one run.

    python benchmarks/memory_efficient.py --model fc_densenet103 --size 360 480 --batch 1 --budget-gb 16

Each variant (plain graph, memory-efficient dense layers) runs in its own subprocess: build the model and the
optimiser, one warm-up training step (tracing), then ``--steps`` timed steps. Two memory figures:

- peak RSS: the process's peak resident set (``ru_maxrss``) minus its resident set after building the model; it
  includes tracing the step (the freed memory of a step stays with the allocator, so the resident set after the
  warm-up step cannot serve as the baseline);
- peak tensor memory: the peak of TensorFlow's CPU allocator (run as BFC, ``TF_CPU_ALLOCATOR_USE_BFC``) over the
  timed steps minus what it held before them (weights, optimiser state): the live tensors of a step alone.

With ``--batch2`` each variant also runs at a second batch size, giving the peak RSS per extra image and so the
largest batch that fits in ``--budget-gb`` (a linear extrapolation, printed as such). With ``--interleaved`` a third
process builds both variants and alternates their timed steps, so that other jobs on the machine slow both alike.
Prints one JSON line per run, then the ratios memory-efficient / plain of both memory figures and of the step time.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = {"plain": False, "memory_efficient": True}


def _rss_kib() -> int:
    """The current resident set (``VmRSS``) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _compiled_model_and_batch(args, memory_efficient: bool):
    """The model (compiled with RMSprop and sparse cross-entropy) and one random batch of ``args.batch``."""
    # imported here, in the child only, so that the parent process stays light
    import keras  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from densevision.registry import MODELS  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    model = MODELS.get(args.model)(num_classes=args.classes, memory_efficient=memory_efficient)
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch, *args.size, 3)).astype("float32")
    labels = rng.integers(0, args.classes, (args.batch, *args.size)).astype("int32")
    return model, images, labels


def interleaved_times(args) -> dict:
    """Both variants in one process, their timed steps alternating, so that other jobs slow both alike."""
    pairs = {variant: _compiled_model_and_batch(args, flag) for variant, flag in VARIANTS.items()}
    times = {variant: [] for variant in VARIANTS}
    for model, images, labels in pairs.values():
        model.train_on_batch(images, labels)  # warm-up: traces the step
    for _ in range(args.steps):
        for variant, (model, images, labels) in pairs.items():
            started = time.perf_counter()
            model.train_on_batch(images, labels)
            times[variant].append(time.perf_counter() - started)
    return {"variant": "interleaved", "step_s": {v: [round(t, 2) for t in ts] for v, ts in times.items()}}


def child(args) -> dict:
    """One variant in this process: build, warm up, time ``args.steps`` training steps, measure memory."""
    import tensorflow as tf  # noqa: PLC0415 - in the child only, as above

    model, images, labels = _compiled_model_and_batch(args, VARIANTS[args.variant])
    height, width = args.size
    built_kib = _rss_kib()
    model.train_on_batch(images, labels)  # warm-up: traces the step
    tf.config.experimental.reset_memory_stats("CPU:0")
    held = tf.config.experimental.get_memory_info("CPU:0")["current"]
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        model.train_on_batch(images, labels)
        times.append(time.perf_counter() - started)
    tensor_peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] - held
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "variant": args.variant, "model": args.model, "size": [height, width], "batch": args.batch,
        "rss_peak_gb": round((peak_kib - built_kib) / 2**20, 3), "tensor_peak_gb": round(tensor_peak / 2**30, 3),
        "rss_after_build_gb": round(built_kib / 2**20, 3), "tensors_held_gb": round(held / 2**30, 3),
        "step_s": round(sorted(times)[len(times) // 2], 2), "steps": args.steps,
    }


def run_variant(args, variant: str, batch: int) -> dict:
    """``child`` in a fresh Python process (its peak memory is its own); its JSON line."""
    command = [sys.executable, __file__, "--child", variant, "--model", args.model, "--size", *map(str, args.size),
               "--batch", str(batch), "--steps", str(args.steps), "--classes", str(args.classes)]
    # TensorFlow's BFC allocator on the CPU counts the bytes of live tensors (get_memory_info)
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise SystemExit(f"{variant} at batch {batch} failed (exit {done.returncode}):\n{tail}")
    result = json.loads(lines[-1])
    print(json.dumps(result), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fc_densenet56", help="a registered model taking memory_efficient")
    parser.add_argument("--size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--batch2", type=int, default=0, help="a second batch size (0: none) for memory per image")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after the warm-up step")
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--budget-gb", type=float, default=16.0, help="memory budget for the largest batch")
    parser.add_argument("--interleaved", action="store_true",
                        help="also time both variants in one process, alternating steps (a fairer time ratio)")
    parser.add_argument("--child", choices=[*sorted(VARIANTS), "interleaved"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.variant = args.child
        print(json.dumps(interleaved_times(args) if args.child == "interleaved" else child(args)))
        return 0

    results = {variant: run_variant(args, variant, args.batch) for variant in VARIANTS}
    plain, lean = results["plain"], results["memory_efficient"]
    print(f"{args.model} {args.size[0]}x{args.size[1]} batch {args.batch}, plain vs memory-efficient: "
          f"peak RSS over the build {plain['rss_peak_gb']:.2f} vs {lean['rss_peak_gb']:.2f} GB, ratio "
          f"{lean['rss_peak_gb'] / plain['rss_peak_gb']:.2f}; peak tensor memory of a step "
          f"{plain['tensor_peak_gb']:.2f} vs {lean['tensor_peak_gb']:.2f} GB, ratio "
          f"{lean['tensor_peak_gb'] / plain['tensor_peak_gb']:.2f}; step time {plain['step_s']:.2f} vs "
          f"{lean['step_s']:.2f} s, ratio {lean['step_s'] / plain['step_s']:.2f}")
    if args.interleaved:
        times = run_variant(args, "interleaved", args.batch)["step_s"]
        plain_s, lean_s = min(times["plain"]), min(times["memory_efficient"])
        print(f"interleaved in one process, best of {args.steps} steps each: {plain_s:.2f} s plain, {lean_s:.2f} s "
              f"memory-efficient, ratio {lean_s / plain_s:.2f}")
    if args.batch2:
        for variant, first in results.items():
            second = run_variant(args, variant, args.batch2)
            per_image = (second["rss_peak_gb"] - first["rss_peak_gb"]) / (args.batch2 - args.batch)
            total = first["rss_after_build_gb"] + first["rss_peak_gb"]
            largest = int((args.budget_gb - total) // per_image) + args.batch if per_image > 0 else None
            print(f"{variant}: {per_image:.2f} GB peak RSS per extra image (batches {args.batch} and {args.batch2});"
                  f" largest batch within {args.budget_gb:g} GB of peak RSS, extrapolated linearly from "
                  f"{total:.2f} GB at batch {args.batch}: {largest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
