"""densevision.tasks.pose_losses: the heatmap MSE matches numpy with masked joints."""

from __future__ import annotations

import numpy as np
import pytest

import densevision  # noqa: F401  (sets the Keras backend first)

from densevision.registry import LOSSES
from densevision.tasks import pose_losses
from densevision.tasks.pose_losses import heatmap_mse

RNG = np.random.default_rng(0)


def numpy_heatmap_mse(target, weight, outputs):
    return sum(((weight[:, None, None, :] * (o - target) ** 2).reshape(len(o), -1)).mean(axis=1) for o in outputs)


def test_heatmap_mse_matches_numpy_with_masked_joints():
    target = RNG.uniform(size=(3, 8, 6, 4)).astype("float32")
    weight = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 0.5, 1, 1]], "float32")
    outputs = [RNG.uniform(size=target.shape).astype("float32") for _ in range(2)]
    expected = numpy_heatmap_mse(target, weight, outputs)
    np.testing.assert_allclose(heatmap_mse(target, weight, outputs).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(heatmap_mse(target, weight, outputs, "mean").numpy(), expected / 2, rtol=1e-6)
    np.testing.assert_allclose(heatmap_mse(target, weight, outputs[0]).numpy(),
                               numpy_heatmap_mse(target, weight, outputs[:1]), rtol=1e-6)
    assert heatmap_mse(target, weight, outputs).numpy()[1] == 0.0  # every joint masked
    # a masked joint's prediction changes nothing
    moved = [o.copy() for o in outputs]
    moved[0][0, :, :, 2] += 5.0
    np.testing.assert_array_equal(heatmap_mse(target, weight, moved).numpy()[0],
                                  heatmap_mse(target, weight, outputs).numpy()[0])
    registered = LOSSES.get("heatmap_mse")(stack_reduction="mean")
    np.testing.assert_allclose(registered(target, weight, outputs).numpy(), expected / 2, rtol=1e-6)
    assert LOSSES.get("heatmap_mse") is pose_losses.heatmap_mse_loss
    with pytest.raises(ValueError, match="output 0 has shape"):
        heatmap_mse(target, weight, [target[:, :4]])
    with pytest.raises(ValueError, match="stack_reduction"):
        LOSSES.get("heatmap_mse")(stack_reduction="max")
