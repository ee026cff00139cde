"""Inference beyond one forward pass: fully convolutional conversion and sliding classification, tiling, test-time
augmentation."""
