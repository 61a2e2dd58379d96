import numpy as np
import pytest
import torch


class BlobDataset(torch.utils.data.Dataset):
    """Gaussian blobs: a tiny, generated data set with `num_classes` classes."""

    def __init__(self, num_classes=12, per_class=10, dim=6, seed=0, label_offset=100):
        g = torch.Generator().manual_seed(seed)
        centers = torch.randn(num_classes, dim, generator=g) * 2
        self.data = centers.repeat_interleave(per_class, 0) + torch.randn(
            num_classes * per_class, dim, generator=g
        )
        self.labels = np.repeat(np.arange(num_classes) * 3 + label_offset, per_class)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.data[i], int(self.labels[i])


@pytest.fixture
def blob_dataset():
    return BlobDataset()
