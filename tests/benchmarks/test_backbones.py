"""--pretrained-weights: the checkpoint forms accepted, the one-line errors (before any
data are loaded), googlenet's transform_input, and --preset paper's refusal of random
weights. Checkpoints are written here from torchvision models built with weights=None."""

import pytest
import torch
import torchvision

from benchmarks import cli, compare, runner
from benchmarks.data import image_transforms
from benchmarks.models.backbones import SmallCNN, make_trunk
from benchmarks.models.weights import WeightsError
from benchmarks.training import parts

#: Each accepted form of a state dict ``sd``.
FORMS = {
    "plain": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 3},
    "model": lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
    "module.": lambda sd: {"module." + k: v for k, v in sd.items()},
    "state_dict+module.": lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}},
}


def trunk_part(state):
    """The keys a trunk keeps: the classifier head (fc, googlenet's aux1/aux2) dropped."""
    return {k: v for k, v in state.items() if k.split(".")[0] not in ("fc", "aux1", "aux2")}


@pytest.fixture(scope="module")
def sources():
    """State dicts as an ImageNet checkpoint has them: with the classifier head."""
    torch.manual_seed(0)
    googlenet = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    return {
        "resnet18": torchvision.models.resnet18(weights=None).state_dict(),
        "googlenet": googlenet.state_dict(),
        "small-cnn": SmallCNN(3).state_dict(),
    }


@pytest.fixture(scope="module")
def files(sources, tmp_path_factory):
    """name -> path of a checkpoint; the googlenet_* files each have one defect."""
    folder = tmp_path_factory.mktemp("weights")
    googlenet = trunk_part(sources["googlenet"])
    other_shape = dict(googlenet, **{"conv1.conv.weight": torch.zeros(64, 1, 7, 7)})
    written = {
        "resnet18": sources["resnet18"],
        "resnet18_in_model_with_module": FORMS["model"](FORMS["module."](sources["resnet18"])),
        "googlenet": sources["googlenet"],
        "googlenet_in_state_dict_with_module": FORMS["state_dict+module."](sources["googlenet"]),
        "googlenet_other_shape": other_shape,
        "googlenet_unexpected": dict(googlenet, **{"projection.weight": torch.zeros(4, 4)}),
        "googlenet_missing": {
            k: v for k, v in googlenet.items() if k != "inception5b.branch1.conv.weight"
        },
        "a_list": [torch.zeros(3)],
    }
    paths = {}
    for name, obj in written.items():
        paths[name] = str(folder / f"{name}.pth")
        torch.save(obj, paths[name])
    paths["pickled_model"] = str(folder / "pickled_model.pth")
    torch.save(SmallCNN(3, width=4), paths["pickled_model"])
    paths["not_a_checkpoint"] = str(folder / "not_a_checkpoint.pth")
    with open(paths["not_a_checkpoint"], "w") as f:
        f.write("weights\n")
    paths["missing"] = str(folder / "no_such_file.pth")
    return paths


@pytest.fixture(scope="module")
def pretrained_googlenet(files):
    return make_trunk("googlenet", 3, files["googlenet"])[0]


@pytest.fixture
def no_data(monkeypatch):
    """Loading a data set fails loudly: an error seen instead was raised before it."""

    def data_loaded(*args, **kwargs):
        raise AssertionError("a data set was loaded")

    monkeypatch.setattr(runner, "load_dataset", data_loaded)


def assert_same_tensors(trunk, expected):
    got = trunk.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


# --------------------------------------------------------------------------- accepted forms
@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_of_a_small_cnn_state_dict_loads(form, sources, tmp_path):
    path = str(tmp_path / "w.pth")
    torch.save(FORMS[form](sources["small-cnn"]), path)
    trunk, size = make_trunk("small-cnn", 3, path)
    assert size == 256
    assert_same_tensors(trunk, sources["small-cnn"])


@pytest.mark.parametrize("name", ["resnet18", "resnet18_in_model_with_module"])
def test_resnet18_checkpoints_load_without_their_head(name, files, sources):
    trunk, size = make_trunk("resnet18", 3, files[name])
    assert size == 512
    assert_same_tensors(trunk, trunk_part(sources["resnet18"]))


def test_googlenet_checkpoint_loads_without_its_heads(pretrained_googlenet, sources):
    assert_same_tensors(pretrained_googlenet, trunk_part(sources["googlenet"]))
    assert pretrained_googlenet.transform_input is True  # as torchvision's ImageNet weights


def test_wrapped_googlenet_checkpoint_loads_with_transform_input_overridden(files, sources):
    path = files["googlenet_in_state_dict_with_module"]
    trunk, size = make_trunk("googlenet", 3, path, googlenet_transform_input=False)
    assert size == 1024 and trunk.transform_input is False
    assert_same_tensors(trunk, trunk_part(sources["googlenet"]))


def test_a_random_googlenet_is_untransformed_and_degenerate_in_eval_mode():
    """Why --preset paper refuses random weights: features of norm ~1e-10 in eval mode."""
    torch.manual_seed(0)
    trunk, _ = make_trunk("googlenet", 3)
    assert trunk.transform_input is False
    with torch.no_grad():
        features = trunk.eval()(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 1024)
    assert 0 < features.norm(dim=1).max() < 1e-8


def test_transform_input_undoes_the_imagenet_normalisation_of_the_data(pretrained_googlenet):
    """The photo data sets are normalised with ImageNet's mean and std; googlenet's
    transform_input turns that into (x - 0.5) / 0.5 of the raw pixels, the input its
    ImageNet weights were trained on."""
    import torchvision.transforms as T

    _, eval_transform = image_transforms("cub", None, 8)
    (normalize,) = [t for t in eval_transform.transforms if isinstance(t, T.Normalize)]
    raw = torch.rand(1, 3, 8, 8)
    seen = pretrained_googlenet._transform_input(normalize(raw))
    torch.testing.assert_close(seen, (raw - 0.5) / 0.5, rtol=0, atol=1e-5)


