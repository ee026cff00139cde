"""tf.data input pipelines: any source + any task's preparation -> batches of example dicts.

Training streams are infinite and made of whole epochs: epoch ``e`` visits every example once in an order
shuffled with a seed derived from ``(seed, e)``, and example ``i`` of epoch ``e`` is augmented with a seed derived
from ``(seed, e, i)``. Each epoch is cut to a multiple of the batch size, so batches never straddle epochs and a
run resumed at ``start_epoch`` sees exactly the batches an uninterrupted run would have seen.

Samples are dicts (``{"image", <targets>, "meta"}``); the task turns each into an example dict (augmentation
and target encoding) and the pipeline batches it unchanged, whatever its keys. Loading and preparation run in Python (``tf.numpy_function``) on ``num_parallel_calls`` threads, with
deterministic output order.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np

from densevision.data.errors import DatasetError

import tensorflow as tf

#: ``fn(sample dict, seed) -> example dict`` (a task's ``preparer``)
Prepare = Callable[[dict, Optional[int]], dict]


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches in one training epoch (the remainder is dropped): ``num_examples // batch_size``.

    Raises:
        DatasetError: fewer examples than one batch.
    """
    if batch_size < 1:
        raise DatasetError(f"batch_size must be at least 1, got {batch_size}")
    if num_examples < batch_size:
        raise DatasetError(f"the training split has {num_examples} examples, fewer than one batch of "
                           f"{batch_size}; lower data.batch_size")
    return num_examples // batch_size


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """int64 ``(num_examples,)``: the shuffled visiting order of training epoch ``epoch``."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int64)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of example ``index`` in epoch ``epoch`` (independent of visiting order)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0])


def build_dataset(source, prepare: Optional[Prepare], example_spec: dict[str, tf.TensorSpec], batch_size: int,
                  training: bool, seed: int = 0, start_epoch: int = 0,
                  num_parallel_calls: Union[int, str] = "auto", drop_remainder: Optional[bool] = None,
                  shuffle: bool = True, skip_batches: int = 0) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of example dicts from a source.

    Args:
        source: anything with ``len(source)`` and ``source.load(index) -> {"image": uint8 (H, W, 3), <targets>,
            "meta": {...}}``.
        prepare: ``fn(sample, seed) -> example`` (a task's :meth:`~densevision.tasks.base.Task.preparer`:
            augmentation and target encoding); ``None`` keeps the sample's entries named in ``example_spec``.
        example_spec: nested ``tf.TensorSpec`` of one example, e.g. ``{"image": TensorSpec((None, None, 3),
            tf.float32), "mask": TensorSpec((None, None), tf.int32)}``; every example is cast to these dtypes and
            checked against these shapes.
        batch_size: examples per batch (for a distributed run: the global batch).
        training: True: infinite stream of shuffled, augmented epochs starting at ``start_epoch``;
            False: one pass in file order (``prepare`` seeded by index: deterministic).
        seed: run seed: the shuffle order and every augmentation follow from it.
        start_epoch: first epoch of the stream (resume a run here to see the same batches).
        num_parallel_calls: loader threads, or ``"auto"`` (``tf.data.AUTOTUNE``).
        drop_remainder: drop a last partial batch; default: True when training, False otherwise. Examples in a
            batch must share one size (crop in the augmentation, or use batch size 1).
        shuffle: shuffle training epochs (False: file order every epoch, augmentation still per epoch).
        skip_batches: training only: start this many batches into ``start_epoch`` (resuming a run whose
            epochs are not whole data epochs), skipped before any image is loaded.

    Returns:
        Dataset of dicts shaped like ``example_spec`` with a leading batch axis ``B`` (static when
        ``drop_remainder``); ``"image"`` is float32 ``(B, H, W, 3)`` in [0, 255].
    """
    num_examples = len(source)
    if num_examples == 0:
        raise DatasetError(f"{source!r} has no examples")
    if "image" not in example_spec:
        raise ValueError(f"example_spec must have an 'image' entry, got {sorted(example_spec)}")
    if drop_remainder is None:
        drop_remainder = training
    if training:
        steps_per_epoch(num_examples, batch_size)  # fail early and clearly on a batch larger than the split
    parallel = tf.data.AUTOTUNE if num_parallel_calls == "auto" else int(num_parallel_calls)
    keys = list(example_spec)
    specs = [example_spec[key] for key in keys]

    def load_example(epoch: np.ndarray, index: np.ndarray):
        epoch, index = int(epoch), int(index)
        sample = source.load(index)
        example = prepare(sample, sample_seed(seed, epoch, index)) if prepare is not None else sample
        image = np.asarray(example.get("image"))
        if image.ndim != 3 or image.shape[2] != 3:
            raise DatasetError(f"example {index} ({_name_of(source, index)}): image shape {image.shape}, "
                               f"expected (H, W, 3)")
        missing = [key for key in keys if key not in example]
        if missing:
            raise DatasetError(f"example {index} ({_name_of(source, index)}): no {missing} entries; the task "
                               f"expects {keys}")
        return tuple(np.asarray(example[key], dtype=spec.dtype.as_numpy_dtype) for key, spec in zip(keys, specs))

    def to_tensors(epoch, index):
        values = tf.numpy_function(load_example, [epoch, index], [spec.dtype for spec in specs], stateful=False)
        return {key: tf.ensure_shape(value, spec.shape) for key, value, spec in zip(keys, values, specs)}

    if training:
        per_epoch = steps_per_epoch(num_examples, batch_size) * batch_size

        def epoch_indices(epoch):
            order = tf.numpy_function(
                lambda e: (epoch_order(num_examples, seed, int(e)) if shuffle
                           else np.arange(num_examples, dtype=np.int64))[:per_epoch],
                [epoch], tf.int64, stateful=False)
            order = tf.ensure_shape(order, (per_epoch,))
            epochs = tf.fill([per_epoch], epoch)
            return tf.data.Dataset.from_tensor_slices((epochs, order))

        indices = tf.data.Dataset.counter(start=start_epoch, dtype=tf.int64).flat_map(epoch_indices)
        indices = indices.skip(skip_batches * batch_size)
    else:
        indices = tf.data.Dataset.range(num_examples).map(lambda i: (tf.constant(0, tf.int64), i))

    dataset = indices.map(to_tensors, num_parallel_calls=parallel, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    batch_dim = batch_size if drop_remainder else None
    dataset = dataset.map(lambda example: {key: tf.ensure_shape(example[key], (batch_dim, *spec.shape))
                                           for key, spec in zip(keys, specs)})
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _name_of(source, index: int) -> str:
    names = getattr(source, "names", None)
    return names[index] if names is not None and index < len(names) else "?"
