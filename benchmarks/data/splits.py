"""What a data set loader returns: the training views and the test split of unseen classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from benchmarks.data.lfw_pairs import IndexedPairs

#: Recall@K cut-offs of the data sets the literature has none for.
DEFAULT_RECALL_KS = (1, 2, 4, 8)


@dataclass
class DataSplits:
    train: Dataset  # with training augmentation
    train_eval: Dataset  # the same samples without augmentation (the tree hook embeds it)
    query: Dataset
    reference: Dataset
    train_labels: np.ndarray
    query_is_reference: bool
    recall_ks: Sequence[int]
    channels: int
    description: str
    pairs: Optional[IndexedPairs] = None  # verification pairs into ``query`` (faces)
    #: (N,) superclass of every training sample (glyph script, SOP super_class_id,
    #: In-shop garment category), or None: what the learned tree is measured against
    train_superclasses: Optional[np.ndarray] = None
    #: the name of each superclass id, where the data set has names (glyph scripts)
    superclass_names: Optional[Sequence[str]] = None
    #: the name of each training class label (a glyph's character), for pictures
    class_names: Optional[Mapping[int, str]] = None
    #: where the items are a frozen trunk's features (--freeze-trunk): their size
    feature_size: Optional[int] = None
    #: and the cache files they come from: view name -> {"path", "key"}
    feature_caches: Optional[Dict[str, Any]] = None
    #: --select-on-val: the clean views of the held-out training classes (query =
    #: reference), and those classes (data/validation.py)
    validation: Optional[Dataset] = None
    validation_classes: Optional[np.ndarray] = None
