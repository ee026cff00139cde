"""tf.distribute without GPUs: MirroredStrategy over 2 logical CPUs, MultiWorkerMirroredStrategy over 2 processes."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from densevision.data.demo_people import make_demo_coco_keypoints
from densevision.data.image_folder import make_demo_image_folder
from densevision.data.pipeline import build_dataset
from densevision.data.sources import open_source
from densevision.engine.checkpoints import load_checkpoint
from densevision.engine.evaluator import evaluate
from densevision.recipes import load_recipe
from densevision.registry import TASKS
from engine_utils import ROOT, TRAIN_TOOL, free_port, make_street_data, only_run_dir, tool_env, write_recipe

MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import densevision
    from densevision.engine.distribute import DistributeError
    from densevision.engine.trainer import Trainer
    recipe_path, out = sys.argv[1], sys.argv[2]
    losses = {}
    for name, overrides in [("mirrored", ["distribute.strategy=mirrored", "distribute.devices=[/cpu:0,/cpu:1]"]),
                            ("single", ["distribute.strategy=default"])]:
        recipe = densevision.load_recipe(recipe_path, overrides)
        trainer = Trainer(recipe, output_dir=f"{out}/{name}", progress=False)
        result = trainer.fit()
        losses[name] = {"replicas": trainer.strategy.num_replicas_in_sync,
                        "loss": [row["loss"] for row in result.history],
                        "val_loss": [row["val_loss"] for row in result.history]}
    # An odd global batch cannot be split evenly over the 2 replicas: one clear error before any run folder.
    recipe = densevision.load_recipe(recipe_path, ["distribute.strategy=mirrored", "distribute.devices=[/cpu:0,/cpu:1]",
                                                   "data.batch_size=3"])
    try:
        Trainer(recipe, output_dir=f"{out}/odd", progress=False).fit()
    except DistributeError as error:
        losses["odd_batch_error"] = str(error)
    print("RESULT" + json.dumps(losses))
""")


def test_mirrored_over_two_logical_cpus_matches_single_device(tmp_path):
    data = make_street_data(tmp_path / "streets", num_val=3)  # validation batches of 2: the last leaves replica 1 none
    # Synchronised batch norm: the statistics of the global batch, as on one device.
    # Weight averaging and precise BN on: validation swaps the mirrored average in and out on both replicas, and
    # re-estimates the mirrored statistics in a compiled forward pass.
    recipe = write_recipe(tmp_path / "m.yaml", data, model={"synchronized_bn": True},
                          optimizer={"name": "adam", "lr": 1e-3, "ema_momentum": 0.5},
                          train={"epochs": 2, "steps_per_epoch": 3, "precise_bn_batches": 2})
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(recipe), str(tmp_path / "out")], capture_output=True,
                            text=True, timeout=400, env=tool_env(), cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.split("RESULT", 1)[1])
    assert losses["mirrored"]["replicas"] == 2 and losses["single"]["replicas"] == 1
    for key in ("loss", "val_loss"):
        # Per-replica (unsynchronised) statistics already move the loss by ~2e-4 here; synchronised ones agree to ~1e-7.
        assert losses["mirrored"][key] == pytest.approx(losses["single"][key], rel=1e-5), key
    assert "data.batch_size=3 must be divisible by the 2 replicas" in losses["odd_batch_error"]
    assert not (tmp_path / "out" / "odd").exists()


