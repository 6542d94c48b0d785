"""tl-experiments: measure how to reuse a pretrained network."""

__version__ = "0.1.0"
