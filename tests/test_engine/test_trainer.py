"""The training engine: run folders, checkpoints, schedules, tracking, seeds, kill and resume."""

import csv
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import densevision  # noqa: F401  (backend + registrations)
import keras
from densevision.engine.checkpoints import CheckpointError, new_run_dir, restore_training_state
from densevision.engine.optim import EpochSchedule, effective_lr
from engine_utils import TRAIN_TOOL, make_street_data, only_run_dir, run_train, tool_env, write_recipe


@pytest.fixture(scope="module")
def street_data(tmp_path_factory):
    return make_street_data(tmp_path_factory.mktemp("streets"))


def history_rows(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------------ schedules
def test_exponential_schedule_decays_once_per_epoch():
    schedule = EpochSchedule(1e-3, steps_per_epoch=10, total_epochs=100, name="exponential", decay_rate=0.995)
    for step, epochs in [(0, 0), (9, 0), (10, 1), (25, 2), (1000, 100)]:
        assert float(schedule(step)) == pytest.approx(1e-3 * 0.995 ** epochs, rel=1e-5)


def test_poly_cosine_step_and_warmup_against_formulas():
    poly = EpochSchedule(0.1, 10, 10, name="poly", power=0.9)
    assert float(poly(50)) == pytest.approx(0.1 * (1 - 0.5) ** 0.9, rel=1e-5)
    cosine = EpochSchedule(0.1, 10, 10, name="cosine", min_lr=0.01)
    assert float(cosine(25)) == pytest.approx(0.01 + 0.5 * 0.09 * (1 + math.cos(math.pi * 0.25)), rel=1e-5)
    step = EpochSchedule(0.1, 10, 10, name="step", boundaries=[3, 6], factor=0.1)
    assert [round(float(step(s)), 6) for s in (29, 30, 60)] == [0.1, 0.01, 0.001]
    warm = EpochSchedule(0.1, 10, 10, name="constant", warmup_epochs=2)
    assert float(warm(5)) == pytest.approx(0.1 * 5 / 20, rel=1e-5)


def test_linear_learning_rate_scaling(tmp_path, street_data):
    recipe = densevision.load_recipe(write_recipe(tmp_path / "r.yaml", street_data),
                                     ["optimizer.lr=0.1", "optimizer.base_batch_size=2", "data.batch_size=8"])
    assert effective_lr(recipe) == pytest.approx(0.4)


# ------------------------------------------------------------------------------------------------ run folders
def test_run_folders_are_never_reused(tmp_path):
    first, second = new_run_dir(tmp_path, "exp"), new_run_dir(tmp_path, "exp")
    assert first != second and first.is_dir() and second.is_dir()


def test_unwritable_output_names_the_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match=str(blocker)):
        new_run_dir(blocker, "exp")


def test_corrupt_checkpoint_error_names_the_file(tmp_path):
    bad = tmp_path / "last.keras"
    bad.write_bytes(b"this is not a zip file")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(CheckpointError, match=str(bad)):
        restore_training_state(model, bad)


# ------------------------------------------------------------------------------------------------ training
def test_train_creates_the_contract_run_folder(tmp_path, street_data):
    recipe = write_recipe(tmp_path / "tiny.yaml", street_data)
    result = run_train([str(recipe), "--output", str(tmp_path / "out")])
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "out")
    assert run_dir.parent.name == "tiny"
    for name in ["recipe.yaml", "checkpoints/last.keras", "checkpoints/best.keras", "history.csv"]:
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (run_dir / "wandb").exists(), "wandb mode 'disabled' must write nothing"
    rows = history_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"loss", "val_loss", "val_miou", "lr"} <= set(rows[0])
    # The checkpoints load in safe mode once densevision is imported, and predict per-pixel logits.
    model = keras.saving.load_model(run_dir / "checkpoints" / "best.keras", safe_mode=True)
    logits = model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0)
    assert logits.shape == (1, 32, 32, 11)
    assert "best val_miou" in result.stdout  # the end-of-run summary
    # a redirected log: one plain line per epoch that says which epoch it is, no carriage returns
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"] and "\r" not in result.stdout


