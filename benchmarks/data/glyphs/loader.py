"""The glyph data set as the benchmark trains on it: half the character classes
train, the others (unseen) test, scripts as superclasses, rendered once with a
fixed seed and cached."""

from __future__ import annotations

import numpy as np

from benchmarks.data.glyphs.dataset import GlyphDataset
from benchmarks.data.spec import DataRequest, DataSet
from benchmarks.data.splits import DEFAULT_RECALL_KS, DataSplits
from benchmarks.data.transforms import glyph_transforms
from benchmarks.data.views import with_transform

#: The glyphs' rendering seed: the same images whatever the training seed.
GLYPH_SEED = 0


def load(request: DataRequest) -> DataSplits:
    samples_per_class = request.glyph_samples_per_class
    kw = dict(samples_per_class=samples_per_class, seed=GLYPH_SEED, verbose=request.progress)
    train = GlyphDataset(split="train", **kw)
    test = GlyphDataset(split="test", **kw)
    train_tf, eval_tf = request.train_transform, request.eval_transform
    return DataSplits(
        with_transform(train, train_tf),
        with_transform(train, eval_tf),
        with_transform(test, eval_tf),
        with_transform(test, eval_tf),
        np.asarray(train.labels),
        True,
        DEFAULT_RECALL_KS,
        1,
        f"glyphs ({len(np.unique(train.labels))} train / {len(np.unique(test.labels))} test "
        f"character classes, {samples_per_class} renderings each, 32x32)",
        train_superclasses=np.asarray(train.superclass_labels),
        superclass_names=list(train.scripts),
        class_names={int(c): train.class_names[c] for c in np.unique(train.labels)},
    )


#: No data root (the glyphs are built in), and no augmentation by default: the
#: published glyph results were made without.
DATASET = DataSet(
    "glyphs", load, glyph_transforms, reads=("glyph_samples",), default_augment="none"
)