def run_two_workers(args: list[str], logs: Path, timeout: float = 400, program: str = TRAIN_TOOL,
                    **env) -> tuple[list, list[str]]:
    """Run ``PROGRAM ARGS`` (default ``tools/train.py``) as workers 0 and 1 of a loopback cluster; ``(exit codes,
    log tails)``."""
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    procs, files = [], []
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            files.append(open(logs / f"worker{index}.log", "w"))  # a file, not a pipe: a full pipe blocks a worker
            procs.append(subprocess.Popen([sys.executable, program, *args], stdout=files[-1],
                                          stderr=subprocess.STDOUT, env=tool_env(TF_CONFIG=tf_config, **env),
                                          cwd=ROOT, start_new_session=True))
        deadline = time.time() + timeout
        while time.time() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.5)
        codes = [p.poll() for p in procs]
    finally:
        # A worker whose peer never joins blocks and ignores SIGTERM: SIGKILL the whole process group.
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
        for file in files:
            file.close()
    return codes, [(logs / f"worker{index}.log").read_text()[-3000:] for index in range(2)]


def test_multi_worker_uneven_validation_two_processes(tmp_path):
    """Two workers on loopback; the validation split (3 images, global batch 2) leaves worker 1 an empty share of
    the last batch; precise BN and weight averaging run under the strategy too. Both exit 0 and the chief's
    validation numbers equal a single-device evaluation of the weights it saved (the average)."""
    data = make_street_data(tmp_path / "streets", num_val=3)
    recipe_path = write_recipe(tmp_path / "mw.yaml", data, distribute={"strategy": "multi_worker"},
                               optimizer={"name": "adam", "lr": 1e-3, "ema_momentum": 0.5},
                               train={"epochs": 2, "steps_per_epoch": 2, "precise_bn_batches": 1})
    output = tmp_path / "out"
    codes, logs = run_two_workers([str(recipe_path), "--output", str(output)], tmp_path,
                                  DENSEVISION_CACHE=str(tmp_path / "cache"))
    assert codes == [0, 0], f"exit codes {codes}\n" + "\n-----\n".join(logs)
    run_dir = only_run_dir(output)  # only the chief wrote a run folder
    with open(run_dir / "history.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2

    # The reference: the chief's last checkpoint evaluated on one device, every image once.
    recipe = load_recipe(recipe_path, ["distribute.strategy=default"])
    source = open_source(recipe, "val")
    task = TASKS.get("segmentation")(recipe, source.info)
    dataset = build_dataset(source, task.preparer([], False), task.example_spec, 2, training=False)
    results, sums = evaluate(load_checkpoint(run_dir / "checkpoints" / "last.keras", recipe), task, dataset,
                             progress=False, with_loss=True)
    assert np.sum(sums["confusion"]) > 0
    for key in ("loss", "miou", "global_accuracy", "mean_class_accuracy"):
        assert float(rows[-1][f"val_{key}"]) == pytest.approx(results[key], rel=1e-5, abs=1e-7), key


MULTI_WORKER_EVAL_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TensorFlow op
    import keras
    import densevision
    from densevision.data.pipeline import build_dataset
    from densevision.data.sources import open_source
    from densevision.engine.distribute import is_chief
    from densevision.engine.evaluator import evaluate
    from densevision.models import build_model
    from densevision.registry import TASKS

    recipe = densevision.load_recipe(sys.argv[1], json.loads(sys.argv[2]), demo=True)
    source = open_source(recipe, recipe.data.val_split)
    task = TASKS.get(recipe.task)(recipe, source.info)
    batch_size = next(b for b in range(2, len(source)) if len(source) % b == 1)  # worker 1's last share: empty
    dataset = build_dataset(source, task.preparer([], False), task.example_spec, batch_size, training=False)
    collected = {}
    finalize = task.metric_results
    task.metric_results = lambda sums, gathered=None: (collected.setdefault(len(collected), gathered),
                                                       finalize(sums, gathered))[1]
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model(recipe)
    results = {"multi_worker": evaluate(model, task, dataset, progress=False, strategy=strategy, with_loss=True)[0],
               "single": evaluate(model, task, dataset, progress=False, strategy=tf.distribute.get_strategy(),
                                  with_loss=True)[0]}
    if is_chief():
        print("RESULT" + json.dumps({"examples": len(source), "batch_size": batch_size,
                                     "results": {k: densevision.engine.evaluator.flatten_results(v)
                                                 for k, v in results.items()},
                                     "image_ids": [np.asarray(c["image_id"]).tolist() for c in collected.values()]}))
""")


def test_multi_worker_collected_pose_metrics_with_an_empty_share(tmp_path):
    """COCO AP under two workers on loopback: every instance gathered to the chief once, in order, although worker
    1's share of the last batch is empty; AP, PCK and loss equal the same weights evaluated on one device."""
    people = make_demo_coco_keypoints(tmp_path / "people", num_train=1, num_val=4, size=64)
    script = tmp_path / "evaluate_mw.py"
    script.write_text(MULTI_WORKER_EVAL_SCRIPT)
    overrides = [f"data.root={people}", "model.num_features=16", "model.zero_init_heads=false"]
    codes, logs = run_two_workers([str(ROOT / "recipes" / "hourglass_coco.yaml"), json.dumps(overrides)], tmp_path,
                                  program=str(script), DENSEVISION_CACHE=str(tmp_path / "cache"))
    assert codes == [0, 0], f"exit codes {codes}\n" + "\n-----\n".join(logs)
    record = json.loads((tmp_path / "worker0.log").read_text().split("RESULT", 1)[1].splitlines()[0])
    assert record["examples"] % record["batch_size"] == 1
    multi_worker, single = record["image_ids"]
    assert multi_worker == single and len(single) == record["examples"]
    results = record["results"]
    assert results["multi_worker"].pop("loss") == pytest.approx(results["single"].pop("loss"), rel=1e-5)
    assert "ap" in results["single"]
    assert results["multi_worker"] == pytest.approx(results["single"], abs=1e-6, nan_ok=True)


@pytest.mark.slow
def test_readme_multi_worker_demo_command(tmp_path):
    """README's loopback command: FC-DenseNet56 on the demo streets, one epoch, validation batch 1 (worker 1's
    share of every validation batch is empty)."""
    output = tmp_path / "out"
    codes, logs = run_two_workers(
        ["recipes/tiramisu56_camvid.yaml", "--demo", "--set", "distribute.strategy=multi_worker", "--set",
         "train.epochs=1", "--set", "tracking.wandb.mode=disabled", "--output", str(output)],
        tmp_path, timeout=900, DENSEVISION_CACHE=str(tmp_path / "cache"))
    assert codes == [0, 0], f"exit codes {codes}\n" + "\n-----\n".join(logs)
    with open(only_run_dir(output) / "history.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 1 and 0 <= float(rows[0]["val_miou"]) <= 1 and float(rows[0]["val_loss"]) > 0


UNEVEN_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import densevision
    from densevision.data.pipeline import build_dataset
    from densevision.data.sources import open_source
    from densevision.engine.evaluator import evaluate, flatten_results, make_eval_step
    from densevision.models import build_model
    from densevision.registry import TASKS

    def listed(tree):
        return {key: np.asarray(value).tolist() for key, value in tree.items()}

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    record = {}
    for name, (recipe_path, overrides) in json.loads(sys.argv[1]).items():
        recipe = densevision.load_recipe(recipe_path, overrides, demo=True)
        source = open_source(recipe, recipe.data.val_split)
        task = TASKS.get(recipe.task)(recipe, source.info)
        # The smallest global batch whose last batch holds one example: the second replica's share is empty.
        batch_size = next(b for b in range(2, len(source)) if len(source) % b == 1)
        dataset = build_dataset(source, task.preparer(recipe.augmentation.val, False), task.example_spec,
                                batch_size, training=False)
        out = {"examples": len(source), "batch_size": batch_size}
        finalize = task.metric_results
        task.metric_results = lambda sums, collected=None: (out[run].update(collected=listed(collected or {})),
                                                            finalize(sums, collected))[1]
        keras.utils.set_random_seed(0)
        model = build_model(recipe)
        with strategy.scope():
            twin = build_model(recipe)
        twin.set_weights(model.get_weights())
        for run, net, where in (("single", model, None), ("mirrored", twin, strategy)):
            out[run] = {}
            results, sums = evaluate(net, task, dataset, progress=False, strategy=where, with_loss=True)
            out[run].update(results=flatten_results(results), sums=listed(sums))
        # An empty share alone (what the second replica gets): zero sums and count, nothing collected.
        # (list: an iterator left half-read keeps a loader thread that can block the interpreter's exit)
        empty = {key: value[:0] for key, value in list(dataset)[0].items()}
        sums, collected = make_eval_step(model, task, with_loss=True)(empty)
        out["empty"] = {"sums": listed(sums), "collected_rows": [int(value.shape[0]) for value in collected.values()]}
        record[name] = out
    print("RESULT" + json.dumps(record))
""")


def test_uneven_validation_under_mirrored_strategy_equals_single_device(tmp_path):
    """A validation split that does not divide by the global batch, whose last batch leaves the second replica
    nothing, for every task: the same sums, loss, collected answers (COCO AP) and metrics as on one device."""
    streets = make_street_data(tmp_path / "streets", num_val=3)
    shapes = make_demo_image_folder(tmp_path / "shapes", per_class={"train": 1, "val": 1}, num_scenes=0)
    people = make_demo_coco_keypoints(tmp_path / "people", num_train=1, num_val=4, size=64)
    runs = {
        "segmentation": [str(write_recipe(tmp_path / "seg.yaml", streets)), []],
        # ResNet50 (batch norm in every block), random weights, on the demo shapes (5 classes, 5 val images).
        "classification": [str(ROOT / "recipes" / "resnet50_classify.yaml"),
                           [f"data.root={shapes}", "model.num_classes=5", "model.input_shape=[32,32,3]",
                            "data.image_size=[32,32]"]],
        # COCO keypoints (one or two people per image): AP from the collected tensors.
        "pose": [str(ROOT / "recipes" / "hourglass_coco.yaml"),
                 [f"data.root={people}", "model.num_features=16", "model.zero_init_heads=false"]],
    }
    result = subprocess.run([sys.executable, "-c", UNEVEN_SCRIPT, json.dumps(runs)], capture_output=True, text=True,
                            timeout=400, env=tool_env(DENSEVISION_CACHE=str(tmp_path / "cache")), cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.split("RESULT", 1)[1])
    assert sorted(record) == ["classification", "pose", "segmentation"]
    for name, out in record.items():
        single, mirrored = out["single"], out["mirrored"]
        assert out["examples"] % out["batch_size"] == 1, name
        # Additive sums are exact; the loss is a float sum in another order.
        assert mirrored["sums"] == single["sums"], name
        assert mirrored["results"].pop("loss") == pytest.approx(single["results"].pop("loss"), rel=1e-5), name
        assert mirrored["results"] == pytest.approx(single["results"], abs=1e-6, nan_ok=True), name
        # Every example counted once, none padded: against the dataset's own size.
        if name == "classification":
            assert single["sums"]["count"] == out["examples"]
        if name == "segmentation":  # 32x32 labelled pixels per image, void (label 11) excluded
            assert 0 < np.sum(single["sums"]["confusion"]) <= out["examples"] * 32 * 32
        if name == "pose":
            assert mirrored["collected"]["image_id"] == single["collected"]["image_id"]
            assert len(single["collected"]["image_id"]) == out["examples"]
            for key in ("keypoints", "scores", "affine", "box_score"):
                np.testing.assert_allclose(np.asarray(mirrored["collected"][key]),
                                           np.asarray(single["collected"][key]), atol=1e-4, err_msg=key)
            assert "ap" in single["results"]
        empty = out["empty"]
        assert empty["sums"]["_count"] == 0 and empty["sums"]["_loss_sum"] == 0, name
        assert all(not np.any(value) for value in empty["sums"].values()), name
        assert set(empty["collected_rows"]) <= {0}, name
