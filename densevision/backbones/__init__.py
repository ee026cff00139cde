"""Backbones (what sees): image -> feature maps ``{"P1": /2, ..., "P5": /32}``, keras.applications layer names."""

from densevision.backbones.api import build_backbone, feature_strides, freeze_backbone

__all__ = ["build_backbone", "feature_strides", "freeze_backbone"]
