"""Face verification (--dataset faces): LFW's 10-fold protocol, pairs.txt, the
CASIA-WebFace + LFW loader, and compare.py end to end, on generated fakes."""

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import compare
from benchmarks.data import DataError, load_dataset
from benchmarks.data.lfw_pairs import parse_pairs
from benchmarks.evaluation.verification import (
    best_threshold,
    cosine_distances,
    kfold_accuracy,
    verification_metrics,
)


# --------------------------------------------------------------------------- the protocol
def test_kfold_accuracy_against_a_hand_computed_example():
    # Three folds of two matched (S) and two mismatched (D) pairs:
    #   fold 0: S 0.1, S 0.4, D 0.3, D 0.9
    #   fold 1: S 0.2, S 0.5, D 0.6, D 0.8
    #   fold 2: S 0.35, S 0.7, D 0.45, D 1.0
    # A threshold t calls a pair "same" iff d <= t; correct = S at or below t + D above t.
    # Held out fold 0, candidates from folds 1 and 2 (4 S, 4 D):
    #   0.2S:1+4=5  0.35S:2+4=6  0.45D:2+3=5  0.5S:3+3=6  0.6D:3+2=5  0.7S:4+2=6
    #   0.8D:4+1=5  1.0D:4+0=4   -> best 6 at 0.35, 0.5, 0.7: the smallest, t = 0.35
    #   fold 0 at 0.35: S0.1 right, S0.4 wrong, D0.3 wrong, D0.9 right -> 2/4 = 0.5
    # Held out fold 1, candidates from folds 0 and 2:
    #   0.1S:1+4=5  0.3D:1+3=4  0.35S:2+3=5  0.4S:3+3=6  0.45D:3+2=5  0.7S:4+2=6
    #   0.9D:4+1=5  1.0D:4      -> best 6 at 0.4 and 0.7: t = 0.4
    #   fold 1 at 0.4: S0.2 right, S0.5 wrong, D0.6 right, D0.8 right -> 3/4 = 0.75
    # Held out fold 2, candidates from folds 0 and 1:
    #   0.1S:1+4=5  0.2S:2+4=6  0.3D:2+3=5  0.4S:3+3=6  0.5S:4+3=7  0.6D:4+2=6
    #   0.8D:4+1=5  0.9D:4      -> best 7 at 0.5 alone: t = 0.5
    #   fold 2 at 0.5: S0.35 right, S0.7 wrong, D0.45 wrong, D1.0 right -> 2/4 = 0.5
    # mean = (0.5 + 0.75 + 0.5) / 3 = 7/12; deviations -1/12, 2/12, -1/12:
    # std (over folds, ddof 0) = sqrt((1 + 4 + 1) / 144 / 3) = sqrt(1/72)
    distances = [0.1, 0.4, 0.3, 0.9, 0.2, 0.5, 0.6, 0.8, 0.35, 0.7, 0.45, 1.0]
    same = [True, True, False, False] * 3
    folds = np.repeat([0, 1, 2], 4)
    result = kfold_accuracy(np.array(distances), np.array(same), folds)
    np.testing.assert_array_equal(result.thresholds, [0.35, 0.4, 0.5])
    np.testing.assert_allclose(result.accuracies, [0.5, 0.75, 0.5])
    assert result.mean == pytest.approx(7 / 12)
    assert result.std == pytest.approx(math.sqrt(1 / 72))


def test_a_threshold_takes_every_pair_at_its_distance():
    # S 0.5, D 0.5, S 0.7, D 0.9: at t = 0.5 both pairs at 0.5 are called same
    # (1 S right + D 0.9 right = 2); t = 0.7: 2 S right + D 0.9 right = 3; t = 0.9: 2.
    # Counting the S at 0.5 without the D beside it would give 3 at t = 0.5.
    distances = np.array([0.5, 0.5, 0.7, 0.9])
    same = np.array([True, False, True, False])
    assert best_threshold(distances, same) == 0.7


def test_best_threshold_matches_a_naive_search():
    rng = np.random.default_rng(0)
    for _ in range(20):
        distances = rng.integers(0, 12, 40) / 6  # many ties
        same = rng.random(40) < 0.5
        best, best_correct = None, -1
        for t in sorted(set(distances)):
            correct = sum((d <= t) == s for d, s in zip(distances, same))
            if correct > best_correct:
                best, best_correct = t, correct
        assert best_threshold(distances, same) == best


