"""Keypoints <-> Gaussian heatmaps, the target of heatmap pose models (stacked hourglass, SimpleBaseline, HRNet).

Coordinates. Crop pixels ``x`` have their centres at integers (the convention of ``densevision.data.topdown`` and
OpenCV's ``warpAffine``); so do heatmap cells ``u``. A heatmap of width ``w`` on a crop of width ``W`` is aligned so
that each cell's centre is the centre of the crop pixels it covers (the geometry of stride-``W/w`` average pooling,
and of ``cv2.resize``)::

    u = (x + 0.5) * w / W - 0.5            x = (u + 0.5) * W / w - 0.5

and the same for ``y`` with ``H`` and ``h``. Under this convention mirroring the crop (``x -> W - 1 - x``) mirrors
the heatmap exactly (``u -> w - 1 - u``), so :func:`flip_back` needs no shift (see there).

Encoding renders an unnormalised Gaussian ``exp(-d^2 / (2 sigma^2))`` (peak 1, ``sigma`` in heatmap cells) at the
exact sub-cell position of each joint over the whole map (no rounding of the centre to a cell as in the original
HRNet code, no truncated window). Decoding takes the argmax and moves a quarter cell toward the higher neighbour
in x and in y (Newell et al. 2016); with ``unbiased=True`` it instead refines the argmax with DARK's second-order
Taylor step on the log of the blurred heatmap (Zhang et al. 2020, "Distribution-Aware Coordinate Representation").
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from densevision.data.topdown import invert_affine, transform_points
from densevision.registry import CODECS
from densevision.sizes import as_pair

#: size of the quarter-cell step of the standard decoding (Newell et al.)
QUARTER = 0.25


def dark_blur_kernel_size(sigma: float) -> int:
    """The odd Gaussian-blur kernel size DARK uses for a heatmap of ``sigma`` (MMPose: 11 for sigma 2, 17 for 3)."""
    size = int(round(6.0 * float(sigma) - 1.0))
    return max(3, size if size % 2 else size + 1)


def _gaussian_taps(kernel_size: int) -> np.ndarray:
    """OpenCV's ``getGaussianKernel(kernel_size, 0)`` (its sigma from the size), float32 ``(kernel_size,)``."""
    sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1.0) + 0.8
    offsets = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2.0
    taps = np.exp(-offsets ** 2 / (2.0 * sigma ** 2))
    return (taps / taps.sum()).astype(np.float32)