def test_same_seed_same_losses(tmp_path, street_data):
    recipe = write_recipe(tmp_path / "seeded.yaml", street_data, train={"epochs": 1, "steps_per_epoch": 3})
    losses = []
    for out in ("a", "b"):
        result = run_train([str(recipe), "--output", str(tmp_path / out)])
        assert result.returncode == 0, result.stderr[-3000:]
        losses.append(float(history_rows(only_run_dir(tmp_path / out))[0]["loss"]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    other = run_train([str(recipe), "--output", str(tmp_path / "c"), "--set", "train.seed=7"])
    assert float(history_rows(only_run_dir(tmp_path / "c"))[0]["loss"]) != pytest.approx(losses[0], rel=1e-6)


def test_wandb_offline_writes_its_files(tmp_path, street_data):
    recipe = write_recipe(tmp_path / "wb.yaml", street_data,
                          train={"epochs": 1, "steps_per_epoch": 1, "pictures_every": 1, "num_pictures": 2},
                          tracking={"wandb": {"mode": "offline", "project": "densevision-test"}})
    result = run_train([str(recipe), "--output", str(tmp_path / "out")], WANDB_MODE="offline")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "out")
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert offline, f"no offline W&B run under {run_dir / 'wandb'}"
    assert list(offline[0].glob("*.wandb")), "the offline run holds no .wandb log"
    pictures = sorted((run_dir / "pictures").glob("epoch001_*.png"))
    assert len(pictures) == 2, "sample predictions are written every train.pictures_every epochs"
    assert list((offline[0] / "files" / "media" / "images").glob("samples_*.png")), "pictures reach W&B too"


def test_kill_mid_epoch_then_resume_completes_the_plan(tmp_path, street_data):
    epochs, steps = 3, 150  # epochs of a few seconds each, so the kill lands mid-epoch
    recipe = write_recipe(tmp_path / "long.yaml", street_data, train={"epochs": epochs, "steps_per_epoch": steps})
    output = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, TRAIN_TOOL, str(recipe), "--output", str(output)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=tool_env())
    try:
        deadline = time.time() + 240
        last = None
        while time.time() < deadline and proc.poll() is None:
            runs = list(output.glob("*/*/checkpoints/last.keras"))
            if runs:
                last = runs[0]
                break
            time.sleep(0.2)
        assert last is not None, "no checkpoint appeared before the deadline"
        time.sleep(0.5)  # into the next epoch
        assert proc.poll() is None, "training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_dir = only_run_dir(output)
    done_before = len(history_rows(run_dir))
    assert 1 <= done_before < epochs

    resumed = run_train(["--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming" in resumed.stdout
    rows = history_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(epochs)), "history must be continuous"
    assert not list(run_dir.glob("checkpoints/.*")), "no temporary checkpoint files may remain"
    model = keras.saving.load_model(run_dir / "checkpoints" / "last.keras", safe_mode=True)
    assert int(model.optimizer.iterations.numpy()) == epochs * steps
    # The schedule continued: the logged rates follow one curve across the kill.
    assert all(float(r["lr"]) > 0 for r in rows)
    assert len(list(output.glob("*/*"))) == 1, "resume must continue in place, not start a new run"


def test_resume_of_a_folder_without_checkpoint_is_a_clear_error(tmp_path, street_data):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "recipe.yaml").write_text(write_recipe(tmp_path / "r.yaml", street_data).read_text())
    result = run_train(["--resume", str(run_dir)])
    assert result.returncode != 0
    assert "last.keras" in result.stderr


