"""--freeze-trunk: a frozen trunk's features, embedded once and cached on disk
(cache.py, extract.py), as the data sets the runs train their embedder on
(views.py, frozen.py)."""

from benchmarks.features.cache import FEATURES_VERSION, default_cache_dir
from benchmarks.features.frozen import FEATURE_VIEW_SEED, FrozenFeatures, trunk_identity
from benchmarks.features.views import FeatureSet, FeatureViews

__all__ = [
    "FEATURES_VERSION",
    "FEATURE_VIEW_SEED",
    "FeatureSet",
    "FeatureViews",
    "FrozenFeatures",
    "default_cache_dir",
    "trunk_identity",
]