@CODECS.register("heatmap")
class HeatmapCodec:
    """Gaussian heatmap targets for top-down pose crops, and their decoding back to crop pixels.

    Args:
        input_size: ``(H, W)`` of the network input (the crop).
        heatmap_size: ``(h, w)`` of the model's heatmaps; default ``(H // 4, W // 4)`` (``H`` and ``W`` must then
            be multiples of 4).
        sigma: standard deviation of the target Gaussian, in heatmap cells (2.0 as MMPose; Newell et al. used 1).
        unbiased: decode with DARK's Taylor refinement instead of the quarter-cell step. It recovers a clean
            Gaussian's centre to ~0.001 cell away from the border; within a few cells of the border the zero-padded
            blur biases it (0.16 cell measured 2 cells from the edge, still below the quarter step's 0.25 bound).
        blur_kernel_size: DARK's blur kernel; default :func:`dark_blur_kernel_size` of ``sigma``.

    Example:
        >>> codec = HeatmapCodec((256, 192))
        >>> heatmaps, weights = codec.encode(keypoints)          # (64, 48, J), (J,)
        >>> keypoints, scores = codec.decode(heatmaps[None])     # (1, J, 2) crop pixels, (1, J)
    """

    def __init__(self, input_size: Sequence[int], heatmap_size: Optional[Sequence[int]] = None,
                 sigma: float = 2.0, unbiased: bool = False, blur_kernel_size: Optional[int] = None):
        self.input_size = as_pair(input_size, "HeatmapCodec: input_size (H, W)", scalar=False)
        if heatmap_size is None:
            height, width = self.input_size
            if height % 4 or width % 4:
                raise ValueError(f"HeatmapCodec: input_size {self.input_size} is not a multiple of 4; "
                                 f"give heatmap_size explicitly")
            heatmap_size = (height // 4, width // 4)
        self.heatmap_size = as_pair(heatmap_size, "HeatmapCodec: heatmap_size (H, W)", scalar=False)
        if not float(sigma) > 0:
            raise ValueError(f"HeatmapCodec: sigma must be positive, got {sigma!r}")
        self.sigma = float(sigma)
        self.unbiased = bool(unbiased)
        self.blur_kernel_size = int(blur_kernel_size or dark_blur_kernel_size(self.sigma))
        if self.blur_kernel_size % 2 == 0 or self.blur_kernel_size < 3:
            raise ValueError(f"HeatmapCodec: blur_kernel_size must be odd and >= 3, got {blur_kernel_size!r}")
        # crop pixels per heatmap cell along y and x
        self.stride = (self.input_size[0] / self.heatmap_size[0], self.input_size[1] / self.heatmap_size[1])

    def __repr__(self) -> str:
        return (f"HeatmapCodec(input_size={self.input_size}, heatmap_size={self.heatmap_size}, sigma={self.sigma}, "
                f"unbiased={self.unbiased})")

    def get_config(self) -> dict:
        return {"input_size": list(self.input_size), "heatmap_size": list(self.heatmap_size), "sigma": self.sigma,
                "unbiased": self.unbiased, "blur_kernel_size": self.blur_kernel_size}

    # ------------------------------------------------------------------------------------------ coordinates
    def crop_to_heatmap(self, points: np.ndarray) -> np.ndarray:
        """``(..., 2)`` crop pixels (x, y) -> heatmap cells (u, v): ``u = (x + 0.5) * w / W - 0.5``."""
        points = np.asarray(points, np.float64)
        scale = np.array([1.0 / self.stride[1], 1.0 / self.stride[0]])
        return (points[..., :2] + 0.5) * scale - 0.5

    def heatmap_to_crop(self, cells: np.ndarray) -> np.ndarray:
        """``(..., 2)`` heatmap cells (u, v) -> crop pixels (x, y): ``x = (u + 0.5) * W / w - 0.5``."""
        cells = np.asarray(cells, np.float32)
        scale = np.array([self.stride[1], self.stride[0]], np.float32)
        return (cells[..., :2] + np.float32(0.5)) * scale - np.float32(0.5)

    # ------------------------------------------------------------------------------------------ encode
    def encode(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One person's joints in crop pixels -> ``(heatmaps float32 (h, w, J), target_weight float32 (J,))``.

        Args:
            keypoints: ``(J, 3)`` x, y, v with v as in COCO (0 not labelled, 1 labelled but occluded, 2 visible);
                ``(J, 2)`` means every joint is labelled.

        A joint is a target (weight 1, a Gaussian in its channel) when ``v > 0`` and its Gaussian centre lies on the
        heatmap (``-0.5 <= u < w - 0.5`` and ``-0.5 <= v < h - 0.5``, i.e. inside the crop). Occluded but
        labelled joints (v = 1) are targets like visible ones: their position is annotated, and the model should
        learn to infer hidden joints (as HRNet / MMPose train). Every other joint gets weight 0 and an all-zero map.
        """
        keypoints = np.asarray(keypoints, np.float64)
        if keypoints.ndim != 2 or keypoints.shape[1] not in (2, 3):
            raise ValueError(f"HeatmapCodec.encode: expected keypoints (J, 3) x, y, v, got shape {keypoints.shape}")
        height, width = self.heatmap_size
        num_joints = keypoints.shape[0]
        labelled = keypoints[:, 2] > 0 if keypoints.shape[1] == 3 else np.ones(num_joints, bool)
        cells = self.crop_to_heatmap(keypoints)
        finite = np.all(np.isfinite(cells), axis=1)
        cells = np.where(finite[:, None], cells, 0.0)
        inside = (finite & (cells[:, 0] >= -0.5) & (cells[:, 0] < width - 0.5)
                  & (cells[:, 1] >= -0.5) & (cells[:, 1] < height - 0.5))
        weight = (labelled & inside).astype(np.float32)
        # separable Gaussian: exp(-(dx^2 + dy^2) / 2s^2) = exp(-dx^2 / 2s^2) * exp(-dy^2 / 2s^2)
        gx = np.exp(-(np.arange(width)[None, :] - cells[:, :1]) ** 2 / (2.0 * self.sigma ** 2))  # (J, w)
        gy = np.exp(-(np.arange(height)[None, :] - cells[:, 1:2]) ** 2 / (2.0 * self.sigma ** 2))  # (J, h)
        heatmaps = gy[:, :, None] * gx[:, None, :] * weight[:, None, None]  # (J, h, w)
        return np.ascontiguousarray(heatmaps.transpose(1, 2, 0), dtype=np.float32), weight

    # ------------------------------------------------------------------------------------------ decode (numpy)
    def _check_heatmaps(self, heatmaps, where: str) -> None:
        if len(heatmaps.shape) != 4:
            raise ValueError(f"HeatmapCodec.{where}: expected heatmaps (B, h, w, J), got shape {heatmaps.shape}")
        size = tuple(heatmaps.shape[1:3])
        if None not in size and tuple(int(v) for v in size) != self.heatmap_size:
            raise ValueError(f"HeatmapCodec.{where}: heatmaps are {size[0]}x{size[1]} but the codec expects "
                             f"{self.heatmap_size[0]}x{self.heatmap_size[1]} (heatmap_size)")

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps ``(B, h, w, J)`` -> ``(keypoints float32 (B, J, 2) crop pixels, scores float32 (B, J))``.

        The score is the heatmap's maximum; a joint whose maximum is ``<= 0`` (no peak) gets score 0 (its position is
        still the argmax). Same numbers as :meth:`decode_tf`.
        """
        heatmaps = np.asarray(heatmaps, np.float32)
        self._check_heatmaps(heatmaps, "decode")
        batch, height, width, joints = heatmaps.shape
        flat = heatmaps.transpose(0, 3, 1, 2).reshape(batch, joints, height * width)
        index = flat.argmax(axis=-1)  # (B, J), first maximum on ties (as tf.argmax)
        maxval = np.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
        row, col = np.divmod(index, width)
        cells = np.stack([col, row], axis=-1).astype(np.float32)

        def at(d_col, d_row):  # heatmap value at (row + d_row, col + d_col), clipped into the map
            r = np.clip(row + d_row, 0, height - 1)
            c = np.clip(col + d_col, 0, width - 1)
            return np.take_along_axis(flat, (r * width + c)[..., None], axis=-1)[..., 0]

        # a quarter cell toward the higher neighbour, where both neighbours exist
        step_x = np.where((col > 0) & (col < width - 1), np.sign(at(1, 0) - at(-1, 0)), 0).astype(np.float32)
        step_y = np.where((row > 0) & (row < height - 1), np.sign(at(0, 1) - at(0, -1)), 0).astype(np.float32)
        quarter = cells + np.float32(QUARTER) * np.stack([step_x, step_y], axis=-1)
        cells = self._dark_numpy(heatmaps, row, col, maxval, cells, quarter) if self.unbiased else quarter
        scores = np.where(maxval > 0, maxval, 0).astype(np.float32)
        return self.heatmap_to_crop(cells).astype(np.float32), scores

    def _dark_numpy(self, heatmaps, row, col, maxval, cells, fallback):
        batch, height, width, joints = heatmaps.shape
        taps = _gaussian_taps(self.blur_kernel_size)
        radius = len(taps) // 2
        # separable blur with zero padding (MMPose blurs a zero-padded copy)
        padded = np.pad(heatmaps, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
        along_y = sum(taps[k] * padded[:, k:k + height] for k in range(len(taps)))
        blurred = sum(taps[k] * along_y[:, :, k:k + width] for k in range(len(taps)))
        blurred = blurred.transpose(0, 3, 1, 2).reshape(batch, joints, height * width).astype(np.float32)
        peak = blurred.max(axis=-1)
        positive = (maxval > 0) & (peak > 0)
        # keep each map's maximum through the blur (MMPose), then work on the log
        ratio = np.where(positive, maxval / np.where(positive, peak, 1), 1).astype(np.float32)
        logmap = np.log(np.clip(blurred * ratio[..., None], np.float32(1e-3), np.float32(50.0)))

        def at(d_col, d_row):
            r = np.clip(row + d_row, 0, height - 1)
            c = np.clip(col + d_col, 0, width - 1)
            return np.take_along_axis(logmap, (r * width + c)[..., None], axis=-1)[..., 0]

        return _dark_step(at, row, col, height, width, positive, cells, fallback, _NUMPY_OPS).astype(np.float32)

    # ------------------------------------------------------------------------------------------ decode (graph)
    def decode_tf(self, heatmaps) -> tuple[tf.Tensor, tf.Tensor]:
        """TF-graph :meth:`decode`: ``(B, h, w, J)`` tensor -> ``(keypoints (B, J, 2), scores (B, J))`` float32.

        Only TensorFlow ops (usable inside ``tf.function``, a ``tf.data`` map or a SavedModel signature with an
        unknown batch size); the numbers equal :meth:`decode`'s.
        """
        heatmaps = tf.cast(heatmaps, tf.float32)  # float16 / bfloat16 outputs of mixed precision too
        self._check_heatmaps(heatmaps, "decode_tf")
        height, width = self.heatmap_size
        shape = tf.shape(heatmaps)
        batch, joints = shape[0], shape[3]
        flat = tf.reshape(tf.transpose(heatmaps, [0, 3, 1, 2]), tf.stack([batch, joints, height * width]))
        index = tf.argmax(flat, axis=-1, output_type=tf.int32)
        maxval = tf.gather(flat, index, batch_dims=2)
        row, col = index // width, index % width
        cells = tf.cast(tf.stack([col, row], axis=-1), tf.float32)

        def at(values):
            def lookup(d_col, d_row):
                r = tf.clip_by_value(row + d_row, 0, height - 1)
                c = tf.clip_by_value(col + d_col, 0, width - 1)
                return tf.gather(values, r * width + c, batch_dims=2)
            return lookup

        lookup = at(flat)
        inner_x = (col > 0) & (col < width - 1)
        inner_y = (row > 0) & (row < height - 1)
        step_x = tf.where(inner_x, tf.sign(lookup(1, 0) - lookup(-1, 0)), 0.0)
        step_y = tf.where(inner_y, tf.sign(lookup(0, 1) - lookup(0, -1)), 0.0)
        quarter = cells + QUARTER * tf.stack([step_x, step_y], axis=-1)
        if self.unbiased:
            taps = tf.constant(_gaussian_taps(self.blur_kernel_size))
            size = self.blur_kernel_size
            planes = tf.reshape(tf.transpose(heatmaps, [0, 3, 1, 2]), tf.stack([batch * joints, height, width, 1]))
            planes = tf.nn.conv2d(planes, tf.reshape(taps, [size, 1, 1, 1]), 1, "SAME")  # zero padding
            planes = tf.nn.conv2d(planes, tf.reshape(taps, [1, size, 1, 1]), 1, "SAME")
            blurred = tf.reshape(planes, tf.stack([batch, joints, height * width]))
            peak = tf.reduce_max(blurred, axis=-1)
            positive = (maxval > 0) & (peak > 0)
            ratio = tf.where(positive, maxval / tf.where(positive, peak, 1.0), 1.0)
            logmap = tf.math.log(tf.clip_by_value(blurred * ratio[..., None], 1e-3, 50.0))
            cells = _dark_step(at(logmap), row, col, height, width, positive, cells, quarter, _TF_OPS)
        else:
            cells = quarter
        scale = tf.constant([self.stride[1], self.stride[0]], tf.float32)
        keypoints = (cells + 0.5) * scale - 0.5
        scores = tf.where(maxval > 0, maxval, 0.0)
        return keypoints, scores

    # ------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def flip_back(heatmaps, flip_pairs, shift: int = 0):
        """See :func:`flip_back`."""
        return flip_back(heatmaps, flip_pairs, shift)

    @staticmethod
    def to_image(keypoints, affines):
        """See :func:`to_image`."""
        return to_image(keypoints, affines)


class _ArrayOps:
    """The few array functions :func:`_dark_step` needs, so numpy and TensorFlow share one formula."""

    def __init__(self, where, stack, constant):
        self.where, self.stack, self.constant = where, stack, constant


_NUMPY_OPS = _ArrayOps(np.where, lambda values: np.stack(values, axis=-1), np.float32)
_TF_OPS = _ArrayOps(tf.where, lambda values: tf.stack(values, axis=-1), lambda value: tf.constant(value, tf.float32))


def _dark_step(at, row, col, height, width, positive, cells, fallback, ops: _ArrayOps):
    """DARK: ``cells - H^-1 g`` with central differences of the log heatmap ``at`` the integer argmax ``cells``.

    Derivatives as MMPose's ``refine_keypoints_dark`` (first differences over 2 cells, second over 4). Used where
    the 5x5 neighbourhood lies inside the map and the quadratic has a maximum there (det > 0, dxx < 0); elsewhere
    (map borders, saddles or flat plateaus, where the Newton step can jump anywhere) ``fallback`` is returned, the
    quarter-step answer, rather than MMPose's bare argmax.
    """
    centre = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    dyy = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy * dxy
    usable = positive & (col > 1) & (col < width - 2) & (row > 1) & (row < height - 2) & (det > 0) & (dxx < 0)
    safe_det = ops.where(usable, det, ops.constant(1.0))
    # [[dxx, dxy], [dxy, dyy]]^-1 [dx, dy]
    offset_x = (dyy * dx - dxy * dy) / safe_det
    offset_y = (dxx * dy - dxy * dx) / safe_det
    refined = cells - ops.stack([offset_x, offset_y])
    return ops.where(usable[..., None], refined, fallback)


def flip_back(heatmaps, flip_pairs: Sequence[Sequence[int]], shift: int = 0):
    """Heatmaps of a horizontally mirrored input -> heatmaps of the original: mirror the width, swap left/right.

    Args:
        heatmaps: ``(B, h, w, J)`` numpy array or TF tensor (the model's output on the mirrored crops).
        flip_pairs: ``[[left, right], ...]`` joint index pairs (the dataset info's ``flip_pairs``).
        shift: cells to move the mirrored maps right (toward larger ``u``) afterwards; the vacated column keeps
            its value. **0 is correct for densevision's aligned convention**: with ``u = (x + 0.5) * w / W - 0.5``,
            mirroring the crop (``x -> W - 1 - x``) maps ``u -> w - 1 - u``, exactly what reversing the width does.
            HRNet / MMPose (``shift_heatmap=True``) shift by 1 because their heatmaps use ``u = x * w / W``, under which
            the mirrored map lands ``1 - w / W`` cells (0.75 at stride 4) left of the truth; a 1-cell shift there
            leaves a 0.25-cell error the other way. Use ``shift=1`` only for models trained on that convention.

    Returns:
        The same type and shape as ``heatmaps``.
    """
    pairs = [tuple(int(v) for v in pair) for pair in flip_pairs]
    is_numpy = isinstance(heatmaps, np.ndarray)
    if len(heatmaps.shape) != 4 or heatmaps.shape[-1] is None:
        raise ValueError(f"flip_back: expected heatmaps (B, h, w, J) with a known J, got shape "
                         f"{tuple(heatmaps.shape)}")
    joints = int(heatmaps.shape[-1])
    order = list(range(int(joints)))
    for left, right in pairs:
        if not (0 <= left < joints and 0 <= right < joints):
            raise ValueError(f"flip_back: flip pair {[left, right]} is outside the {joints} joints")
        order[left], order[right] = right, left
    shift = int(shift)
    if is_numpy:
        mirrored = heatmaps[:, :, ::-1, :][..., order]
        if shift > 0:
            mirrored = np.concatenate([np.repeat(mirrored[:, :, :1], shift, axis=2), mirrored[:, :, :-shift]], axis=2)
        elif shift < 0:
            mirrored = np.concatenate([mirrored[:, :, -shift:], np.repeat(mirrored[:, :, -1:], -shift, axis=2)],
                                      axis=2)
        return np.ascontiguousarray(mirrored)
    mirrored = tf.gather(tf.reverse(heatmaps, axis=[2]), order, axis=3)
    if shift > 0:
        mirrored = tf.concat([tf.repeat(mirrored[:, :, :1], shift, axis=2), mirrored[:, :, :-shift]], axis=2)
    elif shift < 0:
        mirrored = tf.concat([mirrored[:, :, -shift:], tf.repeat(mirrored[:, :, -1:], -shift, axis=2)], axis=2)
    return mirrored


def to_image(keypoints: np.ndarray, affines: np.ndarray) -> np.ndarray:
    """Crop-pixel keypoints ``(B, J, 2+)`` -> original-image pixels, through the inverse of each crop affine.

    Args:
        keypoints: ``(B, J, 2)`` (extra columns such as scores are kept).
        affines: ``(B, 2, 3)`` original -> crop (``densevision.data.topdown.crop_affine``).
    """
    keypoints = np.asarray(keypoints, np.float32)
    affines = np.asarray(affines, np.float64)
    if keypoints.ndim != 3 or keypoints.shape[-1] < 2 or affines.shape != (len(keypoints), 2, 3):
        raise ValueError(f"to_image: expected keypoints (B, J, 2+) and affines (B, 2, 3), got {keypoints.shape} and "
                         f"{affines.shape}")
    return np.stack([transform_points(points, invert_affine(affine)) for points, affine in zip(keypoints, affines)]
                    ) if len(keypoints) else keypoints.copy()


def to_image_tf(keypoints, affines):
    """TF-graph :func:`to_image`: ``(B, J, 2)`` crop pixels and ``(B, 2, 3)`` affines -> ``(B, J, 2)`` float32."""
    keypoints = tf.cast(keypoints, tf.float64)
    affines = tf.cast(affines, tf.float64)
    linear, offset = affines[:, :, :2], affines[:, :, 2]
    # x_crop = L x + t  =>  x = L^-1 (x_crop - t)
    inverse = tf.linalg.inv(linear)
    moved = tf.einsum("bij,bkj->bki", inverse, keypoints[..., :2] - offset[:, None, :])
    return tf.cast(moved, tf.float32)
