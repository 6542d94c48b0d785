"""What transfer did to the network: forgetting, feature drift, and domain shift.

Run after test by :func:`tl_experiments.train.run` when ``analysis.enabled`` (docs/shift.md).
"""

from tl_experiments.analysis.cka import linear_cka
from tl_experiments.analysis.drift import snapshot_weights, weight_drift
from tl_experiments.analysis.features import pool, stage_features
from tl_experiments.analysis.imagenet import imagenet_agreement
from tl_experiments.analysis.images import split_images
from tl_experiments.analysis.photos import load_photos, natural_photos
from tl_experiments.analysis.run import AnalysisOptions, analyze
from tl_experiments.analysis.shifts import (
    BLUR_SIGMA_FRACTION,
    NOISE_STD,
    ROTATION_DEGREES,
    SHIFTS,
    apply_shift,
    shift_accuracy,
)

__all__ = [
    "BLUR_SIGMA_FRACTION",
    "NOISE_STD",
    "ROTATION_DEGREES",
    "SHIFTS",
    "AnalysisOptions",
    "analyze",
    "apply_shift",
    "imagenet_agreement",
    "linear_cka",
    "load_photos",
    "natural_photos",
    "pool",
    "shift_accuracy",
    "snapshot_weights",
    "split_images",
    "stage_features",
    "weight_drift",
]
