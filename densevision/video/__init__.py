"""Video for every task (``densevision video``): frame sources and an atomic H.264/mp4v writer (``io``), the threaded
loop (``pipeline``), segmentation and classification drawing (``tasks``), and for pose person finding (``detect``),
detect-then-track, track ids and One-Euro smoothing (``track``) and skeleton drawing (``overlay``); ``command`` is
the command itself, ``defaults`` what its parser and its code share.

Frames are uint8 ``(H, W, 3)`` RGB everywhere; boxes are ``[x, y, w, h]`` in frame pixels; keypoints are
``(J, 3)`` ``[x, y, score]`` in frame pixels (pixel centres at integers).

Importing the package is cheap (``densevision video --help`` reads :mod:`densevision.video.defaults` before OpenCV
loads); the names below load ``io`` on first use (PEP 562 ``__getattr__``).
"""

from importlib import import_module

__all__ = ["FrameSource", "VideoError", "VideoWriter", "open_frames"]


def __getattr__(name: str):
    if name in __all__:
        value = getattr(import_module("densevision.video.io"), name)
        globals()[name] = value  # later accesses skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
