"""Data: dataset sources (registered in ``DATASETS``), albumentations pipelines and tf.data input pipelines."""

from densevision.data.augment import AugmentationError, build_augmentation, validate_transforms
from densevision.data.errors import DatasetError
from densevision.data.pipeline import build_dataset, steps_per_epoch

__all__ = ["AugmentationError", "DatasetError", "build_augmentation", "build_dataset", "steps_per_epoch",
           "validate_transforms"]
