"""Target encodings: annotations -> training targets (encode) and model outputs -> answers (decode)."""

from densevision.codecs.heatmap import HeatmapCodec, flip_back, to_image, to_image_tf

__all__ = ["HeatmapCodec", "flip_back", "to_image", "to_image_tf"]
