"""Video for every task (``densevision video``): frame sources and an atomic H.264/mp4v writer (``io``), the threaded
loop (``pipeline``), segmentation and classification drawing (``tasks``), and for pose person finding (``detect``),
detect-then-track, track ids and One-Euro smoothing (``track``) and skeleton drawing (``overlay``).

Frames are uint8 ``(H, W, 3)`` RGB everywhere; boxes are ``[x, y, w, h]`` in frame pixels; keypoints are
``(J, 3)`` ``[x, y, score]`` in frame pixels (pixel centres at integers).
"""

from densevision.video.io import FrameSource, VideoError, VideoWriter, open_frames

__all__ = ["FrameSource", "VideoError", "VideoWriter", "open_frames"]