def test_small_cnn_weights_for_another_channel_count_are_refused(sources, tmp_path):
    path = str(tmp_path / "w.pth")
    torch.save(sources["small-cnn"], path)  # 3 input channels
    with pytest.raises(WeightsError, match=r"features\.0\.weight 32x3x3x3 vs 32x1x3x3"):
        make_trunk("small-cnn", 1, path)


# --------------------------------------------------------------------------- errors
def error_of(argv):
    with pytest.raises(SystemExit) as err:
        compare.main(argv)
    message = str(err.value)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


@pytest.mark.parametrize(
    "backbone, name, expected",
    [
        ("resnet18", "missing", ["no such file"]),
        ("resnet18", "not_a_checkpoint", ["not a PyTorch checkpoint", "torch.save(model"]),
        ("resnet18", "a_list", ["holds a list, not a state dict"]),
        (
            "resnet18",
            "pickled_model",
            ["pickled model (benchmarks.models.backbones.SmallCNN)",
             "save model.state_dict() instead"],
        ),
        (  # googlenet's trunk: 342 tensors, 57 of them BatchNorm's optional
            # num_batches_tracked; resnet18's: 122 less fc's weight and bias
            "googlenet",
            "resnet18",
            ["285 tensors missing (conv1.conv.weight,", "120 tensors unexpected (conv1.weight,",
             "these are resnet18 weights: use --backbone resnet18"],
        ),
        (
            "resnet18",
            "googlenet",
            ["these are googlenet weights: use --backbone googlenet"],
        ),
        (
            "resnet50",
            "resnet18",
            ["of another shape, file vs resnet50 (layer1.0.conv1.weight 64x64x3x3 vs 64x64x1x1,",
             "these are resnet18 weights"],
        ),
        (
            "googlenet",
            "googlenet_other_shape",
            ["1 tensor of another shape, file vs googlenet (conv1.conv.weight 64x1x7x7 vs "
             "64x3x7x7)", "same layer sizes"],
        ),
        ("googlenet", "googlenet_unexpected", ["1 tensor unexpected (projection.weight)"]),
        (
            "googlenet",
            "googlenet_missing",
            ["1 tensor missing (inception5b.branch1.conv.weight)", "complete state dict"],
        ),
    ],
)  # fmt: skip
def test_a_bad_checkpoint_is_one_error_line_before_the_data(
    backbone, name, expected, files, no_data
):
    message = error_of(["--backbone", backbone, "--pretrained-weights", files[name]])
    assert message.startswith(f"error: --pretrained-weights {files[name]}")
    for part in expected:
        assert part in message, message


def test_a_good_checkpoint_passes_the_check_and_goes_on_to_the_data(files, no_data):
    for backbone, name in [
        ("resnet18", "resnet18_in_model_with_module"),
        ("googlenet", "googlenet"),
    ]:
        with pytest.raises(AssertionError, match="a data set was loaded"):
            compare.main(["--backbone", backbone, "--pretrained-weights", files[name]])


def test_paper_preset_refuses_random_weights_unless_allowed(files, no_data):
    message = error_of(["--preset", "paper"])
    assert "--preset paper without --pretrained-weights" in message
    assert "norm about 1e-10" in message and "--allow-random-init" in message
    with pytest.raises(AssertionError, match="a data set was loaded"):
        compare.main(["--preset", "paper", "--allow-random-init"])
    with pytest.raises(AssertionError, match="a data set was loaded"):
        compare.main(["--preset", "paper", "--pretrained-weights", files["googlenet"]])
    both = ["--preset", "paper", "--allow-random-init", "--pretrained-weights", files["googlenet"]]
    assert "--allow-random-init applies only to" in error_of(both)
    assert "--allow-random-init applies only to" in error_of(["--allow-random-init"])


# --------------------------------------------------------------------------- configuration
def config_of(*argv):
    return cli.resolve_config(cli.build_parser().parse_args(list(argv)))


def test_googlenet_transform_input_is_recorded_as_the_trunk_gets_it(files):
    weights = ("--pretrained-weights", files["googlenet"])
    assert config_of("--preset", "paper", *weights)["googlenet_transform_input"] is True
    assert config_of("--preset", "paper")["googlenet_transform_input"] is False
    off = config_of("--preset", "paper", *weights, "--googlenet-transform-input", "off")
    assert off["googlenet_transform_input"] is False
    on = config_of("--backbone", "googlenet", "--googlenet-transform-input", "on")
    assert on["googlenet_transform_input"] is True
    assert "googlenet_transform_input" not in config_of("--backbone", "resnet18")
    with pytest.raises(SystemExit, match="^error: --googlenet-transform-input applies only to"):
        config_of("--backbone", "resnet18", "--googlenet-transform-input", "on")


def test_build_models_gives_googlenet_the_recorded_transform_input(files, monkeypatch):
    seen = {}

    def fake_make_trunk(name, channels, weights, transform_input):
        seen.update(name=name, weights=weights, transform_input=transform_input)
        return torch.nn.Identity(), 4

    monkeypatch.setattr(parts, "make_trunk", fake_make_trunk)
    cfg = config_of("--preset", "paper", "--pretrained-weights", files["googlenet"])
    parts.build_models(cfg, 3, torch.device("cpu"))
    assert seen == dict(name="googlenet", weights=files["googlenet"], transform_input=True)
