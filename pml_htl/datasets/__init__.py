"""Data sets shipped with pml_htl."""

from .glyphs import GlyphDataset, build_glyph_arrays, default_cache_dir, load_glyph_arrays

__all__ = ["GlyphDataset", "build_glyph_arrays", "default_cache_dir", "load_glyph_arrays"]