def test_wandb_failure_warns_and_training_goes_on(tmp_path, street_data, monkeypatch):
    import wandb

    from densevision.engine import tracking

    def refuse(**kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(wandb, "init", refuse)
    recipe = densevision.load_recipe(write_recipe(tmp_path / "r.yaml", street_data),
                                     ["tracking.wandb.mode=online"])
    with pytest.warns(UserWarning, match="Weights & Biases could not start.*no network"):
        assert tracking.start_wandb(recipe, tmp_path) is None


def test_train_then_evaluate_end_to_end_agree(tmp_path, street_data):
    """tools/evaluate.py on the last checkpoint reproduces the trainer's own full-resolution validation."""
    import json

    recipe = write_recipe(tmp_path / "e2e.yaml", street_data, train={"epochs": 1, "steps_per_epoch": 2})
    assert run_train([str(recipe), "--output", str(tmp_path / "out")]).returncode == 0
    run_dir = only_run_dir(tmp_path / "out")
    out_json = tmp_path / "metrics.json"
    evaluate = subprocess.run(
        [sys.executable, str(TRAIN_TOOL).replace("train.py", "evaluate.py"), str(run_dir / "recipe.yaml"),
         "--weights", str(run_dir / "checkpoints" / "last.keras"), "--split", "val", "--json", str(out_json)],
        capture_output=True, text=True, timeout=300, env=tool_env())
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    metrics = json.loads(out_json.read_text())
    assert {"miou", "global_accuracy", "mean_class_accuracy", "per_class_iou"} <= set(metrics)
    row = history_rows(run_dir)[-1]
    assert metrics["miou"] == pytest.approx(float(row["val_miou"]), abs=1e-6)
    assert metrics["global_accuracy"] == pytest.approx(float(row["val_global_accuracy"]), abs=1e-6)


def test_plot_history_draws_a_png(tmp_path, street_data):
    recipe = write_recipe(tmp_path / "p.yaml", street_data, train={"epochs": 2, "steps_per_epoch": 1})
    assert run_train([str(recipe), "--output", str(tmp_path / "out")]).returncode == 0
    run_dir = only_run_dir(tmp_path / "out")
    tool = str(TRAIN_TOOL).replace("train.py", "plot_history.py")
    result = subprocess.run([sys.executable, tool, str(run_dir)], capture_output=True, text=True, timeout=120,
                            env=tool_env())
    assert result.returncode == 0, result.stderr
    png = run_dir / "history.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_precision_fallbacks_warn_once_and_stay_usable():
    from densevision.engine.precision import apply_precision, effective_jit, has_gpu

    if has_gpu():
        pytest.skip("the CPU fallbacks apply only without a GPU")
    try:
        with pytest.warns(UserWarning, match="mixed_float16 needs a GPU"):
            assert apply_precision("mixed_float16") == "float32"
        assert keras.mixed_precision.global_policy().name == "float32"
        assert apply_precision("mixed_bfloat16") == "mixed_bfloat16"
        assert keras.mixed_precision.global_policy().compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    with pytest.warns(UserWarning, match="jit_compile"):
        assert effective_jit(True) is False


def test_full_disk_names_the_checkpoint(tmp_path, monkeypatch):
    import errno

    from densevision.engine.checkpoints import save_model_atomic

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    def disk_full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model, "save", disk_full)
    target = tmp_path / "checkpoints" / "last.keras"
    with pytest.raises(CheckpointError, match=f"{target}.*disk is full"):
        save_model_atomic(model, target)
    assert not list(target.parent.iterdir()), "no half-written file may remain"


def test_other_keras_backend_is_refused_with_advice():
    result = subprocess.run([sys.executable, "-c", "import densevision"], capture_output=True, text=True,
                            timeout=120, env=tool_env(KERAS_BACKEND="jax"))
    assert result.returncode != 0
    assert "KERAS_BACKEND='jax'" in result.stderr and "KERAS_BACKEND=tensorflow" in result.stderr


def test_missing_dataset_fails_before_any_run_folder_exists(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tmp_path / "no_such_camvid")
    result = run_train([str(recipe), "--output", str(tmp_path / "out")])
    assert result.returncode == 2
    assert "no_such_camvid" in result.stderr and "--demo" in result.stderr
    assert not list((tmp_path / "out").glob("*/*")), "a failed start must not leave a run folder behind"


