"""Loss and metric curves of a run, drawn from its ``history.csv``."""

from __future__ import annotations

from pathlib import Path

from densevision.engine.checkpoints import read_history
from densevision.errors import UsageError
from densevision.files import atomic_write, check_writable_file


def plot_history(run_dir: str | Path, output: str | Path | None = None, overwrite: bool = False) -> Path:
    """Draw every logged number per epoch (train and ``val_`` side by side) into one PNG; return its path.

    Args:
        run_dir: a run folder (its ``history.csv``).
        output: the PNG (default ``run_dir/history.png``).
        overwrite: replace an existing ``output``.

    Raises:
        UsageError: no ``history.csv`` rows in ``run_dir``.
        OutputError: ``output`` exists (without ``overwrite``), is a folder or cannot be written.
    """
    import matplotlib  # here, not at the top: the file-only Agg backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    output = Path(output) if output else run_dir / "history.png"
    rows = read_history(run_dir / "history.csv")
    if not rows:
        raise UsageError(f"{run_dir / 'history.csv'}: missing or empty; is {run_dir} a run folder?")
    check_writable_file(output, what="--output", overwrite=overwrite)
    skip = {"epoch", "epoch_seconds", "lr"}
    names = sorted({k.removeprefix("val_") for k in rows[0] if k not in skip})
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(4 * (len(names) + 1), 3.2), squeeze=False)
    epochs = [int(r["epoch"]) + 1 for r in rows]
    for ax, name in zip(axes[0], names):
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            values = [float(r[key]) if r.get(key) not in (None, "") else float("nan") for r in rows]
            if key in rows[0]:
                ax.plot(epochs, values, style, marker=".", label=key)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    lr_ax = axes[0][-1]
    if "lr" in rows[0]:
        lr_ax.plot(epochs, [float(r["lr"]) for r in rows], marker=".")
    lr_ax.set_title("learning rate")
    lr_ax.set_xlabel("epoch")
    fig.tight_layout()
    try:
        atomic_write(output, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)
    return output
