"""tf.distribute strategies from the recipe's ``distribute`` section, and who writes what under them."""

from __future__ import annotations

import json
import logging
import os
import tempfile

import tensorflow as tf

from densevision.errors import DensevisionError

log = logging.getLogger(__name__)


class DistributeError(DensevisionError, RuntimeError):
    """A distribution set-up that cannot work (e.g. multi_worker without TF_CONFIG)."""


def make_strategy(strategy: str = "auto", devices: list[str] | None = None) -> tf.distribute.Strategy:
    """Create the strategy a recipe asks for.

    ``auto``: MirroredStrategy when more than one GPU is visible, else the default (single-device) strategy.
    ``multi_worker``: MultiWorkerMirroredStrategy configured by the ``TF_CONFIG`` environment variable; create it
    at program start, before any other TensorFlow op, as TensorFlow requires.
    """
    if strategy == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise DistributeError(
                "distribute.strategy=multi_worker needs the TF_CONFIG environment variable, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}} '
                "(see README, 'Multi-machine training')"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if strategy == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if strategy == "default":
        return tf.distribute.get_strategy()
    if strategy == "one_device":
        device = (devices or [None])[0] or ("/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0")
        return tf.distribute.OneDeviceStrategy(device)
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    raise DistributeError(f"unknown distribute.strategy {strategy!r}")


def task_identity() -> tuple[str, int]:
    """``(task_type, task_index)`` from TF_CONFIG, or ``("chief", 0)`` for a single process."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    return task.get("type", "chief"), int(task.get("index", 0))


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """The one process that writes checkpoints, logs and W&B: the ``chief`` task, or worker 0 without a chief."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    if not config:
        return True
    task_type, index = task_identity()
    has_chief = "chief" in (config.get("cluster") or {})
    return task_type == "chief" or (not has_chief and task_type == "worker" and index == 0)


def scratch_dir(prefix: str = "densevision-worker-") -> str:
    """A private temporary folder for a non-chief worker's writes (checkpoints must be written by all workers)."""
    return tempfile.mkdtemp(prefix=prefix)