def test_a_diverged_first_epoch_says_no_checkpoint_was_written(tmp_path):
    """A NaN before any epoch finished must not point at a last.keras that does not exist."""
    data = make_street_data(tmp_path / "data")
    recipe = write_recipe(tmp_path / "r.yaml", data, optimizer={"name": "sgd", "lr": 1e30, "momentum": 0.0},
                          train={"epochs": 1, "steps_per_epoch": 4})
    done = run_train([str(recipe), "--output", str(tmp_path / "runs")])
    assert done.returncode == 2, done.stderr[-2000:]
    error = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "loss became" in error[0]
    assert "no checkpoint was written yet" in error[0] and "last.keras" not in error[0]


# ------------------------------------------------------------------------------------------------ weight averaging
def _train_recording_raw_weights(recipe_path, output, resume_dir=None):
    """Train in-process; returns the trainer and the raw trainable weights after every step (numpy)."""
    from densevision.engine.trainer import Trainer

    trainer = Trainer(densevision.load_recipe(recipe_path), output_dir=str(output), resume_dir=resume_dir,
                      progress=False)
    steps = []
    original_build = trainer._make_steps

    def make_steps_recording():
        original_build()
        step = trainer.train_step

        def recorded(iterator):
            out = step(iterator)
            steps.append([v.numpy().copy() for v in trainer.model.trainable_variables])
            return out
        trainer.train_step = recorded

    trainer._make_steps = make_steps_recording
    trainer.fit()
    return trainer, steps


