import pytest
from helpers import BlobDataset


@pytest.fixture
def blob_dataset():
    return BlobDataset()
