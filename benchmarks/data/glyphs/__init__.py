"""The glyph data set: characters of seven scripts drawn in the fonts inside
matplotlib's wheel, with the script as superclass (the benchmark's default data).

Reading a cached build needs NumPy and torch; building one needs the
``glyphs`` extra (matplotlib, fontTools, Pillow, SciPy).
"""

from .dataset import GlyphDataset, build_glyph_arrays, default_cache_dir, load_glyph_arrays

__all__ = ["GlyphDataset", "build_glyph_arrays", "default_cache_dir", "load_glyph_arrays"]