def test_weight_average_is_validated_saved_and_resumed_exactly(tmp_path, street_data):
    """optimizer.ema_momentum: the model validated and checkpointed is the exponential moving average of the raw
    weights (numpy, from the recorded steps: the first step's weights, then m * average + (1 - m) * weights);
    training itself is unchanged by it, and a resume carries on from the raw weights."""
    from densevision.engine.trainer import Trainer

    momentum = 0.6
    train = {"epochs": 2, "steps_per_epoch": 2, "val_every": 1}
    plain_recipe = write_recipe(tmp_path / "plain.yaml", street_data, optimizer={"name": "adam", "lr": 1e-2},
                                train=train)
    ema_recipe = write_recipe(tmp_path / "ema.yaml", street_data,
                              optimizer={"name": "adam", "lr": 1e-2, "ema_momentum": momentum}, train=train)
    _, plain_steps = _train_recording_raw_weights(plain_recipe, tmp_path / "plain")
    ema, ema_steps = _train_recording_raw_weights(ema_recipe, tmp_path / "ema")
    assert len(ema_steps) == 4
    for a, b in zip(plain_steps[-1], ema_steps[-1]):  # averaging never feeds back into training
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    average = [w.astype(np.float64) for w in ema_steps[0]]
    for weights in ema_steps[1:]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights)]
    assert max(float(np.abs(a - w).max()) for a, w in zip(average, ema_steps[-1])) > 1e-4, "the test needs movement"
    for got, want in zip(ema.model.trainable_variables, average):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)
    saved = keras.saving.load_model(ema.run_dir / "checkpoints" / "last.keras", safe_mode=True)
    for got, want in zip(saved.trainable_variables, average):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)

    # Killed during epoch 2 (after epoch 1's checkpoint), then resumed: the same raw weights and average at the end.
    trainer = Trainer(densevision.load_recipe(ema_recipe), output_dir=str(tmp_path / "killed"), progress=False)
    make_steps = trainer._make_steps

    def make_steps_stopping_in_epoch_2():
        make_steps()
        step, calls = trainer.train_step, []

        def stopping(iterator):
            calls.append(iterator)
            if len(calls) > 3:
                raise KeyboardInterrupt  # a kill mid-epoch: epoch 1's checkpoint is the last one written
            return step(iterator)
        trainer.train_step = stopping

    trainer._make_steps = make_steps_stopping_in_epoch_2
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    resumed, resumed_steps = _train_recording_raw_weights(ema_recipe, tmp_path / "unused",
                                                          resume_dir=str(trainer.run_dir))
    assert len(resumed_steps) == 2
    for a, b in zip(ema_steps[-1], resumed_steps[-1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for got, want in zip(resumed.model.trainable_variables, average):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)


def test_precise_bn_measures_the_images_augmentation_precise_bn_prepares(tmp_path, street_data):
    """augmentation.precise_bn: the statistics come from training images prepared with it (here full 32x32 frames,
    while training sees 16x16 crops), i.e. the first batch-norm layer's mean is the average of its inputs' channel
    means over exactly those batches (numpy reference)."""
    from densevision.data.pipeline import build_dataset
    from densevision.engine.trainer import Trainer

    batches = 2
    recipe_path = write_recipe(tmp_path / "pbn.yaml", street_data, train={"precise_bn_batches": batches},
                               augmentation={"train": [{"RandomCrop": {"height": 16, "width": 16}}],
                                             "precise_bn": [{"HorizontalFlip": {"p": 0.5}}]})
    trainer = Trainer(densevision.load_recipe(recipe_path), output_dir=str(tmp_path / "out"), progress=False)
    trainer._build()
    first_bn = next(layer for layer in trainer.model._flatten_layers()
                    if isinstance(layer, keras.layers.BatchNormalization))
    probe = keras.Model(trainer.model.inputs, first_bn.input)
    # the batches _precise_bn reads: the training stream of seed + 1 from the given epoch, prepared by precise_bn
    dataset = build_dataset(trainer.train_source,
                            trainer.task.preparer([{"HorizontalFlip": {"p": 0.5}}], training=True),
                            trainer.task.example_spec, trainer.global_batch, training=True, seed=1, start_epoch=3)
    means = []
    for batch in dataset.take(batches):
        assert batch["image"].shape[1:3] == (32, 32)
        means.append(np.mean(probe(batch["image"]).numpy(), axis=(0, 1, 2)))
    trainer._precise_bn(3)
    np.testing.assert_allclose(first_bn.moving_mean.numpy(), np.mean(means, axis=0), rtol=1e-4, atol=1e-5)

    with pytest.raises(densevision.RecipeError, match="augmentation.precise_bn"):
        densevision.load_recipe(recipe_path, ["augmentation.precise_bn=[{HorizontalFlp: {p: 0.5}}]"])


def test_precise_bn_images_that_cannot_share_a_batch_fall_back_to_the_training_crops(tmp_path, caplog):
    """Full frames of different sizes cannot be batched: precise BN warns, naming the key, and uses
    augmentation.train's crops instead of stopping the run."""
    from PIL import Image

    from densevision.data.demo_streets import make_demo_camvid
    from densevision.engine.trainer import Trainer

    data = make_demo_camvid(str(tmp_path / "mixed"), num_train=4, num_val=1, num_test=1, height=32, width=32)
    for name in sorted(p.name for p in (data / "train").glob("*.png"))[::2]:  # every other frame 40 wide
        for folder, resample in (("train", Image.BILINEAR), ("trainannot", Image.NEAREST)):
            path = data / folder / name
            Image.open(path).resize((40, 32), resample).save(path)
    recipe_path = write_recipe(tmp_path / "mixed.yaml", data, data={"batch_size": 2},
                               train={"epochs": 1, "steps_per_epoch": 1, "precise_bn_batches": 2},
                               augmentation={"train": [{"RandomCrop": {"height": 16, "width": 16}}],
                                             "precise_bn": []})
    with caplog.at_level("WARNING"):
        result = Trainer(densevision.load_recipe(recipe_path), output_dir=str(tmp_path / "out"),
                         progress=False).fit()
    assert "augmentation.precise_bn" in caplog.text and "augmentation.train" in caplog.text
    assert np.isfinite(result.history[-1]["val_loss"])
