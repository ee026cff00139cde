#!/usr/bin/env python
"""Peak memory and step time of one training step with and without ``model.memory_efficient``, in one run.

    python benchmarks/memory_efficient.py --model fc_densenet103 --size 360 480 --batch 1 --budget-gb 16

Each variant (plain graph, memory-efficient dense layers) runs in its own subprocess: build the model and the
optimiser, one warm-up training step (tracing), then ``--steps`` timed steps. Memory is the process's resident set:
the peak over the timed steps (``VmHWM`` reset through ``/proc/self/clear_refs`` before them; where the kernel
refuses, ``ru_maxrss`` over the whole run) minus the resident set before them (model, optimiser state and traced
graph). With ``--batch2`` each variant also runs at a second batch size, giving the memory per extra image and so
the largest batch that fits in ``--budget-gb`` (a linear extrapolation, printed as such). Prints one JSON line per
run, then the ratios lean / plain of peak step memory and of step time.
"""

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = {"plain": False, "memory_efficient": True}


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset the kernel's peak resident set (``VmHWM``, what ``ru_maxrss`` reports) to the current one."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(args) -> dict:
    """One variant in this process: build, warm up, time ``args.steps`` training steps, measure memory."""
    import keras  # noqa: PLC0415 - imported after argument parsing so the parent process stays light
    import numpy as np  # noqa: PLC0415

    from densevision.registry import MODELS  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    model = MODELS.get(args.model)(num_classes=args.classes, memory_efficient=VARIANTS[args.variant])
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    height, width = args.size
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch, height, width, 3)).astype("float32")
    labels = rng.integers(0, args.classes, (args.batch, height, width)).astype("int32")
    built_kib = _status_kib("VmRSS")
    model.train_on_batch(images, labels)  # traces the step; its peak also counts in ru_maxrss
    whole_run_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # glibc keeps freed heap pages; hand them back so the resident set before the timed steps is what is live
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before_kib = _status_kib("VmRSS")
    reset = _reset_peak()
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        model.train_on_batch(images, labels)
        times.append(time.perf_counter() - started)
    if reset:
        peak_kib, baseline_kib = _status_kib("VmHWM"), before_kib
    else:
        peak_kib, baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, built_kib
    return {
        "variant": args.variant, "model": args.model, "size": [height, width], "batch": args.batch,
        "step_peak_gb": round((peak_kib - baseline_kib) / 2**20, 3),
        "warmup_peak_gb": round((whole_run_kib - built_kib) / 2**20, 3),
        "peak_from": "VmHWM over the timed steps" if reset else "ru_maxrss over the whole run",
        "rss_before_steps_gb": round(before_kib / 2**20, 3), "rss_after_build_gb": round(built_kib / 2**20, 3),
        "step_s": round(sorted(times)[len(times) // 2], 2), "steps": args.steps,
    }


def run_variant(args, variant: str, batch: int) -> dict:
    """``child`` in a fresh Python process (its peak memory is its own); its JSON line."""
    command = [sys.executable, __file__, "--child", variant, "--model", args.model, "--size", *map(str, args.size),
               "--batch", str(batch), "--steps", str(args.steps), "--classes", str(args.classes)]
    done = subprocess.run(command, capture_output=True, text=True)
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
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.variant = args.child
        print(json.dumps(child(args)))
        return 0

    results = {variant: run_variant(args, variant, args.batch) for variant in VARIANTS}
    plain, lean = results["plain"], results["memory_efficient"]
    print(f"{args.model} {args.size[0]}x{args.size[1]} batch {args.batch}: peak step memory "
          f"{plain['step_peak_gb']:.2f} GB plain, {lean['step_peak_gb']:.2f} GB memory-efficient, "
          f"ratio {lean['step_peak_gb'] / plain['step_peak_gb']:.2f}; step time {plain['step_s']:.2f} s vs "
          f"{lean['step_s']:.2f} s, ratio {lean['step_s'] / plain['step_s']:.2f}")
    if args.batch2:
        for variant, first in results.items():
            second = run_variant(args, variant, args.batch2)
            per_image = (second["step_peak_gb"] - first["step_peak_gb"]) / (args.batch2 - args.batch)
            fixed = first["rss_before_steps_gb"]
            largest = int((args.budget_gb - fixed - first["step_peak_gb"]) // per_image) + args.batch \
                if per_image > 0 else None
            print(f"{variant}: {per_image:.2f} GB per extra image (batches {args.batch} and {args.batch2}); "
                  f"largest batch in {args.budget_gb:g} GB (resident {fixed:.2f} GB + step), extrapolated "
                  f"linearly: {largest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
