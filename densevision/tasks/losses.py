"""Per-pixel classification losses for segmentation, registered in ``LOSSES``.

Each registered builder takes the recipe's ``loss`` options and returns
``fn(y_true (B, H, W) int, logits (B, H, W, K) float, ignore_label: int | None) -> (B,) float32``:
one loss per example, so the engine can average over the *global* batch under any distribution strategy.

Pixels whose label is ``ignore_label`` contribute nothing to the loss or its gradient. Each example's loss is
normalised by its number of valid pixels (or, with class weights, by the sum of its valid pixels' weights, as
PyTorch's ``CrossEntropyLoss(weight=..., reduction="mean")`` does); an example with no valid pixel has loss 0.
"""

from __future__ import annotations

from typing import Callable, Literal, Optional, Union

import tensorflow as tf

from densevision.registry import LOSSES

#: the one string ``class_weights`` accepts: resolved from the training set by the task
MEDIAN_FREQUENCY = "median_frequency"

LossFn = Callable[..., tf.Tensor]


def valid_pixel_mask(y_true: tf.Tensor, ignore_label: Optional[int]) -> tf.Tensor:
    """``(B, H, W)`` float32: 1 where the label counts, 0 at ``ignore_label`` pixels."""
    if ignore_label is None:
        return tf.ones_like(y_true, dtype=tf.float32)
    return tf.cast(tf.not_equal(y_true, ignore_label), tf.float32)


def _safe_labels(y_true: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    # The ignore label is often outside [0, K) (CamVid: 11 with 11 classes); gathering or one-hot encoding it
    # would fail or read garbage, so ignore pixels borrow class 0 and are masked out afterwards.
    return tf.where(valid > 0, tf.cast(y_true, tf.int32), tf.zeros_like(y_true, dtype=tf.int32))


def _check_class_weights(class_weights, loss_name: str) -> Optional[tuple[float, ...]]:
    if class_weights is None:
        return None
    if isinstance(class_weights, str):
        raise ValueError(
            f"loss {loss_name!r}: class_weights={class_weights!r} must be resolved to a list of floats before "
            f"building the loss (the segmentation task does this for {MEDIAN_FREQUENCY!r} from the training split)"
        )
    weights = tuple(float(w) for w in class_weights)
    if any(w < 0 for w in weights):
        raise ValueError(f"loss {loss_name!r}: class_weights must be >= 0, got {list(weights)}")
    # Kept as Python floats: a tensor made here could belong to whichever tf.function graph first built the loss.
    return weights


def _pixel_weights(labels: tf.Tensor, valid: tf.Tensor, weights: Optional[tuple[float, ...]], logits) -> tf.Tensor:
    """``(B, H, W)``: the class weight of each valid pixel (1 without weights), 0 at ignore pixels."""
    if weights is None:
        return valid
    num_classes = logits.shape[-1]
    if num_classes is not None and num_classes != len(weights):
        raise ValueError(f"class_weights has {len(weights)} entries but the model predicts {num_classes} classes")
    return tf.gather(tf.constant(weights, tf.float32), labels) * valid


def _per_example_mean(pixel_losses: tf.Tensor, pixel_weights: tf.Tensor) -> tf.Tensor:
    """``sum(w * loss) / sum(w)`` over each example's pixels -> ``(B,)``; 0 for an example with no weight."""
    total = tf.reduce_sum(pixel_losses * pixel_weights, axis=[1, 2])
    normaliser = tf.reduce_sum(pixel_weights, axis=[1, 2])
    return tf.math.divide_no_nan(total, normaliser)


def _log_probabilities(logits: tf.Tensor) -> tf.Tensor:
    # Losses are computed in float32 even when the model runs in mixed precision.
    return tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)


def _true_class_log_probs(y_true, logits, ignore_label):
    """``(log_probs (B, H, W, K), labels (B, H, W) with void made safe, valid (B, H, W), log p_true (B, H, W))``."""
    log_probs = _log_probabilities(logits)
    valid = valid_pixel_mask(y_true, ignore_label)
    labels = _safe_labels(y_true, valid)
    true_log_prob = tf.gather(log_probs, labels[..., None], batch_dims=3)[..., 0]
    return log_probs, labels, valid, true_log_prob


