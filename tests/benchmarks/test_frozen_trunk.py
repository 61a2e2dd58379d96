"""--freeze-trunk: the feature cache (reused; another key for another trunk, weights,
transform, image size or split), the features against the fine-tuning path's
trunk in eval mode, and the augmented views."""

import os

import numpy as np
import pytest
import torch
import torchvision
from helpers import write_folder_dataset

from benchmarks import runner
from benchmarks.config import RunConfig
from benchmarks.console import Console
from benchmarks.evaluation.evaluate import embed
from benchmarks.features import FeatureViews, FrozenFeatures, frozen
from benchmarks.features import cache as feature_cache
from benchmarks.training import parts

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    return write_folder_dataset(tmp_path_factory.mktemp("folder_data"), 6, 4)


def make_cfg(folder_root, **changes):
    settings = dict(
        dataset="folder",
        data_root=folder_root,
        image_size=16,
        embedding_size=8,
        freeze_trunk=True,
        embedder="mlp",
        hyperparameters={"triplet": {"margin": 0.1}},
        losses=["triplet"],
    )
    settings.update(changes)
    return RunConfig(**settings)


@pytest.fixture
def extractions(monkeypatch):
    """The number of passes the trunk made over a data set."""
    calls = []
    real = frozen.extract

    def counted(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(frozen, "extract", counted)
    return calls


def features_of(cfg, folder):
    splits = runner.load_splits(cfg, progress=False)
    quiet = Console(quiet=True)
    source = FrozenFeatures(cfg, splits, runner.transforms_of(cfg), CPU, quiet, folder)
    return splits, source


def test_the_cache_is_reused(folder_root, tmp_path, extractions):
    cfg = make_cfg(folder_root)
    first = features_of(cfg, str(tmp_path))[1].splits_for(0)
    assert len(extractions) == 2  # the training images and the test images, once each
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2 and not any(n.startswith(".") for n in names)  # no half file
    again = features_of(cfg, str(tmp_path))[1].splits_for(0)  # another comparison
    assert len(extractions) == 2
    assert torch.equal(first.train_eval.features, again.train_eval.features)
    assert torch.equal(first.query.features, again.query.features)
    assert first.feature_caches == again.feature_caches


@pytest.mark.parametrize(
    "changes",
    [
        {"backbone": "resnet18"},  # another trunk
        {"image_size": 20},  # another image size
        {"augment": "light"},  # another transform of the training images' views
    ],
    ids=["trunk", "image size", "transform"],
)
def test_another_key_is_another_cache_file(folder_root, tmp_path, extractions, changes):
    base = features_of(make_cfg(folder_root), str(tmp_path))[1].splits_for(0)
    cfg = make_cfg(folder_root, **changes)
    if "augment" in changes:
        cfg = cfg.replace(feature_views=1)  # the augmented view is embedded with the new transform
    other = features_of(cfg, str(tmp_path))[1].splits_for(0)
    paths = {v["path"] for v in base.feature_caches.values()}
    new = {v["path"] for v in other.feature_caches.values()}
    if "augment" in changes:  # the clean views' transform is the same: reused
        assert paths < new and len(extractions) == 3
    else:
        assert not paths & new and len(extractions) == 4


def test_other_weights_and_splits_have_other_keys(folder_root, tmp_path, extractions):
    cfg = make_cfg(folder_root)
    splits, source = features_of(cfg, str(tmp_path))
    seed0, seed1 = source.splits_for(0), source.splits_for(1)
    # a random initialisation is decided by the seed: each seed its own features
    assert seed0.feature_caches["train"]["key"]["trunk"]["weights"] == {"random_init_seed": 0}
    assert seed0.feature_caches["train"]["path"] != seed1.feature_caches["train"]["path"]
    assert not torch.equal(seed0.train_eval.features, seed1.train_eval.features)
    train, test = seed0.feature_caches["train"], seed0.feature_caches["test-query"]
    assert train["key"]["data"]["split"] == "train" and test["key"]["data"]["split"] == "test-query"
    assert train["key"]["data"]["labels_sha256"] != test["key"]["data"]["labels_sha256"]
    assert train["path"] != test["path"]
    keys = []
    for i in range(2):  # two weights files of the same trunk
        weights = tmp_path / f"resnet18-{i}.pth"
        torch.manual_seed(i)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
        pretrained = make_cfg(folder_root, backbone="resnet18", pretrained_weights=str(weights))
        keys.append(features_of(pretrained, str(tmp_path))[1].splits_for(0).feature_caches)
    first, second = (k["train"]["key"]["trunk"]["weights"] for k in keys)
    assert first["file"] == "resnet18-0.pth" and len(first["sha256"]) == 64
    assert first["sha256"] != second["sha256"]
    assert keys[0]["train"]["path"] != keys[1]["train"]["path"]


def test_a_key_written_for_another_key_is_not_read(tmp_path):
    key = {"trunk": {"backbone": "x"}, "data": {"split": "train"}, "view": "clean"}
    path = feature_cache.cache_path(key, str(tmp_path))
    feature_cache.write(path, key, torch.ones(2, 3), torch.tensor([0, 1]))
    assert feature_cache.read(path, key)[0].shape == (2, 3)
    assert feature_cache.read(path, {**key, "view": "other"}) is None


def test_frozen_features_are_the_fine_tuning_trunks_in_eval_mode(folder_root, tmp_path):
    """The same seed builds the same trunk on both paths: the cached features are its
    eval-mode outputs, and the embedder on them gives the embeddings the
    fine-tuning path's trunk and that embedder give."""
    cfg = make_cfg(folder_root, embedder="linear")
    splits, source = features_of(cfg, str(tmp_path))
    features = source.splits_for(3)
    torch.manual_seed(3)  # the generator a trunk's initialisation draws from
    trunk, embedder = parts.build_models(cfg.replace(freeze_trunk=False), splits.channels, CPU)
    trunk.train()  # the fine-tuning path's trunk, as it is during training
    images, labels = embed((trunk, torch.nn.Identity()), splits.train_eval, CPU, 64, 0, "")
    torch.testing.assert_close(features.train_eval.features, images)
    assert np.array_equal(features.train_labels, labels.numpy())
    unfrozen, _ = embed((trunk, embedder), splits.query, CPU, 64, 0, "")
    frozen_models = parts.build_models(cfg, splits.channels, CPU, features.feature_size)
    assert isinstance(frozen_models[0], torch.nn.Identity)
    on_features, _ = embed((torch.nn.Identity(), embedder), features.query, CPU, 64, 0, "")
    torch.testing.assert_close(on_features, unfrozen)


def test_feature_views_draw_one_of_k_views_by_the_seed(folder_root, tmp_path):
    cfg = make_cfg(folder_root, augment="light", feature_views=3)
    features = features_of(cfg, str(tmp_path))[1].splits_for(0)
    train = features.train
    assert isinstance(train, FeatureViews) and train.views.shape[0] == 3
    assert not torch.equal(train.views[0], train.views[1])  # other augmentations
    assert features.train_eval is not train  # the tree and evaluation see the clean view
    views = [features.feature_caches[f"train:view{k}"]["key"]["view"] for k in range(3)]
    assert views == [{"augmented": k, "seed": k} for k in range(3)]

    def draws(seed):
        torch.manual_seed(seed)
        picks = []
        for _ in range(20):
            row, _ = train[0]
            picks.append(next(k for k in range(3) if torch.equal(train.views[k, 0], row)))
        return picks

    assert draws(0) == draws(0) and len(set(draws(0))) > 1
