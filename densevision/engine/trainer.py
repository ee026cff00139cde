"""The task-agnostic training loop: one custom distributed step that works under every tf.distribute strategy.

Why not ``model.fit``: with TF 2.21 / Keras 3.15.1, ``fit`` under MultiWorkerMirroredStrategy fails
(keras-team/keras#20585), while a ``strategy.run`` step inside ``tf.function`` over
``experimental_distribute_dataset`` works under the default, mirrored and multi-worker strategies alike (as TF
Model Garden's trainers do). The loop still drives Keras' own callbacks (CSVLogger, TensorBoard, wandb's
WandbMetricsLogger), so logging is the ecosystem's.

Batch semantics: ``data.batch_size`` is the *global* batch, split evenly over all replicas of all workers; the
loss is the mean over the global batch (``tf.nn.compute_average_loss``) and Keras' optimiser sums the replicas'
gradients, so one step equals one single-device step on the same global batch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from densevision.data.pipeline import build_dataset, steps_per_epoch
from densevision.engine import checkpoints as ckpt
from densevision.engine import tracking
from densevision.engine.distribute import DistributeError, is_chief, make_strategy, scratch_dir
from densevision.data.sources import open_source
from densevision.engine.compat import check_model_matches_data
from densevision.engine.evaluator import evaluate, make_eval_step
from densevision.engine.optim import build_optimizer
from densevision.errors import DensevisionError
from densevision.engine.precise_bn import recompute_batchnorm_statistics
from densevision.engine.precision import apply_precision, effective_jit
from densevision.models import build_model
from densevision.progress import progress_bar
from densevision.runs import CHECKPOINTS, RECIPE_FILE  # the run folder's layout, read by every command
from densevision.recipes import Recipe, save_recipe
from densevision.registry import TASKS

log = logging.getLogger(__name__)

LAST = CHECKPOINTS["last"]
BEST = CHECKPOINTS["best"]
HISTORY = "history.csv"


class DivergedError(DensevisionError, FloatingPointError):
    """The loss became NaN or infinite: the message says where and which checkpoint is the last good one."""


@dataclasses.dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    epochs_done: int
    monitor: str
    best_value: float | None
    best_epoch: int | None
    history: list[dict[str, Any]]


def _scalar_logs(prefix: str, results: dict[str, Any]) -> dict[str, float]:
    """Numbers only (nested per-class tables stay out of the CSV), ``prefix`` prepended to each key."""
    return {f"{prefix}{k}": float(v) for k, v in results.items() if isinstance(v, (int, float, np.number))}


def _to_numpy(tree) -> dict[str, np.ndarray]:
    """Host copies widened to 64 bits, so summed counts (confusion matrices) cannot overflow over an epoch."""
    out = {}
    for k, v in tree.items():
        v = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        out[k] = v.astype(np.int64 if np.issubdtype(v.dtype, np.integer) else np.float64)
    return out


class Trainer:
    """Trains one recipe into one run folder.

    Args:
        recipe: the validated recipe.
        output_dir: the parent of the run folder (default ``recipe.output.dir``); the run goes to
            ``<output_dir>/<recipe.name>/<timestamp>/``.
        resume_dir: an existing run folder to continue in place (its ``checkpoints/last.keras``).
        strategy: a ready strategy (default: the recipe's ``distribute`` section).
        progress: show a tqdm bar per epoch.
    """

    def __init__(self, recipe: Recipe, output_dir: str | None = None, resume_dir: str | None = None,
                 strategy: tf.distribute.Strategy | None = None, progress: bool = True):
        self.recipe = recipe
        self.strategy = strategy or make_strategy(recipe.distribute.strategy, recipe.distribute.devices)
        self.chief = is_chief(self.strategy)
        self.progress = progress and self.chief
        self.resuming = resume_dir is not None
        if self.resuming:
            self.run_dir = Path(resume_dir)
            if not (self.run_dir / LAST).is_file():
                raise ckpt.CheckpointError(f"cannot resume {self.run_dir}: {self.run_dir / LAST} does not exist")
        else:
            self.run_dir = None  # created once data and model are known to be usable (see fit)
        self.output_dir = output_dir or recipe.output.dir

    def _open_run_dir(self) -> None:
        """Create the run folder (chief, new runs) only after data and model were built without error."""
        if self.run_dir is None and self.chief:
            self.run_dir = ckpt.new_run_dir(self.output_dir, self.recipe.name)
            save_recipe(self.recipe, self.run_dir / RECIPE_FILE)
        # Every worker saves checkpoints (saving may need all of them); only the chief's land in the run folder.
        self.write_dir = self.run_dir if self.chief else Path(scratch_dir())

    # ------------------------------------------------------------------------------------------ set-up
    def _build(self):
        recipe, strategy = self.recipe, self.strategy
        keras.utils.set_random_seed(recipe.train.seed)
        self.policy = apply_precision(recipe.precision)
        self.jit = effective_jit(recipe.jit_compile)

        self.train_source = open_source(recipe, recipe.data.train_split)
        self.val_source = open_source(recipe, recipe.data.val_split)
        check_model_matches_data(recipe, self.train_source.info)
        self.task = TASKS.get(recipe.task)(recipe, self.train_source.info)
        self.global_batch = recipe.data.batch_size
        replicas = strategy.num_replicas_in_sync
        if self.global_batch % replicas:
            # Training batches are whole (drop_remainder) and split evenly, so no replica trains on fewer examples.
            raise DistributeError(
                f"{recipe.source or 'recipe'}: data.batch_size={self.global_batch} must be divisible by the "
                f"{replicas} replicas of distribute.strategy={recipe.distribute.strategy!r} (it is the global "
                f"batch), e.g. data.batch_size={replicas * max(1, round(self.global_batch / replicas))}")
        self.steps_per_epoch = recipe.train.steps_per_epoch or steps_per_epoch(len(self.train_source), self.global_batch)

        with strategy.scope():
            self.model = build_model(recipe)
            self.optimizer = build_optimizer(recipe, self.steps_per_epoch,
                                             mixed_float16=self.policy == "mixed_float16")
            self.model.compile(optimizer=self.optimizer)  # so .keras checkpoints carry the optimiser state
            self.optimizer.build(self.model.trainable_variables)
        self.epochs_done = 0
        if recipe.train.init_weights and not self.resuming:
            ckpt.load_model_weights(self.model, recipe.train.init_weights)
        if self.resuming:
            if self.chief:  # a kill -9 during a checkpoint write leaves its temporary file behind
                ckpt.clean_stale_temp_files(self.run_dir)
            ckpt.restore_training_state(self.model, self.run_dir / LAST)
            self._swap_average()  # checkpoints hold the average as the model's weights: training resumes on the raw
            self.epochs_done = int(self.optimizer.iterations.numpy()) // self.steps_per_epoch
            if self.epochs_done >= recipe.train.epochs:  # nothing left to train ("epoch 9/8" otherwise)
                raise ckpt.finished_run_error(self.run_dir, self.epochs_done, recipe.train.epochs)

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        # Resume exactly where the data stream stopped, even when train.steps_per_epoch is not a whole data epoch.
        data_epoch, skip = divmod(self.epochs_done * self.steps_per_epoch,
                                  steps_per_epoch(len(self.train_source), self.global_batch))
        train_ds = build_dataset(
            self.train_source, self.task.preparer(recipe.augmentation.train, training=True), self.task.example_spec,
            self.global_batch, training=True, seed=recipe.train.seed, start_epoch=data_epoch, skip_batches=skip,
            num_parallel_calls=recipe.data.num_parallel_calls, shuffle=recipe.data.shuffle).with_options(options)
        self.train_iter = iter(strategy.experimental_distribute_dataset(train_ds))
        # Validation prepares examples exactly as densevision evaluate does (augmentation.val), through the same loop.
        # evaluate() shards it by data (every worker the same number of steps, some shares of the last batch empty).
        self.val_dataset = build_dataset(
            self.val_source, self.task.preparer(recipe.augmentation.val, training=False), self.task.example_spec,
            recipe.data.eval_batch_size, training=False, num_parallel_calls=recipe.data.num_parallel_calls)
        self._make_steps()

    def _make_steps(self):
        strategy, model, task, optimizer = self.strategy, self.model, self.task, self.optimizer
        global_batch = self.global_batch
        loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

        def replica_train(batch):
            with tf.GradientTape() as tape:
                outputs = task.forward(model, batch["image"], training=True)
                per_example = task.loss(batch, outputs)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                scaled = optimizer.scale_loss(loss) if loss_scaled else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss, task.metric_sums(batch, outputs)

        def train_step(iterator):
            loss, sums = strategy.run(replica_train, args=(next(iterator),))
            reduce = lambda t: strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None)  # noqa: E731
            return reduce(loss), tf.nest.map_structure(reduce, sums)

        self.train_step = tf.function(train_step, jit_compile=self.jit)
        self.eval_step = make_eval_step(model, task, strategy, with_loss=True)

    # ------------------------------------------------------------------------------------------ loop
    def _evaluate(self) -> dict[str, float]:
        results, _ = evaluate(self.model, self.task, self.val_dataset, steps=self.recipe.train.val_steps or None,
                              progress=False, strategy=self.strategy, with_loss=True, step_fn=self.eval_step)
        return _scalar_logs("val_", results)

    def _precise_bn(self, epoch: int) -> None:
        recipe = self.recipe
        # Measured on CamVid (FC-DenseNet56, Adam, 240 steps, seed 1): statistics of full 360x480 training frames
        # gave 22.7 val mIoU against 19.9 from the 224x224 training crops; padded borders weigh less in a full frame.
        transforms = recipe.augmentation.precise_bn
        try:
            self._precise_bn_with(recipe.augmentation.train if transforms is None else transforms, epoch)
        except tf.errors.InvalidArgumentError as error:
            if transforms is None:
                raise
            # Images of different sizes cannot share a batch. Training batches them through augmentation.train,
            # so those always can: warn and use them rather than stop a run (the next pass starts afresh).
            log.warning("augmentation.precise_bn: %s training images of different sizes cannot share a batch of "
                        "%d (%s); precise BN uses augmentation.train's images instead. Add a crop or a resize to "
                        "augmentation.precise_bn.", recipe.data.train_split, self.global_batch,
                        str(error).splitlines()[0][:200])
            self._precise_bn_with(recipe.augmentation.train, epoch)

    def _precise_bn_with(self, transforms: list, epoch: int) -> None:
        recipe = self.recipe
        dataset = build_dataset(
            self.train_source, self.task.preparer(transforms, training=True), self.task.example_spec,
            self.global_batch, training=True, seed=recipe.train.seed + 1, start_epoch=epoch,
            num_parallel_calls=recipe.data.num_parallel_calls)
        with self.strategy.scope():
            recompute_batchnorm_statistics(self.model, dataset, recipe.train.precise_bn_batches,
                                           progress=self.progress)

    def _swap_average(self) -> None:
        """Exchange the model's trainable weights with the optimiser's moving average of them (``optimizer.ema_momentum``).

        Validation, precise BN and checkpoints see the average (as Keras' ``fit`` leaves it in the model after
        training); the raw weights wait in the optimiser's average slots meanwhile, so a second swap, or a resume
        from a checkpoint, carries on training exactly where it was. No-op without ``optimizer.ema_momentum``.
        """
        inner = self._base_optimizer
        if not inner.use_ema:
            return
        with self.strategy.scope():
            # Keras keeps the average in a private list, in the order of the variables the optimiser was built on
            for var, average in zip(self.model.trainable_variables, inner._model_variables_moving_average):
                raw = tf.identity(var.value)
                var.assign(average.value)
                average.assign(raw)

    @property
    def _base_optimizer(self) -> keras.optimizers.Optimizer:
        """The optimiser itself, unwrapped from mixed_float16's LossScaleOptimizer."""
        return getattr(self.optimizer, "inner_optimizer", self.optimizer)

    def _current_lr(self) -> float:
        inner = self._base_optimizer
        schedule = inner._learning_rate
        value = schedule(inner.iterations) if callable(schedule) else schedule
        return float(keras.ops.convert_to_numpy(value))

    def _log_pictures(self, epoch: int, wandb_run, last: bool = False) -> None:
        every = self.recipe.train.pictures_every  # 0: never; else every N epochs and after the last
        if not (self.chief and every and ((epoch + 1) % every == 0 or last) and self.recipe.train.num_pictures):
            return
        samples = tracking.sample_outputs(self.model, self.task, self.val_dataset, self.recipe.train.num_pictures)
        tracking.log_pictures(self.task, samples, self.run_dir, epoch, wandb_run, self.recipe.tracking.tensorboard)

    def fit(self) -> TrainResult:
        """Train for the recipe's epochs (from the checkpoint's epoch when resuming) and return the result."""
        self._build()
        self._open_run_dir()
        recipe = self.recipe
        monitor = recipe.train.monitor
        better = (lambda a, b: a > b) if recipe.train.monitor_mode == "max" else (lambda a, b: a < b)
        history = ckpt.truncate_history(self.run_dir / HISTORY, self.epochs_done) if self.chief else []
        best_value, best_epoch = None, None
        for row in history:
            if row.get(monitor) not in (None, ""):
                value = float(row[monitor])
                if best_value is None or better(value, best_value):
                    best_value, best_epoch = value, int(row["epoch"])

        wandb_run = tracking.start_wandb(recipe, self.run_dir, resume=self.resuming) if self.chief else None
        callbacks = tracking.build_callbacks(recipe, self.run_dir, self.model, wandb_run, append=self.resuming,
                                             chief=self.chief, initial_step=self.epochs_done * self.steps_per_epoch)
        callbacks.on_train_begin()
        if self.epochs_done and self.chief:
            print(f"Resuming {self.run_dir} at epoch {self.epochs_done + 1}/{recipe.train.epochs}")
        warned_monitor = False
        budget_end = time.monotonic() + 60 * recipe.train.max_minutes if recipe.train.max_minutes else None
        if budget_end and isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Each worker's clock would decide alone, and a worker that stops first leaves the others blocked.
            log.warning("train.max_minutes is ignored under multi_worker: workers must stop at the same epoch")
            budget_end = None
        epochs_run = self.epochs_done
        for epoch in range(self.epochs_done, recipe.train.epochs):
            callbacks.on_epoch_begin(epoch)
            loss_sum, sums = 0.0, {}
            started = time.perf_counter()
            # redirected: no bar; the line printed after each epoch is the log
            bar = progress_bar(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{recipe.train.epochs}",
                               unit="step", enabled=self.progress, dynamic_ncols=True)
            for step in range(self.steps_per_epoch):
                loss, batch_sums = self.train_step(self.train_iter)
                loss = float(loss)
                if not math.isfinite(loss):
                    last = self.run_dir / LAST if self.run_dir else None
                    where = (f"the last good checkpoint is {last}" if last is not None and last.is_file()
                             else "no checkpoint was written yet (no epoch had finished)")
                    bar.close()  # so the error starts on its own line
                    raise DivergedError(
                        f"loss became {loss} at epoch {epoch + 1}, step {step + 1}: lower optimizer.lr or check "
                        f"the data; {where}")
                loss_sum += loss
                for k, v in _to_numpy(batch_sums).items():
                    sums[k] = sums.get(k, 0) + v
                seen = (step + 1) * self.global_batch
                bar.set_postfix(loss=f"{loss_sum / (step + 1):.4f}",
                                img_s=f"{seen / (time.perf_counter() - started):.1f}")
                bar.update(1)
                callbacks.on_train_batch_end(step, {"loss": loss})
            bar.close()
            logs = {"loss": loss_sum / self.steps_per_epoch, **_scalar_logs("", self.task.metric_results(sums)),
                    "lr": self._current_lr()}
            out_of_time = budget_end is not None and time.monotonic() >= budget_end
            self._swap_average()  # validate and save the averaged weights; swapped back before the next epoch
            if (epoch + 1) % recipe.train.val_every == 0 or epoch + 1 == recipe.train.epochs or out_of_time:
                if recipe.train.precise_bn_batches:
                    self._precise_bn(epoch)
                logs.update(self._evaluate())
            logs["epoch_seconds"] = time.perf_counter() - started
            if self.chief:
                print(f"epoch {epoch + 1}/{recipe.train.epochs}  " + "  ".join(f"{k}={v:.4g}" for k, v in logs.items()))
            callbacks.on_epoch_end(epoch, logs)  # history.csv row first: a resume drops rows past the checkpoint
            history.append({"epoch": epoch, **logs})

            ckpt.save_model_atomic(self.model, self.write_dir / LAST)
            if monitor in logs:
                if best_value is None or better(logs[monitor], best_value):
                    best_value, best_epoch = logs[monitor], epoch
                    ckpt.copy_atomic(self.write_dir / LAST, self.write_dir / BEST)
            elif not warned_monitor and "val_loss" in logs and self.chief:
                warned_monitor = True
                log.warning("train.monitor=%r is not among the logged metrics %s; best.keras follows the "
                            "last epoch", monitor, sorted(logs))
                ckpt.copy_atomic(self.write_dir / LAST, self.write_dir / BEST)
            self._log_pictures(epoch, wandb_run, last=epoch + 1 == recipe.train.epochs or out_of_time)
            epochs_run = epoch + 1
            if epoch + 1 < recipe.train.epochs and not out_of_time:
                self._swap_average()  # back to the raw weights to train on; after the last epoch the average stays
            if out_of_time and epoch + 1 < recipe.train.epochs:
                if self.chief:
                    print(f"train.max_minutes={recipe.train.max_minutes} reached after epoch {epoch + 1}; stopping")
                break
        callbacks.on_train_end()
        if self.chief and best_epoch is None and (self.write_dir / LAST).is_file() \
                and not (self.write_dir / BEST).is_file():
            ckpt.copy_atomic(self.write_dir / LAST, self.write_dir / BEST)
        if self.chief:
            tracking.plot_curves(self.run_dir)
        tracking.finish_wandb(wandb_run, self.run_dir, recipe)
        result = TrainResult(self.run_dir, epochs_run, monitor, best_value, best_epoch, history)
        if self.chief:
            print(summary(result))
        return result


def summary(result: TrainResult) -> str:
    """The one-screen report printed at the end of a run."""
    best = "n/a" if result.best_value is None else f"{result.best_value:.4f} at epoch {result.best_epoch + 1}"
    lines = [
        "", "=" * 72,
        f"run folder     {result.run_dir}",
        f"epochs         {result.epochs_done}",
        f"best {result.monitor:<10}{best}",
        f"checkpoints    {result.run_dir / LAST}",
        f"               {result.run_dir / BEST}",
        f"history        {result.run_dir / HISTORY}",
        f"recipe         {result.run_dir / RECIPE_FILE}",
        "=" * 72,
    ]
    return "\n".join(lines)


def train(recipe: Recipe, output_dir: str | None = None, resume_dir: str | None = None, **kwargs) -> TrainResult:
    """Train ``recipe``; see :class:`Trainer`."""
    return Trainer(recipe, output_dir=output_dir, resume_dir=resume_dir, **kwargs).fit()