@LOSSES.register("cross_entropy", task="segmentation")
def cross_entropy(
    class_weights: Optional[Union[Literal["median_frequency"], list[float]]] = None,
    label_smoothing: float = 0.0,
) -> LossFn:
    """Softmax cross-entropy over pixels.

    Args:
        class_weights: ``None``, one weight per class, or ``"median_frequency"`` (resolved by the task from
            the training split). A pixel of class ``c`` counts ``class_weights[c]`` times and each example is
            normalised by the sum of its pixels' weights (PyTorch's weighted ``reduction="mean"``).
        label_smoothing: target ``(1 - s) * one_hot + s / K``.

    Returns:
        ``fn(y_true (B, H, W) int, logits (B, H, W, K), ignore_label) -> (B,) float32``.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"loss 'cross_entropy': label_smoothing must be in [0, 1), got {label_smoothing}")
    weights = _check_class_weights(class_weights, "cross_entropy")

    def loss_fn(y_true, logits, ignore_label=None):
        log_probs, labels, valid, true_log_prob = _true_class_log_probs(y_true, logits, ignore_label)
        pixel_losses = -true_log_prob
        if label_smoothing:
            uniform_term = -tf.reduce_mean(log_probs, axis=-1)
            pixel_losses = (1.0 - label_smoothing) * pixel_losses + label_smoothing * uniform_term
        return _per_example_mean(pixel_losses, _pixel_weights(labels, valid, weights, log_probs))

    return loss_fn


@LOSSES.register("focal", task="segmentation")
def focal(
    gamma: float = 2.0,
    class_weights: Optional[Union[Literal["median_frequency"], list[float]]] = None,
) -> LossFn:
    """Focal loss ``-(1 - p_t) ** gamma * log p_t`` (Lin et al. 2017), softmax over classes.

    ``gamma=0`` is exactly :func:`cross_entropy` (same weighting and normalisation). ``class_weights`` plays the
    role of the paper's alpha, per class, normalised as in :func:`cross_entropy`.

    Returns:
        ``fn(y_true (B, H, W) int, logits (B, H, W, K), ignore_label) -> (B,) float32``.
    """
    if gamma < 0:
        raise ValueError(f"loss 'focal': gamma must be >= 0, got {gamma}")
    weights = _check_class_weights(class_weights, "focal")

    def loss_fn(y_true, logits, ignore_label=None):
        log_probs, labels, valid, true_log_prob = _true_class_log_probs(y_true, logits, ignore_label)
        modulation = tf.pow(1.0 - tf.exp(true_log_prob), gamma) if gamma else 1.0
        pixel_losses = -modulation * true_log_prob
        return _per_example_mean(pixel_losses, _pixel_weights(labels, valid, weights, log_probs))

    return loss_fn


@LOSSES.register("dice", task="segmentation")
def dice(smooth: float = 1.0) -> LossFn:
    """Soft Dice loss ``1 - mean_c (2 |P_c G_c| + s) / (|P_c| + |G_c| + s)`` per example over valid pixels.

    ``P`` are softmax probabilities, ``G`` the one-hot labels; ignore pixels are removed from both. A class absent
    from both prediction and labels scores 1 (thanks to ``smooth``), so it neither helps nor hurts.

    Returns:
        ``fn(y_true (B, H, W) int, logits (B, H, W, K), ignore_label) -> (B,) float32``.
    """
    if smooth < 0:
        raise ValueError(f"loss 'dice': smooth must be >= 0, got {smooth}")

    def loss_fn(y_true, logits, ignore_label=None):
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        num_classes = tf.shape(probabilities)[-1]
        valid = valid_pixel_mask(y_true, ignore_label)[..., None]
        one_hot = tf.one_hot(_safe_labels(y_true, valid[..., 0]), num_classes, dtype=tf.float32) * valid
        probabilities = probabilities * valid
        intersection = tf.reduce_sum(probabilities * one_hot, axis=[1, 2])
        sizes = tf.reduce_sum(probabilities, axis=[1, 2]) + tf.reduce_sum(one_hot, axis=[1, 2])
        dice_per_class = (2.0 * intersection + smooth) / (sizes + smooth + 1e-7)
        return 1.0 - tf.reduce_mean(dice_per_class, axis=-1)

    return loss_fn

