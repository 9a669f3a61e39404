"""Checkpoints: weights-only loading from files and URLs, interruption-safe
saving, and the ImageNet weights the paper's backbones start from."""
