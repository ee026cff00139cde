"""Heatmap regression loss for pose, registered in ``LOSSES`` as ``heatmap_mse``.

Per example and per model output (one per hourglass stack): the mean over heatmap cells and joints of
``target_weight[j] * (predicted - target) ** 2``. The mean divides by every joint ``h * w * J``, labelled or not
(as Torch's ``MSECriterion``, HRNet's ``JointsMSELoss`` and MMPose's ``KeypointMSELoss`` do), so an unlabelled
joint pulls its heatmap nowhere and an example with fewer labelled joints weighs less. No 1/2 factor (Torch's has
none; HRNet's has one).

The outputs are *summed* over stacks by default, as the original Torch code does (``nn.ParallelCriterion`` of one
``MSECriterion`` per stack, each weight 1): every stack gets the same gradient whatever the number of stacks. The
scale stays small and sane: an all-zero prediction of unit-peak sigma-2 Gaussians on 32x32 heatmaps, every
joint labelled, costs about ``pi * sigma^2 / (32 * 32) = 0.012`` per stack. ``stack_reduction="mean"`` averages
instead.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence, Union

import tensorflow as tf

from densevision.registry import LOSSES

STACK_REDUCTIONS = ("sum", "mean")


def heatmap_mse(
    heatmaps_true,
    target_weight,
    outputs: Union[tf.Tensor, Sequence[tf.Tensor]],
    stack_reduction: Literal["sum", "mean"] = "sum",
) -> tf.Tensor:
    """Weighted heatmap MSE, one value per example.

    Args:
        heatmaps_true: ``(B, h, w, J)`` target heatmaps.
        target_weight: ``(B, J)`` per-joint weights (0 for an unlabelled joint, usually 1 otherwise).
        outputs: predicted heatmaps ``(B, h, w, J)``, or a list of them (one per stack).
        stack_reduction: ``"sum"`` (the original's) or ``"mean"`` over the outputs.

    Returns:
        ``(B,)`` float32: ``reduce_s mean_{y, x, j} target_weight[b, j] * (outputs[s][b, y, x, j] -
        heatmaps_true[b, y, x, j]) ** 2``.
    """
    if stack_reduction not in STACK_REDUCTIONS:
        raise ValueError(f"heatmap_mse: stack_reduction must be one of {STACK_REDUCTIONS}, got {stack_reduction!r}")
    predictions = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if not predictions:
        raise ValueError("heatmap_mse: outputs is an empty list; expected at least one (B, h, w, J) tensor")
    target = tf.cast(heatmaps_true, tf.float32)
    weight = tf.cast(target_weight, tf.float32)
    if target.shape.rank != 4 or weight.shape.rank != 2:
        raise ValueError(
            f"heatmap_mse: expected heatmaps_true (B, h, w, J) and target_weight (B, J), got shapes "
            f"{tuple(target.shape)} and {tuple(weight.shape)}"
        )
    weight = weight[:, None, None, :]
    losses = []
    for index, prediction in enumerate(predictions):
        prediction = tf.cast(prediction, tf.float32)  # float32 even when the model computes in float16
        if not prediction.shape.is_compatible_with(target.shape):
            raise ValueError(
                f"heatmap_mse: output {index} has shape {tuple(prediction.shape)}, the target heatmaps "
                f"{tuple(target.shape)}; the model's heatmaps must match the codec's heatmap size"
            )
        losses.append(tf.reduce_mean(weight * tf.square(prediction - target), axis=[1, 2, 3]))
    total = tf.add_n(losses)
    return total / len(losses) if stack_reduction == "mean" else total


@LOSSES.register("heatmap_mse", task="pose")
def heatmap_mse_loss(stack_reduction: Literal["sum", "mean"] = "sum") -> Callable[..., tf.Tensor]:
    """Builder of :func:`heatmap_mse` for recipes (``loss: {name: heatmap_mse, stack_reduction: sum}``).

    Returns:
        ``fn(heatmaps_true (B, h, w, J), target_weight (B, J), outputs) -> (B,) float32``.
    """
    if stack_reduction not in STACK_REDUCTIONS:
        raise ValueError(
            f"loss 'heatmap_mse': stack_reduction must be one of {STACK_REDUCTIONS}, got {stack_reduction!r}"
        )

    def loss_fn(heatmaps_true, target_weight, outputs):
        return heatmap_mse(heatmaps_true, target_weight, outputs, stack_reduction=stack_reduction)

    return loss_fn


__all__ = ["heatmap_mse", "heatmap_mse_loss", "STACK_REDUCTIONS"]
