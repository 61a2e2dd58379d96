"""pytorch-metric-learning's data sets (CUB, Cars196, ...), plus the glyph data set
that ships with pml_htl."""

try:  # PML's data set classes need Pillow
    from pytorch_metric_learning.datasets import *  # noqa: F401,F403
except ImportError:  # pragma: no cover - Pillow missing
    pass
else:
    from .._pml_aliases import register_submodules

    register_submodules(__name__, "pytorch_metric_learning.datasets")

from .glyphs import GlyphDataset, build_glyph_arrays, default_cache_dir, load_glyph_arrays

__all__ = ["GlyphDataset", "build_glyph_arrays", "default_cache_dir", "load_glyph_arrays"]
