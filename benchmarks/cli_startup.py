#!/usr/bin/env python
"""Start-up cost of the ``densevision`` command against ``import tensorflow``, as a ratio measured in one run.

    python benchmarks/cli_startup.py [--repeats 5]

Times, in fresh interpreters taken in turn (median of ``--repeats``): ``densevision predict --help`` (the dispatcher,
the command's parser; TensorFlow must not load) and the baseline ``python -c "import tensorflow"``. Also checks that
TensorFlow stayed out of the ``--help`` process. Prints both medians and the ratio (goal <= 0.2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELP = [sys.executable, "-m", "densevision", "predict", "--help"]
BASELINE = [sys.executable, "-c", "import tensorflow"]
PROBE = ("import sys; from densevision.commands import main\n"
         "try:\n    main(['predict', '--help'])\nexcept SystemExit:\n    pass\n"
         "print('tensorflow' in sys.modules, file=sys.stderr)")


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    loaded = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    print(f"TensorFlow imported by `densevision predict --help`: {loaded.stderr.strip().splitlines()[-1]}")
    timed(BASELINE, env)  # warm the file cache for both
    timed(HELP, env)
    helps, baselines = [], []
    for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
        helps.append(timed(HELP, env))
        baselines.append(timed(BASELINE, env))
    help_s, base_s = statistics.median(helps), statistics.median(baselines)
    print(f"densevision predict --help: {help_s:.3f} s (median of {args.repeats})")
    print(f"python -c 'import tensorflow': {base_s:.3f} s (median of {args.repeats})")
    print(f"ratio: {help_s / base_s:.3f} (goal <= 0.2)")


if __name__ == "__main__":
    main()
