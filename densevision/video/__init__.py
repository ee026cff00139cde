"""Video pieces for the pose-overlay tool: frame sources and an atomic writer (``io``), person finding (``detect``),
track ids and One-Euro smoothing (``track``), drawing (``overlay``) and the threaded loop (``pipeline``).

Frames are uint8 ``(H, W, 3)`` RGB everywhere; boxes are ``[x, y, w, h]`` in frame pixels; keypoints are
``(J, 3)`` ``[x, y, score]`` in frame pixels (pixel centres at integers).
"""

from densevision.video.io import FrameSource, VideoError, VideoWriter, open_frames

__all__ = ["FrameSource", "VideoError", "VideoWriter", "open_frames"]
