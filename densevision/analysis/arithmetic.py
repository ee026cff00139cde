"""Convolution arithmetic: output sizes and receptive fields. The one place these formulas live.

One spatial axis at a time. With input size ``W``, kernel ``F``, stride ``S``, zero padding ``P`` on each side and
dilation ``D``, the kernel spans ``F_eff = D * (F - 1) + 1`` pixels and a convolution (or pooling) gives

    W_out = (W - F_eff + 2P) / S + 1

outputs. When the stride does not fit (the division leaves a remainder) the strict functions raise instead of
rounding: a hand-specified layer that does not tile its input is a design error. Real Keras layers round, and
:func:`keras_conv_output_size` follows Keras exactly (``"valid"`` floors, ``"same"`` gives ``ceil(W / S)``).

Receptive fields propagate layer by layer: with ``rf`` (input pixels one unit sees) and ``jump`` (input pixels
between neighbouring units) of a layer's input,

    rf_out = rf_in + (F_eff - 1) * jump_in,    jump_out = jump_in * S.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Union

Padding = Union[int, str]
Number = Union[int, Fraction]

_PADDING_NAMES = ("same", "valid")


def effective_kernel_size(kernel: int, dilation: int = 1) -> int:
    """Pixels spanned by a kernel of ``kernel`` taps spaced ``dilation`` apart: ``dilation * (kernel - 1) + 1``."""
    _check_positive(kernel=kernel, dilation=dilation)
    return dilation * (kernel - 1) + 1


def _room(size: int, kernel: int, stride: int, padding: Padding, dilation: int) -> tuple[int, int, int]:
    """``(P, F_eff, W - F_eff + 2P)`` for an explicit or "valid" padding; raises if the kernel does not fit."""
    _check_positive(size=size, kernel=kernel, stride=stride, dilation=dilation)
    pad = _padding_amount(padding)
    span = effective_kernel_size(kernel, dilation)
    room = size - span + 2 * pad
    if room < 0:
        raise ValueError(f"input {size}, kernel {kernel} (spans {span}), stride {stride}, padding {pad}: "
                         f"the kernel does not fit in the padded input ({size} + 2*{pad} < {span})")
    return pad, span, room


def conv_output_size(
    size: Optional[int], kernel: int, stride: int = 1, padding: Padding = 0, dilation: int = 1
) -> Optional[int]:
    """Strict output size of a convolution or pooling along one axis: ``(W - F_eff + 2P) / S + 1``.

    Args:
        size: input size ``W`` (``None``: unknown, returns ``None``).
        kernel: kernel size ``F``.
        stride: stride ``S``.
        padding: zero padding ``P`` added on each side, or ``"valid"`` (``P = 0``) or ``"same"`` (Keras: pad so that
            the output has ``ceil(W / S)`` units, which always fits).
        dilation: spacing of the kernel taps.

    Raises:
        ValueError: if the stride does not fit, e.g. ``W=7, F=3, S=3, P=0`` gives ``(7 - 3) / 3 + 1 = 2.33``, or
            if the kernel is larger than the padded input.
    """
    if size is None:
        return None
    if padding == "same":
        _check_positive(size=size, kernel=kernel, stride=stride, dilation=dilation)
        return ceil_div(size, stride)
    pad, span, room = _room(size, kernel, stride, padding, dilation)
    where = f"input {size}, kernel {kernel}" + (f" (dilation {dilation}: spans {span})" if dilation != 1 else "")
    where += f", stride {stride}, padding {pad}"
    if room % stride:
        raise ValueError(
            f"{where}: the stride does not fit: ({size} - {span} + 2*{pad}) / {stride} + 1 = "
            f"{room / stride + 1:.2f} is not an integer; change the padding, stride or input size"
        )
    return room // stride + 1


def keras_conv_output_size(
    size: Optional[int], kernel: int, stride: int = 1, padding: Padding = "valid", dilation: int = 1
) -> Optional[int]:
    """Output size of a real Keras convolution/pooling along one axis (as ``keras.layers.Conv2D`` computes it).

    ``"valid"`` floors ``(W - F_eff) / S + 1``, ``"same"`` gives ``ceil(W / S)``; an integer padding floors
    ``(W - F_eff + 2P) / S + 1`` (the convention of frameworks with explicit padding). Returns ``None`` for an
    unknown size. Raises ValueError when the kernel is larger than the (padded) input.
    """
    if size is None or padding == "same":  # the two agree: nothing to floor
        return conv_output_size(size, kernel, stride, padding, dilation)
    _, _, room = _room(size, kernel, stride, padding, dilation)
    return room // stride + 1


def transposed_conv_output_size(
    size: Optional[int],
    kernel: int,
    stride: int = 1,
    padding: Padding = "valid",
    output_padding: Optional[int] = None,
    dilation: int = 1,
) -> Optional[int]:
    """Output size of a transposed convolution along one axis, as ``keras.layers.Conv2DTranspose`` computes it.

    Without ``output_padding``: ``"valid"`` gives ``W * S + max(F_eff - S, 0)``, ``"same"`` gives ``W * S``.
    With it (or with an integer padding ``P``): ``(W - 1) * S + F_eff - 2P + output_padding``, where ``"same"``
    means ``P = F_eff // 2``. Returns ``None`` for an unknown size.
    """
    if size is None:
        return None
    _check_positive(size=size, kernel=kernel, stride=stride, dilation=dilation)
    span = effective_kernel_size(kernel, dilation)
    if output_padding is None and padding in _PADDING_NAMES:
        return size * stride if padding == "same" else size * stride + max(span - stride, 0)
    pad = span // 2 if padding == "same" else _padding_amount(padding)
    out = (size - 1) * stride + span - 2 * pad + (output_padding or 0)
    if out < 1:
        raise ValueError(
            f"transposed conv: input {size}, kernel {kernel}, stride {stride}, padding {pad}, "
            f"output_padding {output_padding}: output size {out} < 1"
        )
    return out


def receptive_field(
    prev_rf: Number, prev_jump: Number, kernel: int, stride: int = 1, dilation: int = 1
) -> tuple[Number, Number]:
    """Receptive field and jump after a convolution or pooling along one axis.

    ``rf_out = rf_in + (F_eff - 1) * jump_in``, ``jump_out = jump_in * S``; both in input pixels. Start from
    ``(1, 1)`` at the image. Padding does not change either (it shifts where the field starts).

    Example (CS231n): three stacked 3x3 stride-1 convolutions: (1, 1) -> (3, 1) -> (5, 1) -> (7, 1).
    """
    _check_positive(kernel=kernel, stride=stride, dilation=dilation)
    return prev_rf + (effective_kernel_size(kernel, dilation) - 1) * prev_jump, prev_jump * stride


def transposed_receptive_field(
    prev_rf: Number, prev_jump: Number, kernel: int, stride: int = 1, dilation: int = 1
) -> tuple[Number, Number]:
    """Receptive field and jump after one transposed convolution along one axis, on evenly spaced units.

    Output unit ``o`` is reached by input units ``i`` with ``i * S + k * D = o + P``; over all ``o`` those lie at
    most ``reach = (D / g) * floor((F - 1) * g / S)`` units apart (``g = gcd(D, S)``; ``floor((F_eff - 1) / S)``
    without dilation), so ``rf_out = rf_in + reach * jump_in`` and ``jump_out = jump_in / S`` (a
    :class:`~fractions.Fraction` when ``S`` does not divide the jump). Nearest-neighbour upsampling by ``s`` is
    ``kernel=s, stride=s``.

    Exact for one upsampling of evenly spaced units (a downsampling chain). Layers after it see units that share
    inputs unevenly, where a formula in ``rf`` and ``jump`` alone no longer fits: :class:`AxisField` tracks that.
    """
    _check_positive(kernel=kernel, stride=stride, dilation=dilation)
    shared = math.gcd(dilation, stride)
    reach = (dilation // shared) * ((kernel - 1) * shared // stride)
    jump = Fraction(prev_jump) / stride
    return prev_rf + reach * prev_jump, (int(jump) if jump.denominator == 1 else jump)


def same_padding_before(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> int:
    """Zeros Keras/TensorFlow ``padding="same"`` adds before the first input unit (the rest go after).

    ``pad_total = max((ceil(W / S) - 1) * S + F_eff - W, 0)``, ``pad_before = pad_total // 2``.
    """
    span = effective_kernel_size(kernel, dilation)
    return max((ceil_div(size, stride) - 1) * stride + span - size, 0) // 2


@dataclass(frozen=True)
class AxisField:
    """Exactly which input pixels each unit along one axis of a feature map sees, on an unbounded axis.

    Unit ``u`` (any integer: padding extends the map) sees input pixels ``low(u) .. high(u)``, with
    ``low(u) = (u // period) * shift + lows[u % period]`` (``high`` likewise). A downsampling chain keeps
    ``period == 1``: every unit sees ``rf`` pixels and neighbours are ``jump`` apart, the textbook recurrence.
    Upsampling makes neighbouring units share inputs unevenly, so the fields repeat only every ``period``
    units; ``rf`` is then the largest field and ``jump`` the mean spacing ``shift / period``. A phase no input
    reaches (a transposed kernel smaller than its stride) has ``None`` bounds.
    """

    period: int = 1
    shift: int = 1
    lows: tuple = (0,)
    highs: tuple = (0,)

    @property
    def rf(self) -> int:
        """Largest number of input pixels one unit sees (pixels between the extremes, inclusive); 0 if none."""
        return max((high - low + 1 for low, high in zip(self.lows, self.highs) if low is not None), default=0)

    @property
    def jump(self) -> Number:
        """Input pixels between neighbouring units (mean over a period; a Fraction when not whole)."""
        jump = Fraction(self.shift, self.period)
        return int(jump) if jump.denominator == 1 else jump

    def bounds(self, unit: int) -> Optional[tuple[int, int]]:
        """``(low, high)`` input pixels seen by ``unit``, or ``None`` if no input reaches it."""
        phase, turns = unit % self.period, unit // self.period
        if self.lows[phase] is None:
            return None
        return turns * self.shift + self.lows[phase], turns * self.shift + self.highs[phase]

    def conv(self, kernel: int, stride: int = 1, dilation: int = 1, pad_before: int = 0) -> "AxisField":
        """After a convolution or pooling: output unit ``v`` reads units ``v*S - pad_before + k*D``, ``k < F``.

        Zero padding and cropping are ``kernel=1`` with ``pad_before`` the rows added (negative: removed).
        """
        _check_positive(kernel=kernel, stride=stride, dilation=dilation)
        period = self.period // math.gcd(self.period, stride)
        return self._gather(
            period, self.shift * stride * period // self.period,
            lambda v: [v * stride - pad_before + k * dilation for k in range(kernel)],
        )

    def transposed(self, kernel: int, stride: int = 1, dilation: int = 1, pad_before: int = 0) -> "AxisField":
        """After a transposed convolution: input ``i`` reaches outputs ``i*S - pad_before + k*D``, ``k < F``."""
        _check_positive(kernel=kernel, stride=stride, dilation=dilation)

        def reads(o):
            return [(o + pad_before - k * dilation) // stride for k in range(kernel)
                    if (o + pad_before - k * dilation) % stride == 0]

        return self._gather(self.period * stride, self.shift, reads)

    def resize(self, in_size: int, out_size: int, taps: int = 2) -> "AxisField":
        """After resizing ``in_size`` units to ``out_size`` with half-pixel centres (``UpSampling2D``, ``Resizing``).

        ``taps``: input units interpolation reads around each output, 1 (nearest), 2 (bilinear), 4 (bicubic).
        """
        _check_positive(in_size=in_size, out_size=out_size, taps=taps)
        shared = math.gcd(in_size, out_size)
        step_in, step_out = in_size // shared, out_size // shared

        def reads(o):
            # source coordinate (o + 0.5) * in / out - 0.5, in exact integer arithmetic over 2 * out_size
            numerator = (2 * o + 1) * in_size - out_size
            if taps == 1:
                return [((2 * o + 1) * in_size) // (2 * out_size)]
            first = numerator // (2 * out_size)
            if numerator % (2 * out_size) == 0 and taps == 2:
                return [first]  # exactly on an input unit: bilinear reads only it
            return [first + t for t in range(1 - taps // 2, taps // 2 + 1)]

        return self._gather(self.period * step_out, self.shift * step_in, reads)

    def whole(self, size: int) -> "AxisField":
        """A unit seeing all ``size`` units of the map (global pooling, Dense on a flattened map); as a
        fully convolutional network would slide it, stride 1 (the jump is kept)."""
        seen = [b for b in (self.bounds(u) for u in range(size)) if b is not None]
        low, high = min(b[0] for b in seen), max(b[1] for b in seen)
        # unit 0 is the one that exists; later phases only keep the mean jump for layers sliding further
        steps = [p * self.shift // self.period for p in range(self.period)]
        return AxisField(self.period, self.shift, tuple(low + s for s in steps), tuple(high + s for s in steps))

    def union(self, other: "AxisField") -> "AxisField":
        """Units that read the same unit of two maps (Add, Concatenate). Both maps must have the same jump."""
        if Fraction(self.shift, self.period) != Fraction(other.shift, other.period):
            raise ValueError(f"cannot join fields with jumps {self.jump} and {other.jump}")
        period = self.period * other.period // math.gcd(self.period, other.period)
        return self._gather(period, self.shift * period // self.period, lambda u: [u], extra=other)

    def _gather(self, period, shift, reads, extra: "AxisField" = None) -> "AxisField":
        lows, highs = [], []
        for unit in range(period):
            seen = [self.bounds(u) for u in reads(unit)]
            if extra is not None:
                seen += [extra.bounds(u) for u in reads(unit)]
            seen = [b for b in seen if b is not None]
            lows.append(min(b[0] for b in seen) if seen else None)
            highs.append(max(b[1] for b in seen) if seen else None)
        return AxisField(period, shift, tuple(lows), tuple(highs))


def _padding_amount(padding: Padding) -> int:
    if padding == "valid":
        return 0
    if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
        raise ValueError(f"padding must be 'same', 'valid' or an integer >= 0, got {padding!r}")
    return padding


def _check_positive(**values) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for integers, without floating point."""
    return -(-a // b)


__all__ = [
    "effective_kernel_size",
    "conv_output_size",
    "keras_conv_output_size",
    "transposed_conv_output_size",
    "receptive_field",
    "transposed_receptive_field",
    "same_padding_before",
    "AxisField",
    "ceil_div",
]
