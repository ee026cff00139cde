"""Defaults that the ``densevision video`` command line and the video code share; nothing heavy is imported here, so
the parser reads them before TensorFlow and OpenCV load (``--help`` stays fast)."""

DEFAULT_DET_EVERY = 10
"""Person detection every 10 frames, following people by their keypoints in between: chosen by
``benchmarks/pose_video.py`` (README, "Pose video"): against detection on every frame, 3x the frames/s and more
people per frame; 5 was slower (HOG dominates), 20 no faster and lost people (measured on the 960x540 street clip)."""