def test_cosine_distance_of_normalised_embeddings():
    embeddings = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-5.0, 0.0]])
    distances = cosine_distances(embeddings, [0, 0, 0, 1], [1, 2, 3, 2])
    np.testing.assert_allclose(distances, [1.0, 1 - 1 / math.sqrt(2), 2.0, 1 - 1 / math.sqrt(2)])


# --------------------------------------------------------------------------- pairs.txt
def write_pairs(path, num_folds, per_class, matched, mismatched, header=None):
    """pairs.txt as LFW writes it: the header, then per fold its matched lines
    ("Name\tn1\tn2") and its mismatched lines ("Name1\tn1\tName2\tn2")."""
    lines = [header if header is not None else f"{num_folds}\t{per_class}"]
    for fold in range(num_folds):
        block = slice(fold * per_class, (fold + 1) * per_class)
        lines += [f"{name}\t{a}\t{b}" for name, a, b in matched[block]]
        lines += [f"{n1}\t{a}\t{n2}\t{b}" for n1, a, n2, b in mismatched[block]]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parse_pairs_of_the_real_size(tmp_path):
    matched = [(f"Person_{i}", 1, 2 + i % 7) for i in range(3000)]
    mismatched = [(f"Person_{i}", 1 + i % 3, f"Other_{i}", 4) for i in range(3000)]
    path = write_pairs(tmp_path / "pairs.txt", 10, 300, matched, mismatched)
    assert path.read_text().splitlines()[0] == "10\t300"
    pairs = parse_pairs(str(path))
    assert pairs.num_folds == 10 and len(pairs.same) == 6000
    np.testing.assert_array_equal(np.bincount(pairs.folds), [600] * 10)
    expected_same = np.tile(np.repeat([True, False], 300), 10)
    np.testing.assert_array_equal(pairs.same, expected_same)
    # fold 4 starts at row 2400: matched[1200] (n2 = 2 + 1200 % 7 = 5), then
    # mismatched[1200] (n1 = 1 + 1200 % 3 = 1) 300 rows later
    assert pairs.left[2400] == ("Person_1200", 1) and pairs.right[2400] == ("Person_1200", 5)
    assert pairs.left[2700] == ("Person_1200", 1) and pairs.right[2700] == ("Other_1200", 4)
    assert pairs.folds[2399] == 3 and pairs.folds[2400] == 4


