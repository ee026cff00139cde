"""Task heads: feature maps -> task outputs. Each module registers its model builders in ``MODELS``."""
