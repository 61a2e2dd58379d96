import pytest
import torch
from helpers import BlobDataset


@pytest.fixture
def blob_dataset():
    return BlobDataset()


@pytest.fixture(scope="session")
def googlenet_weights(tmp_path_factory):
    """A state dict shaped like torchvision's ImageNet googlenet (random values:
    nothing is downloaded), for runs of the paper's preset."""
    import torchvision

    path = tmp_path_factory.mktemp("weights") / "googlenet.pth"
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    torch.save(model.state_dict(), path)
    return str(path)