def test_parse_pairs_of_a_miniature_file(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("2\t1\nAl_A\t1\t2\nAl_A\t1\tBo_B\t3\nBo_B\t2\t3\nCy_C\t1\tAl_A\t2\n")
    pairs = parse_pairs(str(path))
    assert pairs.left == [("Al_A", 1), ("Al_A", 1), ("Bo_B", 2), ("Cy_C", 1)]
    assert pairs.right == [("Al_A", 2), ("Bo_B", 3), ("Bo_B", 3), ("Al_A", 2)]
    assert pairs.same.tolist() == [True, False, True, False]
    assert pairs.folds.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize(
    "text, message",
    [
        ("10\t300\nAl_A\t1\t2\nAl_A\t1\tBo_B\t3\n", "promises 10 folds of 300 matched"),
        ("2\t1\nAl_A\t1\t2\nAl_A\t1\tBo_B\t3\nBo_B\t2\t3\n", "3 pair lines follow"),
        ("300\nAl_A\t1\t2\nAl_A\t1\tBo_B\t3\n", "line 1 must be"),
        ("1\t1\nAl_A\t1\t2\nAl_A\t1\tBo_B\t3\n", "at least 2 folds"),
        ("2\t1\nAl_A\t1\t2\nAl_A\t1\tBo_B\t3\nBo_B\t2\tCy_C\t3\nCy_C\t1\tAl_A\t2\n", "line 4"),
        ("2\t1\nAl_A\t1\t2\nAl_A\t1\t3\nBo_B\t2\t3\nCy_C\t1\tAl_A\t2\n", "mismatched pair"),
        ("2\t1\nAl_A\t0\t2\nAl_A\t1\tBo_B\t3\nBo_B\t2\t3\nCy_C\t1\tAl_A\t2\n", "1-based"),
        ("", "is empty"),
    ],
)
def test_malformed_pairs_file_is_an_error_naming_it(tmp_path, text, message):
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        parse_pairs(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- the loader
CASIA = {"0000045": 3, "0000099": 4, "0000100": 3, "0000157": 3, "0000168": 3}
LFW = {"Aaron_Peirsol": 3, "Abel_Pacheco": 2, "Ana_Guevara": 1, "Bob_Dole": 2, "Zico": 2}
# two folds of two matched and two mismatched pairs, in LFW's format
PAIRS_TXT = """2\t2
Aaron_Peirsol\t1\t2
Abel_Pacheco\t1\t2
Aaron_Peirsol\t3\tAna_Guevara\t1
Bob_Dole\t1\tZico\t2
Aaron_Peirsol\t2\t3
Bob_Dole\t1\t2
Abel_Pacheco\t2\tZico\t1
Ana_Guevara\t1\tBob_Dole\t2
"""
GREY_TRAIN = ("0000099", "002.jpg")
GREY_LFW = ("Bob_Dole", "Bob_Dole_0002.jpg")


def face_image(rng, identity_index, grey=False):
    base = rng.integers(0, 255, (4, 4, 3)) // 2 + 20 * identity_index
    img = np.kron(base, np.ones((5, 5, 1))) + rng.normal(0, 10, (20, 20, 3))
    img = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    return img.convert("L") if grey else img


def make_faces_root(root, pairs_txt=PAIRS_TXT):
    """CASIA-WebFace/<id>/<NNN>.jpg, lfw/<Name>/<Name>_<NNNN>.jpg and pairs.txt; one grey
    JPEG in each of the two image folders."""
    rng = np.random.default_rng(0)
    for i, (identity, count) in enumerate(CASIA.items()):
        os.makedirs(root / "CASIA-WebFace" / identity)
        for n in range(1, count + 1):
            grey = (identity, f"{n:03d}.jpg") == GREY_TRAIN
            face_image(rng, i, grey).save(root / "CASIA-WebFace" / identity / f"{n:03d}.jpg")
    for i, (name, count) in enumerate(LFW.items()):
        os.makedirs(root / "lfw" / name)
        for n in range(1, count + 1):
            file = f"{name}_{n:04d}.jpg"
            face_image(rng, i, (name, file) == GREY_LFW).save(root / "lfw" / name / file)
    (root / "pairs.txt").write_text(pairs_txt)
    return root


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory):
    return make_faces_root(tmp_path_factory.mktemp("faces"))


def test_loader_splits_and_pairs(faces_root):
    assert Image.open(faces_root / "lfw" / GREY_LFW[0] / GREY_LFW[1]).mode == "L"
    splits = load_dataset("faces", str(faces_root))
    assert len(splits.train) == sum(CASIA.values()) == 16
    assert len(np.unique(splits.train_labels)) == len(CASIA) == 5
    assert np.bincount(splits.train_labels).tolist() == [3, 4, 3, 3, 3]  # sorted by identity
    assert splits.query_is_reference and splits.query is splits.reference
    assert len(splits.query) == sum(LFW.values()) == 10
    assert np.bincount(splits.query.labels).tolist() == [3, 2, 1, 2, 2]
    assert splits.channels == 3 and splits.recall_ks == (1, 2, 4, 8)
    for dataset in (splits.train, splits.train_eval, splits.query):
        for i in range(len(dataset)):
            assert dataset[i][0].mode == "RGB"  # grey files too

    pairs = splits.pairs
    assert pairs.num_folds == 2
    assert pairs.folds.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert pairs.same.tolist() == [True, True, False, False] * 2
    lfw = faces_root / "lfw"
    expected = [
        ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg"),
        ("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0002.jpg"),
        ("Aaron_Peirsol/Aaron_Peirsol_0003.jpg", "Ana_Guevara/Ana_Guevara_0001.jpg"),
        ("Bob_Dole/Bob_Dole_0001.jpg", "Zico/Zico_0002.jpg"),
        ("Aaron_Peirsol/Aaron_Peirsol_0002.jpg", "Aaron_Peirsol/Aaron_Peirsol_0003.jpg"),
        ("Bob_Dole/Bob_Dole_0001.jpg", "Bob_Dole/Bob_Dole_0002.jpg"),
        ("Abel_Pacheco/Abel_Pacheco_0002.jpg", "Zico/Zico_0001.jpg"),
        ("Ana_Guevara/Ana_Guevara_0001.jpg", "Bob_Dole/Bob_Dole_0002.jpg"),
    ]
    got = [
        (splits.query.paths[i], splits.query.paths[j]) for i, j in zip(pairs.index1, pairs.index2)
    ]
    assert got == [(str(lfw / a), str(lfw / b)) for a, b in expected]


def test_loader_with_transforms_gives_three_channel_tensors(faces_root):
    import torchvision.transforms as T

    splits = load_dataset("faces", str(faces_root), T.ToTensor(), T.ToTensor())
    grey_train = splits.train.paths.index(str(faces_root / "CASIA-WebFace" / "0000099" / "002.jpg"))
    assert splits.train[grey_train][0].shape == (3, 20, 20)
    grey_lfw = splits.query.paths.index(str(faces_root / "lfw" / GREY_LFW[0] / GREY_LFW[1]))
    assert splits.query[grey_lfw][0].shape == (3, 20, 20)


def test_verification_metrics_on_the_loaded_pairs(faces_root):
    # one-hot embeddings per identity: a matched pair is at distance 0, a
    # mismatched one at 1, so every fold's threshold (0) calls every pair right
    splits = load_dataset("faces", str(faces_root))
    embeddings = torch.nn.functional.one_hot(torch.as_tensor(splits.query.labels)).float()
    metrics = verification_metrics(embeddings, splits.pairs)
    assert metrics == {"lfw_verification_accuracy": 1.0, "lfw_verification_accuracy_std": 0.0}


def test_missing_pair_images_are_one_error_naming_them(tmp_path):
    pairs_txt = PAIRS_TXT.replace("Bob_Dole\t1\t2", "Bob_Dole\t1\t7").replace(
        "Zico\t2\n", "Zico\t9\n"
    )
    root = make_faces_root(tmp_path, pairs_txt)
    with pytest.raises(DataError) as err:
        load_dataset("faces", str(root))
    message = str(err.value)
    assert "2 images missing" in message and str(root / "pairs.txt") in message
    assert "Zico/Zico_0009.jpg, Bob_Dole/Bob_Dole_0007.jpg" in message  # in file order


def test_bad_faces_root_is_one_error_line(tmp_path):
    with pytest.raises(SystemExit, match="^error: --data-root .*CASIA-WebFace"):
        compare.main(["--dataset", "faces", "--data-root", str(tmp_path)])
    root = make_faces_root(tmp_path / "faces", PAIRS_TXT.replace("2\t2", "10\t300", 1))
    with pytest.raises(SystemExit, match="^error: .*pairs.txt: its header promises 10 folds"):
        compare.main(["--dataset", "faces", "--data-root", str(root)])
    os.makedirs(root / "lfw" / "Empty_Name")
    with pytest.raises(SystemExit, match="^error: .*Empty_Name holds no image"):
        compare.main(["--dataset", "faces", "--data-root", str(root)])


# --------------------------------------------------------------------------- end to end
def test_compare_end_to_end_reports_verification_accuracy(faces_root, tmp_path):
    out = tmp_path / "out"
    compare.main(
        [
            "--dataset", "faces", "--data-root", str(faces_root), "--out", str(out),
            "--backbone", "small-cnn", "--image-size", "16", "--epochs", "1",
            "--iters-per-epoch", "1", "--batch-size", "16", "--embedding-size", "8",
            "--losses", "triplet", "htl", "--device", "cpu", "--quiet",
        ]
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert "10-fold" not in results["configuration"]["verification"]
    assert results["configuration"]["verification"].startswith("2-fold verification on the 8")
    assert {r["loss"] for r in results["runs"]} == {"triplet", "htl"}
    for run in results["runs"]:
        for point in run["curve"]:
            accuracy = point["lfw_verification_accuracy"]
            # 4 held-out pairs per fold: each fold's accuracy is a multiple of 1/4
            assert 0.0 <= accuracy <= 1.0 and (8 * accuracy) % 1 == 0
            assert point["lfw_verification_accuracy_std"] >= 0.0
            assert 0.0 <= point["recall_at_1"] <= 1.0
        summary = results["summary"][run["loss"]]
        assert summary["lfw_verification_accuracy"][0] == run["final"]["lfw_verification_accuracy"]
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert "lfw_verification_accuracy" in header and "lfw_verification_accuracy_std" in header
    md = (out / "results.md").read_text()
    assert "| LFW verif. |" in md and "LFW verif. fold std" in md and "2-fold" in md


def test_compare_runs_the_paper_preset_on_faces(faces_root, googlenet_weights, tmp_path):
    """--preset paper (googlenet with ImageNet-shaped weights) trains on CASIA-WebFace
    and reports LFW verification, grey images included."""
    out = tmp_path / "out"
    compare.main(
        [
            "--preset", "paper", "--dataset", "faces", "--data-root", str(faces_root),
            "--pretrained-weights", googlenet_weights, "--image-size", "16", "--epochs", "1",
            "--iters-per-epoch", "1", "--batch-size", "16", "--losses", "triplet", "htl",
            "--device", "cpu", "--quiet", "--out", str(out),
        ]
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["configuration"]["backbone"] == "googlenet"
    for run in results["runs"]:
        assert 0.0 <= run["final"]["lfw_verification_accuracy"] <= 1.0
