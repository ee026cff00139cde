#!/usr/bin/env python
"""Calibrate short FC-DenseNet56 trainings on real CamVid: one table row of val mIoU per recipe variant.

    python benchmarks/camvid_calibrate.py                              # the built-in variants, 240 steps each
    python benchmarks/camvid_calibrate.py --variant adam optimizer.name=adam optimizer.lr=1e-3 \\
        --variant zero_head model.classifier_init=zeros --steps 240

Each variant is ``recipes/tiramisu56_camvid.yaml`` (224x224 crops, batch 3, from scratch) plus its ``--set``-style
overrides, trained for ``--steps`` steps (``train.steps_per_epoch`` x ``train.epochs``; the schedule's epochs are
these short ones, as in ``benchmarks/camvid_tiramisu.py``), then evaluated on every val image at full resolution
after re-estimating the batch-norm statistics over ``--precise-bn`` training batches ("precise BN", dropout off,
no weight change; ``--plain`` also evaluates before it, with the statistics training left). About 15 CPU-minutes
per variant at the default 240 steps on 2 cores (20 with ``--plain``); ``--subset N`` (the first N training and val pairs) and ``--steps 2`` check the
harness in a few minutes. Prints one JSON line per variant as it finishes and a Markdown table at the end.

    python benchmarks/camvid_calibrate.py --rescore RUN_DIR "augmentation.precise_bn=[{HorizontalFlip: {p: 0.5}}]"

re-scores a finished run under other precise-BN settings without training (about 10 CPU-minutes).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import densevision  # noqa: E402
from densevision.data.paths import dataset_dir, missing_reason  # noqa: E402
from densevision.engine.checkpoints import load_checkpoint  # noqa: E402
from densevision.engine.trainer import Trainer  # noqa: E402
from densevision.errors import DensevisionError  # noqa: E402

#: the variants run when none is given: one change each against the shipped recipe
DEFAULT_VARIANTS = {
    "recipe": [],
    "adam_1e-3": ["optimizer.name=adam", "optimizer.lr=1e-3"],
    "warmup_1": ["optimizer.schedule.warmup_epochs=1"],
    "zero_classifier": ["model.classifier_init=zeros"],
    "bn_momentum_0.99": ["model.bn_momentum=0.99"],
    "median_frequency": ["loss.name=cross_entropy", "loss.class_weights=median_frequency"],
    "no_dropout": ["model.dropout=0"],
    "cosine": ["optimizer.schedule.name=cosine"],
    "crop_320_batch_2": ["data.batch_size=2",
                         "augmentation.train=[{RandomCrop: {height: 320, width: 320}}, {HorizontalFlip: {p: 0.5}}]"],
}


def subset_root(root: Path, count: int, into: Path) -> Path:
    """A CamVid folder (SegNet layout) of links to the first ``count`` training and val pairs of ``root``."""
    for split in ("train", "val"):
        for folder in (split, f"{split}annot"):
            (into / folder).mkdir(parents=True)
        for image in sorted((root / split).glob("*.png"))[:count]:
            (into / split / image.name).symlink_to(image)
            (into / f"{split}annot" / image.name).symlink_to(root / f"{split}annot" / image.name)
    return into


def run_variant(args, root: Path, name: str, overrides: list[str]) -> dict:
    """Train one variant, evaluate val without and with precise BN; the table row."""
    per_epoch = min(args.steps, args.steps_per_epoch)
    if args.steps % per_epoch:
        raise SystemExit(f"--steps {args.steps} is not a multiple of --steps-per-epoch {per_epoch}")
    recipe = densevision.load_recipe(args.recipe, [
        f"data.root={root}", f"train.steps_per_epoch={per_epoch}", f"train.epochs={args.steps // per_epoch}",
        f"train.val_every={args.steps}", f"train.precise_bn_batches={0 if args.plain else args.precise_bn}",
        "train.pictures_every=0",
        "tracking.wandb.mode=disabled", "tracking.tensorboard=false", f"train.seed={args.seed}", *overrides])
    started = time.perf_counter()
    trainer = Trainer(recipe, output_dir=args.output, progress=False)
    # validates once, after the last epoch: with --plain, with the statistics training left; else after precise BN
    result = trainer.fit()
    train_minutes = (time.perf_counter() - started) / 60
    plain = result.history[-1]
    if args.plain:  # then the Trainer's own precise-BN pass and evaluation, as train.precise_bn_batches runs them
        trainer.recipe.train.precise_bn_batches = args.precise_bn
        trainer._precise_bn(result.epochs_done)
        precise = trainer._evaluate()
    else:
        precise, plain = plain, {"loss": plain["loss"], "val_miou": None}
    row = {
        "variant": name, "overrides": overrides, "steps": args.steps, "batch_size": recipe.data.batch_size,
        "train_loss": round(plain["loss"], 4), "val_miou": None if plain["val_miou"] is None else round(plain["val_miou"], 4),
        "val_miou_precise_bn": round(precise["val_miou"], 4),
        "val_accuracy_precise_bn": round(precise.get("val_global_accuracy", float("nan")), 4),
        "train_minutes": round(train_minutes, 1), "run_dir": str(result.run_dir),
    }
    (Path(result.run_dir) / "calibration.json").write_text(json.dumps(row, indent=2))
    print(json.dumps(row), flush=True)
    return row


def rescore(args, root: Path, run_dir: Path, overrides: list[str]) -> dict:
    """Re-estimate the batch-norm statistics of a finished calibration run's ``last.keras`` under ``overrides``
    (e.g. ``augmentation.precise_bn``) and score val again: precise BN changes no weight, so this is what training
    with those settings would have given, at a fraction of the cost."""
    recipe = densevision.load_recipe(run_dir / "recipe.yaml", [
        f"data.root={root}", f"train.precise_bn_batches={args.precise_bn}", *overrides])
    trainer = Trainer(recipe, output_dir=args.output, progress=False)
    trainer._build()  # data and model only: no run folder is created
    load_checkpoint(run_dir / "checkpoints" / "last.keras", model=trainer.model)
    started = time.perf_counter()
    trainer._precise_bn(recipe.train.epochs - 1)
    scores = trainer._evaluate()
    row = {"run_dir": str(run_dir), "seed": recipe.train.seed, "overrides": overrides,
           "val_miou_precise_bn": round(scores["val_miou"], 4),
           "val_accuracy_precise_bn": round(scores["val_global_accuracy"], 4),
           "minutes": round((time.perf_counter() - started) / 60, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="CamVid folder (default: DENSEVISION_DATA or ../shared/data)/CamVid")
    parser.add_argument("--recipe", default="recipes/tiramisu56_camvid.yaml")
    parser.add_argument("--variant", nargs="+", action="append", metavar=("NAME", "KEY=VALUE"),
                        help="a variant: its name, then recipe overrides (repeatable; default: the built-in set)")
    parser.add_argument("--steps", type=int, default=240, help="training steps per variant")
    parser.add_argument("--steps-per-epoch", type=int, default=20, help="the schedule's (short) epoch")
    parser.add_argument("--precise-bn", type=int, default=100, help="training batches for precise BN")
    parser.add_argument("--plain", action="store_true",
                        help="also evaluate before precise BN (one more full val pass, ~2.5 CPU-minutes)")
    parser.add_argument("--subset", type=int, default=0, help="only the first N training and val pairs (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/calibration")
    parser.add_argument("--rescore", nargs="+", metavar=("RUN_DIR", "KEY=VALUE"),
                        help="no training: re-estimate precise BN for a finished run (its last.keras) under these "
                             "overrides and score val again, e.g. --rescore RUN augmentation.precise_bn=[]")
    args = parser.parse_args()

    root = Path(args.data) if args.data else dataset_dir("CamVid")
    if root is None or not root.is_dir():
        print(f"skipped: {missing_reason('CamVid')}", file=sys.stderr)
        return 2
    if args.rescore:
        try:
            rescore(args, root, Path(args.rescore[0]), args.rescore[1:])
        except DensevisionError as error:  # no recipe.yaml or last.keras there, a bad override
            print(f"error: --rescore {args.rescore[0]}: {error}", file=sys.stderr)
            return 2
        return 0
    variants = {v[0]: v[1:] for v in args.variant} if args.variant else DEFAULT_VARIANTS
    with tempfile.TemporaryDirectory(prefix="camvid-subset-") as scratch:
        if args.subset:
            root = subset_root(root, args.subset, Path(scratch) / "CamVid")
        rows = [run_variant(args, root, name, overrides) for name, overrides in variants.items()]
    print(f"\nFC-DenseNet56, {args.steps} steps each, val at full resolution"
          + (f" (first {args.subset} pairs only)" if args.subset else "") + ":")
    print("| variant | overrides | train loss | val mIoU | val mIoU, precise BN | minutes |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        plain = "-" if row["val_miou"] is None else f"{100 * row['val_miou']:.1f}"
        print(f"| {row['variant']} | {' '.join(row['overrides']) or '-'} | {row['train_loss']} | {plain} | "
              f"{100 * row['val_miou_precise_bn']:.1f} | {row['train_minutes']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
