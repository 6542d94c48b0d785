"""The feature cache: a frozen backbone runs once per split, and the head trains on that.

- ``plan``: whether a run can use it (and why not), and its splits served as features;
- ``store``: features computed once, kept in memory and optionally on disk, by exact key;
- ``data``: the splits served as features, one whole epoch per batch;
- ``module``: ``CachedHeadModule``, a ``TransferModule`` that trains only its head on them.

Chosen once, when the run is built (``assembly/build.py``); ``TransferModule`` knows nothing of
it. docs/speed.md has what it saves.
"""

from tl_experiments.feature_cache.data import CachedFeatureData
from tl_experiments.feature_cache.module import CachedHeadModule
from tl_experiments.feature_cache.plan import cache_blocker, cached_features
from tl_experiments.feature_cache.store import (
    FeatureCache,
    cache_key,
    extract_features,
    weights_digest,
)

__all__ = [
    "CachedFeatureData",
    "CachedHeadModule",
    "FeatureCache",
    "cache_blocker",
    "cache_key",
    "cached_features",
    "extract_features",
    "weights_digest",
]
